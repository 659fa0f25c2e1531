package admin

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// ErrUnreachable: the server did not answer.
var ErrUnreachable = errors.New("cannot reach the pulsaga server")

// APIError is an error answer of the API.
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string {
	// The server prefixes messages with their class ("not found: ...");
	// the status says it already.
	msg := e.Message
	for _, p := range []string{"not found: ", "bad request: ", "conflict: ", "unavailable: "} {
		msg = strings.TrimPrefix(msg, p)
	}
	return msg
}

// Is makes an APIError match the sentinel of its status.
func (e *APIError) Is(target error) bool {
	switch e.Status {
	case http.StatusNotFound:
		return target == ErrNotFound
	case http.StatusConflict:
		return target == ErrConflict
	case http.StatusForbidden:
		return target == ErrForbidden
	case http.StatusBadRequest, http.StatusUnprocessableEntity:
		return target == ErrBadRequest
	case http.StatusServiceUnavailable:
		return target == ErrUnavailable
	}
	return false
}

// Client calls the admin API (the pulsaga CLI uses it).
type Client struct {
	base  *url.URL
	token string
	hc    *http.Client
	// Retries is how many times a request is sent again after a network
	// error or a 502/503/504, with the same Idempotency-Key (default 2).
	Retries int
}

// NewClient makes a client of the server at server (http or https URL).
func NewClient(server, token string) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(server, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: server %q is not an http(s) URL such as http://127.0.0.1:8088", ErrBadRequest, server)
	}
	return &Client{base: u, token: token, hc: &http.Client{Timeout: 30 * time.Second}, Retries: 2}, nil
}

// NewKey returns a fresh idempotency key.
func NewKey() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

type call struct {
	method, path string
	query        url.Values
	body         []byte
	contentType  string
	key          string // Idempotency-Key
}

func (c *Client) do(ctx context.Context, cl call, out any) error {
	u := *c.base
	u.Path += cl.path
	u.RawQuery = cl.query.Encode()
	var last error
	for try := 0; try <= c.Retries; try++ {
		if try > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(try) * 300 * time.Millisecond):
			}
		}
		req, err := http.NewRequestWithContext(ctx, cl.method, u.String(), bytes.NewReader(cl.body))
		if err != nil {
			return err
		}
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		if cl.contentType != "" {
			req.Header.Set("Content-Type", cl.contentType)
		}
		if cl.key != "" {
			req.Header.Set(IdempotencyHeader, cl.key)
		}
		req.Header.Set(RequestHeader, "1")
		resp, err := c.hc.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			last = fmt.Errorf("%w at %s: %v", ErrUnreachable, c.base, unwrapURLError(err))
			if cl.method != http.MethodGet && cl.key == "" {
				return last // not safe to send again
			}
			continue
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			last = fmt.Errorf("%w at %s: %v", ErrUnreachable, c.base, err)
			continue
		}
		if resp.StatusCode >= 300 {
			var eb ErrorBody
			apiErr := &APIError{Status: resp.StatusCode}
			if json.Unmarshal(b, &eb) == nil && eb.Error.Message != "" {
				apiErr.Code, apiErr.Message = eb.Error.Code, eb.Error.Message
			} else if resp.StatusCode == http.StatusUnprocessableEntity {
				apiErr.Code, apiErr.Message = "invalid_definition", "the definition is invalid"
			} else {
				apiErr.Message = fmt.Sprintf("%s %s: HTTP %d: %s", cl.method, cl.path, resp.StatusCode, oneLine(string(b), 200))
			}
			switch resp.StatusCode {
			case http.StatusServiceUnavailable:
				if apiErr.Code == "unavailable" {
					// The server answered, after waiting for the broker
					// itself: asking again at once would only wait again.
					return apiErr
				}
				fallthrough
			case http.StatusBadGateway, http.StatusGatewayTimeout:
				last = apiErr
				if cl.method != http.MethodGet && cl.key == "" {
					return last
				}
				continue
			case http.StatusUnprocessableEntity:
				if out != nil && json.Unmarshal(b, out) == nil {
					return apiErr
				}
			}
			return apiErr
		}
		if out != nil {
			if err := json.Unmarshal(b, out); err != nil {
				return fmt.Errorf("%s %s: unexpected answer: %v", cl.method, cl.path, err)
			}
		}
		return nil
	}
	return last
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func jsonCall(method, path, key string, body any) (call, error) {
	cl := call{method: method, path: path, key: key}
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return cl, err
		}
		cl.body, cl.contentType = b, "application/json"
	}
	return cl, nil
}

// List lists processes; the filter's query parameters are those of
// GET /api/v1/processes.
func (c *Client) List(ctx context.Context, filter url.Values) (*ProcessList, error) {
	var out ProcessList
	return &out, c.do(ctx, call{method: "GET", path: "/api/v1/processes", query: filter}, &out)
}

