package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/worker"
)

func bridgeJob() *worker.Job {
	c := command("hotels", "c-1", "BookHotel")
	c.Input = json.RawMessage(`{"nights":2}`)
	c.IdempotencyKey = "trip-1/hotel"
	c.Attempt = 2
	return &worker.Job{Command: c}
}

// compensationJob is the compensation of bridgeJob's work, whose result
// the engine never saw.
func compensationJob() *worker.Job {
	j := bridgeJob()
	j.Command.Command, j.Compensation, j.Attempt = "CancelHotel", true, 1
	j.IdempotencyKey, j.Compensates, j.OutcomeUnknown = "trip-1/hotel/compensate", "trip-1/hotel", true
	return j
}

// wantErr checks err is a *worker.Error of the type and retryability.
func wantErr(t *testing.T, err error, typ string, retryable bool, msg string) {
	t.Helper()
	var we *worker.Error
	if !errors.As(err, &we) {
		t.Fatalf("error %v (%T) is not a *worker.Error", err, err)
	}
	if we.Type != typ || we.Retryable != retryable {
		t.Errorf("error type %q retryable %v, want %q %v (%v)", we.Type, we.Retryable, typ, retryable, err)
	}
	if !strings.Contains(err.Error(), msg) {
		t.Errorf("error %q does not contain %q", err, msg)
	}
}

func TestBridgeHTTP(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		body      string
		want      string // output JSON when it succeeds
		errType   string // else the error
		retryable bool
		errMsg    string
	}{
		{name: "200 with a JSON body is the output", status: 200, body: `{"booking_id":"H-1"}`, want: `{"booking_id":"H-1"}`},
		{name: "201 with a JSON array", status: 201, body: " [1,2]\n", want: `[1,2]`},
		{name: "204 empty body is null", status: 204, body: "", want: `null`},
		{name: "200 with text is a JSON string", status: 200, body: "booked", want: `"booked"`},
		{name: "400 with a typed error is non-retryable", status: 400, body: `{"error":{"type":"NoRooms","message":"hotel full"}}`, errType: "NoRooms", errMsg: "hotel full"},
		{name: "404 without a type is HTTP404", status: 404, body: "no such hotel", errType: "HTTP404", errMsg: "no such hotel"},
		{name: "409 is non-retryable", status: 409, body: `{}`, errType: "HTTP409", errMsg: "409"},
		{name: "408 is retryable", status: 408, body: "", errType: "HTTP408", retryable: true, errMsg: "408"},
		{name: "429 is retryable", status: 429, body: `{"error":{"type":"RateLimited"}}`, errType: "RateLimited", retryable: true, errMsg: "429"},
		{name: "500 is retryable", status: 500, body: "oops", errType: "HTTP500", retryable: true, errMsg: "oops"},
		{name: "503 with a typed error is retryable", status: 503, body: `{"error":{"type":"Maintenance","message":"back soon"}}`, errType: "Maintenance", retryable: true, errMsg: "back soon"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			type request struct {
				method, ctype, key, command string
				attempt, compensates        string
				body                        protocol.Command
			}
			got := make(chan request, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				req := request{method: r.Method, ctype: r.Header.Get("Content-Type"), key: r.Header.Get("Idempotency-Key"), command: r.Header.Get("Pulsaga-Command"),
					attempt: r.Header.Get("Pulsaga-Attempt"), compensates: r.Header.Get("Pulsaga-Compensates")}
				b, _ := io.ReadAll(r.Body)
				if err := json.Unmarshal(b, &req.body); err != nil {
					t.Errorf("request body %q: %v", b, err)
				}
				got <- req
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			job := bridgeJob()
			out, err := worker.Bridge{URL: srv.URL}.Handle(context.Background(), job)
			req := <-got
			if req.method != http.MethodPost || req.ctype != "application/json" || req.key != "trip-1/hotel" || req.command != "BookHotel" ||
				req.attempt != "2" || req.compensates != "" {
				t.Errorf("request %s type %q Idempotency-Key %q Pulsaga-Command %q Pulsaga-Attempt %q Pulsaga-Compensates %q", req.method, req.ctype, req.key, req.command, req.attempt, req.compensates)
			}
			if req.body.CommandID != job.CommandID || string(req.body.Input) != `{"nights":2}` || req.body.ReplyTo != job.ReplyTo {
				t.Errorf("request body %+v is not the command", req.body)
			}
			if tc.errType != "" {
				wantErr(t, err, tc.errType, tc.retryable, tc.errMsg)
				return
			}
			if err != nil {
				t.Fatalf("Handle: %v", err)
			}
			b, err := json.Marshal(out)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.want {
				t.Errorf("output %s, want %s", b, tc.want)
			}
		})
	}
}

// A 2xx body over the bridge's limit is not cut into a wrong output: the
// attempt fails for good.
func TestBridgeHTTPOversizedBody(t *testing.T) {
	big := `["` + strings.Repeat("x", 5<<20) + `"]`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, big)
	}))
	defer srv.Close()
	out, err := worker.Bridge{URL: srv.URL}.Handle(context.Background(), bridgeJob())
	if err == nil {
		t.Fatalf("a %d-byte body gave an output of %T", len(big), out)
	}
	wantErr(t, err, "OutputTooLarge", false, "bytes")
}

