package admin

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/protocol"
)

// BulkRunnerOptions configure a BulkRunner.
type BulkRunnerOptions struct {
	// Bus is where the engine's topics live.
	Bus bus.Bus
	// Topics are the engine's topics (actions go to Topics.Events).
	Topics protocol.Topics
	// Registry holds the definitions (to check a step exists).
	Registry *engine.Registry
	// Name names this runner (the instance's name): Failover hands the
	// jobs to one runner at a time by name.
	Name string
	// CheckpointEvery is how often a running job commits the actions sent
	// since the last commit together with its progress (default 500ms); a
	// commit also happens every 200 actions.
	CheckpointEvery time.Duration
	// Clock returns the current time (default time.Now).
	Clock func() time.Time
}

// BulkRunner runs bulk jobs (see BulkTopic): one runner per orchestrator
// instance; the broker makes one of them active at a time.
//
// A job's actions and its progress record are committed together, in one
// transaction per checkpoint (at most CheckpointEvery or 200 actions
// apart), so after a crash the next runner starts exactly after the last
// action that took effect: each process is acted on once. A runner that is
// deposed while running (another became active) stops at its next
// checkpoint; an action both sent meanwhile carries the same envelope id
// and the orchestrator keeps one.
type BulkRunner struct {
	opts   BulkRunnerOptions
	log    zerolog.Logger
	status *engine.StatusTable

	statusMu   sync.Mutex
	statusRead time.Time
}