// Get reads one process.
func (c *Client) Get(ctx context.Context, id string) (*ProcessDetail, error) {
	var out ProcessDetail
	return &out, c.do(ctx, call{method: "GET", path: "/api/v1/processes/" + url.PathEscape(id)}, &out)
}

// Act sends retry, skip, cancel or terminate; key makes a resent request
// apply once.
func (c *Client) Act(ctx context.Context, id, action string, req ActionRequest, key string) (*ActionResult, error) {
	cl, err := jsonCall("POST", "/api/v1/processes/"+url.PathEscape(id)+"/"+action, key, req)
	if err != nil {
		return nil, err
	}
	var out ActionResult
	return &out, c.do(ctx, cl, &out)
}

// Start starts a process.
func (c *Client) Start(ctx context.Context, req StartBody, key string) (*ActionResult, error) {
	cl, err := jsonCall("POST", "/api/v1/processes", key, req)
	if err != nil {
		return nil, err
	}
	var out ActionResult
	return &out, c.do(ctx, cl, &out)
}

// StartBatch starts up to MaxBatchStarts processes with one request; the
// result says, start by start, which were accepted.
func (c *Client) StartBatch(ctx context.Context, starts []StartBody, key string) (*BatchStartResult, error) {
	cl, err := jsonCall("POST", "/api/v1/processes/batch", key, BatchStartBody{Starts: starts})
	if err != nil {
		return nil, err
	}
	var out BatchStartResult
	return &out, c.do(ctx, cl, &out)
}

// Signal sends a signal to a process.
func (c *Client) Signal(ctx context.Context, id string, req SignalBody, key string) (*ActionResult, error) {
	cl, err := jsonCall("POST", "/api/v1/processes/"+url.PathEscape(id)+"/signals", key, req)
	if err != nil {
		return nil, err
	}
	var out ActionResult
	return &out, c.do(ctx, cl, &out)
}

// DLQList lists the dead-letter topics with their counts.
func (c *Client) DLQList(ctx context.Context) ([]DLQInfo, error) {
	var out struct {
		Topics []DLQInfo `json:"topics"`
	}
	return out.Topics, c.do(ctx, call{method: "GET", path: "/api/v1/dlq"}, &out)
}

// DLQMessages are the pending dead letters of one topic.
type DLQMessages struct {
	Topic    string       `json:"topic"`
	Count    int          `json:"count"`
	Messages []DeadLetter `json:"messages"`
}

// DLQInspect reads up to limit pending dead letters of topic.
func (c *Client) DLQInspect(ctx context.Context, topic string, limit int) (*DLQMessages, error) {
	var out DLQMessages
	q := url.Values{}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	return &out, c.do(ctx, call{method: "GET", path: "/api/v1/dlq/" + url.PathEscape(topic), query: q}, &out)
}

// DLQAct replays or purges dead letters of topic (every pending one when
// body.IDs is empty).
func (c *Client) DLQAct(ctx context.Context, topic, action string, body DLQActionBody, key string) (*DLQActionResult, error) {
	cl, err := jsonCall("POST", "/api/v1/dlq/"+url.PathEscape(topic)+"/"+action, key, body)
	if err != nil {
		return nil, err
	}
	var out DLQActionResult
	return &out, c.do(ctx, cl, &out)
}

// Definitions lists the registered definitions.
func (c *Client) Definitions(ctx context.Context) ([]DefinitionInfo, error) {
	var out struct {
		Definitions []DefinitionInfo `json:"definitions"`
	}
	return out.Definitions, c.do(ctx, call{method: "GET", path: "/api/v1/definitions"}, &out)
}

// Definition reads name at version (0: the latest).
func (c *Client) Definition(ctx context.Context, name string, version int) (*DefinitionInfo, error) {
	q := url.Values{}
	if version > 0 {
		q.Set("version", strconv.Itoa(version))
	}
	var out DefinitionInfo
	return &out, c.do(ctx, call{method: "GET", path: "/api/v1/definitions/" + url.PathEscape(name), query: q}, &out)
}

// Validate checks a definition without registering it. An invalid one
// returns its problems and an error matching ErrBadRequest.
func (c *Client) Validate(ctx context.Context, file string, src []byte) (*ValidationResult, error) {
	var out ValidationResult
	err := c.do(ctx, call{method: "POST", path: "/api/v1/definitions/validate", query: url.Values{"file": {file}}, body: src, contentType: "application/yaml"}, &out)
	return &out, err
}

// Register validates and registers a definition. An invalid one returns
// its problems in the result and an error matching ErrBadRequest.
func (c *Client) Register(ctx context.Context, file string, src []byte) (*DefinitionInfo, *ValidationResult, error) {
	var res struct {
		DefinitionInfo
		ValidationResult
	}
	err := c.do(ctx, call{method: "POST", path: "/api/v1/definitions", query: url.Values{"file": {file}}, body: src, contentType: "application/yaml", key: NewKey()}, &res)
	return &res.DefinitionInfo, &res.ValidationResult, err
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
