package engine

import (
	"strings"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/workflow"
)

// Workers' started and heartbeat reports: a start becomes a recorded
// event, a heartbeat an input kept in memory; malformed ones are refused
// (dead-lettered) with the reason.
func TestParseProgress(t *testing.T) {
	cmd := &protocol.Command{CommandID: "p1/flight/2", ProcessID: "p1", Step: "flight", Attempt: 2}
	good := protocol.ProgressFor(cmd, "w", time.Now())
	other := *good
	other.ProcessID = "p2"
	tests := []struct {
		name    string
		typ     string
		payload any
		kind    inputKind
		err     string
	}{
		{"started", protocol.TypeStarted, good, inEvent, ""},
		{"heartbeat", protocol.TypeHeartbeat, good, inHeartbeat, ""},
		{"no attempt", protocol.TypeStarted, &protocol.Progress{CommandID: "p1/x/1", ProcessID: "p1", Step: "x"}, 0, "attempts count from 1"},
		{"another process", protocol.TypeHeartbeat, &other, 0, `for process "p2"`},
		{"not an object", protocol.TypeStarted, []int{1}, 0, "cannot unmarshal"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env, err := bus.NewEnvelope(tc.typ, "id-"+tc.name, "p1", time.Now(), tc.payload)
			if err != nil {
				t.Fatal(err)
			}
			in, err := parseInput(env, "p1")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one with %q", err, tc.err)
				}
				return
			}
			if err != nil || in.kind != tc.kind {
				t.Fatalf("input %+v, error %v; want kind %d", in, err, tc.kind)
			}
			switch in.kind {
			case inEvent:
				if in.event.Type != workflow.EventStarted || in.event.CommandID != cmd.CommandID || in.event.Attempt != 2 {
					t.Errorf("event %+v", in.event)
				}
			case inHeartbeat:
				if in.commandID != cmd.CommandID {
					t.Errorf("heartbeat of %q", in.commandID)
				}
			}
		})
	}
}

// The wire command carries every field a worker needs, timeouts in
// milliseconds.
func TestWireCommand(t *testing.T) {
	c := workflow.Command{ID: "p/s/compensate/2", ProcessID: "p", StepID: "s", Attempt: 2, Service: "svc", Command: "Undo",
		IdempotencyKey: "p/s/compensate", Compensation: true, Compensates: "p/s", OutcomeUnknown: true,
		Timeout: 1500 * time.Microsecond, ScheduleTimeout: time.Minute, HeartbeatTimeout: 10 * time.Second}
	w := WireCommand(&c, "def", 3, "events")
	if w.CommandID != c.ID || w.IdempotencyKey != c.IdempotencyKey || w.Compensates != "p/s" || !w.OutcomeUnknown ||
		w.TimeoutMS != 2 || w.ScheduleTimeoutMS != 60000 || w.HeartbeatTimeoutMS != 10000 || w.Definition != "def" || w.Version != 3 || w.ReplyTo != "events" {
		t.Errorf("wire command %+v", w)
	}
	if err := w.Validate(); err != nil {
		t.Error(err)
	}
}
