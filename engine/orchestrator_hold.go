package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/pulsaga/pulsaga/bus"
)

// Held processes (remote decider mode, OrchestratorOptions.AnswerWait).
//
// A remote decision used to take two flights: the batch that received a
// process's events recorded them and issued the task, and a later batch
// applied the answer — two transactions' worth of work and two history
// entries per decision where the inline mode has one (docs/benchmarks.md,
// session 16). Now the processes a batch issues tasks to are taken out of
// it, with their records, effects and inputs, into a held batch; their
// tasks are sent at once and the rest of the batch launches as before.
// The answers arrive on the events topic like any input and wait, parked,
// as every input of a busy process does. Once each held process has an
// input waiting (its answer, normally) or AnswerWait is over, the held
// batch takes those processes' parked inputs in order, applies them — an
// answer's decision joins the events it decides in the same records and
// the same transaction — and launches as any batch, ahead of new ones. An
// answer later than the wait is applied by a later batch, as before. The
// processes a batch holds while one is held already join that one.
//
// Nothing changes for a crash: the held batch is one transaction, sent
// only when it launches; its tasks went out before it commits, as every
// batch's do (sendTasks), and an answer to a task of a batch that never
// committed is stale by its task id. The loop launches the held batch at
// once, whatever its answers, before it deals with a failed flight or with
// a change of the ownership of one of the held batch's partitions: the
// held batch then goes the way of a flight on its way at that moment
// (aborted when it shares a partition with the failure,
// orchestrator_reset.go).

// DefaultAnswerWait is OrchestratorOptions.AnswerWait's default. A
// decider answers in ~10 ms on an idle machine, in 60–130 ms at the
// maximum load of a two-core one (a held batch's answers, measured at 1,000
// trip sagas in flight): long enough for most of those, and only a late
// answer's process waits it all (docs/benchmarks.md, session 16).
const DefaultAnswerWait = 100 * time.Millisecond

// heldBatch is a batch waiting for the answers to the tasks it issued.
type heldBatch struct {
	b     *batch
	tasks *taskSends // its tasks, sent when it was held
	// waiting are the processes it issued a task to; arrived, those with
	// an input parked since.
	waiting, arrived map[string]bool
	deadline         time.Time
	// epochs are the reset counts of its processes' partitions when they
	// were held (orchestrator_reset.go): a partition reset or lost since
	// makes the held batch stale (launchHeld).
	epochs map[int]uint64
}

// hold takes the processes b issues tasks to out of b into the held
// batch (a new one, or the one held already), when the mode and the
// options say so: their tasks are sent now and they are busy until the
// held batch launches. b keeps the rest, to launch now.
func (o *Orchestrator) hold(ctx context.Context, b *batch) error {
	if !o.m.remote || o.opts.AnswerWait <= 0 {
		return nil
	}
	h := o.held
	if h != nil && h.b.units+len(h.b.touched) >= o.adapt.limit() {
		return nil // full (adaptive.go): these answers take a later batch
	}
	deleted := map[*image]bool{}
	for _, img := range b.deleted {
		deleted[img] = true // (expired in b: not to be written again)
	}
	waiting := map[string]bool{}
	for _, img := range b.touched {
		if fx := b.fx[img]; len(fx.tasks) > 0 && !deleted[img] {
			waiting[img.pid] = true
		}
	}
	if len(waiting) == 0 {
		return nil
	}
	if h == nil {
		h = &heldBatch{
			b:       &batch{now: b.now, fx: map[*image]*effects{}, parts: map[int]bool{}, swept: map[*image]bool{}},
			waiting: map[string]bool{}, arrived: map[string]bool{}, deadline: time.Now().Add(o.opts.AnswerWait),
			epochs: map[int]uint64{},
		}
	}
	hb := h.b
	keep := b.touched[:0]
	for _, img := range b.touched {
		if !waiting[img.pid] {
			keep = append(keep, img)
			continue
		}
		fx := b.fx[img]
		delete(b.fx, img)
		if err := o.taskMessages(hb, img, fx); err != nil {
			return err
		}
		o.settleSlot(img, fx)
		hb.fx[img] = fx
		hb.touched = append(hb.touched, img)
		hb.units += 1 + len(fx.tasks)
		if _, ok := h.epochs[img.partition]; !ok {
			h.epochs[img.partition] = o.parts.epoch[img.partition]
		}
		if b.swept[img] {
			hb.swept[img] = true
		}
		hb.parts[img.partition] = true
		h.waiting[img.pid] = true
		o.busy[img.pid]++
	}
	clear(b.touched[len(keep):])
	b.touched = keep
	// The inputs go with their processes (not those forwarded to another
	// partition: acknowledged with the forwarding message's send).
	acks := b.acks[:0]
	clear(b.parts)
	for _, m := range b.acks {
		if waiting[m.Key] && o.homePartition(m.Key) == m.Partition {
			hb.acks = append(hb.acks, m)
			hb.parts[m.Partition] = true
			hb.units++
			b.units--
			continue
		}
		acks = append(acks, m)
		b.parts[m.Partition] = true
	}
	clear(b.acks[len(acks):])
	b.acks = acks
	for _, img := range b.deleted {
		b.parts[img.partition] = true
	}
	tasks := o.sendTasks(ctx, hb.tasks)
	hb.tasks = nil
	h.tasks = tasks.after(h.tasks)
	o.held = h
	return nil
}

