package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/workflow"
)

// Partitions are loaded eagerly and concurrently. As soon as the broker
// reports a partition of the events topic as this instance's, a goroutine
// takes its streams over (beginTerm: the previous owner is fenced out and
// its open transactions ended, see ownership.go), reads the partition's
// compacted snapshots and history tail into images of its own and hands
// them, with the term, to the loop through a channel; the loop installs
// them whole, so it never sees a half-loaded partition. Meanwhile the loop goes on with the batches of
// the partitions already loaded: a received message of a partition that is
// not loaded yet waits (is parked) until its partition is, in order.

// loadRetry is how long a failed partition load waits before it is tried
// again.
const loadRetry = time.Second

// partitions is the loop's view of the partitions: what is loaded, being
// loaded, and the messages waiting for their partition.
type partitions struct {
	loaded  map[int]bool
	loading map[int]*loadJob
	// since is when the broker began reporting each loaded (or loading)
	// partition as ours: a partition lost and regained between two looks
	// has a later one, and is loaded afresh.
	since   map[int]time.Time
	retryAt map[int]time.Time
	parked  map[int][]*bus.Message
	nParked int
	// unowned says since when messages of a partition the broker does not
	// report as ours have been waiting.
	unowned map[int]time.Time
	next    int // the partition a batch starts taking from (round robin)
	// seq numbers the inputs held (parked or in a batch on its way) in the
	// order they first arrived, which is their order in their partition.
	seq     map[*bus.Message]uint64
	nextSeq uint64
	// rewind holds, per partition, the inputs of failed batches that the
	// broker is to deliver again (by message id, with their first arrival
	// number), and since when: until they are back, the partition's parked
	// inputs wait, then go in their first arrival order (rewinding).
	rewind      map[int]map[string]uint64
	rewindSince map[int]time.Time
	// stuck: inputs of a failed batch did not come back in time (the
	// subscription starts over: errInputsNotBack).
	stuck error
	// epoch counts each partition's resets (lost or reloaded): a batch that
	// fails after one of its partitions was reset under it failed because
	// of that reset (orchestrator_reset.go).
	epoch map[int]uint64
}

func newPartitions() partitions {
	return partitions{
		loaded: map[int]bool{}, loading: map[int]*loadJob{}, since: map[int]time.Time{}, retryAt: map[int]time.Time{},
		parked: map[int][]*bus.Message{}, unowned: map[int]time.Time{}, seq: map[*bus.Message]uint64{},
		rewind: map[int]map[string]uint64{}, rewindSince: map[int]time.Time{}, epoch: map[int]uint64{},
	}
}

type loadJob struct {
	cancel context.CancelFunc
}

type loadResult struct {
	p    int
	job  *loadJob
	t    *term
	l    *loaded
	took time.Duration
	// fenced is how long taking the streams over took (beginTerm).
	fenced time.Duration
	err    error
}

type received struct {
	msgs []*bus.Message
	err  error
}

