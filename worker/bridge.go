package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Bridge runs commands in services written in any language: as an HTTP
// POST to URL, or as a process (Exec) reading the command on stdin.
//
// The worker reports the start of a bridged command and, for commands with
// a heartbeat timeout, heartbeats while the request or the program runs
// (Options.StartedAfter, Options.ManualHeartbeat).
//
// HTTP: the body is the command (protocol.Command as JSON), with the
// headers Idempotency-Key (stable across the attempts of a step),
// Pulsaga-Command and Pulsaga-Attempt, and on a compensation
// Pulsaga-Compensates (the key of the work to undo) and, when the engine
// never saw that work's result, Pulsaga-Outcome-Unknown: true. A 2xx answer completes the
// step with the JSON body as output (an empty body is null); 4xx fails it
// for good (the type is the body's {"error":{"type":…}} or "HTTP<code>");
// 408, 429, 5xx and network errors are retryable.
//
// Exec: the program gets the command JSON on stdin and PULSAGA_COMMAND,
// PULSAGA_IDEMPOTENCY_KEY, PULSAGA_ATTEMPT (and on a compensation
// PULSAGA_COMPENSATES, PULSAGA_OUTCOME_UNKNOWN=true|false) in its
// environment. Exit 0 completes with stdout
// as output (JSON, or else a JSON string); exit 2 fails for good (type
// "Refused", message = stderr); any other exit is retryable.
type Bridge struct {
	URL    string
	Exec   []string
	Client *http.Client
}

// Handle is the Handler of the bridge.
func (b Bridge) Handle(ctx context.Context, job *Job) (any, error) {
	body, err := json.Marshal(job.Command)
	if err != nil {
		return nil, NonRetryable("BadCommand", err)
	}
	if b.URL != "" {
		return b.http(ctx, job, body)
	}
	if len(b.Exec) > 0 {
		return b.exec(ctx, job, body)
	}
	return nil, NonRetryable("BridgeNotConfigured", errors.New("bridge has neither a URL nor a program"))
}

func (b Bridge) http(ctx context.Context, job *Job, body []byte) (any, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.URL, bytes.NewReader(body))
	if err != nil {
		return nil, NonRetryable("BadURL", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", job.IdempotencyKey)
	req.Header.Set("Pulsaga-Command", job.Command.Command)
	req.Header.Set("Pulsaga-Attempt", strconv.Itoa(job.Attempt))
	if job.Compensation {
		req.Header.Set("Pulsaga-Compensates", job.Compensates)
		req.Header.Set("Pulsaga-Outcome-Unknown", strconv.FormatBool(job.OutcomeUnknown))
	}
	client := b.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, Retryable("Unavailable", err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, maxOutput+1))
	if err != nil {
		return nil, Retryable("Unavailable", err)
	}
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		if len(out) > maxOutput {
			return nil, NonRetryable("OutputTooLarge", fmt.Errorf("%s answered with over %d bytes", b.URL, maxOutput))
		}
		return jsonOutput(out), nil
	case resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return nil, Retryable(errType(out, fmt.Sprintf("HTTP%d", resp.StatusCode)), fmt.Errorf("%s: %s", resp.Status, errMessage(out)))
	default:
		return nil, NonRetryable(errType(out, fmt.Sprintf("HTTP%d", resp.StatusCode)), fmt.Errorf("%s: %s", resp.Status, errMessage(out)))
	}
}

func (b Bridge) exec(ctx context.Context, job *Job, body []byte) (any, error) {
	cmd := exec.CommandContext(ctx, b.Exec[0], b.Exec[1:]...)
	cmd.Stdin = bytes.NewReader(body)
	cmd.Env = append(os.Environ(), "PULSAGA_COMMAND="+job.Command.Command, "PULSAGA_IDEMPOTENCY_KEY="+job.IdempotencyKey,
		"PULSAGA_ATTEMPT="+strconv.Itoa(job.Attempt))
	if job.Compensation {
		cmd.Env = append(cmd.Env, "PULSAGA_COMPENSATES="+job.Compensates, "PULSAGA_OUTCOME_UNKNOWN="+strconv.FormatBool(job.OutcomeUnknown))
	}
	killGroup(cmd)
	// Once the program is killed (the attempt's deadline, or shutdown), stop
	// waiting for output that a leftover child may hold open.
	cmd.WaitDelay = execWaitDelay
	stdout, stderr := &capped{max: maxOutput}, &capped{max: maxStderr}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err != nil && ctx.Err() != nil:
		return nil, Retryable("Timeout", fmt.Errorf("%s stopped: %w", b.Exec[0], ctx.Err()))
	case err == nil && stdout.over:
		return nil, NonRetryable("OutputTooLarge", fmt.Errorf("%s wrote over %d bytes", b.Exec[0], maxOutput))
	case err == nil:
		return jsonOutput(stdout.Bytes()), nil
	case errors.As(err, &ee) && ee.ExitCode() == 2:
		return nil, NonRetryable("Refused", errors.New(strings.TrimSpace(stderr.String())))
	case errors.As(err, &ee):
		return nil, Retryable("ExecFailed", fmt.Errorf("exit %d: %s", ee.ExitCode(), strings.TrimSpace(stderr.String())))
	}
	return nil, Retryable("ExecFailed", err)
}

// execWaitDelay bounds waiting for a killed program's output to close.
const execWaitDelay = 2 * time.Second

// Limits on what a service answers: an output (HTTP body, stdout) over
// maxOutput fails the attempt for good; stderr is cut at maxStderr.
const (
	maxOutput = 4 << 20
	maxStderr = 64 << 10
)

// capped keeps the first max bytes written to it and notes whether more
// came; it never fails a write, so the program is not stopped by a pipe
// error. (The buffer is a field, not embedded: an embedded bytes.Buffer's
// ReadFrom would let io.Copy bypass Write.)
type capped struct {
	buf  bytes.Buffer
	max  int
	over bool
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.buf.Len(); room < len(p) {
		c.over = true
		c.buf.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return c.buf.Write(p)
}

func (c *capped) Bytes() []byte  { return c.buf.Bytes() }
func (c *capped) String() string { return c.buf.String() }

func jsonOutput(b []byte) any {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil
	}
	if json.Valid(b) {
		return json.RawMessage(b)
	}
	return string(b)
}

func errType(body []byte, def string) string {
	var e struct {
		Error struct {
			Type string `json:"type"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error.Type != "" {
		return e.Error.Type
	}
	return def
}

func errMessage(body []byte) string {
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error.Message != "" {
		return e.Error.Message
	}
	s := strings.TrimSpace(string(body))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
