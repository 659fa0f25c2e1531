package workflow

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

const callDef = `name: p
on_failure: compensate
steps:
  - id: kid
    call: {definition: child, input: {n: "${{ input.n }}"}}
    timeout: 1m
    retry: {max_attempts: 2, initial_interval: 1s}
  - id: after
    needs: [kid]
    service: s
    command: A
    input: "${{ steps.kid.output }}"
`

func TestCallDepth(t *testing.T) {
	h := newHarness(t, callDef)
	d := h.do(at(0), Event{Type: EventStart, ProcessID: "p", Input: json.RawMessage(`{"n":1}`), Parent: &ParentRef{ProcessID: "gp", CommandID: "gp/x/1", Depth: MaxCallDepth}})
	eq(t, "no child started", len(d.Commands), 0)
	eq(t, "the step failed for good", h.stepStatus("kid"), StepFailed)
	eq(t, "error", h.st.StepByID("kid").Error.Type, ErrTypeCallDepth)
	eq(t, "nothing to undo", h.st.Status, StatusCompensated)

	h = newHarness(t, callDef)
	d = h.do(at(0), Event{Type: EventStart, ProcessID: "p", Input: json.RawMessage(`{"n":1}`), Parent: &ParentRef{ProcessID: "gp", CommandID: "gp/x/1", Depth: MaxCallDepth - 1}})
	var in ChildCommand
	_ = json.Unmarshal(d.Commands[0].Input, &in)
	eq(t, "one level left", in.Depth, MaxCallDepth)
	eq(t, "the child knows its parent chain", h.st.Parent.ProcessID, "gp")
}

func TestCallTimeoutCancelsTheChild(t *testing.T) {
	h := newHarness(t, callDef)
	d := h.do(at(0), Event{Type: EventStart, ProcessID: "p", Input: json.RawMessage(`{"n":1}`)})
	eq(t, "start child", cmdIDs(d), []string{"p/kid/1"})
	eq(t, "attempt timer", timerIDs(d), []string{"p/timer/attempt_timeout/kid/1"})
	d = h.do(at(time.Minute), fireEv("p/timer/attempt_timeout/kid/1"))
	eq(t, "the timed-out child is cancelled and a new one started", cmdIDs(d), []string{"p/kid/1/cancelchild", "p/kid/2"})
	var in ChildCommand
	_ = json.Unmarshal(d.Commands[1].Input, &in)
	eq(t, "a new child id", in.ProcessID, "p:kid:2")
	eq(t, "cancel names the old child", string(d.Commands[0].Input), `{"process_id":"p:kid:1"}`)
	// the old child's late outcome is ignored
	d = h.do(at(time.Minute+time.Second), Event{Type: EventResult, CommandID: "p/kid/1", Error: &ErrorInfo{Type: ErrTypeChildCompensated}})
	eq(t, "late", d.Ignored[0].Reason, IgnoreAfterTimeout)
	d = h.do(at(time.Minute+2*time.Second), okEv("p/kid/2", `{"sum": 3}`))
	eq(t, "the child's output is the step's output", string(d.Commands[0].Input), `{"sum":3}`)
}

func TestChildOutcome(t *testing.T) {
	tests := []struct {
		name   string
		state  State
		output string
		errTyp string
		errMsg string
	}{
		{"completed", State{ProcessID: "c", Status: StatusCompleted, Output: json.RawMessage(`{"a":1}`)}, `{"a":1}`, "", ""},
		{"completed without output", State{ProcessID: "c", Status: StatusCompleted}, `null`, "", ""},
		{"failed with its error", State{ProcessID: "c", Status: StatusFailed, Failure: &Failure{StepID: "x", Error: &ErrorInfo{Type: "NoSeats", Message: "full"}}}, "", "NoSeats", "child c step x (failed): full"},
		{"compensated", State{ProcessID: "c", Status: StatusCompensated, Admin: &AdminAction{Type: EventCancel}}, "", ErrTypeChildCompensated, "child c was compensated"},
		{"terminated", State{ProcessID: "c", Status: StatusTerminated}, "", ErrTypeChildTerminated, "child c was terminated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, e := ChildOutcome(&tt.state)
			if string(out) != tt.output {
				t.Fatalf("output %s, want %s", out, tt.output)
			}
			if tt.errTyp == "" {
				if e != nil {
					t.Fatalf("error %+v", e)
				}
				return
			}
			if e == nil || e.Type != tt.errTyp || !strings.Contains(e.Message, tt.errMsg) {
				t.Fatalf("error %+v, want %s %q", e, tt.errTyp, tt.errMsg)
			}
		})
	}
}

func TestLoadCall(t *testing.T) {
	bad := `name: p
steps:
  - id: a
    call: {definition: child}
    service: s
    compensate: {command: X}
  - id: b
    call: {version: 0, input: 1}
  - id: c
    call: {definition: child}
    input: {x: 1}
`
	_, err := Load("p.yaml", []byte(bad))
	if err == nil {
		t.Fatal("loaded")
	}
	for _, want := range []string{
		"service is not allowed on a call step (a call step starts a workflow, not a command: remove service)",
		"compensate is not allowed on a call step (a call step is compensated by its child's own compensation; remove compensate)",
		"call has no definition",
		"version must be at least 1",
		"input is not allowed on a call step (write the child's input inside call:",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in\n%v", want, err)
		}
	}
	def, err := Load("p.yaml", []byte(callDef))
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "calls", def.Calls()[0].Definition, "child")
}
