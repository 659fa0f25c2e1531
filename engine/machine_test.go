package engine

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/workflow"
)

// The state machine table-tested without a bus: each case feeds inputs to
// one process at given times and checks, after each, the records and
// effects of that "batch" (accept, then the decision as the orchestrator
// makes it at the end of a batch), and that replaying the records with
// image.fold rebuilds the live image.

var t0 = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

func loadDef(t *testing.T, rel string) *workflow.Definition {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	def, err := workflow.LoadFile(filepath.Join(filepath.Dir(file), "..", rel))
	if err != nil {
		t.Fatal(err)
	}
	return def
}

// mstep is one input (or, with answer, the remote decider answering the
// last task issued) and what its batch must produce.
type mstep struct {
	name   string
	at     time.Duration // since t0
	in     input
	answer bool // remote: answer the last task issued, decided at the batch time

	records  []string // "event:<type>", "decision:<status>", "rejected", "failed"
	commands []string // command ids, without the process id prefix
	arm      []time.Duration
	tasks    int
	drops    []string
	finished bool
}

const pid = "p1"

func startIn(data string) input {
	return input{kind: inStart, envID: "start:" + pid, pid: pid, start: protocol.StartRequest{ProcessID: pid, Definition: "trip-booking", Input: json.RawMessage(data)}}
}

func eventIn(envID string, ev workflow.Event) input {
	ev.V, ev.ProcessID = workflow.EventVersion, pid
	return input{kind: inEvent, envID: envID, pid: pid, event: ev}
}

func resultIn(cmd string, ok bool) input {
	ev := workflow.Event{Type: workflow.EventResult, CommandID: pid + "/" + cmd}
	parts := strings.Split(cmd, "/")
	fmt.Sscan(parts[len(parts)-1], &ev.Attempt)
	if ok {
		ev.Output = json.RawMessage(`{"id":"x"}`)
	} else {
		yes := true
		ev.Error = &workflow.ErrorInfo{Type: "Boom", Message: "boom", Retryable: &yes}
	}
	return eventIn("result:"+cmd, ev)
}

func wakeIn(at time.Duration) input {
	return input{kind: inWake, envID: "fired:wake", pid: pid, fireAt: t0.Add(at), timerID: WakeTimerID(pid, t0.Add(at))}
}

// lateWakeIn is the physical timer of at handed over by the relay at
// firedAt (after a broker outage).
func lateWakeIn(at, firedAt time.Duration) input {
	in := wakeIn(at)
	in.firedAt = t0.Add(firedAt)
	return in
}

// startedIn is a worker's report that it started a command.
func startedIn(cmd string) input {
	ev := workflow.Event{Type: workflow.EventStarted, CommandID: pid + "/" + cmd}
	return eventIn("started:"+cmd, ev)
}

// heartbeatIn is a worker's heartbeat (not recorded: progress.go).
func heartbeatIn(cmd string) input {
	return input{kind: inHeartbeat, envID: "heartbeat:" + cmd, pid: pid, commandID: pid + "/" + cmd}
}

const tripInput = `{"customer":"c","amount":1}`

