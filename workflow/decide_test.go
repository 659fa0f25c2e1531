package workflow

import (
	"encoding/json"
	"errors"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

// harness drives one process through Decide, round-tripping the state
// through JSON like a snapshot.
type harness struct {
	t   *testing.T
	def *Definition
	st  *State
	pid string
}

func newHarness(t *testing.T, src string) *harness {
	t.Helper()
	def, err := Load("test.yaml", []byte(src))
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return &harness{t: t, def: def, pid: "p"}
}

func (h *harness) do(now time.Time, evs ...Event) Decision {
	h.t.Helper()
	d, err := Decide(h.def, h.st, evs, now)
	if err != nil {
		h.t.Fatalf("decide: %v", err)
	}
	h.st = roundTrip(h.t, d.State)
	return d
}

func (h *harness) start(input string) Decision {
	return h.do(t0, Event{Type: EventStart, ProcessID: h.pid, Input: json.RawMessage(input)})
}

func okEv(id, out string) Event {
	e := Event{Type: EventResult, CommandID: id}
	if out != "" {
		e.Output = json.RawMessage(out)
	}
	return e
}

func errEv(id, typ string, retryable bool) Event {
	return Event{Type: EventResult, CommandID: id, Error: &ErrorInfo{Type: typ, Retryable: &retryable}}
}

func fireEv(id string) Event { return Event{Type: EventTimer, TimerID: id} }

func startedEv(id string) Event { return Event{Type: EventStarted, CommandID: id} }

func beatEv(id string, at time.Time) Event {
	return Event{Type: EventHeartbeat, CommandID: id, BeatAt: at}
}

// lateFireEv is a timer the relay handed over at firedAt.
func lateFireEv(id string, firedAt time.Time) Event {
	return Event{Type: EventTimer, TimerID: id, FiredAt: firedAt}
}

func cmdIDs(d Decision) []string {
	var ids []string
	for _, c := range d.Commands {
		ids = append(ids, c.ID)
	}
	sort.Strings(ids)
	return ids
}

func timerIDs(d Decision) []string {
	var ids []string
	for _, c := range d.Timers {
		ids = append(ids, c.ID)
	}
	sort.Strings(ids)
	return ids
}

func (h *harness) stepStatus(id string) StepStatus { return h.st.StepByID(id).Status }

func eq(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s: got %v, want %v", what, got, want)
	}
}

