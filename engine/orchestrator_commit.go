package engine

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/pulsaga/pulsaga/bus"
)

// The commit pipeline. The loop builds batch N+1 while batch N commits:
// a batch that has something to write becomes a flight, sent from a
// goroutine of its own in its own transaction and committed by one
// committer goroutine, in order. At most MaxInFlight flights are on their
// way. A process touched by a flight is busy until that flight commits: its
// new inputs wait (in order), so per-process order and exactly-once state
// hold without any process appearing in two uncommitted batches. A flight
// that fails aborts the flights after it that were launched before the
// loop learnt of the failure and share a partition with it; the loop then
// resets only the partitions those flights involved
// (orchestrator_reset.go), or, after repeated failures not caused by
// ownership, starts over (re-subscribes: every input not acknowledged by a
// committed transaction comes again, and the partitions are loaded again).
//
// Flights send their first rounds one after another (a flight's history
// entries and messages go out once the previous flight's first round has
// been confirmed): a partition's history positions increase with the batch
// number (the checkpoints rely on it). A process's messages keep their
// order across batches because a process is in one flight at a time. What
// overlaps is building, beginning the transaction, the second round
// (snapshots and status rows, keyed by process like everything else),
// sending and committing. (Measured at half the maximum load with the
// sends of whole flights in one line: those took 17 ms of every 21 ms, and
// a saga's five hops each waited for that line.) (bus.Pipeline is not used: a flight sends in two
// rounds, the second carrying the positions the first got, and Pipeline
// wants a batch handed over before the next one begins, which would hold
// the loop for the first round.)

// flight is a batch on its way.
type flight struct {
	b    *batch
	jobs []*procJob
	// s sends and acknowledges in the flight's transaction.
	s *bus.Batch
	// sent receives the outcome of the sends and acknowledgements.
	sent chan error
	// sendsDone closes when this flight's first round is over (its
	// successor may send), or it failed.
	sendsDone chan struct{}
	release   sync.Once
	// began is when its transaction began (zero if it did not); round1,
	// round2 and committed when its two rounds of sends and its commit
	// ended (for the debug log).
	began, round1, round2, committed time.Time
	// sendStart is when its predecessor let it send (for the debug log:
	// round1 counts from began, so it includes that wait).
	sendStart time.Time
}

// procJob is what a flight writes for one process: copies taken by the
// loop, so the flight's goroutine reads nothing the loop changes.
type procJob struct {
	img     *image
	records []Record
	// term holds the producers of the process's partition streams.
	term *term
	// row and snap are written with the position of the history entry
	// appended (row only when there are records and rowChanged; snap may
	// be nil).
	row        StatusRecord
	rowChanged bool
	snap       *Snapshot
	// id is the position of the history entry once sent.
	id bus.MessageID
	// snapBytes is snap's encoding once sent.
	snapBytes []byte
}

type flightResult struct {
	f   *flight
	err error
	// took is how long the flight's transaction was open.
	took time.Duration
}

// launch sends b in a new transaction from a goroutine of its own, after
// the previous flight's sends.
func (o *Orchestrator) launch(ctx context.Context, b *batch, jobs []*procJob, tasks *taskSends, prev <-chan struct{}, wg *sync.WaitGroup) *flight {
	f := &flight{b: b, jobs: jobs, sent: make(chan error, 1), sendsDone: make(chan struct{})}
	wg.Go(func() {
		defer f.releaseSends()
		// The transaction begins while the predecessor's first round is
		// out (a coordinator round trip off the line of first rounds);
		// took counts from here, so a long wait behind the predecessor
		// makes later batches smaller (adaptive.go) well before the
		// transaction's timeout.
		f.began = time.Now()
		tx, err := o.spare.take(ctx)
		var registered chan struct{}
		if err == nil {
			// One lane: a producer's messages go out in the order queued,
			// so the first history entry of a partition in a batch has the
			// batch's lowest position there (the checkpoint needs it).
			f.s = bus.NewBatch(bus.BatchOptions{Tx: tx, Lanes: 1})
			if r, ok := tx.(bus.TxRegistrar); ok {
				// Every partition and subscription the flight will write
				// and acknowledge, registered in one request each while it
				// waits for its turn: its sends then wait for no
				// coordinator round trip of their own (measured at half
				// the maximum load: ~12 registrations per flight, ~3 ms
				// each, in two rounds).
				registered = make(chan struct{})
				targets := o.txTargets(f)
				go func() {
					defer close(registered)
					if err := r.RegisterAhead(ctx, targets); err != nil {
						o.log.Debug().Err(err).Msg("registering a batch's partitions ahead failed: its sends register them")
					}
				}()
			}
		}
		sent := func(err error) {
			if registered != nil && err == nil {
				// Commit once the registration is answered (its sends
				// waited for it; this only orders a commit after it). A
				// failed flight is aborted at once: a registration the
				// coordinator gets after the abort is refused, harmlessly.
				<-registered
			}
			f.sent <- err
		}
		select {
		case <-prev:
		case <-ctx.Done():
			if err == nil {
				err = ctx.Err() // the committer aborts the unused transaction
			}
		}
		if err != nil {
			sent(err)
			return
		}
		err = o.send(ctx, f)
		if err == nil {
			// A batch commits only once its decision tasks are out: a
			// committed outstanding task was sent.
			err = tasks.wait(ctx)
		}
		sent(err)
	})
	return f
}

