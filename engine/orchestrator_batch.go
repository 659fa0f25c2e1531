package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/timers"
	"github.com/pulsaga/pulsaga/workflow"
)

// batch collects the effects of one batch of events, committed together.
type batch struct {
	now     time.Time
	touched []*image
	fx      map[*image]*effects
	deleted []*image
	out     []outMsg
	// tasks are the batch's decision tasks (remote mode): sent at once,
	// without the batch's transaction (sendTasks).
	tasks []*bus.OutMessage
	acks  []*bus.Message
	// swept are the processes the idle sweep put in the batch (snapshots).
	swept map[*image]bool
	// parts are the partitions the batch read or wrote: all must still be
	// this instance's when it commits.
	parts map[int]bool
	// no numbers the batches that launched (orchestrator_snapshot.go).
	no uint64
	// units are the batch's work units (adaptive.go).
	units int
	// gen is the loop's failure generation when the batch launched: a
	// failed flight aborts the flights on their way of its generation
	// (orchestrator_commit.go). epochs are its partitions' reset counts
	// then (orchestrator_reset.go).
	gen    uint64
	epochs map[int]uint64
}

type outMsg struct {
	p   bus.Producer
	msg *bus.OutMessage
}

// effects returns img's effects in this batch, touching img.
func (b *batch) effects(img *image) *effects {
	fx := b.fx[img]
	if fx == nil {
		fx = &effects{}
		b.fx[img] = fx
		b.touched = append(b.touched, img)
	}
	return fx
}

// sweepPerInput is how many idle snapshots a batch with inputs takes at
// least (as many as it has inputs when it has more): the sweep trickles
// into the busy batches instead of doubling one of them.
const sweepPerInput = 16

// pipe is the loop's side of the commit pipeline.
type pipe struct {
	ctx     context.Context
	wg      *sync.WaitGroup
	flights chan *flight
	results chan flightResult
	// sendsDone is the last flight's: the next one sends after it.
	sendsDone <-chan struct{}
}

// handleBatch applies msgs (all of loaded partitions and of processes not
// busy in an uncommitted batch), makes the decisions they call for (or
// issues the remote tasks that have a free slot), and launches the batch
// as a flight of the commit pipeline. It says whether it launched one.
//
// room bounds the other work units the batch may take besides msgs
// (adaptive.go): processes snapshotted by the idle sweep, timers recovered
// after a load, queued decisions; what does not fit waits for a later
// batch.
func (o *Orchestrator) handleBatch(ctx context.Context, msgs []*bus.Message, room int, p *pipe) (bool, error) {
	b := &batch{now: o.opts.Clock().UTC(), fx: map[*image]*effects{}, parts: map[int]bool{}, units: len(msgs)}
	swept := map[*image]bool{}
	b.swept = swept
	sweep := o.sweep[:0]
	sweepRoom := room
	if len(msgs) > 0 {
		// A batch that carries inputs takes few idle snapshots: their
		// sends delay its commit, and so every saga waiting on it (sweeps
		// of ~170 snapshots once a second made the p99 at half load).
		sweepRoom = min(room, max(sweepPerInput, len(msgs)))
	}
	for _, img := range o.sweep {
		switch {
		case o.images[img.pid] != img || o.busy[img.pid] > 0 || !o.live(img):
		case b.units-len(msgs) >= sweepRoom:
			sweep = append(sweep, img)
		default:
			b.effects(img)
			swept[img] = true
			b.units++
		}
	}
	clear(o.sweep[len(sweep):])
	o.sweep = sweep
	keep := o.recovering[:0]
	for _, img := range o.recovering {
		switch {
		case o.images[img.pid] != img || !o.live(img):
		case o.busy[img.pid] > 0 || b.units-len(msgs) >= room:
			keep = append(keep, img)
		default:
			o.m.recoverTimers(img, b.now, b.effects(img))
			b.units++
		}
	}
	clear(o.recovering[len(keep):])
	o.recovering = keep
	expiring := o.expiring[:0]
	for _, img := range o.expiring {
		switch {
		case o.images[img.pid] != img || !img.ended():
		case o.busy[img.pid] > 0 || b.units-len(msgs) >= room:
			expiring = append(expiring, img)
		default:
			o.expire(b, img, o.log.With().Str("process_id", img.pid).Logger())
			b.parts[img.partition] = true
			b.units++
		}
	}
	clear(o.expiring[len(expiring):])
	o.expiring = expiring
	o.routeAll(ctx, b, msgs)
	o.decideTouched(b)
	o.reissueDue(b, room-(b.units-len(msgs)))
	o.issueQueued(b, room-(b.units-len(msgs)))
	o.issueTouched(b)
	if err := o.hold(p.ctx, b); err != nil {
		o.nackAll(b.acks)
		return false, err
	}
	return o.finishBatch(ctx, b, p, nil)
}

