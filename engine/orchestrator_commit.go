package engine

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/pulsaga/pulsaga/bus"
)

// commit writes the batch's effects and acknowledges its inputs in one
// transaction.
//
// In a transaction, the first message to each topic-partition registers
// that partition with the transaction coordinator, a broker round trip, in
// the sending goroutine. Sending everything from one loop paid those round
// trips one after the other (up to 11 per batch: history and snapshots per
// partition, status, decisions, timers). So each topic-partition has a
// producer of its own (history and snapshots are written per partition, to
// the partition their key routes to) and a goroutine of its own in a batch,
// and the acknowledgements run concurrently with the sends: registrations
// overlap as far as the client lets them. Snapshots and status rows carry
// the positions of their process's history records, so they go out once
// every history send has its id.
func (o *Orchestrator) commit(ctx context.Context, b *batch, parts map[int]bool) error {
	tx, err := o.bus.BeginTx(ctx, o.opts.TxTimeout)
	if err != nil {
		o.nackAll(b.acks)
		return err
	}
	// 0. the inputs, acknowledged concurrently (each is a broker round trip).
	var acks sync.WaitGroup
	ackErrs := make([]error, len(b.acks))
	for i, m := range b.acks {
		acks.Add(1)
		go func() {
			defer acks.Done()
			ackErrs[i] = o.cons.AckTx(ctx, m, tx)
		}()
	}
	fail := func(err error) error {
		acks.Wait()
		_ = tx.Abort(context.WithoutCancel(ctx))
		return err
	}

	// 1. history records, whose positions go into the snapshots, with the
	// decision tasks, timers and tombstones.
	s := newSender(tx)
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
			s.add(o.history[o.partitionOf(img)], &bus.OutMessage{Key: img.snap.ProcessID, Payload: payload}, func(id bus.MessageID) { ids[slot] = id })
		}
	}
	for _, m := range b.out {
		s.add(m.p, m.msg, nil)
	}
	if err := s.send(ctx); err != nil {
		return fail(err)
	}

	// 2. snapshots and status rows.
	deleted := map[*image]bool{}
	for _, img := range b.deleted {
		deleted[img] = true
	}
	s = newSender(tx)
	for _, img := range b.touched {
		if deleted[img] {
			continue
		}
		payload, err := encode(TypeSnapshot, fmt.Sprintf("snapshot:%s:%d", img.snap.ProcessID, img.snap.Seq), img.snap.ProcessID, b.now, img.snap)
		if err != nil {
			return fail(err)
		}
		s.add(o.snapshots[o.partitionOf(img)], &bus.OutMessage{Key: img.snap.ProcessID, Payload: payload}, nil)
		if b.status[img] || img.snap.State == nil || len(b.records[img]) > 0 {
			payload, err := encode(TypeStatus, fmt.Sprintf("status:%s:%d", img.snap.ProcessID, img.snap.Seq), img.snap.ProcessID, b.now, statusOf(img))
			if err != nil {
				return fail(err)
			}
			s.add(o.status, &bus.OutMessage{Key: img.snap.ProcessID, Payload: payload}, nil)
		}
	}
	if err := s.send(ctx); err != nil {
		return fail(err)
	}

	acks.Wait()
	if err := errors.Join(ackErrs...); err != nil {
		return fail(err)
	}
	// Last check: every partition of the batch is still ours.
	for p := range parts {
		if ok, _ := o.own.owns(p); !ok {
			return fail(fmt.Errorf("%w: partition %d", ErrPartitionLost, p))
		}
	}
	return tx.Commit(ctx)
}

// sender sends messages in one transaction from a goroutine per producer.
// A producer's messages go out grouped by key, each key's in the order they
// were added: producer batching is per key, and broker deduplication needs
// the batches of one producer to carry disjoint, increasing sequence ids; if
// two keys' messages were interleaved (say by a goroutine per key), a batch
// could start below the last sequence id of the previous one and the broker
// would refuse it ("cannot determine whether the message is a duplicate") or
// drop it as a duplicate.
type sender struct {
	tx        bus.Tx
	producers []*sendQueue
	index     map[bus.Producer]*sendQueue

	mu  sync.Mutex
	err error
}

type sendQueue struct {
	p      bus.Producer
	keys   []string
	groups map[string]*sendGroup
	n      int
}

type sendGroup struct {
	msgs []*bus.OutMessage
	sets []func(bus.MessageID)
}

func newSender(tx bus.Tx) *sender {
	return &sender{tx: tx, index: map[bus.Producer]*sendQueue{}}
}

// add queues msg; set, when not nil, receives its id once it is sent.
func (s *sender) add(p bus.Producer, msg *bus.OutMessage, set func(bus.MessageID)) {
	q := s.index[p]
	if q == nil {
		q = &sendQueue{p: p, groups: map[string]*sendGroup{}}
		s.index[p] = q
		s.producers = append(s.producers, q)
	}
	g := q.groups[msg.Key]
	if g == nil {
		g = &sendGroup{}
		q.groups[msg.Key] = g
		q.keys = append(q.keys, msg.Key)
	}
	msg.Tx = s.tx
	g.msgs = append(g.msgs, msg)
	g.sets = append(g.sets, set)
	q.n++
}

// send sends every queued message, flushes the producers and waits until
// every message is sent or failed; it returns the first failure.
func (s *sender) send(ctx context.Context) error {
	if len(s.producers) == 0 {
		return nil
	}
	var sent sync.WaitGroup // one per message, done by its callback
	var producers sync.WaitGroup
	flushErrs := make([]error, len(s.producers))
	for i, q := range s.producers {
		sent.Add(q.n)
		producers.Add(1)
		go func() {
			defer producers.Done()
			for _, k := range q.keys {
				g := q.groups[k]
				for j, m := range g.msgs {
					set := g.sets[j]
					q.p.SendAsync(ctx, m, func(id bus.MessageID, err error) {
						defer sent.Done()
						s.mu.Lock()
						defer s.mu.Unlock()
						if err != nil && s.err == nil {
							s.err = err
						}
						if err == nil && set != nil {
							set(id)
						}
					})
				}
			}
			// Everything is queued: send now rather than after the
			// batching delay.
			flushErrs[i] = q.p.Flush(ctx)
		}()
	}
	producers.Wait()
	if err := errors.Join(flushErrs...); err != nil {
		return err
	}
	if err := waitCtx(ctx, &sent); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// waitCtx waits for wg, or returns ctx's error first: a send's outcome is
// known once its callback has run, and a callback may never come when the
// context ends.
func waitCtx(ctx context.Context, wg *sync.WaitGroup) error {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