// serve runs one subscription until an error.
func (o *Orchestrator) serve(ctx context.Context) error {
	o.images, o.parts, o.slots, o.recovering = map[string]*image{}, newPartitions(), newSlots(o.opts.MaxOutstanding), nil
	o.busy, o.inflight, o.resetsInARow, o.held = map[string]int{}, 0, 0, nil
	o.flying.Store(0)
	o.uncovered, o.tails, o.sweep = map[*image]struct{}{}, map[int]*tail{}, nil
	o.warm, o.retention, o.expiring = map[*image]struct{}{}, newRetention(bucketWidth(o.opts.Retention)), nil
	defer o.publishQueue()
	defer o.endTerms()
	cons, err := o.bus.Subscribe(ctx, bus.SubscribeOptions{
		Topic: o.opts.Topics.Events, Subscription: protocol.OrchestratorSubscription, Type: bus.Failover,
		ConsumerName: o.opts.Name, ReceiveQueueSize: 2 * o.opts.BatchSize,
	})
	if err != nil {
		return err
	}
	o.cons = cons
	defer cons.Close()
	o.own = newOwnership(cons, o.opts.OwnershipPoll, o.opts.Topics.Partitions)
	o.ready.subscribed(o.own)
	defer o.ready.unsubscribed()

	sctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait() // after stop: loads, the receiver and the flights end with sctx
	defer stop()
	wg.Add(2)
	go func() {
		defer wg.Done()
		o.own.run(sctx)
	}()
	in := make(chan received)
	go func() {
		defer wg.Done()
		o.receive(sctx, in)
	}()
	done := make(chan struct{})
	close(done)
	p := &pipe{
		ctx: sctx, wg: &wg, flights: make(chan *flight, o.opts.MaxInFlight+1), // (+1: a held batch launched before a failure is dealt with)
		results: make(chan flightResult, o.opts.MaxInFlight), sendsDone: done,
	}
	wg.Go(func() { o.committer(sctx, p.flights, p.results) })
	o.spare = newSpareTx(o.bus, o.opts.TxTimeout, o.log)
	wg.Go(func() { o.spare.run(sctx) })
	loads := make(chan loadResult)
	tick := time.NewTicker(max(min(o.opts.OwnershipPoll/4, loopTick), time.Millisecond))
	defer tick.Stop()
	stalled := false // everything waiting is busy in an uncommitted batch
	lastSweep := time.Now()
	var lastLaunch time.Time
	spaced := time.NewTimer(time.Hour) // wakes the loop when BatchSpacing is over
	defer spaced.Stop()
	answers := time.NewTimer(time.Hour) // wakes the loop when a held batch's wait is over
	defer answers.Stop()
	for {
		if now := time.Now(); now.Sub(lastSweep) >= time.Second {
			o.sweepIdle(now)
			o.queueFreezes(now)
			o.sweepRetention(now)
			o.sweepDecisions(now)
			o.publishImages()
			lastSweep = now
		}
		if len(o.freezeQ) > 0 {
			budget := freezeBudgetIdle
			if o.inflight > 0 || o.parts.nParked > 0 {
				budget = freezeBudgetBusy
			}
			o.freezeQueued(time.Now(), budget)
		}
		inCh := in
		if o.parts.nParked >= 8*o.opts.BatchSize && len(o.parts.rewind) == 0 {
			// Enough waits for partitions still loading or busy processes:
			// stop receiving (not while inputs of a failed batch are to come
			// back: their partition waits for them).
			inCh = nil
		}
		var r received
		var gotMsgs bool
		var landed *flightResult
		canLaunch := o.inflight < o.opts.MaxInFlight && o.hasWork()
		wait := o.launchWait(lastLaunch)
		var spacedC, answersC <-chan time.Time
		if canLaunch && wait > 0 {
			spaced.Reset(wait)
			spacedC = spaced.C
		}
		if o.held != nil {
			if o.heldReady(time.Now()) {
				canLaunch, wait, stalled = true, 0, false // (launch it without sleeping)
			} else if d := time.Until(o.held.deadline); d > 0 {
				answers.Reset(d)
				answersC = answers.C
			}
		}
		if (!stalled && canLaunch && wait == 0) || len(o.freezeQ) > 0 {
			// Work to do (a batch to launch, images to freeze): take what
			// has come without waiting.
			select {
			case <-ctx.Done():
				return ctx.Err()
			case r = <-inCh:
				gotMsgs = true
			case res := <-loads:
				o.install(res)
			case fr := <-p.results:
				landed = &fr
			default:
			}
		} else {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case r = <-inCh:
				gotMsgs = true
			case res := <-loads:
				o.install(res)
			case fr := <-p.results:
				landed = &fr
			case <-o.own.changed:
			case <-tick.C:
			case <-spacedC:
			case <-answersC:
			}
		}
		stalled = false
		if landed != nil && landed.err != nil && o.held != nil {
			// A failure: the held batch goes the way of the flights on
			// their way (orchestrator_hold.go).
			lastLaunch = time.Now()
			if _, err := o.launchHeld(ctx, p); err != nil {
				return err
			}
		}
		if landed != nil {
			if err := o.landed(sctx, *landed); err != nil {
				return err
			}
		}
		if gotMsgs {
			if r.err != nil {
				return r.err
			}
			for _, m := range r.msgs {
				o.park(m)
			}
		}
		if o.heldAtRisk() {
			lastLaunch = time.Now()
			if _, err := o.launchHeld(ctx, p); err != nil {
				return err
			}
		}
		o.reconcile(sctx, loads, &wg)
		if o.parts.stuck != nil {
			return o.parts.stuck
		}
		if o.heldReady(time.Now()) {
			// Ahead of new inputs: its processes' answers are in (or it
			// waited long enough).
			lastLaunch = time.Now()
			if _, err := o.launchHeld(ctx, p); err != nil {
				return err
			}
		} else if o.inflight < o.opts.MaxInFlight && o.hasWork() && o.launchWait(lastLaunch) == 0 {
			lastLaunch = time.Now()
			// The batch's work units (adaptive.go): inputs first, a
			// quarter kept for snapshots, timers and queued decisions
			// when those wait.
			limit := o.adapt.limit()
			extra := min(len(o.sweep)+len(o.recovering)+len(o.expiring)+len(o.slots.queued)+len(o.slots.overdue), limit/4)
			msgs := o.takeBatch(limit - extra)
			launched, err := o.handleBatch(ctx, msgs, limit-len(msgs), p)
			if err != nil {
				return err
			}
			stalled = !launched && len(msgs) == 0
		}
		if landed != nil || o.inflight == 0 {
			o.publishQueue() // as of a committed batch
		}
	}
}

