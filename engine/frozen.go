package engine

import (
	"fmt"
	"time"

	"github.com/pulsaga/pulsaga/workflow"
)

// Idle images are kept encoded. A process that waits (for a signal, a
// timer, a worker's result) or has finished costs, decoded, its state —
// steps, runs, attempts, JSON values as Go values — several kilobytes of
// pointers. Once an image has been idle for SnapshotAfter, has no pending
// event, no decision in flight and is covered by its last snapshot, the
// loop freezes it: the image keeps its identity (pid, definition,
// partition, sequence) and holds its snapshot encoding (codec.go: protobuf,
// the state zstd-compressed) instead of its decoded fields. Any input for
// it thaws it first (route), so the state machine only ever sees live
// images. See docs/architecture.md, "Memory".

// frozenImage is what a frozen image keeps besides its identity.
type frozenImage struct {
	// snap is the image's snapshot encoding.
	snap []byte
	// ended: the process had finished when it was frozen, at endedAt.
	ended   bool
	endedAt time.Time
}

// freezeBatch bounds the images queued for freezing per sweep (a second).
const freezeBatch = 4096

// Freezing budgets: how long the loop spends freezing queued images per
// iteration. An image takes ~50–100 µs to encode (its state is
// zstd-compressed); a second's worth of sagas finishing at 550/s took the
// loop 16–61 ms in one piece, once a second, and every input waiting then
// waited that much longer (session 8: a latency bump once a second in the
// open loop's arrivals). So the sweep only queues the images, and the loop
// freezes a few per iteration: little while it has inputs or flights, more
// when it has nothing else to do.
const (
	freezeBudgetBusy = time.Millisecond
	freezeBudgetIdle = 25 * time.Millisecond
)

// freezable says whether img can be frozen now.
func (o *Orchestrator) freezable(img *image, now time.Time) bool {
	return img.frozen == nil && o.busy[img.pid] == 0 && img.seq == img.covered && len(img.pending) == 0 && img.outstanding == nil &&
		now.Sub(img.touched) >= o.opts.SnapshotAfter && o.parts.loaded[img.partition] && img.canFreeze()
}

// queueFreezes queues the warm images idle since SnapshotAfter (the
// sweep, once a second), at most freezeBatch; the queue is rebuilt each
// time, so an image left over from the last sweep is queued again only if
// it is still freezable.
func (o *Orchestrator) queueFreezes(now time.Time) {
	clear(o.freezeQ)
	o.freezeQ = o.freezeQ[:0]
	for img := range o.warm {
		if len(o.freezeQ) >= freezeBatch {
			return
		}
		if o.images[img.pid] != img {
			delete(o.warm, img)
			continue
		}
		if o.freezable(img, now) {
			o.freezeQ = append(o.freezeQ, img)
		}
	}
}

// freezeQueued freezes queued images until budget is spent (at least one
// image per call), checking each again: it may have been touched since it
// was queued.
func (o *Orchestrator) freezeQueued(now time.Time, budget time.Duration) {
	start := time.Now()
	for len(o.freezeQ) > 0 {
		img := o.freezeQ[len(o.freezeQ)-1]
		o.freezeQ[len(o.freezeQ)-1] = nil
		o.freezeQ = o.freezeQ[:len(o.freezeQ)-1]
		if o.images[img.pid] != img || !o.freezable(img, now) {
			continue
		}
		if err := o.freeze(img); err != nil {
			o.log.Error().Err(err).Str("process_id", img.pid).Msg("image not frozen")
		}
		if time.Since(start) >= budget {
			return
		}
	}
}

// freeze replaces img's decoded fields by their encoding.
func (o *Orchestrator) freeze(img *image) error {
	b := img.lastSnap // (its last snapshot's bytes, when nothing changed it since)
	if b == nil {
		snap := img.snapshot()
		var err error
		if b, err = encodeSnapshot(&snap); err != nil {
			return err
		}
	}
	img.lastSnap = nil
	img.frozen = &frozenImage{snap: b, ended: img.terminal()}
	if img.frozen.ended {
		img.frozen.endedAt = img.state.EndedAt
	}
	img.state, img.stateZ, img.pending, img.outstanding, img.seen, img.armed, img.historyIDs = nil, nil, nil, nil, nil, nil, nil
	delete(o.warm, img)
	return nil
}

// live thaws img if it is frozen; false: it could not be decoded (a bug:
// it was encoded by this process), logged.
func (o *Orchestrator) live(img *image) bool {
	if img.frozen == nil {
		return true
	}
	if err := img.thaw(); err != nil {
		o.log.Error().Err(err).Str("process_id", img.pid).Msg("frozen image cannot be thawed")
		return false
	}
	o.warm[img] = struct{}{}
	return true
}

// thaw decodes a frozen image's fields.
func (img *image) thaw() error {
	s, err := DecodeSnapshot(img.frozen.snap)
	if err == nil && (s.ProcessID != img.pid || s.Seq != img.seq) {
		err = fmt.Errorf("the encoding holds %s at %d", s.ProcessID, s.Seq)
	}
	if err != nil {
		return err
	}
	img.state, img.stateZ, img.pending, img.outstanding, img.seen, img.armed, img.historyIDs =
		s.State, s.StateZstd, s.Pending, s.Outstanding, s.Seen, s.Armed, s.HistoryIDs
	img.frozen = nil
	return nil
}

// loadFrozen is the image of a snapshot read at load, kept encoded when it
// can be (nil: decode it whole): a process that waits, with a physical
// timer still to come for its earliest deadline, or finished.
func loadFrozen(payload []byte, def func(string, int) (*workflow.Definition, error), now time.Time) (*image, error) {
	h, ok := peekSnapshot(payload)
	if !ok || h.busy {
		return nil, nil
	}
	ended := h.status.Terminal()
	if !ended && !h.nextDeadline.IsZero() {
		covered := false // the rule of image.timersToRecover
		for _, a := range h.armed {
			if a.After(now) && !a.After(h.nextDeadline) {
				covered = true
			}
		}
		if !covered {
			return nil, nil
		}
	}
	d, err := def(h.definition, h.version)
	if err != nil {
		return nil, fmt.Errorf("load process %s: %w", h.pid, err)
	}
	img := &image{pid: h.pid, def: d, partition: h.partition, createdAt: h.createdAt, seq: h.seq, covered: h.seq,
		frozen: &frozenImage{snap: payload, ended: ended}}
	if ended {
		img.frozen.endedAt = h.endedAt
	}
	return img, nil
}

// ImageCounts are the processes an orchestrator holds in memory: Images in
// all, Frozen of them kept encoded, Finished of them waiting for the end of
// their retention.
type ImageCounts struct{ Images, Frozen, Finished int }

// Images returns the image counts as of the last sweep (once a second). It
// is safe to call from any goroutine.
func (o *Orchestrator) Images() ImageCounts {
	o.statsMu.Lock()
	defer o.statsMu.Unlock()
	return o.imageCounts
}

func (o *Orchestrator) publishImages() {
	c := ImageCounts{Images: len(o.images), Frozen: len(o.images) - len(o.warm), Finished: o.retention.n}
	o.statsMu.Lock()
	o.imageCounts = c
	o.statsMu.Unlock()
}

// ended says whether the process has finished, frozen or not.
func (img *image) ended() bool {
	if img.frozen != nil {
		return img.frozen.ended
	}
	return img.terminal()
}

// canFreeze: nothing of the image lives outside its snapshot.
func (img *image) canFreeze() bool { return true }
