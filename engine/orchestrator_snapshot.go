package engine

import (
	"slices"
	"time"

	"github.com/pulsaga/pulsaga/bus"
)

// Deltas and snapshots. A batch appends to the history topic one entry per
// process it gave records to (HistoryEntry), and nothing else per process
// but its status row. A process's memory image is snapshotted (the
// compacted snapshots topic, keyed by process id) only every SnapshotEvery
// records, or once it has been idle for SnapshotAfter with records its last
// snapshot does not cover (the sweep). Loading a partition reads its
// snapshots and replays the history from the partition's checkpoint on,
// through image.fold, the code of the live path.
//
// The checkpoint of partition p (key CheckpointKey on snapshots partition p)
// says where that replay starts: the first history entry of the oldest
// batch that wrote records no snapshot covers yet. Each image remembers the
// batch of its first uncovered entry (image.since); each partition, the
// position of the first entry every batch wrote to it. A batch that
// snapshots processes writes the partition's checkpoint in the same
// transaction when it moves on (at most once per second per partition).

// tail is a partition's checkpoint bookkeeping.
type tail struct {
	// first is the position of the first history entry each landed batch
	// wrote to the partition, by batch number.
	first map[uint64]bus.MessageID
	// last is the position of the last history entry of landed batches.
	last bus.MessageID
	// written is the checkpoint last written (or loaded), and when.
	written   Checkpoint
	writtenAt time.Time
}

func (o *Orchestrator) tailOf(p int) *tail {
	t := o.tails[p]
	if t == nil {
		t = &tail{first: map[uint64]bus.MessageID{}}
		o.tails[p] = t
	}
	return t
}

// coverage updates img's bookkeeping for a batch that gave it records and
// says whether to snapshot it in that batch.
func (o *Orchestrator) coverage(img *image, records int, swept bool, now time.Time) bool {
	img.lastSnap = nil // (the batch may change the image; its landing sets it again)
	if records > 0 || !swept {
		img.touched = now // (a snapshot of an idle image leaves it idle: frozen.go)
	}
	if records > 0 && img.since == 0 {
		img.since = o.batchNo
		o.uncovered[img] = struct{}{}
	}
	if img.seq == img.covered {
		return false
	}
	if swept || img.seq-img.covered >= int64(o.opts.SnapshotEvery) {
		img.covered, img.since = img.seq, 0
		delete(o.uncovered, img)
		return true
	}
	return false
}

// forgetCoverage drops a deleted image from the bookkeeping.
func (o *Orchestrator) forgetCoverage(img *image) {
	delete(o.uncovered, img)
	img.since = 0
}

// sweepIdle picks the images to snapshot in the next batch: those idle for
// SnapshotAfter with records no snapshot covers.
func (o *Orchestrator) sweepIdle(now time.Time) {
	if len(o.sweep) > 0 {
		return // the last pick is not written yet
	}
	for img := range o.uncovered {
		if o.images[img.pid] != img {
			delete(o.uncovered, img)
			continue
		}
		if o.busy[img.pid] == 0 && now.Sub(img.touched) >= o.opts.SnapshotAfter && o.parts.loaded[img.partition] {
			o.sweep = append(o.sweep, img)
			if len(o.sweep) >= 4*o.opts.BatchSize {
				return
			}
		}
	}
}

// checkpoints returns the checkpoint messages of partitions whose replay
// start moved on, for a batch whose snapshots are accounted already.
func (o *Orchestrator) checkpoints(parts map[int]bool, now time.Time) []outMsg {
	var out []outMsg
	for p := range parts {
		t := o.tailOf(p)
		if now.Sub(t.writtenAt) < time.Second {
			continue
		}
		min := uint64(0)
		for img := range o.uncovered {
			if img.partition == p && img.since > 0 && (min == 0 || img.since < min) {
				min = img.since
			}
		}
		var cp Checkpoint
		switch {
		case min == 0 && t.last == nil:
			continue // nothing written since the start: keep what is there
		case min == 0:
			cp = Checkpoint{Partition: p, Start: t.last, After: true}
		default:
			id, ok := t.first[min]
			if !ok {
				continue // that batch has not landed: its position is not known yet
			}
			cp = Checkpoint{Partition: p, Start: id}
		}
		if slices.Equal(cp.Start, t.written.Start) && cp.After == t.written.After {
			continue
		}
		payload, err := encodeCheckpoint(&cp)
		if err != nil {
			continue
		}
		out = append(out, outMsg{o.termOf(p).snapshots, &bus.OutMessage{Key: CheckpointKey, Payload: payload}})
		t.written, t.writtenAt = cp, now
		for b := range t.first {
			if min == 0 || b < min {
				delete(t.first, b)
			}
		}
	}
	return out
}

// landedHistory records where a landed batch's history entries are, per
// partition (jobs are in sending order: sorted by process id, so each
// partition's first job holds its first position).
func (o *Orchestrator) landedHistory(batchNo uint64, jobs []*procJob) {
	for _, j := range jobs {
		if j.id == nil || o.images[j.img.pid] != j.img {
			continue // (its partition was reset while the batch was on its way)
		}
		t := o.tailOf(j.img.partition)
		if _, ok := t.first[batchNo]; !ok {
			t.first[batchNo] = j.id
		}
		t.last = j.id
	}
}