func TestBackoff(t *testing.T) {
	p := RetryPolicy{MaxAttempts: 10, InitialInterval: time.Second, BackoffCoefficient: 2, MaxInterval: 10 * time.Second}
	tests := []struct {
		name string
		p    RetryPolicy
		n    int
		want time.Duration
	}{
		{"first retry waits initial_interval", p, 1, time.Second},
		{"second retry doubles", p, 2, 2 * time.Second},
		{"fourth retry", p, 4, 8 * time.Second},
		{"capped by max_interval", p, 5, 10 * time.Second},
		{"still capped", p, 9, 10 * time.Second},
		{"coefficient 1 is constant", RetryPolicy{InitialInterval: 3 * time.Second, BackoffCoefficient: 1, MaxInterval: time.Minute}, 6, 3 * time.Second},
		{"coefficient 1.5", RetryPolicy{InitialInterval: 2 * time.Second, BackoffCoefficient: 1.5, MaxInterval: time.Minute}, 3, 4500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RetryDelay(tt.p, tt.n, "p/s/1"); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
	t.Run("jitter is bounded, deterministic and varies by command", func(t *testing.T) {
		j := p
		j.Jitter = 0.2
		seen := map[time.Duration]bool{}
		for i := 0; i < 200; i++ {
			id := "proc-" + strings.Repeat("x", i%7) + "/step/" + string(rune('a'+i%26))
			d := RetryDelay(j, 2, id)
			if d < 1600*time.Millisecond || d > 2400*time.Millisecond {
				t.Fatalf("delay %s outside 2s ± 20%%", d)
			}
			if d != RetryDelay(j, 2, id) {
				t.Fatal("jitter is not deterministic")
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Errorf("jitter barely varies: %d distinct delays", len(seen))
		}
	})
}

const retryDef = `name: r
defaults:
  retry: {max_attempts: 3, initial_interval: 1s, backoff_coefficient: 2, non_retryable: [Fatal]}
  timeout: 10s
steps:
  - id: a
    service: s
    command: A
`

func TestRetryRules(t *testing.T) {
	tests := []struct {
		name       string
		results    []Event // results for attempts 1, 2, ... in order
		wantStatus Status
		wantCmds   []string // commands of the last decision
		wantNB     time.Duration
	}{
		{"retryable error is retried after initial_interval", []Event{errEv("p/a/1", "Busy", true)}, StatusRunning, []string{"p/a/2"}, 1 * time.Second},
		{"second retry backs off", []Event{errEv("p/a/1", "Busy", true), errEv("p/a/2", "Busy", true)}, StatusRunning, []string{"p/a/3"}, 2 * time.Second},
		{"exhausted after max_attempts", []Event{errEv("p/a/1", "Busy", true), errEv("p/a/2", "Busy", true), errEv("p/a/3", "Busy", true)}, StatusFailed, nil, 0},
		{"non_retryable type fails at once", []Event{errEv("p/a/1", "Fatal", true)}, StatusFailed, nil, 0},
		{"retryable false fails at once", []Event{errEv("p/a/1", "Busy", false)}, StatusFailed, nil, 0},
		{"error without a type is retryable", []Event{{Type: EventResult, CommandID: "p/a/1", Error: &ErrorInfo{}}}, StatusRunning, []string{"p/a/2"}, time.Second},
		{"success after a retry completes", []Event{errEv("p/a/1", "Busy", true), okEv("p/a/2", `{"x":1}`)}, StatusCompleted, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, retryDef)
			h.start(`{}`)
			var d Decision
			for i, ev := range tt.results {
				d = h.do(at(time.Duration(i+1)*time.Minute), ev)
			}
			eq(t, "status", d.Status, tt.wantStatus)
			eq(t, "commands", cmdIDs(d), tt.wantCmds)
			if len(d.Commands) == 1 {
				now := at(time.Duration(len(tt.results)) * time.Minute)
				eq(t, "not_before", d.Commands[0].NotBefore.Sub(now), tt.wantNB)
				eq(t, "no deadline without a step deadline", d.Commands[0].Deadline, time.Time{})
				eq(t, "start-to-close timeout", d.Commands[0].Timeout, 10*time.Second)
				eq(t, "idempotency key stable across attempts", d.Commands[0].IdempotencyKey, "p/a")
			}
			if tt.wantStatus == StatusFailed && h.st.Failure == nil {
				t.Error("no failure recorded")
			}
		})
	}
}

func TestAttemptTimeoutAndDeadline(t *testing.T) {
	const def = `name: d
steps:
  - id: a
    service: s
    command: A
    timeout: 10s
    deadline: 25s
    retry: {max_attempts: 5, initial_interval: 4s, backoff_coefficient: 1}
`
	h := newHarness(t, def)
	d := h.start(`null`)
	eq(t, "only the deadline is armed before a start", timerIDs(d), []string{"p/timer/deadline/a/1"})
	eq(t, "the command carries the step deadline", d.Commands[0].Deadline, at(25*time.Second))

	d = h.do(at(2*time.Second), startedEv("p/a/1"))
	eq(t, "the attempt timeout counts from the start", timerIDs(d), []string{"p/timer/attempt_timeout/a/1"})
	eq(t, "fire at", d.Timers[0].FireAt, at(12*time.Second))

	d = h.do(at(12*time.Second), fireEv("p/timer/attempt_timeout/a/1"))
	eq(t, "retry after a timeout", cmdIDs(d), []string{"p/a/2"})
	eq(t, "not before", d.Commands[0].NotBefore, at(16*time.Second))
	eq(t, "attempt 2 carries the step deadline", d.Commands[0].Deadline, at(25*time.Second))
	eq(t, "same idempotency key", d.Commands[0].IdempotencyKey, "p/a")

	d = h.do(at(13*time.Second), errEv("p/a/1", "Busy", true))
	eq(t, "late failure of the timed-out attempt", d.Ignored[0].Reason, IgnoreAfterTimeout)
	eq(t, "recorded as its true outcome", h.st.StepByID("a").Runs[0].Attempts[0].Late, OutcomeFailed)

	d = h.do(at(16*time.Second), startedEv("p/a/2"))
	d = h.do(at(26*time.Second), fireEv("p/timer/attempt_timeout/a/2"))
	// the next attempt would start at 30s, after the 25s deadline
	eq(t, "no retry past the deadline", cmdIDs(d), []string(nil))
	eq(t, "status", d.Status, StatusFailed)
	eq(t, "error type", h.st.Failure.Error.Type, ErrTypeDeadline)
	eq(t, "deadline timer cancelled", d.CancelTimers, []string{"p/timer/deadline/a/1"})

	t.Run("deadline fires while an attempt is in flight", func(t *testing.T) {
		h := newHarness(t, strings.Replace(def, "timeout: 10s", "timeout: 1m", 1))
		h.start(`null`)
		h.do(at(time.Second), startedEv("p/a/1"))
		d := h.do(at(25*time.Second), fireEv("p/timer/deadline/a/1"))
		eq(t, "status", d.Status, StatusFailed)
		eq(t, "attempt timer cancelled", d.CancelTimers, []string{"p/timer/attempt_timeout/a/1"})
		eq(t, "error", h.st.StepByID("a").Error.Type, ErrTypeDeadline)
		eq(t, "the abandoned attempt's outcome is unknown", h.st.StepByID("a").Runs[0].possiblyDone(), true)
	})
}

func TestStepKinds(t *testing.T) {
	const def = `name: k
steps:
  - id: first
    service: s
    command: A
  - id: maybe
    needs: [first]
    when: "${{ steps.first.output.go }}"
    service: s
    command: B
  - id: nap
    needs: [maybe]
    sleep: 10m
  - id: past
    needs: [first]
    until: "${{ '2020-01-01T00:00:00Z' }}"
  - id: ask
    needs: [nap, past]
    wait: {signal: answer}
  - id: last
    needs: [ask]
    service: s
    command: C
    input: "${{ steps.ask.output.text + ' ' + steps.maybe.status }}"
`
	h := newHarness(t, def)
	h.start(`{}`)
	d := h.do(at(time.Second), okEv("p/first/1", `{"go": false}`))
	eq(t, "when false skips; until in the past completes at once; sleep sets a timer", timerIDs(d), []string{"p/timer/sleep/nap/1"})
	eq(t, "maybe", h.stepStatus("maybe"), StepSkipped)
	eq(t, "past", h.stepStatus("past"), StepCompleted)
	eq(t, "nap fires at", d.Timers[0].FireAt, at(time.Second+10*time.Minute))
	eq(t, "no command", cmdIDs(d), []string(nil))

	d = h.do(at(time.Minute), Event{Type: EventSignal, Signal: "answer", Data: json.RawMessage(`{"text":"early"}`)})
	eq(t, "a signal before its step waits is kept", len(d.Ignored), 0)
	eq(t, "kept in the state", len(h.st.Signals), 1)

	d = h.do(at(11*time.Minute), fireEv("p/timer/sleep/nap/1"), fireEv("p/timer/sleep/nap/1"))
	eq(t, "sleep done", h.stepStatus("nap"), StepCompleted)
	eq(t, "the second firing is not pending", d.Ignored[0].Reason, IgnoreTimerNotPending)
	eq(t, "the wait took the kept signal at once", h.stepStatus("ask"), StepCompleted)
	eq(t, "signal data is the output", string(h.st.StepByID("ask").Output), `{"text":"early"}`)
	eq(t, "the buffer is empty", len(h.st.Signals), 0)
	eq(t, "wait without timeout sets no timer", timerIDs(d), []string(nil))
	eq(t, "command after the signal", cmdIDs(d), []string{"p/last/1"})
	eq(t, "typed input from an expression", string(d.Commands[0].Input), `"early skipped"`)

	d = h.do(at(12*time.Minute), Event{Type: EventSignal, Signal: "answer", Data: json.RawMessage(`{"text":"yes"}`), Actor: "kim"})
	eq(t, "a signal no step will wait for any more is ignored", d.Ignored[0].Reason, IgnoreNoWaitingStep)
}

func TestOnFailurePolicies(t *testing.T) {
	base := `name: f
on_failure: POLICY
steps:
  - id: a
    service: s
    command: A
    compensate: {command: UndoA}
  - id: opt
    needs: [a]
    service: s
    command: O
    on_failure: continue
  - id: b
    needs: [opt]
    service: s
    command: B
    input: "${{ steps.opt.status }}"
  - id: c
    needs: [b]
    service: s
    command: C
`
	tests := []struct {
		policy     string
		wantStatus Status
		wantCmds   []string
	}{
		{"compensate", StatusCompensating, []string{"p/a/compensate/1"}},
		{"fail", StatusFailed, nil},
		{"pause", StatusPaused, nil},
	}
	for _, tt := range tests {
		t.Run(tt.policy, func(t *testing.T) {
			h := newHarness(t, strings.Replace(base, "POLICY", tt.policy, 1))
			h.start(`{}`)
			h.do(at(1*time.Second), okEv("p/a/1", `{}`))
			d := h.do(at(2*time.Second), errEv("p/opt/1", "X", false))
			eq(t, "continue: the optional step failed but satisfies needs", cmdIDs(d), []string{"p/b/1"})
			eq(t, "its status is visible to expressions", string(d.Commands[0].Input), `"failed"`)
			d = h.do(at(3*time.Second), errEv("p/b/1", "X", false))
			eq(t, "status", d.Status, tt.wantStatus)
			eq(t, "commands", cmdIDs(d), tt.wantCmds)
			eq(t, "c never starts", h.stepStatus("c"), StepPending)
		})
	}
}

func TestAdminActions(t *testing.T) {
	const def = `name: adm
on_failure: pause
steps:
  - id: a
    service: s
    command: A
    retry: {max_attempts: 1}
    compensate: {command: UndoA, retry: {max_attempts: 1}}
  - id: b
    needs: [a]
    service: s
    command: B
    retry: {max_attempts: 2}
  - id: c
    needs: [b]
    service: s
    command: C
    input: "${{ steps.b.output }}"
`
	paused := func(t *testing.T) *harness {
		h := newHarness(t, def)
		h.start(`{}`)
		h.do(at(time.Second), okEv("p/a/1", `{}`))
		h.do(at(2*time.Second), errEv("p/b/1", "X", false))
		if h.st.Status != StatusPaused {
			t.Fatalf("status %s, want paused", h.st.Status)
		}
		return h
	}
	t.Run("retry a paused step with a fresh budget", func(t *testing.T) {
		h := paused(t)
		d := h.do(at(time.Minute), Event{Type: EventRetry, StepID: "b", Actor: "ann", Reason: "fixed"})
		eq(t, "commands", cmdIDs(d), []string{"p/b/2"})
		eq(t, "status", d.Status, StatusRunning)
		eq(t, "recorded who", h.st.Admin.Actor, "ann")
		d = h.do(at(2*time.Minute), errEv("p/b/2", "Busy", true))
		eq(t, "fresh budget allows a retry", cmdIDs(d), []string{"p/b/3"})
	})
	t.Run("skip with an output", func(t *testing.T) {
		h := paused(t)
		d := h.do(at(time.Minute), Event{Type: EventSkip, StepID: "b", Output: json.RawMessage(`{"manual":true}`), Actor: "ann"})
		eq(t, "commands", cmdIDs(d), []string{"p/c/1"})
		eq(t, "dependent sees the output", string(d.Commands[0].Input), `{"manual":true}`)
		eq(t, "b", h.stepStatus("b"), StepSkipped)
	})
	t.Run("cancel a paused process compensates", func(t *testing.T) {
		h := paused(t)
		d := h.do(at(time.Minute), Event{Type: EventCancel, Actor: "ann"})
		eq(t, "commands", cmdIDs(d), []string{"p/a/compensate/1"})
		eq(t, "status", d.Status, StatusCompensating)
		d = h.do(at(2*time.Minute), errEv("p/a/compensate/1", "Down", true))
		eq(t, "compensation exhausted", d.Status, StatusCompensationFailed)
		d = h.do(at(3*time.Minute), Event{Type: EventSkip, StepID: "a", Actor: "ann", Reason: "refunded by hand"})
		eq(t, "skipping the failed compensation finishes", d.Status, StatusCompensated)
	})
	t.Run("terminate stops at once", func(t *testing.T) {
		h := paused(t)
		d := h.do(at(time.Minute), Event{Type: EventTerminate, Actor: "ann"})
		eq(t, "status", d.Status, StatusTerminated)
		eq(t, "no compensation", cmdIDs(d), []string(nil))
		for _, ev := range []Event{{Type: EventRetry}, {Type: EventCancel}, {Type: EventSkip, StepID: "b"}, errEv("p/b/1", "X", true), startedEv("p/b/1")} {
			d = h.do(at(2*time.Minute), ev)
			eq(t, "terminal stays terminal", d.Status, StatusTerminated)
			eq(t, "ignored as terminal", d.Ignored[0].Reason, IgnoreTerminal)
		}
		// A success of the failed attempt (a redelivery that worked) is
		// recorded, not dropped; a terminated process does not compensate.
		d = h.do(at(3*time.Minute), okEv("p/b/1", `{"late":1}`))
		eq(t, "still terminated", d.Status, StatusTerminated)
		eq(t, "nothing ignored", len(d.Ignored), 0)
		eq(t, "no command", cmdIDs(d), []string(nil))
		run := h.st.StepByID("b").Runs[0]
		eq(t, "late success recorded", run.Late, true)
		eq(t, "its output kept", string(run.Output), `{"late":1}`)
		d = h.do(at(4*time.Minute), okEv("p/b/1", `{"late":1}`))
		eq(t, "its duplicate is ignored", d.Ignored[0].Reason, IgnoreTerminal)
	})
	t.Run("actions that do not apply", func(t *testing.T) {
		h := newHarness(t, def)
		h.start(`{}`)
		for _, ev := range []Event{{Type: EventRetry}, {Type: EventRetry, StepID: "nope"}, {Type: EventSkip, StepID: "a"}, {Type: EventSkip, StepID: "zz"}} {
			d := h.do(at(time.Second), ev)
			eq(t, string(ev.Type)+" "+ev.StepID, d.Ignored[0].Reason, IgnoreNotApplicable)
		}
	})
}

func TestCompensationOrder(t *testing.T) {
	// a → b → c, and a → d. b has no compensate block: a's compensation
	// still waits for c's (transitive dependents), d's runs in parallel
	// with c's.
	const def = `name: co
on_failure: compensate
steps:
  - {id: a, service: s, command: A, compensate: {command: UA}}
  - {id: b, service: s, command: B, needs: [a]}
  - {id: c, service: s, command: C, needs: [b], compensate: {command: UC}}
  - {id: d, service: s, command: D, needs: [a], compensate: {command: UD}}
  - {id: e, service: s, command: E, needs: [c, d]}
`
	h := newHarness(t, def)
	h.start(`{}`)
	h.do(at(1*time.Second), okEv("p/a/1", `{}`))
	h.do(at(2*time.Second), okEv("p/b/1", `{}`), okEv("p/d/1", `{}`))
	h.do(at(3*time.Second), okEv("p/c/1", `{}`))
	d := h.do(at(4*time.Second), errEv("p/e/1", "X", false))
	eq(t, "leaves first, in parallel", cmdIDs(d), []string{"p/c/compensate/1", "p/d/compensate/1"})
	d = h.do(at(5*time.Second), okEv("p/d/compensate/1", ""))
	eq(t, "a waits for c through b", cmdIDs(d), []string(nil))
	d = h.do(at(6*time.Second), okEv("p/c/compensate/1", ""))
	eq(t, "then a", cmdIDs(d), []string{"p/a/compensate/1"})
	d = h.do(at(7*time.Second), okEv("p/a/compensate/1", ""), okEv("p/a/compensate/1", ""))
	eq(t, "done", d.Status, StatusCompensated)
	eq(t, "duplicate compensation result", d.Ignored[0].Reason, IgnoreDuplicateResult)
	eq(t, "b has nothing to undo", h.stepStatus("b"), StepCompleted)
}

func TestWorkflowTimeoutAndInput(t *testing.T) {
	const def = `name: wt
input: {type: object, required: [n]}
timeout: 1h
on_failure: compensate
steps:
  - {id: a, service: s, command: A, compensate: {command: UA}}
  - {id: b, needs: [a], wait: {signal: go}}
`
	h := newHarness(t, def)
	d := h.start(`{"n": 1}`)
	eq(t, "timers", timerIDs(d), []string{"p/timer/workflow_timeout"})
	h.do(at(time.Second), okEv("p/a/1", `{}`))
	d = h.do(at(time.Hour), fireEv("p/timer/workflow_timeout"))
	eq(t, "compensating", d.Status, StatusCompensating)
	eq(t, "waiting step cancelled", h.stepStatus("b"), StepCancelled)
	eq(t, "compensation", cmdIDs(d), []string{"p/a/compensate/1"})
	eq(t, "cause", h.st.Failure.Error.Type, ErrTypeWorkflowTimeout)

	h2 := newHarness(t, def)
	d = h2.start(`{"m": 1}`)
	eq(t, "invalid input fails the process", d.Status, StatusFailed)
	eq(t, "reason", h2.st.Failure.Error.Type, ErrTypeInvalidInput)
	eq(t, "nothing sent", cmdIDs(d), []string(nil))
}

func TestForEach(t *testing.T) {
	const def = `name: fe
steps:
  - id: each
    service: s
    command: E
    for_each: "${{ input.items }}"
    max_parallel: 2
    input: {v: "${{ item }}", i: "${{ index }}"}
  - id: after
    needs: [each]
    service: s
    command: A
    input: "${{ steps.each.output }}"
`
	h := newHarness(t, def)
	d := h.start(`{"items": ["x", "y", "z"]}`)
	eq(t, "two at a time", cmdIDs(d), []string{"p/each[0]/1", "p/each[1]/1"})
	eq(t, "item input", string(d.Commands[1].Input), `{"i":1,"v":"y"}`)
	d = h.do(at(time.Second), okEv("p/each[1]/1", `"Y"`))
	eq(t, "next item", cmdIDs(d), []string{"p/each[2]/1"})
	h.do(at(2*time.Second), okEv("p/each[2]/1", `"Z"`))
	d = h.do(at(3*time.Second), okEv("p/each[0]/1", `"X"`))
	eq(t, "joined outputs in item order", string(d.Commands[0].Input), `["X","Y","Z"]`)

	h2 := newHarness(t, def)
	d = h2.start(`{"items": []}`)
	eq(t, "empty list completes at once", cmdIDs(d), []string{"p/after/1"})
	eq(t, "with an empty output", string(d.Commands[0].Input), `[]`)

	h3 := newHarness(t, def)
	d = h3.start(`{"items": 3}`)
	eq(t, "not a list fails the step", d.Status, StatusFailed)
	eq(t, "error type", h3.st.Failure.Error.Type, ErrTypeExpression)

	h4 := newHarness(t, def)
	d = h4.start(`{"items": [` + strings.Repeat("1,", MaxForEachItems) + `1]}`)
	eq(t, "too many items fails the step", d.Status, StatusFailed)
	eq(t, "nothing sent", cmdIDs(d), []string(nil))
}

func TestDecideErrors(t *testing.T) {
	def, err := Load("t.yaml", []byte(retryDef))
	if err != nil {
		t.Fatal(err)
	}
	other, _ := Load("o.yaml", []byte(strings.Replace(retryDef, "name: r", "name: other", 1)))
	started, _ := Decide(def, nil, []Event{{Type: EventStart, ProcessID: "p"}}, t0)
	tests := []struct {
		name   string
		def    *Definition
		st     *State
		events []Event
		is     error
	}{
		{"nil definition", nil, nil, nil, ErrNilDefinition},
		{"state of another definition", other, started.State, nil, ErrDefinitionMismatch},
		{"unknown event type", def, started.State, []Event{{Type: "bogus"}}, ErrInvalidEvent},
		{"event from the future", def, started.State, []Event{{V: 9, Type: EventCancel}}, ErrUnsupportedVersion},
		{"result without command id", def, started.State, []Event{{Type: EventResult}}, ErrInvalidEvent},
		{"start without process id", def, nil, []Event{{Type: EventStart}}, ErrInvalidEvent},
		{"event of another process", def, started.State, []Event{{Type: EventCancel, ProcessID: "q"}}, ErrInvalidEvent},
		{"state from the future", def, &State{V: 99}, nil, ErrUnsupportedVersion},
		{"bad JSON in a signal", def, started.State, []Event{{Type: EventSignal, Signal: "s", Data: json.RawMessage(`{`)}}, ErrInvalidEvent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decide(tt.def, tt.st, tt.events, t0)
			if !errors.Is(err, tt.is) {
				t.Fatalf("got %v, want %v", err, tt.is)
			}
			var ee *EventError
			if len(tt.events) > 0 {
				if !errors.As(err, &ee) {
					t.Errorf("event error is not an *EventError: %T", err)
				} else if !strings.Contains(ee.Error(), "event 0") {
					t.Errorf("event error %q does not name the event", ee.Error())
				}
			}
		})
	}
}