// heldInput notes that an input of process pid was parked.
func (o *Orchestrator) heldInput(pid string) {
	if h := o.held; h != nil && h.waiting[pid] && !h.arrived[pid] {
		h.arrived[pid] = true
		// From nine in ten on, the rest get stragglerWait more: the first
		// such arrival moves the deadline, later ones cannot move it later.
		if n := len(h.arrived); n < len(h.waiting) && n*10 >= len(h.waiting)*9 {
			if soon := time.Now().Add(stragglerWait); soon.Before(h.deadline) {
				h.deadline = soon
			}
		}
	}
}

// heldReady: every process of the held batch has an input waiting, or the
// wait is over; and a flight may launch.
func (o *Orchestrator) heldReady(now time.Time) bool {
	h := o.held
	return h != nil && o.inflight < o.opts.MaxInFlight && (len(h.arrived) == len(h.waiting) || !now.Before(h.deadline))
}

// stragglerWait is how long a held batch waits for its last answers once
// nine in ten have come: one slow answer would otherwise hold every other
// process of the batch until AnswerWait is over (the remote p50 at a
// quarter of the maximum load rose by a third: docs/benchmarks.md, session
// 16). A process whose answer is later takes the old way.
const stragglerWait = 10 * time.Millisecond

// heldAtRisk: the broker's view of ownership, when known, no longer has one
// of the held batch's partitions as it was loaded (reconcile would drop it).
func (o *Orchestrator) heldAtRisk() bool {
	if o.held == nil {
		return false
	}
	owned, err := o.own.owned()
	if err != nil {
		return false // (reconcile changes nothing on an unknown view)
	}
	for p := range o.held.b.parts {
		if !o.ownedAsLoaded(owned, p) {
			return true
		}
	}
	return false
}

// launchHeld applies the inputs parked for the held batch's processes
// (their answers) in it and launches it.
func (o *Orchestrator) launchHeld(ctx context.Context, p *pipe) (bool, error) {
	h := o.held
	o.held = nil
	b := h.b
	if e := o.log.Debug(); e.Enabled() {
		e.Int("waiting", len(h.waiting)).Int("answered", len(h.arrived)).
			Dur("waited", o.opts.AnswerWait-time.Until(h.deadline)).Msg("held batch launched")
	}
	if now := o.opts.Clock().UTC(); now.After(b.now) {
		b.now = now // (the answers are applied now: their records say so)
	}
	for _, img := range b.touched {
		if o.busy[img.pid]--; o.busy[img.pid] <= 0 {
			delete(o.busy, img.pid)
		}
	}
	if o.heldStale(h) {
		// A partition of its processes was reset or lost since they were
		// held (reconcile can drop one between heldAtRisk and here): the
		// held batch goes the way of a failed flight — its inputs come
		// again, its partitions still owned are loaded again.
		o.resetAfter(ctx, flightResult{f: &flight{b: b}, err: fmt.Errorf("%w: a partition of a held batch was reset", ErrPartitionLost)})
		return false, nil
	}
	msgs := o.takeOf(h.waiting)
	b.units += len(msgs)
	o.routeAll(ctx, b, msgs)
	o.decideTouched(b)
	o.issueQueued(b, o.adapt.limit()-b.units)
	o.issueTouched(b)
	return o.finishBatch(ctx, b, p, h.tasks)
}

// heldStale: one of the held processes' images is no longer the live one
// (its partition reset, lost or reloaded since it was held).
func (o *Orchestrator) heldStale(h *heldBatch) bool {
	for p, e := range h.epochs {
		if !o.parts.loaded[p] || o.parts.epoch[p] != e {
			return true
		}
	}
	for _, img := range h.b.touched {
		if o.images[img.pid] != img {
			return true
		}
	}
	return false
}

// takeOf takes the parked inputs of the processes pids of loaded
// partitions, in order.
func (o *Orchestrator) takeOf(pids map[string]bool) []*bus.Message {
	var out []*bus.Message
	for p := range o.parts.parked {
		if o.parts.loaded[p] && !o.rewinding(p) {
			out = o.takeParked(p, out, func(m *bus.Message, _ int) bool { return pids[m.Key] })
		}
	}
	return out
}
