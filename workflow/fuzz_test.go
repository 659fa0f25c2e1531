package workflow

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzLoad: the loader never panics; it either loads a definition or
// returns positioned validation errors.
func FuzzLoad(f *testing.F) {
	files, _ := filepath.Glob("../testdata/*.yaml")
	more, _ := filepath.Glob("../testdata/invalid/*.yaml")
	for _, p := range append(files, more...) {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("name: x\nsteps: [{id: a, sleep: 1s}]\n"))
	f.Add([]byte("{"))
	f.Add([]byte("name: x\nsteps:\n  - id: a\n    service: s\n    command: A\n    retry: &r {max_attempts: 5}\n    input: &i {k: [1, *r]}\n  - {id: b, service: s, command: B, needs: [a], input: *i, retry: *r}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		def, err := loadWithin(t, data, 10*time.Second)
		if err == nil {
			if def == nil || len(def.Steps) == 0 {
				t.Fatal("nil error without a definition")
			}
			return
		}
		var verrs ValidationErrors
		if !errors.As(err, &verrs) || len(verrs) == 0 || !errors.Is(err, ErrInvalidDefinition) {
			t.Fatalf("error is not a ValidationErrors: %v", err)
		}
		for _, e := range verrs {
			if e.Pos.Line < 1 || e.Pos.Col < 1 {
				t.Fatalf("error without a position: %v", e)
			}
		}
	})
}

// loadWithin fails the test when Load does not return in time (the fuzzer
// has no per-input timeout of its own, so a hang would go unnoticed).
func loadWithin(t *testing.T, data []byte, limit time.Duration) (*Definition, error) {
	type result struct {
		def *Definition
		err error
	}
	done := make(chan result, 1)
	go func() {
		def, err := Load("fuzz.yaml", data)
		done <- result{def, err}
	}()
	select {
	case r := <-done:
		return r.def, r.err
	case <-time.After(limit):
		t.Fatalf("Load did not return within %s on %q", limit, data)
		return nil, nil
	}
}

// FuzzDecide: random event sequences (built from the fuzz bytes) never make
// Decide panic, and terminal statuses stay terminal.
func FuzzDecide(f *testing.F) {
	defs := map[byte]*Definition{}
	files, _ := filepath.Glob("../testdata/*.yaml")
	for i, p := range files {
		def, err := LoadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		defs[byte(i)] = def
	}
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte{4, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3})
	f.Add([]byte{3, 9, 9, 9, 0, 1, 5, 5, 5, 7, 7, 2, 2, 2, 2})
	f.Add([]byte{1, 200, 17, 33, 250, 4, 4, 4, 4, 4, 4, 4})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		def := defs[data[0]%byte(len(defs))]
		data = data[1:]
		next := func() byte {
			if len(data) == 0 {
				return 0
			}
			b := data[0]
			data = data[1:]
			return b
		}
		pid := "f"
		now := t0
		d, err := Decide(def, nil, []Event{{Type: EventStart, ProcessID: pid, Input: json.RawMessage(simInputs[def.Name])}}, now)
		if err != nil {
			t.Fatal(err)
		}
		st := d.State
		var sent []Command
		sent = append(sent, d.Commands...)
		for step := 0; len(data) > 0 && step < 64; step++ {
			var batch []Event
			for n := 1 + int(next()%3); n > 0; n-- {
				batch = append(batch, fuzzEvent(next, def, st, sent))
			}
			now = now.Add(time.Duration(next()) * time.Second)
			prev := st.Status
			d, err := Decide(def, st, batch, now)
			if err != nil {
				// only malformed events may be refused
				var ee *EventError
				if !errors.As(err, &ee) {
					t.Fatalf("unexpected error: %v", err)
				}
				continue
			}
			late := false
			for i := range batch {
				late = late || LateSuccess(st, &batch[i])
			}
			// the one exception: a late success reopens a compensated process
			reopened := late && prev == StatusCompensated && d.Status == StatusCompensating
			if prev.Terminal() && !reopened && (d.Status != prev || len(d.Commands) > 0) {
				t.Fatalf("terminal %s changed to %s", prev, d.Status)
			}
			st = d.State
			sent = append(sent, d.Commands...)
		}
	})
}

func fuzzEvent(next func() byte, def *Definition, st *State, sent []Command) Event {
	pick := func(n int) int {
		if n == 0 {
			return 0
		}
		return int(next()) % n
	}
	switch next() % 15 {
	case 0, 1, 2:
		if len(sent) > 0 {
			return Event{Type: EventResult, CommandID: sent[pick(len(sent))].ID, Output: json.RawMessage(simOutput)}
		}
	case 3:
		if len(sent) > 0 {
			rt := next()%2 == 0
			return Event{Type: EventResult, CommandID: sent[pick(len(sent))].ID, Error: &ErrorInfo{Type: "E", Retryable: &rt}}
		}
	case 4, 5:
		if len(st.Timers) > 0 {
			return Event{Type: EventTimer, TimerID: st.Timers[pick(len(st.Timers))].ID}
		}
	case 6:
		return Event{Type: EventSignal, Signal: "loan_decision", Data: json.RawMessage(`{"approved":true}`)}
	case 7:
		return Event{Type: EventRetry, StepID: def.Steps[pick(len(def.Steps))].ID}
	case 8:
		return Event{Type: EventSkip, StepID: def.Steps[pick(len(def.Steps))].ID, Output: json.RawMessage(`{"x":1}`)}
	case 9:
		return Event{Type: EventCancel}
	case 10:
		return Event{Type: EventTerminate}
	case 11:
		return Event{Type: EventType([]string{"start", "result", "timer", "bogus", "started", "heartbeat"}[pick(6)]), ProcessID: "f", CommandID: "f/x/1", TimerID: "f/timer/x"}
	case 12:
		if len(sent) > 0 {
			return Event{Type: EventStarted, CommandID: sent[pick(len(sent))].ID}
		}
	case 13:
		if len(sent) > 0 {
			return Event{Type: EventHeartbeat, CommandID: sent[pick(len(sent))].ID, BeatAt: t0.Add(time.Duration(next()) * time.Second)}
		}
	case 14:
		if len(st.Timers) > 0 {
			tm := st.Timers[pick(len(st.Timers))]
			return Event{Type: EventTimer, TimerID: tm.ID, FiredAt: tm.FireAt.Add(time.Duration(next()) * time.Second)}
		}
	}
	return Event{Type: EventRetry}
}
