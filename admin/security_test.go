package admin

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/memory"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/protocol"
)

// Issue #10, problem 4: without tokens (loopback, pulsaga dev) a page of
// another site started a process with a text/plain no-cors fetch, a plain
// HTML form reached terminate, and any Host header was accepted (DNS
// rebinding). Each of those is refused now; the CLI's and the dashboard's
// requests still pass.
func TestCrossSiteRefusedWithoutTokens(t *testing.T) {
	h := newHarness(t)
	h.startPaused("car-1")
	srv, err := New(Options{Bus: h.bus, Topics: h.topics, Registry: h.stack.Registry}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	hs := httptest.NewUnstartedServer(srv.Handler())
	hs.Start()
	t.Cleanup(hs.Close)
	srv.opts.Listen = hs.Listener.Addr().String()
	self := hs.URL // http://127.0.0.1:port

	send := func(method, path, body string, hdr ...string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, hs.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			if hdr[i] == "Host" {
				req.Host = hdr[i+1]
				continue
			}
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := hs.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	start := `{"definition":"repair","process_id":"evil-1","input":{"ticket":"x"}}`
	tests := []struct {
		name, method, path, body string
		hdr                      []string
		want                     int
		msg                      string
	}{
		{"no-cors fetch with text/plain", "POST", "/api/v1/processes", start, []string{"Content-Type", "text/plain;charset=UTF-8", "Origin", "http://evil.example"}, 403, "origin http://evil.example is refused"},
		{"text/plain without Origin", "POST", "/api/v1/processes", start, []string{"Content-Type", "text/plain"}, 403, "needs a Content-Type of application/json"},
		{"HTML form to terminate", "POST", "/api/v1/processes/car-1/terminate", "reason=x", []string{"Content-Type", "application/x-www-form-urlencoded"}, 403, "needs a Content-Type of application/json"},
		{"multipart form", "POST", "/api/v1/processes/car-1/cancel", "--b--", []string{"Content-Type", "multipart/form-data; boundary=b"}, 403, "needs a Content-Type"},
		{"JSON from another origin", "POST", "/api/v1/processes/car-1/terminate", `{}`, []string{"Content-Type", "application/json", "Origin", "https://evil.example"}, 403, "origin https://evil.example is refused"},
		{"null origin", "POST", "/api/v1/processes/car-1/terminate", `{}`, []string{"Content-Type", "application/json", "Origin", "null"}, 403, "origin null is refused"},
		{"DNS rebinding: a foreign Host", "GET", "/api/v1/processes", "", []string{"Host", "evil.example:" + strings.Split(self, ":")[2]}, 403, `is not this server's: without tokens the API answers only to a loopback address or localhost, 127.0.0.1`},
		{"DNS rebinding on the dashboard", "GET", "/ui/", "", []string{"Host", "attacker.example"}, 403, "is not this server's"},
		{"the CLI: JSON, no Origin", "GET", "/api/v1/processes/car-1", "", nil, 200, `"process_id": "car-1"`},
		{"the dashboard: its own origin", "POST", "/api/v1/processes/car-1/signals", `{"name":"approve"}`, []string{"Content-Type", "application/json", "Origin", self}, 202, `"action": "signal"`},
		{"a client header instead of JSON", "POST", "/api/v1/processes/car-1/terminate", "", []string{RequestHeader, "1"}, 202, `"action": "terminate"`},
		{"localhost by name", "GET", "/healthz", "", []string{"Host", "localhost:1234"}, 200, "ok"},
		{"IPv6 loopback", "GET", "/healthz", "", []string{"Host", "[::1]:1234"}, 200, "ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := send(tt.method, tt.path, tt.body, tt.hdr...)
			if code != tt.want || !strings.Contains(body, tt.msg) {
				t.Errorf("%d %s\nwant %d with %q", code, body, tt.want, tt.msg)
			}
		})
	}
	// the refused start did not happen
	if code, _ := send("GET", "/api/v1/processes/evil-1", ""); code != http.StatusNotFound {
		t.Errorf("evil-1: %d, want 404", code)
	}
}

// With tokens the Host is not checked (a proxy may name the server as it
// likes; a foreign page has no token), the content type still is, and the
// Bearer scheme is case-insensitive.
func TestTokensAndBearerScheme(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		name, auth string
		hdr        []string
		want       int
	}{
		{"Bearer", "Bearer " + readSecret, nil, 200},
		{"bearer", "bearer " + readSecret, nil, 200},
		{"BEARER with blanks", "BEARER   " + readSecret + "  ", nil, 200},
		{"Basic", "Basic " + readSecret, nil, 401},
		{"no scheme", readSecret, nil, 401},
		{"any Host with a token", "Bearer " + readSecret, []string{"Host", "pulsaga.example.com"}, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", h.http.URL+"/api/v1/whoami", nil)
			req.Header.Set("Authorization", tt.auth)
			if len(tt.hdr) == 2 {
				req.Host = tt.hdr[1]
			}
			resp, err := h.http.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("%d, want %d", resp.StatusCode, tt.want)
			}
		})
	}
	req, _ := http.NewRequest("POST", h.http.URL+"/api/v1/processes/car-1/terminate", strings.NewReader("reason=x"))
	req.Header.Set("Authorization", "Bearer "+opSecret)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := h.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("a form with a token: %d, want 403", resp.StatusCode)
	}
}