// txTargets are the partitions and subscriptions a flight writes and
// acknowledges (send's two rounds).
func (o *Orchestrator) txTargets(f *flight) []bus.TxTarget {
	b := f.b
	ts := make([]bus.TxTarget, 0, len(b.out)+len(f.jobs)+len(b.acks))
	for _, j := range f.jobs {
		if len(j.records) > 0 {
			ts = append(ts, bus.TxTarget{Producer: j.term.history, Key: j.img.pid})
			if j.rowChanged {
				ts = append(ts, bus.TxTarget{Producer: o.status, Key: j.img.pid})
			}
		}
		if j.snap != nil {
			ts = append(ts, bus.TxTarget{Producer: j.term.snapshots, Key: j.img.pid})
		}
	}
	for _, m := range b.out {
		ts = append(ts, bus.TxTarget{Producer: m.p, Key: m.msg.Key})
	}
	for _, m := range b.acks {
		ts = append(ts, bus.TxTarget{Consumer: o.cons, Input: m})
	}
	return ts
}

// releaseSends lets the next flight send.
func (f *flight) releaseSends() { f.release.Do(func() { close(f.sendsDone) }) }

// taskSends are a batch's decision tasks on their way.
type taskSends struct {
	done chan struct{} // closed once every send's outcome is known
	mu   sync.Mutex
	err  error
	n    int
	prev *taskSends // waited for first (after)
}

// sendTasks sends a batch's decision tasks at once, without its
// transaction, while the batch is still being sent and committed: the
// deciders decide meanwhile (the answer waits for the commit, as every
// input of a process busy in an uncommitted batch). A task whose batch
// then fails is harmless: its id is unique (machine.issue) and matches no
// outstanding task any more, so its answer is dropped as stale; the
// process is issued a new task once its inputs come again. A batch commits
// only after its tasks were sent (taskSends.wait): an outstanding task
// that is recorded was sent. It returns nil when there is none.
func (o *Orchestrator) sendTasks(ctx context.Context, tasks []*bus.OutMessage) *taskSends {
	if len(tasks) == 0 {
		return nil
	}
	ts := &taskSends{done: make(chan struct{}), n: len(tasks)}
	for _, m := range tasks {
		o.decisions.SendAsync(ctx, m, func(_ bus.MessageID, err error) {
			ts.mu.Lock()
			defer ts.mu.Unlock()
			if err != nil && ts.err == nil {
				ts.err = fmt.Errorf("decision task not sent: %w", err)
			}
			if ts.n--; ts.n == 0 {
				close(ts.done)
			}
		})
	}
	return ts
}

// after makes ts's wait wait for prev's sends too (the tasks a held batch
// sent before it launched).
func (ts *taskSends) after(prev *taskSends) *taskSends {
	switch {
	case prev == nil:
		return ts
	case ts == nil:
		return prev
	}
	ts.prev = prev
	return ts
}

