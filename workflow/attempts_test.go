package workflow

import (
	"testing"
	"time"
)

// TestStartedAgain: a second started of an attempt (its command
// redelivered to another worker) does not restart the start-to-close
// clock, which counts from the attempt's first start; only a heartbeat
// timeout counts again from the new start.
func TestStartedAgain(t *testing.T) {
	const plain = `name: s
steps:
  - id: a
    service: s
    command: A
    timeout: 30s
    retry: {max_attempts: 3, initial_interval: 1s, backoff_coefficient: 1}
`
	const beating = `name: s
steps:
  - id: a
    service: s
    command: A
    timeout: 1m
    heartbeat_timeout: 10s
    retry: {max_attempts: 3, initial_interval: 1s, backoff_coefficient: 1}
`
	type step struct {
		at          time.Duration
		ev          Event
		timers      []string // ids armed by this decision
		fireAt      []time.Duration
		cancels     []string
		commands    []string
		ignored     IgnoreReason
		attemptDone string // outcome of attempt 1 after this decision, if checked
	}
	cases := []struct {
		name  string
		def   string
		steps []step
	}{
		{
			name: "a redelivery's started keeps the first start's clock",
			def:  plain,
			steps: []step{
				{at: 2 * time.Second, ev: startedEv("p/a/1"), timers: []string{"p/timer/attempt_timeout/a/1"}, fireAt: []time.Duration{32 * time.Second}},
				{at: 20 * time.Second, ev: startedEv("p/a/1")},
				{at: 32 * time.Second, ev: fireEv("p/timer/attempt_timeout/a/1"), commands: []string{"p/a/2"}, attemptDone: OutcomeTimedOut},
			},
		},
		{
			name: "workers dying faster than the timeout: the attempt still times out",
			def:  plain,
			steps: []step{
				{at: time.Second, ev: startedEv("p/a/1"), timers: []string{"p/timer/attempt_timeout/a/1"}, fireAt: []time.Duration{31 * time.Second}},
				{at: 5 * time.Second, ev: startedEv("p/a/1")},
				{at: 9 * time.Second, ev: startedEv("p/a/1")},
				{at: 13 * time.Second, ev: startedEv("p/a/1")},
				{at: 17 * time.Second, ev: startedEv("p/a/1")},
				{at: 21 * time.Second, ev: startedEv("p/a/1")},
				{at: 25 * time.Second, ev: startedEv("p/a/1")},
				{at: 29 * time.Second, ev: startedEv("p/a/1")},
				{at: 31 * time.Second, ev: fireEv("p/timer/attempt_timeout/a/1"), commands: []string{"p/a/2"}, attemptDone: OutcomeTimedOut},
				{at: 33 * time.Second, ev: startedEv("p/a/1"), ignored: IgnoreAttemptSettled},
			},
		},
		{
			name: "a result after starts again completes the attempt",
			def:  plain,
			steps: []step{
				{at: time.Second, ev: startedEv("p/a/1"), timers: []string{"p/timer/attempt_timeout/a/1"}, fireAt: []time.Duration{31 * time.Second}},
				{at: 10 * time.Second, ev: startedEv("p/a/1")},
				{at: 12 * time.Second, ev: okEv("p/a/1", `1`), cancels: []string{"p/timer/attempt_timeout/a/1"}, attemptDone: OutcomeCompleted},
			},
		},
		{
			name: "heartbeat timeout counts from the new start, the attempt timeout does not",
			def:  beating,
			steps: []step{
				{at: time.Second, ev: startedEv("p/a/1"),
					timers: []string{"p/timer/attempt_timeout/a/1", "p/timer/heartbeat_timeout/a/1~2"}, fireAt: []time.Duration{61 * time.Second, 11 * time.Second}},
				{at: 8 * time.Second, ev: startedEv("p/a/1"),
					timers: []string{"p/timer/heartbeat_timeout/a/1~3"}, fireAt: []time.Duration{18 * time.Second}, cancels: []string{"p/timer/heartbeat_timeout/a/1~2"}},
				{at: 18 * time.Second, ev: fireEv("p/timer/heartbeat_timeout/a/1~3"), commands: []string{"p/a/2"}, cancels: []string{"p/timer/attempt_timeout/a/1"}, attemptDone: OutcomeTimedOut},
			},
		},
		{
			name: "a heartbeat that started the attempt, then a started: no restart",
			def:  beating,
			steps: []step{
				{at: 2 * time.Second, ev: beatEv("p/a/1", at(2*time.Second)),
					timers: []string{"p/timer/attempt_timeout/a/1", "p/timer/heartbeat_timeout/a/1~2"}, fireAt: []time.Duration{62 * time.Second, 12 * time.Second}},
				{at: 4 * time.Second, ev: startedEv("p/a/1"),
					timers: []string{"p/timer/heartbeat_timeout/a/1~3"}, fireAt: []time.Duration{14 * time.Second}, cancels: []string{"p/timer/heartbeat_timeout/a/1~2"}},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.def)
			h.start(`null`)
			for i, s := range tc.steps {
				d := h.do(at(s.at), s.ev)
				got := map[string]time.Time{}
				for _, tm := range d.Timers {
					got[tm.ID] = tm.FireAt
				}
				if len(got) != len(s.timers) {
					t.Fatalf("step %d: timers %v, want %v", i, got, s.timers)
				}
				for j, id := range s.timers {
					if fire, ok := got[id]; !ok || !fire.Equal(at(s.fireAt[j])) {
						t.Fatalf("step %d: timer %s at %v (armed: %v), want at %v", i, id, fire, ok, at(s.fireAt[j]))
					}
				}
				eq(t, "cancelled timers", append([]string(nil), d.CancelTimers...), s.cancels)
				eq(t, "commands", cmdIDs(d), s.commands)
				if s.ignored != "" {
					if len(d.Ignored) != 1 || d.Ignored[0].Reason != s.ignored {
						t.Fatalf("step %d: ignored %+v, want %s", i, d.Ignored, s.ignored)
					}
				} else if len(d.Ignored) > 0 {
					t.Fatalf("step %d: ignored %+v", i, d.Ignored)
				}
				at1 := h.st.StepByID("a").Runs[0].Attempts[0]
				if s.attemptDone != "" {
					eq(t, "attempt 1 outcome", at1.Outcome, s.attemptDone)
				}
				if at1.StartedAt.IsZero() || at1.StartedAt.After(at(2*time.Second)) {
					t.Fatalf("step %d: attempt 1 started at %v, want its first start", i, at1.StartedAt)
				}
			}
		})
	}
}