// NewBulkRunner makes a runner; Run it.
func NewBulkRunner(opts BulkRunnerOptions, log zerolog.Logger) (*BulkRunner, error) {
	if opts.Bus == nil || opts.Registry == nil || opts.Name == "" {
		return nil, fmt.Errorf("%w: a bulk runner needs Bus, Registry and Name", ErrBadOptions)
	}
	opts.Topics = opts.Topics.WithDefaults()
	if opts.CheckpointEvery <= 0 {
		opts.CheckpointEvery = 500 * time.Millisecond
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	return &BulkRunner{opts: opts, log: log.With().Str("component", "bulk").Str("runner", opts.Name).Logger()}, nil
}

// checkpointActions is the most actions one transaction commits.
const checkpointActions = 200

type cancelInfo struct {
	actor, reason string
	msg           *bus.Message
}

// runJob is a job handed to a goroutine.
type runJob struct {
	spec    bulkJobMessage
	targets []string
	msgs    []*bus.Message
	cancel  chan cancelInfo
}

// gathering is a job whose messages are still arriving.
type gathering struct {
	chunks map[int][]string
	msgs   []*bus.Message
	spec   *bulkJobMessage
	cancel *cancelInfo
}

// Run takes jobs until ctx ends; jobs still running then are left to the
// next runner (nothing of them is acknowledged).
func (r *BulkRunner) Run(ctx context.Context) error {
	b := r.opts.Bus
	stopped := func(err error) error {
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return err
	}
	if err := ensureBulkTopics(ctx, b); err != nil {
		return stopped(fmt.Errorf("bulk runner: %w", err))
	}
	cons, err := b.Subscribe(ctx, bus.SubscribeOptions{Topic: BulkTopic, Subscription: BulkSubscription, Type: bus.Failover, ConsumerName: r.opts.Name})
	if err != nil {
		return stopped(fmt.Errorf("bulk runner: subscribe: %w", err))
	}
	defer cons.Close()
	w, err := r.openWriters(ctx)
	if err != nil {
		return stopped(err)
	}
	defer w.close()
	r.status = engine.NewStatusTable(b, r.opts.Topics.Status)
	defer r.status.Close()

	type received struct {
		m   *bus.Message
		err error
	}
	in := make(chan received)
	rctx, stopReceiving := context.WithCancel(ctx)
	defer stopReceiving()
	go func() {
		for {
			m, err := cons.Receive(rctx)
			select {
			case in <- received{m, err}:
			case <-rctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()

	var wg sync.WaitGroup
	defer wg.Wait()
	jctx, stopJobs := context.WithCancel(ctx)
	defer stopJobs()
	ended := make(chan string)
	running := map[string]*runJob{}
	gather := map[string]*gathering{}
	start := func(id string, g *gathering) {
		delete(gather, id)
		targets := make([]string, 0, g.spec.Job.Total)
		for i := 0; i < g.spec.Chunks; i++ {
			targets = append(targets, g.chunks[i]...)
		}
		j := &runJob{spec: *g.spec, targets: targets, msgs: g.msgs, cancel: make(chan cancelInfo, 1)}
		if g.cancel != nil {
			j.cancel <- *g.cancel
		}
		running[id] = j
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.run(jctx, cons, w, j)
			select {
			case ended <- id:
			case <-ctx.Done():
			}
		}()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case id := <-ended:
			delete(running, id)
		case rc := <-in:
			if rc.err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("bulk runner: receive: %w", rc.err)
			}
			m := rc.m
			env, err := bus.DecodeOrDeadLetter(ctx, cons, m)
			if err != nil {
				r.log.Warn().Err(err).Msg("undecodable bulk request dead-lettered")
				continue
			}
			id := m.Key
			g := gather[id]
			if g == nil && env.Type != typeBulkCancel {
				g = &gathering{chunks: map[int][]string{}}
				gather[id] = g
			}
			switch env.Type {
			case typeBulkTargets:
				var t bulkTargets
				if err := env.DecodePayload(&t); err != nil {
					r.deadLetter(ctx, cons, m, err.Error())
					continue
				}
				g.chunks[t.Chunk] = t.IDs
				g.msgs = append(g.msgs, m)
			case typeBulkJob:
				var spec bulkJobMessage
				if err := env.DecodePayload(&spec); err != nil || spec.Job.ID != id {
					r.deadLetter(ctx, cons, m, fmt.Sprintf("bulk.job payload: %v (key %s)", err, id))
					delete(gather, id)
					continue
				}
				g.msgs = append(g.msgs, m)
				if running[id] != nil {
					// A copy (the job was redelivered while we still run
					// it): acknowledged with the job's messages.
					running[id].msgs = append(running[id].msgs, g.msgs...)
					delete(gather, id)
					continue
				}
				g.spec = &spec
				if len(g.chunks) != spec.Chunks {
					r.log.Error().Str("job", id).Int("chunks", len(g.chunks)).Int("want", spec.Chunks).Msg("bulk job without all its targets; dead-lettered")
					for _, gm := range g.msgs {
						r.deadLetter(ctx, cons, gm, fmt.Sprintf("bulk job %s has %d of its %d target chunks", id, len(g.chunks), spec.Chunks))
					}
					delete(gather, id)
					continue
				}
				start(id, g)
			case typeBulkCancel:
				var c bulkCancel
				if err := env.DecodePayload(&c); err != nil {
					r.deadLetter(ctx, cons, m, err.Error())
					continue
				}
				ci := cancelInfo{actor: c.Actor, reason: c.Reason, msg: m}
				switch {
				case running[id] != nil:
					select {
					case running[id].cancel <- ci:
					default: // cancelled already: this copy is acknowledged now
						_ = cons.Ack(ctx, m)
					}
				case gather[id] != nil:
					gather[id].cancel = &ci
				default:
					// The job has ended (or never existed): nothing to do.
					_ = cons.Ack(ctx, m)
				}
			default:
				r.deadLetter(ctx, cons, m, fmt.Sprintf("unknown message type %q on the %s topic", env.Type, BulkTopic))
			}
		}
	}
}

func (r *BulkRunner) deadLetter(ctx context.Context, cons bus.Consumer, m *bus.Message, reason string) {
	if err := cons.DeadLetter(ctx, m, reason); err != nil {
		r.log.Error().Err(err).Msg("dead-lettering a bulk request failed")
		cons.Nack(m, err)
	}
}

// writers are the runner's producers: actions to the events topic, job
// records to BulkJobsTopic, and the job table it reads checkpoints from.
type writers struct {
	events, states bus.Producer
	table          *jobTable
}

func (r *BulkRunner) openWriters(ctx context.Context) (*writers, error) {
	ev, err := r.opts.Bus.Producer(ctx, protocol.EventsProducer(r.opts.Topics.Events))
	if err != nil {
		return nil, fmt.Errorf("bulk runner: %w", err)
	}
	st, err := r.opts.Bus.Producer(ctx, bus.ProducerOptions{Topic: BulkJobsTopic})
	if err != nil {
		_ = ev.Close()
		return nil, fmt.Errorf("bulk runner: %w", err)
	}
	return &writers{events: ev, states: st, table: newJobTable(r.opts.Bus)}, nil
}

func (w *writers) close() {
	_ = w.events.Close()
	_ = w.states.Close()
	_ = w.table.Close()
}

// refreshStatus reads the status table at most every 200ms.
func (r *BulkRunner) refreshStatus(ctx context.Context) error {
	r.statusMu.Lock()
	defer r.statusMu.Unlock()
	if time.Since(r.statusRead) < 200*time.Millisecond {
		return nil
	}
	if err := r.status.Refresh(ctx); err != nil {
		return err
	}
	r.statusRead = time.Now()
	return nil
}

// run runs one job to its end, or until ctx ends or the runner is deposed.
func (r *BulkRunner) run(ctx context.Context, cons bus.Consumer, w *writers, j *runJob) {
	log := r.log.With().Str("job", j.spec.Job.ID).Logger()
	var cancelled *cancelInfo
	ackAll := func() {
		msgs := j.msgs
		if cancelled != nil {
			msgs = append(msgs, cancelled.msg)
		}
		for _, m := range msgs {
			if err := cons.Ack(ctx, m); err != nil && ctx.Err() == nil {
				log.Warn().Err(err).Msg("acknowledging a bulk request failed; it may come again (and end at once: the job is over)")
			}
		}
		for {
			select {
			case c := <-j.cancel: // a late cancellation of an ended job
				_ = cons.Ack(ctx, c.msg)
			default:
				return
			}
		}
	}
	for ctx.Err() == nil {
		job, ok := r.resume(ctx, w, j)
		if !ok {
			return
		}
		if job.Ended() {
			ackAll()
			return
		}
		log.Info().Int("from", job.Next).Int("total", job.Total).Float64("rate", job.Rate).Msg("bulk job running")
		res, tx := r.work(ctx, cons, w, j, &job, &cancelled)
		switch res {
		case workDeposed:
			return
		case workRetry:
			if !sleep(ctx, time.Second) {
				return
			}
			continue
		}
		job.FinishedAt = r.opts.Clock().UTC()
		job.State = BulkCompleted
		if cancelled != nil {
			job.State, job.CancelledBy, job.CancelReason = BulkCancelled, cancelled.actor, cancelled.reason
		}
		switch r.commit(ctx, cons, w, tx, &job) {
		case workDone:
			ackAll()
			log.Info().Str("state", job.State).Int("done", job.Done).Int("failed", job.Failed).Int("skipped", job.Skipped).Msg("bulk job ended")
			return
		case workDeposed:
			return
		}
		if !sleep(ctx, time.Second) {
			return
		}
	}
}

// resume reads the job's last committed progress (the job as requested
// when it has none yet).
func (r *BulkRunner) resume(ctx context.Context, w *writers, j *runJob) (BulkJob, bool) {
	for {
		err := w.table.refresh(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return BulkJob{}, false
		}
		r.log.Warn().Err(err).Str("job", j.spec.Job.ID).Msg("cannot read the bulk job table; retrying")
		if !sleep(ctx, time.Second) {
			return BulkJob{}, false
		}
	}
	job := j.spec.Job
	if rec, ok := w.table.get(job.ID); ok && (rec.Next > 0 || rec.Ended() || rec.State == BulkRunning) {
		job = rec
	}
	if job.Ended() {
		return job, true
	}
	now := r.opts.Clock().UTC()
	if job.StartedAt.IsZero() {
		job.StartedAt = now
	}
	job.State, job.Runner, job.UpdatedAt = BulkRunning, r.opts.Name, now
	job.count()
	return job, true
}

type workResult int

const (
	workDone    workResult = iota // the last target is done, or the job was cancelled
	workRetry                     // a send or a commit failed: go on from the last checkpoint
	workDeposed                   // ctx ended, or another runner is active now
)

// work acts on the job's targets from job.Next on, committing a checkpoint
// now and then, until the last one, a cancellation, or a failure. On
// workDone it returns the transaction holding the actions since the last
// checkpoint (nil when none), to commit with the final record.
func (r *BulkRunner) work(ctx context.Context, cons bus.Consumer, w *writers, j *runJob, job *BulkJob, cancelled **cancelInfo) (workResult, bus.Tx) {
	lim := rate.NewLimiter(rate.Limit(job.Rate), 1)
	var tx bus.Tx
	abort := func() {
		if tx != nil {
			_ = tx.Abort(context.WithoutCancel(ctx))
			tx = nil
		}
	}
	inTx, lastCk := 0, time.Now()
	for job.Next < len(j.targets) && *cancelled == nil {
		// Wait for the rate limiter; commit what was sent meanwhile when a
		// checkpoint is due, so a slow job shows its progress.
		res := lim.Reserve()
		due := time.Now().Add(res.Delay())
		waited := false
		for !waited && *cancelled == nil {
			d, checkpoint := time.Until(due), false
			if inTx > 0 {
				if c := r.opts.CheckpointEvery - time.Since(lastCk); c < d {
					d, checkpoint = max(c, 0), true
				}
			}
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				abort()
				return workDeposed, nil
			case c := <-j.cancel:
				t.Stop()
				res.Cancel()
				*cancelled = &c
				continue
			case <-t.C:
			}
			if !checkpoint {
				waited = true
				continue
			}
			if res := r.commit(ctx, cons, w, tx, job); res != workDone {
				return res, nil
			}
			tx, inTx, lastCk = nil, 0, time.Now()
		}
		if *cancelled != nil {
			break
		}
		if tx == nil {
			var err error
			if tx, err = r.opts.Bus.BeginTx(ctx, time.Minute); err != nil {
				r.log.Warn().Err(err).Str("job", job.ID).Msg("cannot open a transaction; retrying")
				return workRetry, nil
			}
		}
		pid := j.targets[job.Next]
		if err := r.act(ctx, w, tx, job, &j.spec, pid); err != nil {
			r.log.Warn().Err(err).Str("job", job.ID).Str("process_id", pid).Msg("bulk action not sent; going on from the last checkpoint")
			abort()
			return workRetry, nil
		}
		job.Next++
		inTx++
		if inTx >= checkpointActions || time.Since(lastCk) >= r.opts.CheckpointEvery {
			switch res := r.commit(ctx, cons, w, tx, job); res {
			case workDone:
				tx, inTx, lastCk = nil, 0, time.Now()
			default:
				return res, nil
			}
		}
	}
	return workDone, tx
}