// wait returns once every task was sent, with the first failure.
func (ts *taskSends) wait(ctx context.Context) error {
	if ts == nil {
		return nil
	}
	if err := ts.prev.wait(ctx); err != nil {
		return err
	}
	select {
	case <-ts.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.err
}

// committer commits the flights in the order they were launched; after a
// failure it aborts the later ones of the same generation that share a
// partition with a failed one. It reports each outcome to results.
func (o *Orchestrator) committer(ctx context.Context, flights <-chan *flight, results chan<- flightResult) {
	// failed is the last failure, of a flight of generation failedGen; the
	// flights of that generation after it that involve one of failedParts
	// (the partitions of that generation's failed flights; nil: all) are
	// aborted. The loop launches the next flights with a later generation
	// once it has dealt with the failure (orchestrator_reset.go). A later
	// flight that shares no partition with a failed one commits: it has
	// none of their processes (a process is in one flight at a time), and
	// what it wrote to a partition the loop then reloads is either
	// committed before that load's marker or aborted by it.
	var failed error
	var failedGen uint64
	var failedParts map[int]bool
	shares := func(f *flight) bool {
		if failedParts == nil {
			return true
		}
		for p := range f.b.parts {
			if failedParts[p] {
				return true
			}
		}
		return false
	}
	settle := func(f *flight) {
		err := <-f.sent
		switch {
		case err == nil && failed != nil && f.b.gen <= failedGen && shares(f):
			err = fmt.Errorf("%w: %w", errAbortedAfterFailure, failed)
		case err == nil:
			// Last check: every partition of the batch is still ours.
			for p := range f.b.parts {
				if ok, _ := o.own.owns(p); !ok {
					err = fmt.Errorf("%w: partition %d", ErrPartitionLost, p)
					break
				}
			}
			if err == nil {
				err = f.s.Commit(ctx)
				f.committed = time.Now()
			}
		}
		if err != nil {
			if f.s != nil {
				_ = f.s.Abort(context.WithoutCancel(ctx), err)
			}
			if failed == nil || f.b.gen > failedGen {
				failed, failedGen, failedParts = err, f.b.gen, map[int]bool{}
			}
			if failedParts != nil {
				for p := range f.b.parts {
					failedParts[p] = true
				}
			}
		}
		var took time.Duration
		if !f.began.IsZero() {
			took = time.Since(f.began)
		}
		results <- flightResult{f, err, took}
	}
	for {
		select {
		case f := <-flights:
			settle(f)
		case <-ctx.Done():
			for {
				select {
				case f := <-flights:
					failed, failedGen, failedParts = ctx.Err(), math.MaxUint64, nil
					settle(f)
				default:
					return
				}
			}
		}
	}
}

// send writes a flight's records, messages, snapshots and status rows and
// acknowledges its inputs, in its transaction, with bus.Batch (a goroutine
// per producer, the acknowledgements concurrently). Snapshots and status
// rows carry the positions of their process's history entries, so they go
// out in a second round, once every history send has its id. (txTargets
// names the same targets, for the registration ahead.)
func (o *Orchestrator) send(ctx context.Context, f *flight) error {
	b, s := f.b, f.s
	f.sendStart = time.Now()
	for _, m := range b.acks {
		s.Ack(o.cons, m)
	}
	// 1. history entries, whose positions go into the snapshots and rows,
	// with the commands, timers, tasks, checkpoints and tombstones.
	for _, j := range f.jobs {
		if len(j.records) == 0 {
			continue
		}
		payload, err := encodeHistory(&HistoryEntry{ProcessID: j.img.pid, Records: j.records})
		if err != nil {
			return err
		}
		s.Send(j.term.history, &bus.OutMessage{Key: j.img.pid, Payload: payload}, func(id bus.MessageID) { j.id = id })
	}
	for _, m := range b.out {
		s.Send(m.p, m.msg, nil)
	}
	if err := s.Wait(ctx); err != nil {
		return err
	}
	f.round1 = time.Now()
	f.releaseSends()
	// 2. snapshots and status rows.
	for _, j := range f.jobs {
		if j.snap != nil {
			if j.id != nil {
				j.snap.HistoryIDs = append(j.snap.HistoryIDs, j.id)
			}
			payload, err := encodeSnapshot(j.snap)
			if err != nil {
				return err
			}
			j.snapBytes = payload
			s.Send(j.term.snapshots, &bus.OutMessage{Key: j.img.pid, Payload: payload}, nil)
		}
		if j.id != nil && j.rowChanged {
			// The row carries the positions of the process's history, so
			// it is written whenever records that may change it are
			// (rowChanges).
			j.row.HistoryIDs = append(j.row.HistoryIDs, j.id)
			payload, err := encodeStatus(&j.row)
			if err != nil {
				return err
			}
			s.Send(o.status, &bus.OutMessage{Key: j.img.pid, Payload: payload}, nil)
		}
	}
	err := s.Wait(ctx)
	f.round2 = time.Now()
	return err
}