// Decide is pure: it never changes its input state and gives the same
// decision for the same inputs.
func TestDecidePureAndDeterministic(t *testing.T) {
	def, err := LoadFile("../testdata/trip-booking.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := Decide(def, nil, []Event{{Type: EventStart, ProcessID: "p", Input: json.RawMessage(`{"customer":"c","amount":1}`)}}, t0)
	d2, _ := Decide(def, d1.State, []Event{okEv("p/payment/1", `{"payment_id":"x"}`)}, at(time.Second))
	before, _ := json.Marshal(d2.State)
	evs := []Event{errEv("p/hotel/1", "Busy", true), okEv("p/flight/1", `{}`)}
	a, err := Decide(def, d2.State, evs, at(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Decide(def, d2.State, evs, at(2*time.Second))
	after, _ := json.Marshal(d2.State)
	if string(before) != string(after) {
		t.Error("Decide changed its input state")
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if string(ja) != string(jb) {
		t.Errorf("two runs differ:\n%s\n%s", ja, jb)
	}
	// and the same through a JSON round trip of the state
	c, _ := Decide(def, roundTrip(t, d2.State), evs, at(2*time.Second))
	jc, _ := json.Marshal(c)
	if string(ja) != string(jc) {
		t.Errorf("decision differs after a snapshot round trip:\n%s\n%s", ja, jc)
	}
}

func TestCommandIDs(t *testing.T) {
	tests := []struct {
		name string
		step string
		item int
		comp bool
		n    int
		want string
	}{
		{"plain", "pay", -1, false, 1, "p-1/pay/1"},
		{"item", "each", 3, false, 2, "p-1/each[3]/2"},
		{"compensation", "pay", -1, true, 4, "p-1/pay/compensate/4"},
		{"item compensation", "each", 0, true, 1, "p-1/each[0]/compensate/1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := commandID("p-1", tt.step, tt.item, tt.comp, tt.n)
			eq(t, "id", id, tt.want)
			r, ok := parseCommandID("p-1", id)
			if !ok || r.step != tt.step || r.item != tt.item || r.comp != tt.comp || r.attempt != tt.n {
				t.Errorf("parse(%q) = %+v, %v", id, r, ok)
			}
		})
	}
	for _, bad := range []string{"", "p-1", "p-1/", "p-1/x/0", "p-1/x/y", "p-2/x/1", "p-1/x[a]/1", "p-1/[1]/1", "p-1/a/b/1"} {
		if _, ok := parseCommandID("p-1", bad); ok {
			t.Errorf("parse(%q) accepted", bad)
		}
	}
}

func TestRuntimeExpressionErrors(t *testing.T) {
	tests := []struct {
		name string
		def  string
	}{
		{"input reads a member of null", `name: e
steps:
  - {id: ok, service: s, command: A, timeout: 1m}
  - {id: bad, service: s, command: B, timeout: 1m, input: "${{ input.customer.name }}"}
`},
		{"when is not a boolean", `name: e
steps:
  - {id: ok, service: s, command: A, timeout: 1m}
  - {id: bad, sleep: 1s, when: "${{ 'yes' }}"}
`},
		{"until is not a time", `name: e
steps:
  - {id: ok, service: s, command: A, timeout: 1m}
  - {id: bad, until: "${{ 42 }}"}
`},
		{"until is a malformed time", `name: e
steps:
  - {id: ok, service: s, command: A, timeout: 1m}
  - {id: bad, until: "${{ 'next tuesday' }}"}
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.def)
			d := h.start(`{}`)
			// "ok" was dispatched in the same decision, before "bad"
			// failed the process: nothing of it may leave.
			eq(t, "status", d.Status, StatusFailed)
			eq(t, "no command", cmdIDs(d), []string(nil))
			eq(t, "no timer", timerIDs(d), []string(nil))
			eq(t, "nothing to cancel", d.CancelTimers, []string(nil))
			eq(t, "error type", h.st.Failure.Error.Type, ErrTypeExpression)
			eq(t, "failed step", h.st.Failure.StepID, "bad")
			eq(t, "abandoned attempt", h.st.StepByID("ok").Runs[0].Attempts[0].Outcome, OutcomeAbandoned)
		})
	}
	t.Run("output fails to evaluate", func(t *testing.T) {
		h := newHarness(t, "name: o\nsteps: [{id: a, service: s, command: A}]\noutput: \"${{ steps.a.output.x.y }}\"\n")
		h.start(`{}`)
		d := h.do(at(time.Second), okEv("p/a/1", `{}`))
		eq(t, "status", d.Status, StatusFailed)
		eq(t, "error type", h.st.Failure.Error.Type, ErrTypeExpression)
	})
}
