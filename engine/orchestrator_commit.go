package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/pulsaga/pulsaga/bus"
)

// The commit pipeline. The loop builds batch N+1 while batch N commits:
// a batch that has something to write becomes a flight, sent from a
// goroutine of its own in its own transaction and committed by one
// committer goroutine, in order. At most MaxInFlight flights are on their
// way. A process touched by a flight is busy until that flight commits: its
// new inputs wait (in order), so per-process order and exactly-once state
// hold without any process appearing in two uncommitted batches. A flight
// that fails aborts the flights after it, and the loop starts over
// (re-subscribes: every input not acknowledged by a committed transaction
// comes again, and the partitions are loaded again).
//
// Flights send one after another (a flight's sends start once the previous
// flight's have all been confirmed), because producer batching is per key
// and broker deduplication needs the batches of one producer to carry
// increasing sequence ids (see sender); what overlaps is building, sending
// and committing.

// flight is a batch on its way.
type flight struct {
	b    *batch
	jobs []*procJob
	tx   bus.Tx
	// sent receives the outcome of the sends and acknowledgements.
	sent chan error
	// sendsDone closes when this flight no longer sends (its successor may).
	sendsDone chan struct{}
}

// procJob is what a flight writes for one process: copies taken by the
// loop, so the flight's goroutine reads nothing the loop changes.
type procJob struct {
	img     *image
	records []Record
	// row and snap are written with the position of the history entry
	// appended (row only when there are records; snap may be nil).
	row  StatusRecord
	snap *Snapshot
	// id is the position of the history entry once sent.
	id bus.MessageID
}

type flightResult struct {
	f   *flight
	err error
}

// launch sends b in a new transaction from a goroutine of its own, after
// the previous flight's sends.
func (o *Orchestrator) launch(ctx context.Context, b *batch, jobs []*procJob, prev <-chan struct{}, wg *sync.WaitGroup) *flight {
	f := &flight{b: b, jobs: jobs, sent: make(chan error, 1), sendsDone: make(chan struct{})}
	wg.Go(func() {
		defer close(f.sendsDone)
		select {
		case <-prev:
		case <-ctx.Done():
			f.sent <- ctx.Err()
			return
		}
		// Begun only now: a transaction open while its predecessors send
		// could reach its timeout under load and fail the batch.
		tx, err := o.bus.BeginTx(ctx, o.opts.TxTimeout)
		if err != nil {
			f.sent <- err
			return
		}
		f.tx = tx
		f.sent <- o.send(ctx, f)
	})
	return f
}

// committer commits the flights in the order they were launched; after a
// failure it aborts every later one. It reports each outcome to results.
func (o *Orchestrator) committer(ctx context.Context, flights <-chan *flight, results chan<- flightResult) {
	var failed error
	settle := func(f *flight) {
		err := <-f.sent
		switch {
		case err == nil && failed != nil:
			err = fmt.Errorf("aborted after an earlier batch failed: %w", failed)
		case err == nil:
			// Last check: every partition of the batch is still ours.
			for p := range f.b.parts {
				if ok, _ := o.own.owns(p); !ok {
					err = fmt.Errorf("%w: partition %d", ErrPartitionLost, p)
					break
				}
			}
			if err == nil {
				err = f.tx.Commit(ctx)
			}
		}
		if err != nil {
			if f.tx != nil {
				_ = f.tx.Abort(context.WithoutCancel(ctx))
			}
			if failed == nil {
				failed = err
			}
		}
		results <- flightResult{f, err}
	}
	for {
		select {
		case f := <-flights:
			settle(f)
		case <-ctx.Done():
			for {
				select {
				case f := <-flights:
					if failed == nil {
						failed = ctx.Err()
					}
					settle(f)
				default:
					return
				}
			}
		}
	}
}

// send writes a flight's records, messages, snapshots and status rows and
// acknowledges its inputs, in its transaction.
//
// In a transaction, the first message to each topic-partition registers
// that partition with the transaction coordinator, a broker round trip, in
// the sending goroutine; so each topic-partition has a producer of its own
// and a goroutine of its own in a flight, and the acknowledgements run
// concurrently with the sends. Snapshots and status rows carry the
// positions of their process's history records, so they go out once every
// history send has its id.
func (o *Orchestrator) send(ctx context.Context, f *flight) error {
	b, tx := f.b, f.tx
	var acks sync.WaitGroup
	ackErrs := make([]error, len(b.acks))
	for i, m := range b.acks {
		acks.Go(func() { ackErrs[i] = o.cons.AckTx(ctx, m, tx) })
	}
	fail := func(err error) error {
		acks.Wait()
		return err
	}

	// 1. history entries, whose positions go into the snapshots and rows,
	// with the commands, timers, tasks, checkpoints and tombstones.
	s := newSender(tx)
	for _, j := range f.jobs {
		if len(j.records) == 0 {
			continue
		}
		payload, err := encode(TypeHistory, fmt.Sprintf("history:%s:%d", j.img.pid, j.records[0].Seq), j.img.pid, b.now,
			HistoryEntry{ProcessID: j.img.pid, Records: j.records})
		if err != nil {
			return fail(err)
		}
		s.add(o.history[o.partitionOf(j.img)], &bus.OutMessage{Key: j.img.pid, Payload: payload}, func(id bus.MessageID) { j.id = id })
	}
	for _, m := range b.out {
		s.add(m.p, m.msg, nil)
	}
	if err := s.send(ctx); err != nil {
		return fail(err)
	}

	// 2. snapshots and status rows.
	s = newSender(tx)
	for _, j := range f.jobs {
		if j.snap != nil {
			if j.id != nil {
				j.snap.HistoryIDs = append(j.snap.HistoryIDs, j.id)
			}
			payload, err := encode(TypeSnapshot, fmt.Sprintf("snapshot:%s:%d", j.snap.ProcessID, j.snap.Seq), j.snap.ProcessID, b.now, j.snap)
			if err != nil {
				return fail(err)
			}
			s.add(o.snapshots[o.partitionOf(j.img)], &bus.OutMessage{Key: j.img.pid, Payload: payload}, nil)
		}
		if j.id != nil {
			// The row carries the positions of the process's history, so
			// it is written whenever records are.
			j.row.HistoryIDs = append(j.row.HistoryIDs, j.id)
			payload, err := encode(TypeStatus, fmt.Sprintf("status:%s:%d", j.row.ProcessID, j.row.Seq), j.row.ProcessID, b.now, j.row)
			if err != nil {
				return fail(err)
			}
			s.add(o.status, &bus.OutMessage{Key: j.img.pid, Payload: payload}, nil)
		}
	}
	if err := s.send(ctx); err != nil {
		return fail(err)
	}
	acks.Wait()
	return errors.Join(ackErrs...)
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