// DefaultOwnershipPoll is OrchestratorOptions.OwnershipPoll's default. The
// broker's notices of a change of active consumer make the orchestrator ask
// at once; the poll only covers a notice lost. Each poll is a topic-stats
// request per partition of the events topic, which costs the broker's
// admin API 6–12 ms of CPU each: at 500 ms (the default until session 13)
// one idle orchestrator with 4 partitions cost the broker 125 ms of CPU per
// second (docs/benchmarks.md, session 13).
const DefaultOwnershipPoll = 5 * time.Second

// loopTick is the longest the orchestrator's loop sleeps with nothing
// arriving (its once-a-second sweeps wait for it).
const loopTick = 125 * time.Millisecond

// unownedGrace is how long parked inputs of a partition the broker does not
// report as this instance's are kept before they are given back: ten polls,
// at most 5 s.
func unownedGrace(poll time.Duration) time.Duration {
	return 10 * min(poll, 500*time.Millisecond)
}

// DefaultBatchSpacing is OrchestratorOptions.BatchSpacing's default.
const DefaultBatchSpacing = 25 * time.Millisecond

// launchWait is how long the loop waits before it launches the next batch
// (OrchestratorOptions.BatchSpacing): nothing with no batch on its way or
// with a full batch of inputs waiting.
func (o *Orchestrator) launchWait(lastLaunch time.Time) time.Duration {
	return spacingWait(o.inflight, time.Since(lastLaunch), o.parts.nParked, o.adapt.limit(), o.opts.BatchSpacing)
}

// spacingWait is launchWait's rule: a batch on its way (inflight), the last
// launched since ago, parked inputs waiting against a batch's limit.
func spacingWait(inflight int, since time.Duration, parked, limit int, spacing time.Duration) time.Duration {
	if inflight == 0 || spacing <= 0 || parked >= limit || since >= spacing {
		return 0
	}
	return spacing - since
}

