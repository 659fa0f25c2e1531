package engine

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/workflow"
)

// image.stateZ (protocol/decisions.go, "Split state"): the bytes a remote
// answer carried its state in go with the state into the next task and
// the snapshot, survive a freeze and thaw, and are forgotten by anything
// else that sets the state.
func TestImageKeepsTheStateBytesItWasGiven(t *testing.T) {
	trip := loadDef(t, "testdata/trip-booking.yaml")
	m := &machine{remote: true, seenLimit: 4, replyTo: "events", obs: NopObserver{}}
	fx := &effects{}
	// (an input that makes the state large enough to travel compressed)
	img := m.start(trip, 0, startIn(`{"customer":"`+strings.Repeat("c", 400)+`","amount":1}`), t0, fx)
	m.issue(img, t0, fx)
	if len(fx.tasks) != 1 || fx.tasks[0].stateZ != nil || !fx.tasks[0].task.SplitState {
		t.Fatalf("first task %+v, want one, SplitState, no state bytes", fx.tasks)
	}
	// answer decides the last task as a decider does and returns the
	// result as the orchestrator reads it.
	answer := func(task protocol.DecisionTask, at time.Time) *protocol.DecisionResult {
		t.Helper()
		if task.StateZstd != nil {
			if err := task.Expand(); err != nil {
				t.Fatal(err)
			}
		}
		d, err := workflow.Decide(trip, task.State, task.Events, at)
		if err != nil {
			t.Fatal(err)
		}
		res := &protocol.DecisionResult{TaskID: task.TaskID, ProcessID: pid, Now: at}
		if err := res.SetDecision(&d, task.Compact(), task.SplitState, task.StateApart); err != nil {
			t.Fatal(err)
		}
		if len(res.StateZstd) == 0 {
			t.Fatalf("answer without its state apart: %+v", res)
		}
		if err := res.Expand(); err != nil {
			t.Fatal(err)
		}
		return res
	}
	res := answer(fx.tasks[0].task, t0.Add(time.Second))
	m.accept(img, input{kind: inDecision, envID: "decision:1", pid: pid, result: res}, t0.Add(time.Second), &effects{})
	if !bytes.Equal(img.stateZ, res.StateZstd) || img.state != res.Decision.State {
		t.Fatalf("image after the answer: stateZ %d bytes, want the answer's %d", len(img.stateZ), len(res.StateZstd))
	}

	// The next task sends those bytes.
	fx = &effects{}
	m.accept(img, resultIn("payment/1", true), t0.Add(2*time.Second), fx)
	m.issue(img, t0.Add(2*time.Second), fx)
	if len(fx.tasks) != 1 || !bytes.Equal(fx.tasks[0].stateZ, res.StateZstd) {
		t.Fatalf("next task %+v, want the answer's state bytes", fx.tasks)
	}

	// So does a snapshot, and the image thawed from it has them back.
	snap, err := encodeSnapshot(new(img.snapshot()))
	if err != nil {
		t.Fatal(err)
	}
	s, err := DecodeSnapshot(snap)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s.StateZstd, img.stateZ) || !reflect.DeepEqual(s.State, img.state) {
		t.Fatalf("snapshot: state bytes %d (want %d), state equal %v", len(s.StateZstd), len(img.stateZ), reflect.DeepEqual(s.State, img.state))
	}
	frozen := &image{pid: pid, def: trip, seq: img.seq, frozen: &frozenImage{snap: snap}}
	if err := frozen.thaw(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(frozen.stateZ, img.stateZ) {
		t.Fatal("a thawed image lost its state bytes")
	}
	// A snapshot of an image without them encodes the state afresh: the
	// same state comes back.
	plain := img.snapshot()
	plain.StateZstd = nil
	if b, err := encodeSnapshot(&plain); err != nil {
		t.Fatal(err)
	} else if s, err := DecodeSnapshot(b); err != nil || !reflect.DeepEqual(s.State, img.state) {
		t.Fatalf("snapshot encoded afresh: %v, state equal %v", err, err == nil && reflect.DeepEqual(s.State, img.state))
	}

	// A rejected answer leaves the state, and its bytes, as they are, even
	// one that carries a decision and state bytes along with its error.
	task := fx.tasks[0].task
	rejected := answer(task, t0.Add(3*time.Second))
	rejected.Error = "no"
	m.accept(img, input{kind: inDecision, envID: "decision:2", pid: pid, result: rejected}, t0.Add(3*time.Second), &effects{})
	if !bytes.Equal(img.stateZ, res.StateZstd) || img.state != res.Decision.State {
		t.Fatal("a rejected answer changed the state bytes of a state it did not change")
	}
	// An answer whose state is too large for a message fails the process
	// (a failed record, the state before, failed): its bytes are not kept.
	fx = &effects{}
	m.accept(img, resultIn("payment/1", true), t0.Add(4*time.Second), fx) // (a duplicate: pending again)
	m.issue(img, t0.Add(4*time.Second), fx)
	big := answer(fx.tasks[0].task, t0.Add(4*time.Second))
	m.maxMessage = messageSlack + 300
	m.accept(img, input{kind: inDecision, envID: "decision:3", pid: pid, result: big}, t0.Add(4*time.Second), &effects{})
	m.maxMessage = 0
	if !img.terminal() || img.stateZ != nil {
		t.Fatalf("after a decision too large: status %s, stateZ %d bytes; want failed, none", img.state.Status, len(img.stateZ))
	}
	// Anything else that sets the state forgets them: a replayed decision
	// (decided again by fold), a failure.
	for _, r := range []Record{
		{Kind: RecordDecision, TaskID: "replayed", Upto: img.seq, Now: t0.Add(4 * time.Second)},
		{Kind: RecordFailed, Upto: img.seq, Now: t0.Add(5 * time.Second), Error: "too large"},
	} {
		z := img.stateZ
		img.stateZ = res.StateZstd
		r.Seq = img.seq + 1
		if err := img.fold(r, nil); err != nil {
			t.Fatal(err)
		}
		if img.stateZ != nil {
			t.Fatalf("%s record: stateZ kept (%d bytes, was %d)", r.Kind, len(img.stateZ), len(z))
		}
	}
}
