package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/worker"
)

func TestRespond(t *testing.T) {
	tests := []struct {
		fault Fault
		known bool
		want  reply
	}{
		{OK, false, replyOK}, {OK, true, replyOK},
		{Fail, false, replyFail}, {Fail, true, replyOK},
		{Refuse, false, replyRefuse}, {Refuse, true, replyOK},
		{Lost, false, replyNone}, {Lost, true, replyNone},
		{Crash, false, replyDie}, {Crash, true, replyOK},
	}
	for _, tt := range tests {
		if got := respond(tt.fault, tt.known); got != tt.want {
			t.Errorf("respond(%s, known %v) = %d, want %d", tt.fault, tt.known, got, tt.want)
		}
	}
}

// TestServiceHandle plays a script through the service: effects once per
// key, answers from the ledger for a key it knows.
func TestServiceHandle(t *testing.T) {
	l, err := OpenLedger(filepath.Join(t.TempDir(), "ledger.jsonl"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	died := 0
	s := &Service{Ledger: l, Instance: "svc-t", Die: func() { died++ }, LostFor: time.Minute, Marks: t.TempDir()}
	job := func(attempt int, key string, plan Script) *worker.Job {
		in, _ := json.Marshal(map[string]any{"plan": plan})
		step := "flight"
		if key == "p/hotel" {
			step = "hotel"
		}
		return &worker.Job{Command: protocol.Command{CommandID: key + "#" + string(rune('0'+attempt)), ProcessID: "p", Step: step,
			Attempt: attempt, Service: "flights", Command: "BookFlight", Input: in, IdempotencyKey: key}}
	}
	ctx := context.Background()
	plan := Script{Fail, Lost, Refuse}
	_, err = s.Handle(ctx, job(1, "p/flight", plan))
	var we *worker.Error
	if !errors.As(err, &we) || !we.Retryable {
		t.Errorf("attempt 1 (fail): %v, want a retryable error", err)
	}
	// A lost attempt holds its answer until the engine moved on (the next
	// attempt delivered), then answers the truth: a success.
	lost := make(chan error, 1)
	t0 := time.Now()
	go func() {
		_, err := s.Handle(ctx, job(2, "p/flight", plan))
		lost <- err
	}()
	select {
	case err := <-lost:
		t.Fatalf("attempt 2 (lost) answered before the engine moved on: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	out, err := s.Handle(ctx, job(3, "p/flight", plan))
	if err != nil {
		t.Fatalf("attempt 3 (refuse, but the key did the effect): %v", err)
	}
	if err := <-lost; err != nil {
		t.Errorf("attempt 2 (lost) answered late with %v, want its success", err)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("attempt 2 (lost) answered %s after attempt 3 came, want at once", d)
	}
	if b, _ := json.Marshal(out); string(b) == "" || string(b) == "null" {
		t.Errorf("attempt 3 answered %s", b)
	}
	// A new key (a per-attempt key) does the effect again: what the check
	// catches.
	if _, err := s.Handle(ctx, job(4, "p/flight/4", nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Handle(ctx, job(1, "p/hotel", Script{Crash})); err == nil && died != 1 {
		t.Errorf("crash: died %d times", died)
	}
	if _, err := s.Handle(ctx, job(1, "p/hotel", Script{Crash})); err != nil || died != 1 {
		t.Errorf("crash redelivered: %v, died %d times; want an answer from the ledger", err, died)
	}
	fx := EffectsOf(mustRead(t, l.path))["p"]
	if n := len(fx.Forward["flight"]); n != 2 {
		t.Errorf("flight effects under %d keys, want 2 (p/flight and p/flight/4)", n)
	}
}

func mustRead(t *testing.T, path string) []Entry {
	t.Helper()
	e, err := ReadLedger(path)
	if err != nil {
		t.Fatal(err)
	}
	return e
}