// routeAll hands msgs to the state machine in batch b.
func (o *Orchestrator) routeAll(ctx context.Context, b *batch, msgs []*bus.Message) {
	for _, m := range msgs {
		if o.route(ctx, b, m) {
			b.acks = append(b.acks, m)
		} else {
			delete(o.parts.seq, m) // dead-lettered or given back: no longer held
		}
		b.parts[m.Partition] = true
	}
}

// decideTouched decides the processes b touched (inline) or queues those
// that need a remote decision for a slot.
func (o *Orchestrator) decideTouched(b *batch) {
	for _, img := range b.touched {
		switch {
		case !o.m.remote:
			o.m.decide(img, b.now, b.fx[img])
		case img.needsDecision():
			o.slots.enqueue(img.pid)
		}
	}
}

// finishBatch turns b's effects into messages and launches it as a flight
// of the commit pipeline (sent, the flight waits for held's tasks too: the
// tasks a held batch sent already). It says whether it launched one.
func (o *Orchestrator) finishBatch(ctx context.Context, b *batch, p *pipe, held *taskSends) (bool, error) {
	if err := o.emit(ctx, b); err != nil {
		o.nackAll(b.acks)
		return false, err
	}
	if len(b.touched) == 0 && len(b.out) == 0 && len(b.tasks) == 0 && len(b.acks) == 0 {
		return false, nil
	}
	slices.SortFunc(b.touched, func(x, y *image) int { return strings.Compare(x.pid, y.pid) })
	o.batchNo++
	b.no = o.batchNo
	deleted := map[*image]bool{}
	for _, img := range b.deleted {
		deleted[img] = true
		o.forgetCoverage(img)
	}
	snapshotted := map[int]bool{}
	jobs := make([]*procJob, 0, len(b.touched))
	for _, img := range b.touched {
		b.parts[img.partition] = true
		j := &procJob{img: img, records: b.fx[img].records, term: o.termOf(o.partitionOf(img))}
		if !deleted[img] {
			row := statusRow(img)
			row.HistoryIDs = slices.Clone(row.HistoryIDs)
			j.row, j.rowChanged = row, rowChanges(j.records)
			if o.coverage(img, len(j.records), b.swept[img], b.now) {
				snap := img.snapshot()
				snap.HistoryIDs = slices.Clone(snap.HistoryIDs)
				snap.Pending, snap.Seen, snap.Armed = slices.Clone(snap.Pending), slices.Clone(snap.Seen), slices.Clone(snap.Armed)
				if snap.Outstanding != nil {
					out := *snap.Outstanding
					snap.Outstanding = &out
				}
				j.snap = &snap
				snapshotted[img.partition] = true
			}
		}
		jobs = append(jobs, j)
		o.busy[img.pid]++
	}
	b.out = append(b.out, o.checkpoints(snapshotted, b.now)...)
	b.out = append(b.out, o.fences(b, jobs)...)
	b.gen, b.epochs = o.gen, make(map[int]uint64, len(b.parts))
	for p := range b.parts {
		b.epochs[p] = o.parts.epoch[p]
	}
	tasks := o.sendTasks(p.ctx, b.tasks).after(held)
	f := o.launch(p.ctx, b, jobs, tasks, p.sendsDone, p.wg)
	p.sendsDone = f.sendsDone
	o.inflight++
	o.flying.Store(int32(o.inflight))
	p.flights <- f // never blocks: at most MaxInFlight are on their way
	return true, nil
}

