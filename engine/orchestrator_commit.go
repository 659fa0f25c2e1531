package engine

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/pulsaga/pulsaga/bus"
)

// maxSenders bounds the goroutines that send one batch's messages.
const maxSenders = 64

// commit writes the batch's effects and acknowledges its inputs in one
// transaction.
//
// In a transaction, the first message to each topic-partition registers
// that partition with the transaction coordinator, a broker round trip, in
// the sending goroutine. Sending everything from one loop paid those round
// trips one after the other (up to 11 per batch: history and snapshots per
// partition, status, decisions, timers). So the sends are spread over
// goroutines, one group of messages per producer and key (a key's messages
// keep their order in their group; the order between keys does not matter),
// and the acknowledgements run concurrently with them: registrations
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
			s.add(o.history, &bus.OutMessage{Key: img.snap.ProcessID, Payload: payload}, func(id bus.MessageID) { ids[slot] = id })
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
		s.add(o.snapshots, &bus.OutMessage{Key: img.snap.ProcessID, Payload: payload}, nil)
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

// sender sends messages in one transaction from several goroutines: one
// group per producer and key, whose messages go out in order from one
// goroutine.
type sender struct {
	tx     bus.Tx
	groups []*sendGroup
	index  map[groupKey]*sendGroup

	mu  sync.Mutex
	err error
}

type groupKey struct {
	p   bus.Producer
	key string
}

type sendGroup struct {
	p    bus.Producer
	msgs []*bus.OutMessage
	sets []func(bus.MessageID)
}

func newSender(tx bus.Tx) *sender {
	return &sender{tx: tx, index: map[groupKey]*sendGroup{}}
}

// add queues msg; set, when not nil, receives its id once it is sent.
func (s *sender) add(p bus.Producer, msg *bus.OutMessage, set func(bus.MessageID)) {
	k := groupKey{p, msg.Key}
	g := s.index[k]
	if g == nil {
		g = &sendGroup{p: p}
		s.index[k] = g
		s.groups = append(s.groups, g)
	}
	msg.Tx = s.tx
	g.msgs = append(g.msgs, msg)
	g.sets = append(g.sets, set)
}

// send sends every group, flushes the producers and waits until every
// message is sent or failed; it returns the first failure.
func (s *sender) send(ctx context.Context) error {
	if len(s.groups) == 0 {
		return nil
	}
	var sent sync.WaitGroup // one per message, done by its callback
	queue := make(chan *sendGroup, len(s.groups))
	producers := map[bus.Producer]bool{}
	for _, g := range s.groups {
		queue <- g
		producers[g.p] = true
		sent.Add(len(g.msgs))
	}
	close(queue)
	var workers sync.WaitGroup
	for range min(len(s.groups), maxSenders) {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for g := range queue {
				for i, m := range g.msgs {
					set := g.sets[i]
					g.p.SendAsync(ctx, m, func(id bus.MessageID, err error) {
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
		}()
	}
	workers.Wait()
	// Every message is queued: flush the producers (at once rather than
	// after their batching delay), concurrently.
	flushErrs := make([]error, 0, len(producers))
	var fmu sync.Mutex
	var flushes sync.WaitGroup
	for p := range producers {
		flushes.Add(1)
		go func() {
			defer flushes.Done()
			if err := p.Flush(ctx); err != nil {
				fmu.Lock()
				flushErrs = append(flushErrs, err)
				fmu.Unlock()
			}
		}()
	}
	flushes.Wait()
	if err := errors.Join(flushErrs...); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		sent.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}
