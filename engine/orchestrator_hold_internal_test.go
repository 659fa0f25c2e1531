package engine

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/memory"
	"github.com/pulsaga/pulsaga/protocol"
)

// hold takes the processes a batch issues tasks to out of it, with their
// effects and inputs (not an input forwarded to another partition, nor a
// process the batch expires), and keeps the rest; a full held batch takes
// no more; a held batch whose partition was reset or lost since is stale.
func TestHoldSplitsTheBatch(t *testing.T) {
	trip := loadDef(t, "testdata/trip-booking.yaml")
	mb := memory.New(memory.Options{})
	defer mb.Close()
	decisions, err := mb.Producer(context.Background(), bus.ProducerOptions{Topic: "decisions"})
	if err != nil {
		t.Fatal(err)
	}
	newOrch := func() *Orchestrator {
		o := &Orchestrator{decisions: decisions,
			opts: OrchestratorOptions{AnswerWait: time.Second, Topics: protocol.Topics{Partitions: 4}}, log: zerolog.Nop(),
			images: map[string]*image{}, slots: newSlots(8), busy: map[string]int{}, parts: newPartitions(),
			adapt: newAdaptive(256, 10*time.Second),
			m:     machine{remote: true, seenLimit: 4, replyTo: "events", obs: NopObserver{}},
		}
		o.parts.loaded[0], o.parts.loaded[1], o.parts.loaded[2], o.parts.loaded[3] = true, true, true, true
		return o
	}
	img := func(o *Orchestrator, pid string) *image {
		i := &image{pid: pid, def: trip, partition: bus.KeyPartition(pid, 4), pending: []PendingEvent{{Seq: 1}}, seq: 1}
		o.images[pid] = i
		return i
	}
	msg := func(pid string, partition int) *bus.Message {
		return &bus.Message{Key: pid, Partition: partition, ID: bus.MessageID(pid + "@" + string(rune('0'+partition)))}
	}
	o := newOrch()
	task, plain, expired := img(o, "task"), img(o, "plain"), img(o, "expired")
	b := &batch{now: t0, fx: map[*image]*effects{}, parts: map[int]bool{}, swept: map[*image]bool{}}
	for _, i := range []*image{task, plain, expired} {
		fx := b.effects(i)
		fx.records = append(fx.records, Record{Kind: RecordEvent, Seq: 1})
		if i != plain {
			o.m.issue(i, t0, fx)
		}
	}
	b.deleted = []*image{expired}
	home := bus.KeyPartition("task", 4)
	elsewhere := (home + 1) % 4
	taskIn, forwarded, plainIn := msg("task", home), msg("task", elsewhere), msg("plain", plain.partition)
	b.acks = []*bus.Message{taskIn, forwarded, plainIn}
	b.units = 3
	if err := o.hold(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	h := o.held
	if h == nil || len(h.b.touched) != 1 || h.b.touched[0] != task || !h.waiting["task"] {
		t.Fatalf("held %+v, want the process with a task only", h)
	}
	if len(h.b.acks) != 1 || h.b.acks[0] != taskIn {
		t.Fatalf("held inputs %v, want the task process's own input only", h.b.acks)
	}
	if len(b.touched) != 2 || b.fx[task] != nil || len(b.acks) != 2 || b.acks[0] != forwarded || b.acks[1] != plainIn {
		t.Fatalf("the rest: touched %v, inputs %v", b.touched, b.acks)
	}
	if o.busy["task"] != 1 || o.busy["plain"] != 0 || !o.slots.inflight["task"] || len(h.b.fx[task].tasks) != 0 || o.held.b.fx[task].issued {
		t.Fatalf("busy %v, slots %v, fx %+v: want task busy, its slot taken and settled", o.busy, o.slots.inflight, h.b.fx[task])
	}
	// (the rest's partitions: its inputs' and its expired process's)
	want := map[int]bool{elsewhere: true, plain.partition: true, expired.partition: true}
	if len(b.parts) != len(want) {
		t.Fatalf("the rest's partitions %v, want %v", b.parts, want)
	}
	for p := range want {
		if !b.parts[p] {
			t.Fatalf("the rest's partitions %v, want %v", b.parts, want)
		}
	}
	if !h.b.parts[home] || len(h.b.parts) != 1 {
		t.Fatalf("held partitions %v, want [%d]", h.b.parts, home)
	}
	if o.heldStale(h) {
		t.Fatal("a fresh held batch is stale")
	}

	// Full: the next batch's processes are not held.
	h.b.units = o.adapt.limit()
	b2 := &batch{now: t0, fx: map[*image]*effects{}, parts: map[int]bool{}, swept: map[*image]bool{}}
	other := img(o, "other")
	o.m.issue(other, t0, b2.effects(other))
	if err := o.hold(context.Background(), b2); err != nil {
		t.Fatal(err)
	}
	if len(b2.touched) != 1 || h.waiting["other"] {
		t.Fatalf("a full held batch took more: %v", h.waiting)
	}

	// Stale: its partition reset, or its image replaced.
	o.parts.epoch[task.partition]++
	if !o.heldStale(h) {
		t.Fatal("held batch of a reset partition is not stale")
	}
	o.parts.epoch[task.partition]--
	o.images["task"] = &image{pid: "task"}
	if !o.heldStale(h) {
		t.Fatal("held batch of a replaced image is not stale")
	}
}

// A process taken out of turn (unqueue) keeps no place in the queue.
func TestSlotsUnqueue(t *testing.T) {
	s := newSlots(8)
	for _, p := range []string{"a", "b", "c"} {
		s.enqueue(p)
	}
	s.unqueue("b")
	var got []string
	for {
		p, ok := s.pop()
		if !ok {
			break
		}
		got = append(got, p)
	}
	if len(got) != 2 || got[0] != "a" || got[1] != "c" || s.waiting() {
		t.Fatalf("popped %v, want [a c] and none waiting", got)
	}
}

// A held batch waits all of AnswerWait only for its first nine answers in
// ten: once nine in ten of its processes have an input, the rest get
// stragglerWait more; each process counts once.
func TestHeldBatchStragglers(t *testing.T) {
	o := &Orchestrator{opts: OrchestratorOptions{AnswerWait: time.Minute, MaxInFlight: 2}}
	far := time.Now().Add(time.Minute)
	o.held = &heldBatch{waiting: map[string]bool{}, arrived: map[string]bool{}, deadline: far}
	for i := range 20 {
		o.held.waiting[string(rune('a'+i))] = true
	}
	for i := range 17 {
		o.heldInput(string(rune('a' + i)))
		o.heldInput(string(rune('a' + i))) // (a second input of the same process)
	}
	o.heldInput("not held")
	if !o.held.deadline.Equal(far) || o.heldReady(time.Now()) {
		t.Fatalf("17 of 20 arrived: deadline moved to %s, ready %v", o.held.deadline, o.heldReady(time.Now()))
	}
	o.heldInput("r") // 18 of 20: nine in ten
	if d := time.Until(o.held.deadline); d > stragglerWait || d <= 0 {
		t.Fatalf("18 of 20 arrived: deadline in %s, want within %s", d, stragglerWait)
	}
	if o.heldReady(time.Now()) || !o.heldReady(time.Now().Add(stragglerWait)) {
		t.Fatal("ready before the stragglers' wait, or not after it")
	}
	o.heldInput("s")
	o.heldInput("t")
	if !o.heldReady(time.Now()) {
		t.Fatal("every answer in, not ready")
	}
}
