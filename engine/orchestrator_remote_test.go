package engine

import (
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/workflow"
)

// An outstanding task is issued again DecisionTimeout after its first
// issue, then after twice as long, four times as long...: a slow decider
// is not flooded with copies.
func TestReissueAt(t *testing.T) {
	const timeout = 30 * time.Second
	cases := []struct {
		name   string
		issued int
		want   time.Duration // after the first issue
	}{
		{name: "issued once", issued: 1, want: 30 * time.Second},
		{name: "issued twice", issued: 2, want: 90 * time.Second},
		{name: "three times", issued: 3, want: 210 * time.Second},
		{name: "an old snapshot without a count", issued: 0, want: 30 * time.Second},
		{name: "the backoff stops doubling", issued: 40, want: 65535 * timeout},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := reissueAt(&Outstanding{Issued: tc.issued, IssuedAt: t0}, timeout)
			if want := t0.Add(tc.want); !got.Equal(want) {
				t.Fatalf("reissueAt = %s after the first issue, want %s", got.Sub(t0), tc.want)
			}
		})
	}
}

// The sweep finds the outstanding tasks due again and the next batch
// issues them, identically and without a new slot or a timer; an answer
// that came meanwhile settles its task, and a process busy in an
// uncommitted batch waits for a later batch.
func TestSweepReissuesUnansweredTasks(t *testing.T) {
	trip := loadDef(t, "testdata/trip-booking.yaml")
	o := &Orchestrator{
		opts: OrchestratorOptions{DecisionTimeout: 10 * time.Second}, log: zerolog.Nop(),
		images: map[string]*image{}, slots: newSlots(8), busy: map[string]int{},
		m: machine{remote: true, seenLimit: 4, replyTo: "events", obs: NopObserver{}},
	}
	procs := map[string]time.Duration{"due": 0, "recent": 5 * time.Second, "busy": 0, "answered": 0}
	for p, issued := range procs {
		img := &image{pid: p, def: trip, pending: []PendingEvent{{Seq: 1}}}
		o.m.issue(img, t0.Add(issued), &effects{})
		o.images[p] = img
		o.slots.take(p)
	}
	o.busy["busy"] = 1
	o.images["answered"].outstanding = nil // its answer was applied after the sweep looked

	o.sweepDecisions(t0.Add(12 * time.Second))
	b := &batch{now: t0.Add(12 * time.Second), fx: map[*image]*effects{}}
	o.reissueDue(b, 10)
	issued := map[string]int{}
	for img, fx := range b.fx {
		for _, task := range fx.tasks {
			issued[img.pid] = task.issue
			if task.task.TaskID != img.outstanding.TaskID || !task.task.Now.Equal(img.outstanding.Now) {
				t.Errorf("%s: re-issued %+v, want the same task as %+v", img.pid, task.task, img.outstanding)
			}
		}
		if fx.issued || fx.released || len(fx.arm) > 0 {
			t.Errorf("%s: effects %+v, want the task only (no new slot, no timer)", img.pid, fx)
		}
	}
	if len(issued) != 1 || issued["due"] != 2 {
		t.Fatalf("issued again %v, want due (its 2nd issue) only", issued)
	}
	if len(o.slots.overdue) != 1 || o.slots.overdue[0] != "busy" {
		t.Fatalf("still overdue %v, want [busy]", o.slots.overdue)
	}
	// Once its batch committed, the busy one goes; the re-issued one is
	// not due again before 3 timeouts.
	delete(o.busy, "busy")
	b = &batch{now: t0.Add(13 * time.Second), fx: map[*image]*effects{}}
	o.reissueDue(b, 10)
	if fx := b.fx[o.images["busy"]]; fx == nil || len(fx.tasks) != 1 {
		t.Fatalf("busy: %+v, want its task issued again", fx)
	}
	o.sweepDecisions(t0.Add(14 * time.Second))
	if len(o.slots.overdue) != 0 {
		t.Fatalf("overdue at 14s %v, want none", o.slots.overdue)
	}
	// recent (issued at 5s) is due at 15s; the two re-issued at 30s.
	o.sweepDecisions(t0.Add(16 * time.Second))
	if len(o.slots.overdue) != 1 || o.slots.overdue[0] != "recent" {
		t.Fatalf("overdue at 16s %v, want [recent]", o.slots.overdue)
	}
}

// A status row is written when records may change it: not for event
// records alone (remote mode: the batch that issues a task), so that a
// remote decision costs one row, as an inline one does.
func TestRowChanges(t *testing.T) {
	ev := func(typ workflow.EventType) Record {
		return Record{Kind: RecordEvent, Event: &workflow.Event{Type: typ}}
	}
	cases := []struct {
		name    string
		records []Record
		want    bool
	}{
		{name: "none", want: false},
		{name: "a start: the first row", records: []Record{ev(workflow.EventStart)}, want: true},
		{name: "results waiting for their decision", records: []Record{ev(workflow.EventResult), ev(workflow.EventStarted)}, want: false},
		{name: "a signal waiting", records: []Record{ev(workflow.EventSignal)}, want: false},
		{name: "an event and its decision", records: []Record{ev(workflow.EventResult), {Kind: RecordDecision}}, want: true},
		{name: "a decision alone (remote answer)", records: []Record{{Kind: RecordDecision}}, want: true},
		{name: "rejected", records: []Record{{Kind: RecordRejected}}, want: true},
		{name: "failed", records: []Record{{Kind: RecordFailed}}, want: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := rowChanges(tc.records); got != tc.want {
				t.Fatalf("rowChanges = %v, want %v", got, tc.want)
			}
		})
	}
}