// commit writes the job's record in tx (a new one when nil) and commits
// the actions sent in it with it. Before, it checks that this runner is
// still the active one.
func (r *BulkRunner) commit(ctx context.Context, cons bus.Consumer, w *writers, tx bus.Tx, job *BulkJob) workResult {
	abort := func() {
		if tx != nil {
			_ = tx.Abort(context.WithoutCancel(ctx))
		}
	}
	job.UpdatedAt = r.opts.Clock().UTC()
	job.count()
	if owner, ok := cons.(bus.PartitionOwner); ok {
		if owned, err := owner.OwnedPartitions(ctx); err == nil && !owned[0] {
			r.log.Warn().Str("job", job.ID).Msg("this runner is no longer the active one; leaving the job to the new one")
			abort()
			return workDeposed
		}
	}
	if tx == nil {
		var err error
		if tx, err = r.opts.Bus.BeginTx(ctx, time.Minute); err != nil {
			r.log.Warn().Err(err).Str("job", job.ID).Msg("cannot open a transaction for the bulk job's progress")
			return workRetry
		}
	}
	if err := send(ctx, w.states, tx, typeBulkState, fmt.Sprintf("%s/%d/%d", job.ID, job.Next, job.UpdatedAt.UnixNano()), job.ID, "", job); err != nil {
		r.log.Warn().Err(err).Str("job", job.ID).Msg("cannot write the bulk job's progress")
		abort()
		return workRetry
	}
	if err := tx.Commit(ctx); err != nil {
		r.log.Warn().Err(err).Str("job", job.ID).Msg("the bulk job's checkpoint did not commit; going on from the last one")
		return workRetry
	}
	return workDone
}