// receive hands batches of received messages to the loop: up to BatchSize,
// gathered for at most BatchWait once the first has arrived (idleBatchWait
// when no batch is on its way).
func (o *Orchestrator) receive(ctx context.Context, in chan<- received) {
	for {
		msgs, err := o.receiveBatch(ctx)
		select {
		case in <- received{msgs, err}:
		case <-ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}

// idleBatchWait is how long a batch waits for more inputs when no batch is
// on its way: long enough to take what the consumer holds already.
const idleBatchWait = 100 * time.Microsecond

func (o *Orchestrator) receiveBatch(ctx context.Context) ([]*bus.Message, error) {
	m, err := o.cons.Receive(ctx)
	if err != nil {
		return nil, err
	}
	msgs := []*bus.Message{m}
	wait := o.opts.BatchWait
	if o.flying.Load() == 0 {
		// Nothing on its way: take what has arrived already, without
		// lingering for more (OrchestratorOptions.BatchWait).
		wait = idleBatchWait
	}
	// The wait counts from the first input, not from each: inputs arriving
	// closer together than the wait (a steady load) would otherwise hold
	// the batch until BatchSize, away from a loop that may have a slot free.
	deadline := time.Now().Add(wait)
	for len(msgs) < o.opts.BatchSize {
		wctx, cancel := context.WithDeadline(ctx, deadline)
		m, err := o.cons.Receive(wctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			break
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// park keeps a received message until its partition can take it. An
// input of a failed batch coming back keeps its first arrival number; the
// last one back ends its partition's rewind (rewound).
func (o *Orchestrator) park(m *bus.Message) {
	p := m.Partition
	n, back := o.parts.rewind[p][string(m.ID)]
	if back {
		delete(o.parts.rewind[p], string(m.ID))
	} else {
		o.parts.nextSeq++
		n = o.parts.nextSeq
	}
	o.parts.seq[m] = n
	o.parts.parked[p] = append(o.parts.parked[p], m)
	o.heldInput(m.Key)
	o.parts.nParked++
	if back && len(o.parts.rewind[p]) == 0 {
		o.rewound(p)
	}
}

// rewinding says whether p waits for inputs of a failed batch to come back.
func (o *Orchestrator) rewinding(p int) bool { return len(o.parts.rewind[p]) > 0 }

// hasWork: messages of loaded partitions wait, or queued processes can be
// issued.
func (o *Orchestrator) hasWork() bool {
	for p, msgs := range o.parts.parked {
		if len(msgs) > 0 && o.parts.loaded[p] && !o.rewinding(p) {
			return true
		}
	}
	return len(o.recovering) > 0 || len(o.sweep) > 0 || len(o.expiring) > 0 || (o.slots.waiting() && o.slots.free()) ||
		len(o.slots.overdue) > 0
}

// takeBatch takes up to limit parked messages of loaded partitions, in
// order within each partition, starting from a different partition each
// time so that no partition waits behind a busy one. Messages of a process
// busy in an uncommitted batch stay parked, in order, until it commits.
func (o *Orchestrator) takeBatch(limit int) []*bus.Message {
	ps := make([]int, 0, len(o.parts.parked))
	for p, msgs := range o.parts.parked {
		if len(msgs) > 0 && o.parts.loaded[p] && !o.rewinding(p) {
			ps = append(ps, p)
		}
	}
	if len(ps) == 0 {
		return nil
	}
	slices.Sort(ps)
	start, _ := slices.BinarySearch(ps, o.parts.next)
	o.parts.next = ps[(start)%len(ps)] + 1
	var out []*bus.Message
	for i := range ps {
		p := ps[(start+i)%len(ps)]
		out = o.takeParked(p, out, func(m *bus.Message, taken int) bool { return taken < limit && o.busy[m.Key] == 0 })
		if len(out) >= limit {
			break
		}
	}
	return out
}

// ownedAsLoaded: the broker's view owned has p as this instance's since
// the time p was (or is being) loaded for.
func (o *Orchestrator) ownedAsLoaded(owned map[int]time.Time, p int) bool {
	since, ok := owned[p]
	return ok && since.Equal(o.parts.since[p])
}

// takeParked moves, in order, the parked inputs of partition p that take
// says yes to (taken: how many out holds) onto out; the others stay
// parked, in order.
func (o *Orchestrator) takeParked(p int, out []*bus.Message, take func(m *bus.Message, taken int) bool) []*bus.Message {
	msgs := o.parts.parked[p]
	rest := msgs[:0]
	for _, m := range msgs {
		if take(m, len(out)) {
			out = append(out, m)
		} else {
			rest = append(rest, m)
		}
	}
	o.parts.nParked -= len(msgs) - len(rest)
	if len(rest) == 0 {
		delete(o.parts.parked, p)
	} else {
		clear(msgs[len(rest):])
		o.parts.parked[p] = rest
	}
	return out
}

// reconcile brings the loop in line with the broker's view of ownership:
// it drops the partitions lost, starts taking over the partitions gained,
// and gives back messages of partitions that are not ours.
func (o *Orchestrator) reconcile(ctx context.Context, loads chan<- loadResult, wg *sync.WaitGroup) {
	now := time.Now()
	for p, since := range o.parts.rewindSince {
		if now.Sub(since) > o.opts.TxTimeout && o.parts.stuck == nil {
			o.parts.stuck = fmt.Errorf("%w: %d inputs of partition %d not back after %s", errInputsNotBack, len(o.parts.rewind[p]), p, o.opts.TxTimeout)
		}
	}
	owned, err := o.own.owned()
	if err != nil {
		// Unknown view: keep everything; a batch does not commit on it.
		return
	}
	for p := range o.parts.loaded {
		if !o.ownedAsLoaded(owned, p) {
			o.lose(p)
		}
	}
	for p, job := range o.parts.loading {
		if !o.ownedAsLoaded(owned, p) {
			job.cancel()
			delete(o.parts.loading, p)
			delete(o.parts.since, p)
			o.giveBack(p, "lost while loading")
			o.log.Info().Int("partition", p).Msg("partition lost while it was being loaded")
		}
	}
	for p, since := range owned {
		if o.parts.loaded[p] || o.parts.loading[p] != nil || now.Before(o.parts.retryAt[p]) {
			continue
		}
		o.parts.since[p] = since
		o.startLoad(ctx, p, loads, wg)
	}
	for p := range o.parts.parked {
		if _, ok := owned[p]; ok {
			delete(o.parts.unowned, p)
			continue
		}
		// The broker does not report p as ours: it may be behind (the
		// messages came to us, so we were the active consumer), or p went
		// to another instance and the broker gives them to it.
		first, ok := o.parts.unowned[p]
		if !ok {
			o.parts.unowned[p] = now
			continue
		}
		if now.Sub(first) > unownedGrace(o.opts.OwnershipPoll) {
			o.giveBack(p, "the broker does not report the partition as this instance's")
		}
	}
}

// giveBack nacks the parked messages of p, so that they come again to
// whoever owns p (this instance too, should it get p back).
func (o *Orchestrator) giveBack(p int, why string) {
	msgs := o.parts.parked[p]
	delete(o.parts.parked, p)
	delete(o.parts.unowned, p)
	delete(o.parts.rewind, p)
	delete(o.parts.rewindSince, p)
	o.parts.nParked -= len(msgs)
	cause := fmt.Errorf("%w: partition %d: %s", ErrPartitionLost, p, why)
	for _, m := range msgs {
		delete(o.parts.seq, m)
		o.cons.Nack(m, cause)
	}
	if len(msgs) > 0 {
		o.log.Info().Int("partition", p).Int("messages", len(msgs)).Str("why", why).Msg("messages given back")
	}
}

// lose forgets a partition this instance no longer owns.
func (o *Orchestrator) lose(p int) {
	n := o.unload(p)
	delete(o.parts.since, p)
	o.giveBack(p, "partition lost")
	o.log.Info().Int("partition", p).Int("processes", n).Msg("partition lost; its images are dropped")
}

// unload drops loaded partition p's images and ends its term; it says how
// many images it dropped.
func (o *Orchestrator) unload(p int) int {
	n := 0
	for pid, img := range o.images {
		if img.partition == p {
			o.forgetCoverage(img)
			delete(o.images, pid)
			delete(o.warm, img)
			n++
		}
	}
	o.slots.forget(func(pid string) bool { return o.images[pid] != nil })
	delete(o.parts.loaded, p)
	delete(o.tails, p)
	o.terms[p].close()
	delete(o.terms, p)
	o.ready.setLoaded(p, false)
	o.parts.epoch[p]++
	return n
}

// startLoad loads partition p in a goroutine of its own.
func (o *Orchestrator) startLoad(ctx context.Context, p int, loads chan<- loadResult, wg *sync.WaitGroup) {
	lctx, cancel := context.WithCancel(ctx)
	job := &loadJob{cancel: cancel}
	o.parts.loading[p] = job
	o.log.Info().Int("partition", p).Msg("loading partition")
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer cancel()
		t0 := time.Now()
		t, err := o.beginTerm(lctx, p)
		fenced := time.Since(t0)
		var l *loaded
		if err == nil {
			l, err = o.loadPartition(lctx, p, t.token)
		}
		if err != nil {
			t.close()
			t = nil
		}
		select {
		case loads <- loadResult{p: p, job: job, t: t, l: l, took: time.Since(t0), fenced: fenced, err: err}:
		case <-lctx.Done():
			t.close()
		}
	}()
}

// install hands a loaded partition over to the loop: its images, the
// decisions in flight, and the processes waiting for one (in the order of
// their oldest pending event).
func (o *Orchestrator) install(res loadResult) {
	if o.parts.loading[res.p] != res.job {
		res.t.close()
		return // cancelled: the partition was lost meanwhile
	}
	delete(o.parts.loading, res.p)
	if res.err != nil {
		delete(o.parts.since, res.p)
		o.parts.retryAt[res.p] = time.Now().Add(loadRetry)
		o.log.Error().Err(res.err).Int("partition", res.p).Dur("retry_in", loadRetry).Msg("partition not loaded")
		return
	}
	var waiting []*image
	now := o.opts.Clock()
	// The replayed images not covered by a snapshot hold the checkpoint
	// where it is until they are snapshotted: they count as written by a
	// batch of their own whose first entry is the checkpoint's start.
	o.batchNo++
	t := o.tailOf(res.p)
	t.first[o.batchNo] = res.l.checkpoint.Start
	t.last, t.written, t.writtenAt = res.l.last, res.l.checkpoint, time.Time{}
	for pid, img := range res.l.images {
		o.images[pid] = img
		img.touched = now
		img.beats.loadedAt = now.UTC() // counts as a heartbeat (progress.go)
		if img.frozen != nil {
			if img.frozen.ended {
				o.retention.add(img, img.frozen.endedAt.Add(o.opts.Retention))
			}
			continue // waits, its timer armed (loadFrozen)
		}
		o.warm[img] = struct{}{}
		if img.terminal() {
			end := img.state.EndedAt
			if end.IsZero() {
				end = now
			}
			o.retention.add(img, end.Add(o.opts.Retention))
		}
		if img.seq > img.covered {
			img.since = o.batchNo
			o.uncovered[img] = struct{}{}
		}
		if img.timersToRecover(now) {
			o.recovering = append(o.recovering, img)
		}
		if !o.m.remote {
			// A task issued by a remote-mode orchestrator: decide here
			// instead (a late answer is dropped as stale).
			img.outstanding = nil
		}
		switch {
		case img.outstanding != nil:
			o.slots.take(pid)
		case img.needsDecision():
			waiting = append(waiting, img)
		}
	}
	slices.SortFunc(waiting, func(a, b *image) int {
		if c := a.pending[0].Event.Time.Compare(b.pending[0].Event.Time); c != 0 {
			return c
		}
		return strings.Compare(a.pid, b.pid)
	})
	for _, img := range waiting {
		o.slots.enqueue(img.pid)
	}
	o.terms[res.p] = res.t
	o.parts.loaded[res.p] = true
	delete(o.parts.retryAt, res.p)
	o.ready.setLoaded(res.p, true)
	o.log.Info().Int("partition", res.p).Int("processes", len(res.l.images)).Int("queued", len(waiting)).
		Int("replayed", res.l.replayed).Dur("took", res.took).Dur("fenced", res.fenced).
		Dur("producers", res.t.opened).Dur("end_transactions", res.t.ended).Dur("markers", res.t.marked).
		Dur("snapshots_read", res.l.snapshotsRead).Dur("history_read", res.l.historyRead).Msg("partition loaded")
}

// endTerms lets go of every partition's streams (the subscription ends).
func (o *Orchestrator) endTerms() {
	for p, t := range o.terms {
		t.close()
		delete(o.terms, p)
	}
}

// loadPartition reads the memory images of partition p: the latest
// snapshot of each of its processes, then the history from the partition's
// checkpoint on, folded with image.fold — each stream up to the marker of
// the term named token (ownership.go, "Load markers"), never to what the
// broker says is its last message. It runs outside the loop and touches
// nothing of it.
func (o *Orchestrator) loadPartition(ctx context.Context, p int, token string) (*loaded, error) {
	topic, history := o.opts.Topics.Snapshots, o.opts.Topics.History
	if o.opts.Topics.Partitions > 0 {
		topic, history = o.bus.Namespace().Partition(topic, p), o.bus.Namespace().Partition(history, p)
	}
	t0 := time.Now()
	rd, err := o.bus.Reader(ctx, bus.ReaderOptions{Topic: topic, Compacted: true})
	if err != nil {
		return nil, fmt.Errorf("load partition %d: %w", p, err)
	}
	defer rd.Close()
	l := &loaded{images: map[string]*image{}}
	gone := map[string]bool{}                 // tombstoned: expired, not to be brought back by the replay
	defs := map[string]*workflow.Definition{} // immutable per name and version
	def := func(name string, version int) (*workflow.Definition, error) {
		key := DefinitionKey(name, version)
		if d := defs[key]; d != nil {
			return d, nil
		}
		d, err := o.reg.Get(ctx, name, version)
		if err != nil {
			return nil, err
		}
		defs[key] = d
		return d, nil
	}
	var cp *Checkpoint
	for {
		m, err := nextToMarker(ctx, rd)
		if err != nil {
			return nil, fmt.Errorf("load partition %d: snapshots: %w", p, err)
		}
		if isMarker(m, token) {
			break
		}
		if m.Key == FenceKey {
			continue // a batch's mark of its term, or an earlier term's marker (ownership.go): nothing to load
		}
		if len(m.Payload) == 0 {
			delete(l.images, m.Key)
			gone[m.Key] = true
			continue
		}
		if img, err := loadFrozen(m.Payload, def, o.opts.Clock()); err != nil {
			return nil, err
		} else if img != nil {
			l.images[img.pid] = img
			delete(gone, img.pid)
			continue
		}
		s, c, err := decodeSnapshotsMessage(m.Payload)
		if err != nil {
			o.log.Error().Err(err).Str("key", m.Key).Int("partition", p).Msg("undecodable snapshot skipped")
			continue
		}
		if c != nil {
			cp = c
			continue
		}
		d, err := def(s.Definition, s.Version)
		if err != nil {
			return nil, fmt.Errorf("load process %s: %w", s.ProcessID, err)
		}
		img := imageOf(*s, d)
		img.covered = img.seq
		l.images[s.ProcessID] = img
		delete(gone, s.ProcessID)
	}
	l.snapshotsRead = time.Since(t0)
	// The tail: every history entry from the checkpoint on.
	opts := bus.ReaderOptions{Topic: history}
	if cp != nil && cp.Start != nil {
		opts.StartID, opts.StartInclusive = cp.Start, !cp.After
		l.checkpoint = *cp
	}
	hr, err := o.bus.Reader(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("load partition %d: %w", p, err)
	}
	defer hr.Close()
	for {
		m, err := nextToMarker(ctx, hr)
		if err != nil {
			return nil, fmt.Errorf("load partition %d: history: %w", p, err)
		}
		if isMarker(m, token) {
			break
		}
		if m.Key == FenceKey {
			continue // an earlier term's marker: no records
		}
		l.replayed++
		e, ok := decodeHistory(m.Payload)
		if !ok || len(e.Records) == 0 || gone[e.ProcessID] {
			continue
		}
		img := l.images[e.ProcessID]
		if img == nil {
			if e.Records[0].Seq != 1 {
				// Its earlier records are before the checkpoint and no
				// snapshot holds it: a process that expired.
				continue
			}
			r := e.Records[0]
			if r.Kind != RecordEvent || r.Event == nil || r.Event.Type != workflow.EventStart {
				return nil, fmt.Errorf("load partition %d: the stream of %s does not begin with its start", p, e.ProcessID)
			}
			d, err := def(r.Definition, r.Version)
			if err != nil {
				return nil, fmt.Errorf("load process %s: %w", e.ProcessID, err)
			}
			img = &image{pid: e.ProcessID, def: d, partition: p, createdAt: r.At}
			l.images[e.ProcessID] = img
		}
		if last := e.Records[len(e.Records)-1].Seq; last <= img.seq {
			continue // covered by its snapshot
		}
		if img.frozen != nil {
			if err := img.thaw(); err != nil {
				return nil, fmt.Errorf("load process %s: %w", img.pid, err)
			}
		}
		for _, r := range e.Records {
			if r.Seq <= img.seq {
				continue
			}
			if err := img.fold(r, nil); err != nil {
				return nil, fmt.Errorf("load partition %d: %w", p, err)
			}
		}
		img.historyIDs = append(img.historyIDs, m.ID)
		l.last = m.ID
	}
	l.historyRead = time.Since(t0) - l.snapshotsRead
	return l, nil
}

// errNoMarker: a stream gave nothing for markWait while its load marker
// was still to come.
var errNoMarker = errors.New("the term's load marker did not come")

// nextToMarker is the reader's next message, waiting at most markWait for
// it (the marker is on its way: the stream is not over before it).
func nextToMarker(ctx context.Context, rd bus.Reader) (*bus.Message, error) {
	wctx, cancel := context.WithTimeout(ctx, markWait)
	defer cancel()
	m, err := rd.Next(wctx)
	if err != nil && ctx.Err() == nil && wctx.Err() != nil {
		return nil, fmt.Errorf("%w within %s", errNoMarker, markWait)
	}
	return m, err
}

// loaded is what loading a partition read.
type loaded struct {
	images     map[string]*image
	checkpoint Checkpoint
	// last is the position of the last history entry replayed; replayed
	// counts the entries read.
	last     bus.MessageID
	replayed int
	// How long reading each stream took (logged).
	snapshotsRead, historyRead time.Duration
}