// landed takes a flight's outcome: its processes are no longer busy. A
// failure resets only the partitions the flight involved
// (orchestrator_reset.go); only failures of other causes than ownership
// repeated maxResetsInARow times without a commit end the loop (the
// subscription starts over).
func (o *Orchestrator) landed(ctx context.Context, r flightResult) error {
	o.inflight--
	o.flying.Store(int32(o.inflight))
	b := r.f.b
	for _, img := range b.touched {
		if o.busy[img.pid]--; o.busy[img.pid] <= 0 {
			delete(o.busy, img.pid)
		}
	}
	if r.err != nil {
		if ctx.Err() != nil || errors.Is(r.err, context.Canceled) {
			return fmt.Errorf("orchestrator: batch of %d inputs not committed: %w", len(b.acks), r.err)
		}
		if !o.ownershipFailure(r) {
			o.adapt.failed(b.units)
			o.statsMu.Lock()
			o.failed++
			o.limitNow = o.adapt.limit()
			o.statsMu.Unlock()
			o.log.Warn().Err(r.err).Int("units", b.units).Int("limit", o.adapt.limit()).Dur("took", r.took).
				Msg("batch not committed: later batches are smaller")
			if b.gen == o.gen {
				o.resetsInARow++
			}
			if o.resetsInARow > maxResetsInARow {
				return fmt.Errorf("orchestrator: batch of %d inputs not committed (%d failures in a row): %w", len(b.acks), o.resetsInARow, r.err)
			}
		}
		o.resetAfter(ctx, r)
		return nil
	}
	o.resetsInARow = 0
	f := r.f
	first, second, commit := f.round1.Sub(f.began), f.round2.Sub(f.round1), f.committed.Sub(f.round2)
	if bo, ok := o.opts.Observer.(BatchObserver); ok && !f.began.IsZero() && !f.committed.IsZero() {
		bo.BatchCommitted(len(b.acks), first, second, commit)
	}
	if e := o.log.Debug(); e.Enabled() {
		e.Int("units", b.units).Int("acks", len(b.acks)).Int("processes", len(f.jobs)).Int("messages", len(b.out)).
			Dur("round1", first).Dur("round2", second).
			Dur("commit_wait", commit).Dur("wait", f.sendStart.Sub(f.began)).Msg("batch committed")
	}
	before := o.adapt.limit()
	o.adapt.succeeded(b.units, r.took)
	if after := o.adapt.limit(); after < before {
		o.log.Warn().Int("units", b.units).Dur("took", r.took).Int("limit", after).
			Msg("batch took more than a third of the transaction timeout: later batches are smaller")
	}
	for _, m := range b.acks {
		delete(o.parts.seq, m)
	}
	for _, j := range r.f.jobs {
		if j.id != nil {
			j.img.historyIDs = append(j.img.historyIDs, j.id)
		}
		if j.snapBytes != nil && j.img.frozen == nil {
			// The image is what the snapshot holds: no batch touched it
			// since (it was busy), and its history position is the one
			// the snapshot was sent with.
			j.img.lastSnap = j.snapBytes
		}
	}
	o.landedHistory(b.no, r.f.jobs)
	o.statsMu.Lock()
	o.batches++
	o.limitNow = o.adapt.limit()
	o.statsMu.Unlock()
	for _, img := range b.deleted {
		if o.images[img.pid] == img {
			delete(o.images, img.pid)
			delete(o.warm, img)
		}
	}
	return nil
}

