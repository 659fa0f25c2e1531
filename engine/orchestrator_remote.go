package engine

import "time"

// Decision tasks nobody answers (remote decider mode).
//
// A task has no timer of its own. The batch that issues it commits only
// once it is sent (sendTasks), so it is never lost on its way to the
// deciders;
// a decider acknowledges it only once its answer is sent, and a decider
// that dies first gives it back (the broker delivers it to another
// decider). What is left is a decider that takes a task and never answers
// nor dies (a bug, or a process frozen with the task): once a second the
// orchestrator's sweep looks at its outstanding tasks (at most
// MaxOutstanding) and issues again, identically, each one unanswered since
// its re-issue time (reissueAt: DecisionTimeout after the first issue,
// then after twice as long, ...). The first answer to come is applied, the
// other one is stale. This costs no message while the deciders answer; a
// timer per task cost three (the timer, its relay to the events topic, and
// the stale input the orchestrator dropped after the answer).

// sweepDecisions lists the outstanding tasks due to be issued again; the
// next batches issue them (reissueDue).
func (o *Orchestrator) sweepDecisions(now time.Time) {
	if !o.m.remote {
		return
	}
	o.slots.overdue = o.slots.overdue[:0]
	for pid := range o.slots.inflight {
		img := o.images[pid]
		if img == nil || img.outstanding == nil || now.Before(reissueAt(img.outstanding, o.opts.DecisionTimeout)) {
			continue
		}
		o.slots.overdue = append(o.slots.overdue, pid)
	}
}

// reissueDue issues again, in batch b, the overdue tasks of processes not
// busy in an uncommitted batch, at most room of them; the others wait for
// a later batch. It runs after the batch's inputs were applied (an answer
// in this batch settles its task).
func (o *Orchestrator) reissueDue(b *batch, room int) {
	keep := o.slots.overdue[:0]
	for _, pid := range o.slots.overdue {
		img := o.images[pid]
		switch {
		case img == nil || img.outstanding == nil || !o.live(img) || b.now.Before(reissueAt(img.outstanding, o.opts.DecisionTimeout)):
		case room <= 0 || (o.busy[pid] > 0 && b.fx[img] == nil):
			keep = append(keep, pid)
		default:
			o.m.reissue(img, b.now, b.effects(img))
			room--
			b.units++
		}
	}
	clear(o.slots.overdue[len(keep):])
	o.slots.overdue = keep
}