func TestMachine(t *testing.T) {
	trip := loadDef(t, "testdata/trip-booking.yaml")
	wait := loadDef(t, "engine/testdata/scenario-wait-timeout.yaml")
	beat := loadDef(t, "engine/testdata/heartbeat.yaml")
	no := false
	refused := func(cmd string) input {
		return eventIn("result:"+cmd, workflow.Event{Type: workflow.EventResult, CommandID: pid + "/" + cmd,
			Error: &workflow.ErrorInfo{Type: "CardDeclined", Retryable: &no}})
	}
	cases := []struct {
		name   string
		def    *workflow.Definition
		remote bool
		max    int
		steps  []mstep
	}{
		{name: "trip, inline, all succeed, one physical timer", def: trip, steps: []mstep{
			{name: "start: no timer before a worker starts the payment", in: startIn(tripInput), records: []string{"event:start", "decision:running"},
				commands: []string{"payment/1"}},
			{name: "payment started: its timeout is armed", in: startedIn("payment/1"), records: []string{"event:started", "decision:running"},
				arm: []time.Duration{30 * time.Second}},
			{name: "payment done", at: time.Second, in: resultIn("payment/1", true), records: []string{"event:result", "decision:running"},
				commands: []string{"flight/1", "hotel/1"}}, // their timeouts are later than the pending timer: none armed
			{name: "flight done", at: 2 * time.Second, in: resultIn("flight/1", true), records: []string{"event:result", "decision:running"}},
			{name: "duplicate flight result", at: 2 * time.Second, in: resultIn("flight/1", true), records: []string{"event:result", "decision:running"},
				drops: []string{"duplicate_result"}},
			{name: "hotel done", at: 3 * time.Second, in: resultIn("hotel/1", true), records: []string{"event:result", "decision:running"},
				commands: []string{"notify/1"}},
			{name: "notify done", at: 4 * time.Second, in: resultIn("notify/1", true), records: []string{"event:result", "decision:completed"},
				finished: true},
			{name: "the physical timer fires for a finished process", at: 30 * time.Second, in: wakeIn(30 * time.Second),
				drops: []string{DropStaleTimer}},
			{name: "a late result", at: 31 * time.Second, in: resultIn("hotel/1", true), drops: []string{DropTerminal}},
			{name: "a second start", at: 32 * time.Second, in: startIn(tripInput), drops: []string{DropAlreadyStarted}},
		}},
		{name: "trip, inline, timers: nothing due leaves no record, re-armed; due ones are decided", def: trip, steps: []mstep{
			{name: "start", in: startIn(tripInput), records: []string{"event:start", "decision:running"},
				commands: []string{"payment/1"}},
			{name: "payment started", in: startedIn("payment/1"), records: []string{"event:started", "decision:running"},
				arm: []time.Duration{30 * time.Second}},
			{name: "payment done at 20s", at: 20 * time.Second, in: resultIn("payment/1", true), records: []string{"event:result", "decision:running"},
				commands: []string{"flight/1", "hotel/1"}},
			{name: "flight started", at: 20 * time.Second, in: startedIn("flight/1"), records: []string{"event:started", "decision:running"}},
			{name: "hotel started", at: 20 * time.Second, in: startedIn("hotel/1"), records: []string{"event:started", "decision:running"}},
			{name: "the 30s timer: nothing due, re-armed for 50s", at: 30 * time.Second, in: wakeIn(30 * time.Second),
				arm: []time.Duration{50 * time.Second}, drops: []string{DropStaleTimer}},
			{name: "the same timer again (redelivered): nothing", at: 31 * time.Second, in: wakeIn(30 * time.Second),
				drops: []string{DropStaleTimer}},
			{name: "the 50s timer: both attempts time out, retried", at: 50 * time.Second, in: wakeIn(50 * time.Second),
				// the retries' timeouts are armed when they start
				records: []string{"event:timer", "event:timer", "decision:running"}, commands: []string{"flight/2", "hotel/2"}},
		}},
		{name: "signals: duplicates by envelope id, timeout fires", def: wait, steps: []mstep{
			{name: "start", in: startIn(`{}`), records: []string{"event:start", "decision:running"},
				commands: []string{"prepare/1"}},
			{name: "prepare started", in: startedIn("prepare/1"), records: []string{"event:started", "decision:running"},
				arm: []time.Duration{10 * time.Second}},
			{name: "prepared", at: time.Second, in: resultIn("prepare/1", true), records: []string{"event:result", "decision:running"},
				arm: []time.Duration{2 * time.Second}}, // the signal timeout comes earlier than the pending timer
			{name: "a signal nobody waits for", at: 1500 * time.Millisecond, in: eventIn("signal:s1", workflow.Event{Type: workflow.EventSignal, Signal: "other"}),
				records: []string{"event:signal", "decision:running"}, drops: []string{string(workflow.IgnoreNoWaitingStep)}},
			{name: "the same signal again", at: 1600 * time.Millisecond, in: eventIn("signal:s1", workflow.Event{Type: workflow.EventSignal, Signal: "other"}),
				drops: []string{DropDuplicate}},
			{name: "the signal timeout", at: 2 * time.Second, in: wakeIn(2 * time.Second),
				records: []string{"event:timer", "decision:compensating"}, commands: []string{"prepare/compensate/1"}},
			{name: "the compensation starts", at: 2 * time.Second, in: startedIn("prepare/compensate/1"),
				records: []string{"event:started", "decision:compensating"}},
			{name: "the old 10s timer: nothing due, the compensation's timeout is armed", at: 10 * time.Second, in: wakeIn(10 * time.Second),
				arm: []time.Duration{12 * time.Second}, drops: []string{DropStaleTimer}},
		}},
		{name: "remote: one task at a time, stale answers, re-issue", def: trip, remote: true, steps: []mstep{
			{name: "start", in: startIn(tripInput), records: []string{"event:start"}, tasks: 1},
			{name: "a stale answer", at: time.Second, in: input{kind: inDecision, envID: "d", pid: pid, result: &protocol.DecisionResult{TaskID: pid + "/7"}},
				drops: []string{DropStaleDecision}},
			{name: "a decision-timeout timer of an earlier engine (naming the outstanding task, whose id is pid/upto.<salt><count>): same task again", at: 30 * time.Second,
				in: input{kind: inDecisionTimeout, envID: "dt", pid: pid, timerID: "decision:" + pid + "/1.1#1"}, tasks: 1},
			{name: "an old decision timeout", at: 31 * time.Second,
				in: input{kind: inDecisionTimeout, envID: "dt", pid: pid, timerID: "decision:" + pid + "/1.1#1"}, drops: []string{DropStaleTimer}},
			{name: "answered (the payment's timeout is armed when it starts)", at: 32 * time.Second, answer: true, records: []string{"decision:running"},
				commands: []string{"payment/1"}},
			{name: "payment done", at: 33 * time.Second, in: resultIn("payment/1", true), records: []string{"event:result"}, tasks: 1},
			{name: "a timer meanwhile: pending with the result's task outstanding", at: 34 * time.Second, in: resultIn("payment/1", true),
				records: []string{"event:result"}},
			{name: "answered: the duplicate waits for the next task", at: 35 * time.Second, answer: true, records: []string{"decision:running"},
				commands: []string{"flight/1", "hotel/1"}, tasks: 1},
			{name: "answered: the duplicate is ignored", at: 36 * time.Second, answer: true, records: []string{"decision:running"},
				drops: []string{"duplicate_result"}},
		}},
		{name: "remote: terminate acts while a decision is outstanding", def: trip, remote: true, steps: []mstep{
			{name: "start", in: startIn(tripInput), records: []string{"event:start"}, tasks: 1},
			{name: "terminate: the outstanding task is abandoned for a new one", at: time.Second,
				in: eventIn("admin:t1", workflow.Event{Type: workflow.EventTerminate, Actor: "ops"}), records: []string{"event:terminate"}, tasks: 1},
			{name: "answered: terminated, no command sent", at: 2 * time.Second, answer: true, records: []string{"decision:terminated"}, finished: true},
			{name: "the abandoned task's answer is stale", at: 3 * time.Second,
				in: input{kind: inDecision, envID: "late", pid: pid, result: &protocol.DecisionResult{TaskID: pid + "/1"}}, drops: []string{DropStaleDecision}},
		}},
		{name: "heartbeats: not recorded, the newest folded when the heartbeat timeout is due", def: beat, steps: []mstep{
			{name: "start", in: startIn(`{}`), records: []string{"event:start", "decision:running"}, commands: []string{"long/1"}},
			{name: "started: the heartbeat timeout is the earliest deadline", at: time.Second, in: startedIn("long/1"),
				records: []string{"event:started", "decision:running"}, arm: []time.Duration{11 * time.Second}},
			{name: "a heartbeat: no record, no effect", at: 5 * time.Second, in: heartbeatIn("long/1")},
			{name: "another", at: 9 * time.Second, in: heartbeatIn("long/1")},
			{name: "the heartbeat timeout: the newest heartbeat (9s) is folded first and moves it", at: 11 * time.Second, in: wakeIn(11 * time.Second),
				records: []string{"event:heartbeat", "event:timer", "decision:running"}, arm: []time.Duration{19 * time.Second},
				drops: []string{string(workflow.IgnoreTimerNotPending)}},
			{name: "silence: the attempt fails (HeartbeatTimeout) and is retried", at: 19 * time.Second, in: wakeIn(19 * time.Second),
				records: []string{"event:timer", "decision:running"}, commands: []string{"long/2"}},
			{name: "attempt 1 was not dead: its success completes the step", at: 20 * time.Second, in: resultIn("long/1", true),
				records: []string{"event:result", "decision:completed"}, finished: true},
			{name: "attempt 2's answer: the same work", at: 21 * time.Second, in: resultIn("long/2", true), drops: []string{DropTerminal}},
			{name: "a heartbeat of a finished process", at: 22 * time.Second, in: heartbeatIn("long/2")},
		}},
		{name: "a broker outage: a timeout handed over late is re-armed, not acted on", def: trip, steps: []mstep{
			{name: "start", in: startIn(tripInput), records: []string{"event:start", "decision:running"}, commands: []string{"payment/1"}},
			{name: "payment started", in: startedIn("payment/1"), records: []string{"event:started", "decision:running"},
				arm: []time.Duration{30 * time.Second}},
			{name: "the broker was down from 10s to 89s: the 30s timer comes at 90s", at: 90 * time.Second, in: lateWakeIn(30*time.Second, 90*time.Second),
				records: []string{"event:timer", "decision:running"}, arm: []time.Duration{120 * time.Second}},
			{name: "the payment's result, published after the outage", at: 91 * time.Second, in: resultIn("payment/1", true),
				records: []string{"event:result", "decision:running"}, commands: []string{"flight/1", "hotel/1"}},
		}},
		{name: "a late success reopens a compensated process to undo it", def: trip, steps: []mstep{
			{name: "start", in: startIn(tripInput), records: []string{"event:start", "decision:running"}, commands: []string{"payment/1"}},
			{name: "the card is declined: compensated at once", at: time.Second, in: refused("payment/1"),
				records: []string{"event:result", "decision:compensated"}, finished: true},
			{name: "the same attempt succeeded on another worker: refunded", at: 2 * time.Second, in: resultIn("payment/1", true),
				records: []string{"event:result", "decision:compensating"}, commands: []string{"payment/compensate/1"}},
			{name: "refunded: compensated again", at: 3 * time.Second, in: resultIn("payment/compensate/1", true),
				records: []string{"event:result", "decision:compensated"}, finished: true},
			{name: "its duplicate is dropped", at: 4 * time.Second, in: resultIn("payment/1", true), drops: []string{DropTerminal}},
		}},
		{name: "a command too large for a message fails the process", def: trip, max: 64 << 10, steps: []mstep{
			{name: "start with a 100 KB input", in: startIn(`{"customer":"` + strings.Repeat("c", 100<<10) + `","amount":1}`),
				records: []string{"event:start", "failed"}, finished: true},
			{name: "then nothing more", at: time.Second, in: resultIn("payment/1", true), drops: []string{DropTerminal}},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := &machine{remote: tc.remote, seenLimit: 4, replyTo: "events", maxMessage: tc.max, obs: NopObserver{}}
			var img *image
			var all []Record
			var snaps []*image // the image after each step, as a snapshot would hold it
			var marks []int    // len(all) then
			var lastTask *protocol.DecisionTask
			for _, st := range tc.steps {
				now := t0.Add(st.at)
				fx := &effects{}
				switch {
				case st.answer:
					if lastTask == nil {
						t.Fatalf("%s: no task to answer", st.name)
					}
					d, err := workflow.Decide(tc.def, lastTask.State, lastTask.Events, now)
					if err != nil {
						t.Fatal(err)
					}
					m.accept(img, input{kind: inDecision, envID: "decision:" + lastTask.TaskID, pid: pid,
						result: &protocol.DecisionResult{TaskID: lastTask.TaskID, ProcessID: pid, Decision: &d, Now: now}}, now, fx)
				case img == nil:
					if st.in.kind != inStart {
						t.Fatalf("%s: the first input must be a start", st.name)
					}
					img = m.start(tc.def, 0, st.in, now, fx)
				default:
					m.accept(img, st.in, now, fx)
				}
				if tc.remote {
					if img.needsDecision() {
						m.issue(img, now, fx)
					}
				} else {
					m.decide(img, now, fx)
				}
				all = append(all, fx.records...)
				checkEffects(t, st, fx)
				snaps, marks = append(snaps, img.copyForTest()), append(marks, len(all))
				if n := len(fx.tasks); n > 0 {
					lastTask = &fx.tasks[n-1].task
				}
			}
			// A replay from any point where the live image could have been
			// snapshotted ends where the live image is: here, from the
			// image as it was after each step (outstanding included).
			for k := range snaps {
				re := snaps[k]
				for _, r := range all[marks[k]:] {
					if err := re.fold(r, nil); err != nil {
						t.Fatal(err)
					}
				}
				if re.seq != img.seq || (re.outstanding == nil) != (img.outstanding == nil) ||
					!reflect.DeepEqual(stateJSON(t, re.state), stateJSON(t, img.state)) {
					t.Errorf("replay from after step %d: seq %d outstanding %v, live: seq %d outstanding %v", k, re.seq, re.outstanding, img.seq, img.outstanding)
				}
			}
			// A replay of the records ends where the live image is.
			re := &image{pid: pid, def: tc.def}
			for _, r := range all {
				if err := re.fold(r, nil); err != nil {
					t.Fatal(err)
				}
			}
			if re.seq != img.seq || !reflect.DeepEqual(stateJSON(t, re.state), stateJSON(t, img.state)) {
				t.Errorf("replay: seq %d state %s\nlive: seq %d state %s", re.seq, stateJSON(t, re.state), img.seq, stateJSON(t, img.state))
			}
			if len(re.pending) != len(img.pending) {
				t.Errorf("replay: %d pending events, live %d", len(re.pending), len(img.pending))
			}
			// The timers a replay knows may be older than the live ones (a
			// wake with nothing due re-arms without a record); once
			// recovered, a timer is pending at or before the next deadline.
			last := t0.Add(tc.steps[len(tc.steps)-1].at)
			m.recoverTimers(re, last, &effects{})
			for _, x := range []*image{img, re} {
				if d := x.nextDeadline(); !d.IsZero() && (len(x.armed) == 0 || x.armed[0].After(d)) {
					t.Errorf("timers %v pending, the next deadline is %s", x.armed, d)
				}
			}
		})
	}
}

