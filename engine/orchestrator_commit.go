package engine

import (
	"context"
	"fmt"
	"sort"

	"github.com/pulsaga/pulsaga/bus"
)

// commit writes the batch's effects and acknowledges its inputs in one
// transaction, with one bus.Batch (which sends each producer's messages
// from a few lanes at once and runs the acknowledgements concurrently, so
// the transaction's registrations of partitions overlap). Each
// topic-partition has a producer of its own (history and snapshots are
// written per partition, to the partition their key routes to). Snapshots
// and status rows carry the positions of their process's history records,
// so they go out in a second round, once every history send has its id.
func (o *Orchestrator) commit(ctx context.Context, b *batch, parts map[int]bool) error {
	tx, err := o.bus.BeginTx(ctx, o.opts.TxTimeout)
	if err != nil {
		o.nackAll(b.acks)
		return err
	}
	s := bus.NewBatch(bus.BatchOptions{Tx: tx})
	// 0. the inputs, acknowledged concurrently with the sends.
	for _, m := range b.acks {
		s.Ack(o.cons, m)
	}
	fail := func(err error) error {
		_ = s.Abort(ctx, err)
		return err
	}

	// 1. history records, whose positions go into the snapshots, with the
	// decision tasks, timers and tombstones.
	sort.SliceStable(b.touched, func(i, j int) bool { return b.touched[i].snap.ProcessID < b.touched[j].snap.ProcessID })
	for _, img := range b.touched {
		recs := b.records[img]
		base := len(img.snap.HistoryIDs)
		img.snap.HistoryIDs = append(img.snap.HistoryIDs, make([]bus.MessageID, len(recs))...)
		ids := img.snap.HistoryIDs
		for i := range recs {
			payload, err := encode(TypeHistory, fmt.Sprintf("history:%s:%d", recs[i].ProcessID, recs[i].Seq), recs[i].ProcessID, b.now, recs[i])
			if err != nil {
				return fail(err)
			}
			slot := base + i
			s.Send(o.history[o.partitionOf(img)], &bus.OutMessage{Key: img.snap.ProcessID, Payload: payload}, func(id bus.MessageID) { ids[slot] = id })
		}
	}
	for _, m := range b.out {
		s.Send(m.p, m.msg, nil)
	}
	if err := s.Wait(ctx); err != nil {
		return fail(err)
	}

	// 2. snapshots and status rows.
	deleted := map[*image]bool{}
	for _, img := range b.deleted {
		deleted[img] = true
	}
	for _, img := range b.touched {
		if deleted[img] {
			continue
		}
		payload, err := encode(TypeSnapshot, fmt.Sprintf("snapshot:%s:%d", img.snap.ProcessID, img.snap.Seq), img.snap.ProcessID, b.now, img.snap)
		if err != nil {
			return fail(err)
		}
		s.Send(o.snapshots[o.partitionOf(img)], &bus.OutMessage{Key: img.snap.ProcessID, Payload: payload}, nil)
		if b.status[img] || img.snap.State == nil || len(b.records[img]) > 0 {
			payload, err := encode(TypeStatus, fmt.Sprintf("status:%s:%d", img.snap.ProcessID, img.snap.Seq), img.snap.ProcessID, b.now, statusOf(img))
			if err != nil {
				return fail(err)
			}
			s.Send(o.status, &bus.OutMessage{Key: img.snap.ProcessID, Payload: payload}, nil)
		}
	}
	if err := s.Wait(ctx); err != nil {
		return fail(err)
	}
	// Last check: every partition of the batch is still ours.
	for p := range parts {
		if ok, _ := o.own.owns(p); !ok {
			return fail(fmt.Errorf("%w: partition %d", ErrPartitionLost, p))
		}
	}
	return s.Commit(ctx)
}
