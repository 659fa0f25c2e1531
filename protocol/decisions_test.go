package protocol

import (
	"bytes"
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
		split      bool // the task set SplitState
		wantZstd   bool // the state travels compressed
		wantAnswer bool // the answer travels compressed
		wantSplit  bool // the answer's state travels apart
		apart      bool // the task's StateApart: the decision leaves it out
	}{
		{name: "a large state", state: bigState(), compact: true, wantZstd: true, wantAnswer: true},
		{name: "a large state, split", state: bigState(), compact: true, split: true, wantZstd: true, wantAnswer: true, wantSplit: true},
		{name: "a large state, split apart", state: bigState(), compact: true, split: true, apart: true, wantZstd: true, wantAnswer: false, wantSplit: true},
		{name: "a small state, split apart (it stays in the decision)", state: small, compact: true, split: true, apart: true},
		{name: "a small state", state: small, compact: true},
		{name: "a small state, split (nothing to split)", state: small, compact: true, split: true},
		{name: "no state yet", state: nil, compact: true},
		{name: "a plain task (an older orchestrator)", state: bigState(), compact: false, wantAnswer: false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			task := DecisionTask{TaskID: "p1/3", ProcessID: "p1", ReplyTo: "events", AcceptZstd: tc.compact, SplitState: tc.split, StateApart: tc.apart}
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
			if err := res.SetDecision(d, back.Compact(), back.SplitState, back.StateApart); err != nil {
				t.Fatal(err)
			}
			if got := len(res.DecisionZstd) > 0; got != tc.wantAnswer {
				t.Fatalf("answer compressed %v, want %v", got, tc.wantAnswer)
			}
			if got := len(res.StateZstd) > 0; got != tc.wantSplit {
				t.Fatalf("answer's state apart %v, want %v", got, tc.wantSplit)
			}
			if d.State != st {
				t.Fatal("SetDecision modified the decision it was given")
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
			if err := got.Expand(); err != nil || !reflect.DeepEqual(got.Decision, d) {
				t.Fatalf("expanding again: %v, decision %+v", err, got.Decision)
			}
			if tc.apart && tc.wantSplit {
				// The state travels once: the decision holds none of it.
				if res.Decision == nil || res.Decision.State != nil || len(res.DecisionZstd) > 0 {
					t.Fatalf("apart: decision %+v (zstd %d bytes), want one without its state", res.Decision, len(res.DecisionZstd))
				}
				whole := DecisionResult{TaskID: back.TaskID, ProcessID: "p1"}
				if err := whole.SetDecision(d, true, true, false); err != nil {
					t.Fatal(err)
				}
				if w, _ := json.Marshal(whole); len(wire) >= len(w) {
					t.Fatalf("apart: %d bytes, not fewer than the whole decision's %d", len(wire), len(w))
				}
				return // (an earlier orchestrator does not set StateApart)
			}
			// An orchestrator of an earlier version reads the answer without
			// state_zstd: the decision is whole.
			var older struct {
				Decision     *workflow.Decision `json:"decision,omitempty"`
				DecisionZstd []byte             `json:"decision_zstd,omitempty"`
			}
			if err := json.Unmarshal(wire, &older); err != nil {
				t.Fatal(err)
			}
			if older.Decision == nil {
				older.Decision = new(workflow.Decision)
				if err := expand(older.DecisionZstd, older.Decision, "older"); err != nil {
					t.Fatal(err)
				}
			}
			if !reflect.DeepEqual(older.Decision, d) {
				t.Fatalf("an earlier orchestrator reads %+v, want %+v", older.Decision, d)
			}
			if !tc.wantSplit {
				return
			}
			// The orchestrator sends the answer's state bytes back as the
			// next task's state: they read as the state they came with.
			next := DecisionTask{TaskID: "p1/4", ProcessID: "p1", ReplyTo: "events", AcceptZstd: true, SplitState: true}
			next.UseState(got.StateZstd)
			if !bytes.Equal(next.StateZstd, res.StateZstd) || next.State != nil {
				t.Fatalf("UseState: task %+v, want the answer's bytes", next)
			}
			wire, err = json.Marshal(next)
			if err != nil {
				t.Fatal(err)
			}
			var again DecisionTask
			if err := json.Unmarshal(wire, &again); err != nil {
				t.Fatal(err)
			}
			if err := again.Expand(); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(again.State, st) {
				t.Fatalf("the reused bytes read %+v, want %+v", again.State, st)
			}
		})
	}
}

// The decision's JSON with its state spliced in is the decision's JSON,
// and the state apart is the state's.
func TestDecisionJSONSplice(t *testing.T) {
	st := bigState()
	d := &workflow.Decision{State: st, Status: st.Status, StatusChanged: true,
		Commands: []workflow.Command{{ID: "p1/pay/1", ProcessID: "p1", StepID: "pay", Attempt: 1, Input: json.RawMessage(`{"a":"<&>"}`)}}}
	want, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	b, zs, err := decisionJSON(d, true, false)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, want) {
		t.Fatalf("spliced:\n%s\nwant:\n%s", b, want)
	}
	var back workflow.State
	if err := expand(zs, &back, "state"); err != nil || !reflect.DeepEqual(&back, st) {
		t.Fatalf("the state apart reads %+v (%v), want %+v", back, err, st)
	}
	if d.State != st {
		t.Fatal("decisionJSON changed the decision")
	}
}

// A decider that keeps the state it answered with takes it for the next
// task only when that task carries the very bytes it sent.
func TestDecisionTaskExpandFrom(t *testing.T) {
	st := bigState()
	z, err := compact(st)
	if err != nil || z == nil {
		t.Fatalf("compact: %v %v", z, err)
	}
	other := bigState()
	other.Steps[0].Status = workflow.StepFailed
	zOther, err := compact(other)
	if err != nil || zOther == nil {
		t.Fatalf("compact: %v %v", zOther, err)
	}
	cases := []struct {
		name     string
		task     DecisionTask
		cachedZ  []byte
		cachedSt *workflow.State
		want     bool
	}{
		{name: "the same bytes", task: DecisionTask{StateZstd: bytes.Clone(z)}, cachedZ: z, cachedSt: st, want: true},
		{name: "another state", task: DecisionTask{StateZstd: zOther}, cachedZ: z, cachedSt: st},
		{name: "nothing kept", task: DecisionTask{StateZstd: z}},
		{name: "a plain state", task: DecisionTask{State: other}, cachedZ: z, cachedSt: st},
		{name: "no state yet", task: DecisionTask{}, cachedZ: z, cachedSt: st},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			task := tc.task
			if got := task.ExpandFrom(tc.cachedZ, tc.cachedSt); got != tc.want {
				t.Fatalf("ExpandFrom = %v, want %v", got, tc.want)
			}
			if tc.want && (task.State != tc.cachedSt || task.StateZstd != nil || !task.Compact()) {
				t.Fatalf("task after ExpandFrom %+v, want the kept state, compact", task)
			}
			if !tc.want && !reflect.DeepEqual(task, tc.task) {
				t.Fatalf("ExpandFrom changed a task it did not take: %+v", task)
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
		{name: "result: a state apart, not zstd", expand: func() error {
			return (&DecisionResult{TaskID: "t", Decision: &workflow.Decision{}, StateZstd: []byte("garbage")}).Expand()
		}, want: "state_zstd: zstd"},
		{name: "result: a state apart, no decision", expand: func() error {
			return (&DecisionResult{TaskID: "t", StateZstd: z}).Expand()
		}, want: "state_zstd but no decision"},
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
