package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pulsaga/pulsaga/bus"
)

// ErrPartitionLost: a batch touched a partition this instance no longer
// owns; the batch is aborted and its events go to the new owner.
var ErrPartitionLost = errors.New("partition ownership lost")

// ownership tracks which partitions of the events topic this instance is
// the active Failover consumer of, as the broker says (bus.PartitionOwner).
//
// The rules that keep a partition's images from being written by two
// instances at once:
//   - partitions this instance lost are dropped from memory at the next
//     batch, and a batch that touched one is aborted before it commits;
//   - a partition this instance gains is loaded from its snapshots only
//     TakeoverGrace after the broker first reported it as ours, so that the
//     previous owner has noticed the loss (it polls every OwnershipPoll) and
//     aborted its last batch;
//   - a transaction that acknowledges an event another instance acknowledged
//     too fails (Pulsar's pending-ack conflict), so each event takes effect
//     once.
type ownership struct {
	owner bus.PartitionOwner // nil: the bus cannot tell; this instance owns what it receives
	poll  time.Duration
	parts int // partitions of the events topic (0: not partitioned)

	mu    sync.Mutex
	view  map[int]bool
	since map[int]time.Time // when each owned partition was first seen owned
	err   error
}

func newOwnership(c bus.Consumer, poll time.Duration, parts int) *ownership {
	o := &ownership{poll: poll, parts: parts, since: map[int]time.Time{}}
	if po, ok := c.(bus.PartitionOwner); ok {
		o.owner = po
	}
	return o
}

// refresh asks the broker once.
func (w *ownership) refresh(ctx context.Context) {
	if w.owner == nil {
		return
	}
	view, err := w.owner.OwnedPartitions(ctx)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.err = err // keep the last view; a batch is not committed on an unknown view
		return
	}
	now := time.Now()
	for p := range view {
		if _, ok := w.since[p]; !ok {
			w.since[p] = now
		}
	}
	for p := range w.since {
		if !view[p] {
			delete(w.since, p)
		}
	}
	w.view, w.err = view, nil
}

// run polls until ctx ends.
func (w *ownership) run(ctx context.Context) {
	if w.owner == nil {
		return
	}
	w.refresh(ctx) // at once: loading a partition waits for the view, then the grace
	t := time.NewTicker(w.poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.refresh(ctx)
		}
	}
}

// owns says whether p is ours, and since when. Without a PartitionOwner
// every partition is ours since forever.
func (w *ownership) owns(p int) (bool, time.Time) {
	if w.owner == nil {
		return true, time.Time{}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.view == nil || w.err != nil {
		return false, time.Time{}
	}
	since, ok := w.since[p]
	return ok && w.view[p], since
}

// errOwnershipUnknown: the broker has not said yet which partitions are
// this instance's (no answer yet, or the last question failed).
var errOwnershipUnknown = errors.New("partition ownership not known yet")

// owned returns the partitions this instance owns and since when. Without
// a PartitionOwner every partition of the topic is ours since forever.
func (w *ownership) owned() (map[int]time.Time, error) {
	if w.owner == nil {
		out := map[int]time.Time{}
		for p := range max(w.parts, 1) {
			out[p] = time.Time{}
		}
		return out, nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return nil, fmt.Errorf("%w: %w", errOwnershipUnknown, w.err)
	}
	if w.view == nil {
		return nil, errOwnershipUnknown
	}
	out := make(map[int]time.Time, len(w.since))
	for p, t := range w.since {
		if w.view[p] {
			out[p] = t
		}
	}
	return out, nil
}