func (o *Orchestrator) nackAll(msgs []*bus.Message) {
	for _, m := range msgs {
		o.cons.Nack(m, errors.New("orchestrator batch failed"))
	}
}

// route decodes one message and hands it to the state machine; false means
// it was dead-lettered (and so acknowledged) already, or given back.
func (o *Orchestrator) route(ctx context.Context, b *batch, m *bus.Message) bool {
	env, err := bus.DecodeOrDeadLetter(ctx, o.cons, m)
	if err != nil {
		o.drop(DropDeadLettered, o.log, err.Error())
		return false
	}
	log := o.log.With().Str("process_id", env.ProcessID).Str("type", env.Type).Logger()
	deadLetter := func(reason string) bool {
		if err := o.cons.DeadLetter(ctx, m, reason); err != nil {
			log.Error().Err(err).Msg("dead-lettering failed; the message will come again")
			o.cons.Nack(m, err)
			return false
		}
		o.drop(DropDeadLettered, log, reason)
		return false
	}
	if len(m.Payload) > o.opts.MaxMessageBytes-messageSlack {
		return deadLetter(fmt.Sprintf("a %s message of %d bytes leaves no room to record it (at most %d bytes)",
			env.Type, len(m.Payload), o.opts.MaxMessageBytes-messageSlack))
	}
	in, err := parseInput(env, m.Key)
	if err != nil {
		return deadLetter(err.Error())
	}
	if home := o.homePartition(in.pid); home != m.Partition {
		return o.forward(ctx, b, m, home, log)
	}
	img := o.images[in.pid]
	if in.kind == inStart && img == nil {
		def, err := o.reg.Get(ctx, in.start.Definition, in.start.Version)
		if err != nil {
			return deadLetter(fmt.Sprintf("cannot start %s: %v", in.pid, err))
		}
		fx := &effects{}
		img = o.m.start(def, m.Partition, in, b.now, fx)
		o.images[in.pid] = img
		o.warm[img] = struct{}{}
		b.fx[img] = fx
		b.touched = append(b.touched, img)
		log.Info().Str("definition", def.Name).Int("version", def.Version).Msg("process started")
		return true
	}
	if img == nil {
		o.drop(DropUnknownProcess, log, env.Type)
		return true
	}
	if in.kind == inRetention {
		// (an earlier engine's timer: retention.go does it now)
		o.expire(b, img, log)
		return true
	}
	if in.kind == inHeartbeat {
		// Not recorded and no effect: the image is not touched (progress.go).
		o.m.accept(img, in, b.now, nil)
		return true
	}
	if !o.live(img) {
		return deadLetter(fmt.Sprintf("the image of %s cannot be decoded", in.pid))
	}
	o.m.accept(img, in, b.now, b.effects(img))
	return true
}

// emit turns the effects of every touched process into the batch's
// messages (records, snapshots and status rows are written by commit).
func (o *Orchestrator) emit(ctx context.Context, b *batch) error {
	for _, img := range b.touched {
		fx := b.fx[img]
		log := o.log.With().Str("process_id", img.pid).Logger()
		for _, d := range fx.drops {
			o.drop(d.reason, log, d.detail)
		}
		fx.drops = nil
		for i := range fx.commands {
			c := &fx.commands[i]
			p, err := o.jobProducer(ctx, c.Service)
			if err != nil {
				return err
			}
			msg, err := o.commandMessage(img, c, b.now)
			if err != nil {
				return err
			}
			b.out = append(b.out, outMsg{p, msg})
		}
		for _, at := range fx.arm {
			if err := o.setTimer(b, protocol.Timer{TimerID: WakeTimerID(img.pid, at), ProcessID: img.pid, Kind: TimerWake, FireAt: at}); err != nil {
				return err
			}
		}
		if err := o.taskMessages(b, img, fx); err != nil {
			return err
		}
		o.settleSlot(img, fx)
		if fx.finished {
			log.Info().Str("status", string(img.state.Status)).Msg("process finished")
			o.retention.add(img, b.now.Add(o.opts.Retention))
		}
	}
	return nil
}