func TestReadTokens(t *testing.T) {
	dir := t.TempDir()
	good := dir + "/tokens"
	writeFile(t, good, "# admin tokens\nalice:operator:0123456789abcdef\n\n  bob:read:fedcba9876543210  \n")
	toks, err := ReadTokens(good)
	if err != nil || len(toks) != 2 || toks[0].Name != "alice" || toks[1].Role != RoleRead || toks[1].Secret != "fedcba9876543210" {
		t.Fatalf("%+v %v", toks, err)
	}
	bad := dir + "/bad"
	writeFile(t, bad, "alice:operator:0123456789abcdef\nbob:root:supersecret99\n")
	if _, err := ReadTokens(bad); err == nil || !strings.Contains(err.Error(), "bad:2:") || strings.Contains(err.Error(), "supersecret99") {
		t.Errorf("%v: want the file and line, not the secret", err)
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Issue #10, problem 8: a second start with another input printed the same
// as the first. A start of an existing id now says so, and a start that
// asks for something else than the process has is a conflict.
func TestStartOfAnExistingID(t *testing.T) {
	h := newHarness(t)
	h.startPaused("car-1")
	code, body, _ := h.do("POST", "/api/v1/processes", opSecret, `{"process_id":"car-1","definition":"repair","input":{"ticket": "T-1"}}`)
	res := decode[ActionResult](t, body)
	if code != http.StatusOK || res.Created == nil || *res.Created || res.Existing == nil || res.Existing.Status != "paused" {
		t.Fatalf("same start again: %d %s", code, body)
	}
	code, body, _ = h.do("POST", "/api/v1/processes", opSecret, `{"process_id":"car-1","definition":"repair","input":{"ticket":"T-2"}}`)
	if msg := decode[ErrorBody](t, body).Error.Message; code != http.StatusConflict || !strings.Contains(msg, "process car-1 exists already (repair v1, paused) with another input than this start's; it keeps its own") {
		t.Fatalf("start with another input: %d %s", code, body)
	}
}

// stuckBus is a bus whose broker stopped answering: its readers block
// until the end of time, whatever their context says.
type stuckBus struct{ bus.Bus }

func (b stuckBus) Reader(context.Context, bus.ReaderOptions) (bus.Reader, error) {
	return stuckReader{}, nil
}

type stuckReader struct{}

func (stuckReader) Next(context.Context) (*bus.Message, error) { select {} }
func (stuckReader) HasNext(context.Context) (bool, error)      { select {} }
func (stuckReader) Close() error                               { return nil }

// Issue #10, problem 8: with the broker down `pulsaga list` hung 91 s. The
// API answers 503 with the cause within refreshTimeout, even when the bus
// ignores its context, and a second request does not queue behind the
// first.
func TestBrokerDownAnswers503Fast(t *testing.T) {
	b := memory.New(memory.Options{})
	t.Cleanup(func() { _ = b.Close() })
	reg := engine.NewRegistry(b, protocol.DefaultTopics().Definitions, nil)
	t.Cleanup(func() { _ = reg.Close() })
	srv, err := New(Options{Bus: stuckBus{b}, Registry: reg}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	c, err := NewClient(hs.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			start := time.Now()
			_, err := c.List(context.Background(), nil)
			took := time.Since(start)
			var ae *APIError
			if !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable || !strings.Contains(ae.Message, "the Pulsar broker did not answer within 5s") {
				t.Errorf("request %d: %v, want a 503 naming the broker", i, err)
			}
			if took > refreshTimeout+3*time.Second {
				t.Errorf("request %d answered after %s", i, took)
			}
		})
	}
	wg.Wait()
}