func TestBridgeHTTPUnreachable(t *testing.T) {
	// A port nobody listens on: take a free one and close it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + l.Addr().String()
	l.Close()
	_, err = worker.Bridge{URL: url}.Handle(context.Background(), bridgeJob())
	wantErr(t, err, "Unavailable", true, "connection refused")
}

func TestBridgeNotConfigured(t *testing.T) {
	_, err := worker.Bridge{}.Handle(context.Background(), bridgeJob())
	wantErr(t, err, "BridgeNotConfigured", false, "neither")
}

func TestBridgeExec(t *testing.T) {
	tests := []struct {
		name      string
		script    string
		want      string
		errType   string
		retryable bool
		errMsg    string
	}{
		{name: "exit 0 with JSON is the output", script: `echo '{"ok":true}'`, want: `{"ok":true}`},
		{name: "exit 0 with text is a JSON string", script: `echo booked`, want: `"booked"`},
		{name: "exit 0 without output is null", script: `true`, want: `null`},
		{name: "command on stdin, command and key in the environment",
			script: `read -r line; case "$line" in *'"command_id":"c-1"'*) printf '"%s %s %s"' "$PULSAGA_COMMAND" "$PULSAGA_IDEMPOTENCY_KEY" "$PULSAGA_ATTEMPT";; *) exit 1;; esac`,
			want:   `"BookHotel trip-1/hotel 2"`},
		{name: "exit 2 is a non-retryable Refused with stderr", script: `echo 'no rooms left' >&2; exit 2`, errType: "Refused", errMsg: "no rooms left"},
		{name: "exit 1 is retryable", script: `echo 'db down' >&2; exit 1`, errType: "ExecFailed", retryable: true, errMsg: "db down"},
		{name: "exit 3 is retryable", script: `exit 3`, errType: "ExecFailed", retryable: true, errMsg: "exit 3"},
		{name: "stdout over the limit fails for good", script: `head -c 5000000 /dev/zero | tr '\0' x`, errType: "OutputTooLarge", errMsg: "over 4194304 bytes"},
		{name: "a flood on stderr is cut", script: `head -c 5000000 /dev/zero | tr '\0' e >&2; exit 2`, errType: "Refused", errMsg: "eee"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := worker.Bridge{Exec: []string{"sh", "-c", tc.script}}.Handle(context.Background(), bridgeJob())
			if tc.errType != "" {
				wantErr(t, err, tc.errType, tc.retryable, tc.errMsg)
				if len(err.Error()) > 100<<10 {
					t.Errorf("error of %d bytes", len(err.Error()))
				}
				return
			}
			if err != nil {
				t.Fatalf("Handle: %v", err)
			}
			b, err := json.Marshal(out)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.want {
				t.Errorf("output %s, want %s", b, tc.want)
			}
		})
	}
}

// A compensation tells the bridged service what it undoes and whether the
// engine knows that work happened.
func TestBridgeCompensation(t *testing.T) {
	t.Run("http", func(t *testing.T) {
		got := make(chan http.Header, 1)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got <- r.Header.Clone()
			w.WriteHeader(204)
		}))
		defer srv.Close()
		if _, err := (worker.Bridge{URL: srv.URL}).Handle(context.Background(), compensationJob()); err != nil {
			t.Fatal(err)
		}
		h := <-got
		if h.Get("Idempotency-Key") != "trip-1/hotel/compensate" || h.Get("Pulsaga-Compensates") != "trip-1/hotel" || h.Get("Pulsaga-Outcome-Unknown") != "true" {
			t.Errorf("headers %v", h)
		}
	})
	t.Run("exec", func(t *testing.T) {
		out, err := worker.Bridge{Exec: []string{"sh", "-c", `printf '"%s %s %s"' "$PULSAGA_IDEMPOTENCY_KEY" "$PULSAGA_COMPENSATES" "$PULSAGA_OUTCOME_UNKNOWN"`}}.Handle(context.Background(), compensationJob())
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := json.Marshal(out); string(b) != `"trip-1/hotel/compensate trip-1/hotel true"` {
			t.Errorf("output %s", b)
		}
	})
}

func TestBridgeExecMissingProgram(t *testing.T) {
	_, err := worker.Bridge{Exec: []string{"/nonexistent/pulsaga-test-program"}}.Handle(context.Background(), bridgeJob())
	wantErr(t, err, "ExecFailed", true, "no such file")
}

// A program that outlives the attempt's deadline is stopped, even when it
// left a child holding its output open, and the attempt fails retryably.
func TestBridgeExecDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	type ret struct{ err error }
	done := make(chan ret, 1)
	go func() {
		// "; true" keeps sh from exec'ing sleep: killing sh leaves sleep
		// with sh's stdout.
		_, err := worker.Bridge{Exec: []string{"sh", "-c", "sleep 60; true"}}.Handle(ctx, bridgeJob())
		done <- ret{err}
	}()
	select {
	case r := <-done:
		wantErr(t, r.err, "Timeout", true, "deadline exceeded")
	case <-time.After(30 * time.Second):
		t.Fatal("the bridge still waits for a program killed at its deadline")
	}
}