// settleSlot takes or gives back img's decision slot as its effects say
// (once: a held batch settles them before it waits, orchestrator_hold.go).
func (o *Orchestrator) settleSlot(img *image, fx *effects) {
	if fx.released && !fx.issued {
		// (released then issued again in one batch: the slot is kept)
		o.slots.release(img.pid)
	}
	if fx.issued {
		o.slots.take(img.pid)
	}
	fx.released, fx.issued = false, false
}

// taskMessages encodes img's decision tasks into b.tasks.
func (o *Orchestrator) taskMessages(b *batch, img *image, fx *effects) error {
	for _, t := range fx.tasks {
		task := t.task
		if t.stateZ != nil {
			task.UseState(t.stateZ) // the bytes the state came in
		} else if err := task.SetState(task.State); err != nil { // compressed when large
			return err
		}
		payload, err := encode(protocol.TypeDecisionTask, fmt.Sprintf("task:%s#%d", t.task.TaskID, t.issue), img.pid, b.now, task)
		if err != nil {
			return err
		}
		b.tasks = append(b.tasks, &bus.OutMessage{Key: img.pid, Payload: payload})
		if t.issue > 1 {
			o.log.Warn().Str("process_id", img.pid).Str("task_id", t.task.TaskID).Int("issued", t.issue).Msg("decision unanswered; issuing it again")
		}
	}
	fx.tasks = nil
	return nil
}

// commandMessage is the job-queue message of a command.
func (o *Orchestrator) commandMessage(img *image, c *workflow.Command, now time.Time) (*bus.OutMessage, error) {
	cmd := WireCommand(c, img.def.Name, img.def.Version, o.m.replyTo)
	payload, err := bus.EncodeEnvelope(bus.Envelope{Type: protocol.TypeCommand, ID: c.ID, ProcessID: c.ProcessID, Time: now,
		Traceparent: o.m.commandTraceparent(c)}, cmd)
	if err != nil {
		return nil, err
	}
	return &bus.OutMessage{Key: c.ProcessID, Payload: payload, DeliverAt: c.NotBefore}, nil
}

func (o *Orchestrator) setTimer(b *batch, t protocol.Timer) error {
	t.Target = o.opts.Topics.Events
	msg, err := timers.Message(t, b.now, timers.DefaultMaxHop)
	if err != nil {
		return err
	}
	b.out = append(b.out, outMsg{o.timerTopic, msg})
	return nil
}

// expire forgets a finished process once its retention has passed.
func (o *Orchestrator) expire(b *batch, img *image, log zerolog.Logger) {
	if !img.ended() {
		o.drop(DropStaleTimer, log, "retention of a live process")
		return
	}
	b.out = append(b.out,
		outMsg{o.termOf(o.partitionOf(img)).snapshots, &bus.OutMessage{Key: img.pid}}, // empty payload: deleted from the compacted view
		outMsg{o.status, &bus.OutMessage{Key: img.pid}},
	)
	b.deleted = append(b.deleted, img)
	log.Info().Msg("finished process expired")
}

// statusRow is the process's row in the admin table.
func statusRow(img *image) StatusRecord {
	r := StatusRecord{
		ProcessID: img.pid, Definition: img.def.Name, Version: img.def.Version, Seq: img.seq,
		Partition: img.partition, HistoryIDs: img.historyIDs,
	}
	st := img.state
	if st == nil {
		r.Status = workflow.StatusRunning
		r.StartedAt = img.createdAt
		r.UpdatedAt = img.createdAt
		return r
	}
	r.Status, r.StartedAt, r.UpdatedAt, r.EndedAt = st.Status, st.StartedAt, st.UpdatedAt, st.EndedAt
	r.Steps = map[string]string{}
	for _, s := range st.Steps {
		r.Steps[s.ID] = string(s.Status)
	}
	if st.Failure != nil && st.Failure.Error != nil {
		if st.Failure.StepID != "" {
			r.LastError = st.Failure.StepID + ": "
		}
		r.LastError += st.Failure.Error.Type + ": " + st.Failure.Error.Message
	}
	return r
}