func stateJSON(t *testing.T, s *workflow.State) string {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func checkEffects(t *testing.T, st mstep, fx *effects) {
	t.Helper()
	var recs []string
	for _, r := range fx.records {
		switch r.Kind {
		case RecordEvent:
			recs = append(recs, "event:"+string(r.Event.Type))
		case RecordDecision:
			recs = append(recs, "decision:"+string(r.Status))
		default:
			recs = append(recs, r.Kind)
		}
	}
	var cmds []string
	for _, c := range fx.commands {
		cmds = append(cmds, strings.TrimPrefix(c.ID, pid+"/"))
	}
	var arm []time.Duration
	for _, a := range fx.arm {
		arm = append(arm, a.Sub(t0))
	}
	var drops []string
	for _, d := range fx.drops {
		drops = append(drops, d.reason)
	}
	for _, c := range []struct {
		what      string
		got, want any
	}{
		{"records", recs, st.records}, {"commands", cmds, st.commands}, {"armed", arm, st.arm}, {"drops", drops, st.drops},
		{"tasks", len(fx.tasks), st.tasks}, {"finished", fx.finished, st.finished},
	} {
		if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
			t.Errorf("%s: %s %v, want %v", st.name, c.what, c.got, c.want)
		}
	}
	for i, r := range fx.records {
		if i > 0 && r.Seq != fx.records[i-1].Seq+1 {
			t.Errorf("%s: records numbered %d after %d", st.name, r.Seq, fx.records[i-1].Seq)
		}
	}
}

// copyForTest is a copy of the image as a snapshot holds it.
func (img *image) copyForTest() *image {
	c := *img
	c.pending = slices.Clone(img.pending)
	c.seen, c.armed = slices.Clone(img.seen), slices.Clone(img.armed)
	if img.outstanding != nil {
		o := *img.outstanding
		c.outstanding = &o
	}
	return &c
}