// act applies the job's action to one process in tx, or counts why not.
// An error means the send failed and tx cannot commit.
func (r *BulkRunner) act(ctx context.Context, w *writers, tx bus.Tx, job *BulkJob, spec *bulkJobMessage, pid string) error {
	now := r.opts.Clock().UTC()
	skip := func(why string) {
		job.Skipped++
		job.problem(BulkProblem{ProcessID: pid, Error: why, At: now})
	}
	if err := r.refreshStatus(ctx); err != nil {
		return fmt.Errorf("read the status table: %w", err)
	}
	row, ok := r.status.Get(pid)
	if !ok {
		skip(fmt.Sprintf("no process %s any more", pid))
		return nil
	}
	if err := actionApplies(ctx, r.opts.Registry, row, job.Action, job.StepID); err != nil {
		skip(trimClass(err.Error()))
		return nil
	}
	rid := "bulk:" + job.ID + ":" + pid
	var err error
	if job.Action == "signal" {
		err = send(ctx, w.events, tx, protocol.TypeSignal, "signal:"+rid, pid, pid, protocol.Signal{
			ProcessID: pid, Name: job.Signal, Data: spec.Data, SignalID: rid, Actor: job.Actor, Reason: job.recordedReason()})
	} else {
		err = send(ctx, w.events, tx, protocol.TypeAdminAction, "admin:"+rid, pid, pid, protocol.AdminRequest{
			ProcessID: pid, Action: job.Action, StepID: job.StepID, Output: spec.Output, Actor: job.Actor, Reason: job.recordedReason()})
	}
	if err != nil {
		if !bus.Retryable(err) && !errors.Is(err, context.Canceled) {
			// Not the broker's fault (too large, say): this process fails.
			job.Failed++
			job.problem(BulkProblem{ProcessID: pid, Error: err.Error(), At: now})
			return nil
		}
		return err
	}
	job.Done++
	return nil
}