// rowChanges says whether records appended to a process may change its
// status row: a start (the first row), or a decision, rejected or failed
// record (status, steps, errors). Event records alone change nothing a row
// shows (they wait for their decision: in the remote mode, the batch that
// issues a task appends them and the batch that applies its answer writes
// the row, with the positions of both history entries).
func rowChanges(records []Record) bool {
	for i := range records {
		r := &records[i]
		if r.Kind != RecordEvent || (r.Event != nil && r.Event.Type == workflow.EventStart) {
			return true
		}
	}
	return false
}

// snapshot is the stored form of an image.
func (img *image) snapshot() Snapshot {
	return Snapshot{
		ProcessID: img.pid, Definition: img.def.Name, Version: img.def.Version, State: img.state, StateZstd: img.stateZ, Seq: img.seq,
		Pending: img.pending, Outstanding: img.outstanding, Seen: img.seen, Armed: img.armed,
		HistoryIDs: img.historyIDs, Partition: img.partition, CreatedAt: img.createdAt,
	}
}

// imageOf is the image a snapshot stores.
func imageOf(s Snapshot, def *workflow.Definition) *image {
	return &image{
		pid: s.ProcessID, def: def, partition: s.Partition, createdAt: s.CreatedAt, state: s.State, stateZ: s.StateZstd, seq: s.Seq,
		pending: s.Pending, outstanding: s.Outstanding, seen: s.Seen, armed: s.Armed, historyIDs: s.HistoryIDs,
	}
}

// fences returns a fence message for each partition the batch reads or
// touches but whose streams it does not write otherwise: every batch
// writes through the term of each partition it involves, so that a batch
// of a deposed owner fails as a whole (ownership.go).
func (o *Orchestrator) fences(b *batch, jobs []*procJob) []outMsg {
	written := map[*term]bool{}
	for _, j := range jobs {
		if len(j.records) > 0 || j.snap != nil {
			written[j.term] = true
		}
	}
	for _, m := range b.out {
		for _, t := range o.terms {
			if m.p == t.history || m.p == t.snapshots {
				written[t] = true
			}
		}
	}
	var out []outMsg
	for p := range b.parts {
		t := o.termOf(p)
		if t == nil || written[t] {
			continue
		}
		written[t] = true
		out = append(out, outMsg{t.snapshots, &bus.OutMessage{Key: FenceKey}})
	}
	return out
}

// homePartition is the partition of the events topic whose owner owns
// process pid: the engine's own routing of its id (bus.KeyPartition), not
// the sender's, whose client may hash keys differently.
func (o *Orchestrator) homePartition(pid string) int {
	if o.opts.Topics.Partitions == 0 {
		return 0
	}
	return bus.KeyPartition(pid, o.opts.Topics.Partitions)
}

// forward sends an input that arrived on another partition than its
// process's to that partition, unchanged, in the batch's transaction (so
// it is acknowledged here exactly when it is there). It returns false when
// the input was given back instead.
func (o *Orchestrator) forward(ctx context.Context, b *batch, m *bus.Message, home int, log zerolog.Logger) bool {
	p, err := o.eventsPartition(ctx, home)
	if err != nil {
		log.Error().Err(err).Msg("input not forwarded; it will come again")
		o.cons.Nack(m, err)
		return false
	}
	b.out = append(b.out, outMsg{p, &bus.OutMessage{Key: m.Key, Payload: m.Payload, Properties: m.Properties}})
	o.statsMu.Lock()
	o.forwarded++
	o.statsMu.Unlock()
	log.Debug().Int("from", m.Partition).Int("to", home).Msg("input forwarded to its process's partition")
	return true
}
