package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/pulsaga/pulsaga/bus"
)

// Resetting partitions after a failed flight.
//
// A flight that fails does not restart the subscription — whether one of
// its partitions was lost (the broker gave it to another instance) or
// fenced (another instance took its streams over), or its transaction
// timed out, lost its connection, or conflicted with a deposed owner's.
// Closing the consumer would hand every partition of this instance to the
// others, which would fence and load them only to lose them again when it
// subscribes anew (Failover gives partition i back to consumer i mod n): a
// ping-pong that made takeovers take tens of seconds on a loaded machine.
// Instead, once the flights already on their way that share a partition
// with it have been aborted with it (the committer aborts those of the
// failed one's generation), the loop asks the broker which partitions are
// its, then:
//
//   - drops every partition of the flight the broker no longer reports as
//     this instance's (lose: its parked inputs go back to the broker);
//   - reloads every partition of which the flight changed an image in
//     memory (its images are ahead of what was committed; it also gets a
//     new term, and the load fences out and ends what the flight left),
//     and every partition of a fenced flight (its term may be over);
//   - waits, for each partition it keeps, for the flight's inputs to come
//     back: the aborted transaction gave them back to the broker, which
//     delivers them again after the inputs the consumer had received
//     already (a Failover subscription rewinds to the first unacknowledged
//     message; the bus drops the copies of what this instance still holds).
//     Meanwhile the partition's inputs are parked; when the last is back,
//     they are put back in their first arrival order — their order in the
//     partition — so that a process never sees an input before an earlier
//     one (a start after the signal that followed it would drop the
//     signal). Inputs that do not come back within TxTimeout (a transaction
//     whose end the broker learnt only after the rewind: its inputs stay
//     unacknowledged until the partition is rewound again) make the
//     orchestrator start its subscription over, which delivers them again
//     (errInputsNotBack).
//
// Failures not caused by ownership that repeat (maxResetsInARow without a
// commit) still end the loop: the orchestrator starts over with fresh
// producers and subscription, as every failure did before.
//
// Exactly-once is unchanged: the aborted flights' effects never took
// effect, the reloaded images are read from what was committed, and a
// deposed owner's writes still fail on the fenced terms.

// errInputsNotBack: inputs of a failed batch did not come back from the
// broker within TxTimeout.
var errInputsNotBack = errors.New("inputs of a failed batch did not come back")

// errAbortedAfterFailure: a flight was aborted because an earlier flight
// of its generation failed.
var errAbortedAfterFailure = errors.New("aborted after an earlier batch failed")

// ownershipFailure says whether a failed flight failed because of its
// partitions' ownership: lost, fenced, reset under it, or aborted with an
// earlier flight that failed (whose cause was dealt with already).
func (o *Orchestrator) ownershipFailure(r flightResult) bool {
	switch {
	case errors.Is(r.err, errAbortedAfterFailure) && r.f.b.gen < o.gen:
		return true
	case errors.Is(r.err, ErrPartitionLost), errors.Is(r.err, bus.ErrFenced):
		return true
	}
	for p, e := range r.f.b.epochs {
		if o.parts.epoch[p] != e {
			return true // a partition of the flight was reset under it
		}
	}
	return false
}

// maxResetsInARow bounds the failures of other causes (a transaction timed
// out, a connection closed under a send, a conflict with a deposed owner's
// transaction) handled by resetting partitions without a batch committed
// in between: after that many, the orchestrator starts over with fresh
// producers and a fresh subscription.
const maxResetsInARow = 3

// refreshWait bounds the question to the broker of a reset: unanswered,
// the view is unknown and no partition is loaded until it is known.
const refreshWait = 2 * time.Second

// resetAfter deals with a flight that failed because of its partitions:
// see the comment at the top of this file.
func (o *Orchestrator) resetAfter(ctx context.Context, r flightResult) {
	b := r.f.b
	o.gen++
	fenced := errors.Is(r.err, bus.ErrFenced)
	if !errors.Is(r.err, ErrPartitionLost) && !errors.Is(r.err, errAbortedAfterFailure) {
		// A new owner may have fenced or ended the flight before this
		// instance heard of it: ask the broker whose the partitions are
		// before loading any again (a stale view would take a partition
		// back from its new owner). (Not again for the flights aborted
		// with a failure dealt with just now.)
		rctx, cancel := context.WithTimeout(ctx, refreshWait)
		o.own.refresh(rctx)
		cancel()
	}
	owned, err := o.own.owned()
	if err != nil {
		owned = nil // unknown: lose nothing now, reload what must be (reconcile loads only what the broker says is ours)
	}
	isOwned := func(p int) bool {
		if owned == nil {
			return true
		}
		_, ok := owned[p]
		return ok
	}
	reload := map[int]bool{}
	for _, img := range slices.Concat(b.touched, b.deleted) {
		if o.images[img.pid] == img {
			reload[img.partition] = true
		}
	}
	for p := range b.parts {
		if fenced {
			reload[p] = true
		}
	}
	var lost, reloaded []int
	for p := range reload {
		switch {
		case !o.parts.loaded[p]:
		case !isOwned(p):
			o.lose(p)
			lost = append(lost, p)
		default:
			o.unload(p)
			reloaded = append(reloaded, p)
		}
	}
	cause := fmt.Errorf("orchestrator batch failed: %w", r.err)
	back := 0
	for _, m := range b.acks {
		n, held := o.parts.seq[m]
		delete(o.parts.seq, m)
		// Given back to the broker (the bus does it when the transaction
		// acknowledging it aborts; not begun or not acknowledged yet: here).
		o.cons.Nack(m, cause)
		if held && isOwned(m.Partition) && !slices.Contains(lost, m.Partition) {
			o.expectBack(m, n)
			back++
		}
	}
	slices.Sort(lost)
	slices.Sort(reloaded)
	o.log.Info().Err(r.err).Ints("lost", lost).Ints("reloaded", reloaded).Int("inputs_to_come_back", back).
		Int("processes", len(b.touched)).Msg("batch not committed: its partitions are reset, the subscription is kept")
}

// expectBack makes m's partition wait for m (an input of a failed batch,
// whose first arrival number was n) to come back.
func (o *Orchestrator) expectBack(m *bus.Message, n uint64) {
	p := m.Partition
	if o.parts.rewind[p] == nil {
		o.parts.rewind[p] = map[string]uint64{}
		o.parts.rewindSince[p] = time.Now()
	}
	o.parts.rewind[p][string(m.ID)] = n
}

// rewound ends p's wait for inputs of failed batches, all back: its parked
// inputs go back to their first arrival order.
func (o *Orchestrator) rewound(p int) {
	delete(o.parts.rewind, p)
	delete(o.parts.rewindSince, p)
	slices.SortStableFunc(o.parts.parked[p], func(x, y *bus.Message) int {
		a, b := o.parts.seq[x], o.parts.seq[y]
		switch {
		case a < b:
			return -1
		case a > b:
			return 1
		}
		return 0
	})
}