// send sends one envelope in tx.
func send(ctx context.Context, p bus.Producer, tx bus.Tx, typ, id, key, pid string, payload any) error {
	env, err := bus.NewEnvelope(typ, id, pid, time.Now(), payload)
	if err != nil {
		return err
	}
	b, err := env.Encode()
	if err != nil {
		return err
	}
	_, err = p.Send(ctx, &bus.OutMessage{Key: key, Payload: b, Tx: tx})
	return err
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// jobTable is BulkJobsTopic read as a table.
type jobTable struct {
	table *bus.Table[BulkJob]
}

func newJobTable(b bus.Bus) *jobTable {
	return &jobTable{table: bus.NewTable(b, bus.TableOptions[BulkJob]{
		Topic:  BulkJobsTopic,
		Ensure: func(ctx context.Context) error { return ensureBulkTopics(ctx, b) },
		Decode: func(m *bus.Message) (string, BulkJob, bool) {
			var j BulkJob
			env, err := bus.DecodeEnvelope(m.Payload)
			if err != nil || env.Type != typeBulkState || env.DecodePayload(&j) != nil || j.ID == "" {
				return "", BulkJob{}, false
			}
			return j.ID, j, true
		},
		// a deposed runner's late progress
		Stale: func(old, j BulkJob) bool { return old.Ended() && !j.Ended() },
	})}
}

// refresh reads what was written since the last call.
func (t *jobTable) refresh(ctx context.Context) error { return t.table.Read(ctx) }

func (t *jobTable) get(id string) (BulkJob, bool) {
	j, ok := t.table.Get(id)
	if ok {
		j.Problems = slices.Clone(j.Problems)
	}
	return j, ok
}

func (t *jobTable) list() []BulkJob { return t.table.Rows() }

// Close releases the reader.
func (t *jobTable) Close() error { return t.table.Close() }
