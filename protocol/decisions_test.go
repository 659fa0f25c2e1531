package protocol

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/workflow"
)

// bigState is a state whose JSON is well above CompactAbove.
func bigState() *workflow.State {
	at := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	st := &workflow.State{V: workflow.StateVersion, ProcessID: "p1", Workflow: "trip-booking", Version: 1,
		Status: workflow.StatusRunning, Input: json.RawMessage(`{"customer":"c","amount":1}`), StartedAt: at, UpdatedAt: at}
	for i := range 8 {
		st.Steps = append(st.Steps, &workflow.StepState{ID: fmt.Sprintf("step-%d", i), Status: workflow.StepCompleted,
			Output: json.RawMessage(`{"id":"booking-00001","ok":true}`), StartedAt: at, EndedAt: at})
	}
	return st
}

// The compact forms round-trip through JSON (the envelope's payload): a
// large state or decision travels compressed and comes back equal; a
// small one travels as it is; a plain task gets a plain answer.
func TestDecisionsCompactRoundTrip(t *testing.T) {
	small := &workflow.State{V: workflow.StateVersion, ProcessID: "p1", Status: workflow.StatusRunning}
	cases := []struct {
		name       string
		state      *workflow.State
		compact    bool // the task came compact
		wantZstd   bool // the state travels compressed
		wantAnswer bool // the answer travels compressed
	}{
		{name: "a large state", state: bigState(), compact: true, wantZstd: true, wantAnswer: true},
		{name: "a small state", state: small, compact: true},
		{name: "no state yet", state: nil, compact: true},
		{name: "a plain task (an older orchestrator)", state: bigState(), compact: false, wantAnswer: false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			task := DecisionTask{TaskID: "p1/3", ProcessID: "p1", ReplyTo: "events", AcceptZstd: tc.compact}
			if tc.compact {
				if err := task.SetState(tc.state); err != nil {
					t.Fatal(err)
				}
			} else {
				task.State = tc.state
			}
			if got := len(task.StateZstd) > 0; got != tc.wantZstd {
				t.Fatalf("state compressed %v, want %v", got, tc.wantZstd)
			}
			wire, err := json.Marshal(task)
			if err != nil {
				t.Fatal(err)
			}
			var back DecisionTask
			if err := json.Unmarshal(wire, &back); err != nil {
				t.Fatal(err)
			}
			if err := back.Expand(); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back.State, tc.state) {
				t.Fatalf("state came back %+v, want %+v", back.State, tc.state)
			}
			if back.Compact() != tc.compact {
				t.Fatalf("Compact() = %v, want %v", back.Compact(), tc.compact)
			}
			st := tc.state
			if st == nil {
				st = small
			}
			d := &workflow.Decision{State: st, Status: st.Status, Commands: []workflow.Command{{ID: "p1/pay/1", ProcessID: "p1", StepID: "pay", Attempt: 1, Input: json.RawMessage(`{"a":1}`)}}}
			res := DecisionResult{TaskID: back.TaskID, ProcessID: "p1"}
			if err := res.SetDecision(d, back.Compact()); err != nil {
				t.Fatal(err)
			}
			if got := len(res.DecisionZstd) > 0; got != tc.wantAnswer {
				t.Fatalf("answer compressed %v, want %v", got, tc.wantAnswer)
			}
			wire, err = json.Marshal(res)
			if err != nil {
				t.Fatal(err)
			}
			var got DecisionResult
			if err := json.Unmarshal(wire, &got); err != nil {
				t.Fatal(err)
			}
			if err := got.Expand(); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Decision, d) {
				t.Fatalf("decision came back %+v, want %+v", got.Decision, d)
			}
		})
	}
}

// A compressed state or decision that cannot be read makes the message
// invalid for good (dead-lettered with the reason), never a panic.
func TestDecisionsCompactGarbage(t *testing.T) {
	z, err := compact(bigState())
	if err != nil || z == nil {
		t.Fatalf("compact: %v %v", z, err)
	}
	notJSON, err := compact(strings.Repeat("x", 2000))
	if err != nil || notJSON == nil {
		t.Fatalf("compact: %v %v", notJSON, err)
	}
	cases := []struct {
		name   string
		expand func() error
		want   string
	}{
		{name: "task: not zstd", expand: func() error {
			return (&DecisionTask{TaskID: "t", StateZstd: []byte("garbage")}).Expand()
		}, want: "state_zstd: zstd"},
		{name: "task: zstd of something else", expand: func() error {
			return (&DecisionTask{TaskID: "t", StateZstd: notJSON}).Expand()
		}, want: "state_zstd"},
		{name: "task: both forms", expand: func() error {
			return (&DecisionTask{TaskID: "t", State: bigState(), StateZstd: z}).Expand()
		}, want: "both state and state_zstd"},
		{name: "result: not zstd", expand: func() error {
			return (&DecisionResult{TaskID: "t", DecisionZstd: []byte{0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3}}).Expand()
		}, want: "decision_zstd: zstd"},
		{name: "result: both forms", expand: func() error {
			return (&DecisionResult{TaskID: "t", Decision: &workflow.Decision{}, DecisionZstd: z}).Expand()
		}, want: "both decision and decision_zstd"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.expand()
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want ErrInvalid saying %q", err, tc.want)
			}
		})
	}
}
