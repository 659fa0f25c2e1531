package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/timers"
	"github.com/pulsaga/pulsaga/workflow"
)

// OrchestratorOptions configure an orchestrator.
type OrchestratorOptions struct {
	// Name identifies the instance; Failover gives partitions out by name,
	// so it must be unique and stable (default "orchestrator").
	Name string
	// Topics are the engine's topics.
	Topics protocol.Topics
	// BatchSize bounds the events handled in one transaction (default 256).
	BatchSize int
	// BatchWait is how long to wait for more events once one has arrived
	// (default 2ms).
	BatchWait time.Duration
	// DecisionTimeout re-issues a decision task that got no answer
	// (default 30s).
	DecisionTimeout time.Duration
	// Retention keeps a finished process's image and status this long
	// (default 24h); its history follows protocol.Topics.HistoryRetention.
	Retention time.Duration
	// SeenLimit is how many recent input ids each process remembers to drop
	// duplicates (default 128).
	SeenLimit int
	// OwnershipPoll is how often the orchestrator asks the broker which
	// partitions it owns (default 500ms).
	OwnershipPoll time.Duration
	// TakeoverGrace is how long after gaining a partition the orchestrator
	// waits before loading it, so the previous owner has let go (default
	// 4 × OwnershipPoll).
	TakeoverGrace time.Duration
	// MaxOutstanding bounds the decisions in flight (issued, not yet
	// answered) of this instance (default DefaultMaxOutstanding). A process
	// with pending events and no free slot waits in a FIFO queue and gets
	// one task with all its pending events when a slot frees, so decision
	// tasks never wait in the deciders' queue for longer than the decision
	// timeout just because too many were issued at once.
	MaxOutstanding int
	// TxTimeout is how long the broker keeps a transaction of this
	// instance open before aborting it by itself: after a crash, the
	// inputs of its last batch come back after at most this (default 10s).
	TxTimeout time.Duration
	// Observer receives measurements for metrics (default NopObserver).
	Observer Observer
	// Clock returns the current time (default time.Now).
	Clock func() time.Time
}

func (o *OrchestratorOptions) defaults() {
	if o.Observer == nil {
		o.Observer = NopObserver{}
	}
	if o.OwnershipPoll <= 0 {
		o.OwnershipPoll = 500 * time.Millisecond
	}
	if o.TakeoverGrace <= 0 {
		o.TakeoverGrace = 4 * o.OwnershipPoll
	}
	if o.TxTimeout <= 0 {
		o.TxTimeout = 10 * time.Second
	}
	if o.Name == "" {
		o.Name = "orchestrator"
	}
	o.Topics = o.Topics.WithDefaults()
	if o.BatchSize <= 0 {
		o.BatchSize = 256
	}
	if o.BatchWait <= 0 {
		o.BatchWait = 2 * time.Millisecond
	}
	if o.DecisionTimeout <= 0 {
		o.DecisionTimeout = 30 * time.Second
	}
	if o.Retention <= 0 {
		o.Retention = 24 * time.Hour
	}
	if o.SeenLimit <= 0 {
		o.SeenLimit = 128
	}
	if o.MaxOutstanding <= 0 {
		o.MaxOutstanding = DefaultMaxOutstanding
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
}

// Drop reasons counted by the orchestrator (besides workflow.IgnoreReason).
const (
	DropUnknownProcess = "unknown_process"
	DropDuplicate      = "duplicate"
	DropAlreadyStarted = "already_started"
	DropTerminal       = "terminal"
	DropStaleDecision  = "stale_decision"
	DropStaleTimer     = "stale_timer"
	DropDeadLettered   = "dead_lettered"
)

// DefaultMaxOutstanding is the default OrchestratorOptions.MaxOutstanding:
// about what one decider answers within the default decision timeout on a
// busy two-core machine, so a task issued at once is answered before it is
// re-issued.
const DefaultMaxOutstanding = 512

// Orchestrator owns processes partition by partition (a Failover
// subscription on the events topic), appends accepted events to their
// streams, keeps their memory images, and asks the deciders for one
// decision at a time per process, with at most MaxOutstanding decisions in
// flight.
//
// One goroutine (the loop of serve) owns the images, the loaded partitions
// and the decision slots; partitions are loaded by goroutines of their own
// and handed over to the loop whole (orchestrator_load.go).
type Orchestrator struct {
	bus  bus.Bus
	reg  *Registry
	opts OrchestratorOptions
	log  zerolog.Logger

	cons                          bus.Consumer
	status, decisions, timerTopic bus.Producer
	// history and snapshots have a producer per partition (index
	// Snapshot.Partition; one when the topics are not partitioned): a batch
	// writes each partition from a goroutine of its own, see commit.
	history, snapshots []bus.Producer

	images map[string]*image
	own    *ownership
	parts  partitions
	slots  *slots
	ready  readiness

	statsMu     sync.Mutex
	drops       map[string]int64
	batches     int64
	outstanding int
	queued      int
}

type image struct {
	snap Snapshot
	def  *workflow.Definition
	// beats, folded and loadedAt: worker heartbeats kept in memory
	// (progress.go).
	beats, folded map[string]time.Time
	loadedAt      time.Time
}

// NewOrchestrator creates an orchestrator; Run starts it.
func NewOrchestrator(b bus.Bus, reg *Registry, opts OrchestratorOptions, log zerolog.Logger) *Orchestrator {
	opts.defaults()
	return &Orchestrator{
		bus: b, reg: reg, opts: opts, ready: readiness{grace: opts.TakeoverGrace},
		log:    log.With().Str("component", "orchestrator").Str("instance", opts.Name).Logger(),
		images: map[string]*image{}, slots: newSlots(opts.MaxOutstanding), drops: map[string]int64{},
	}
}

// Drops returns how many inputs were dropped, by reason.
func (o *Orchestrator) Drops() map[string]int64 {
	o.statsMu.Lock()
	defer o.statsMu.Unlock()
	out := make(map[string]int64, len(o.drops))
	for k, v := range o.drops {
		out[k] = v
	}
	return out
}

func (o *Orchestrator) drop(reason string, log zerolog.Logger, detail string) {
	o.statsMu.Lock()
	o.drops[reason]++
	o.statsMu.Unlock()
	o.opts.Observer.Dropped(reason)
	log.Info().Str("reason", reason).Str("detail", detail).Msg("input dropped")
}

// EnsureTopics creates the engine's topics with their policies.
func EnsureTopics(ctx context.Context, b bus.Bus, t protocol.Topics) error {
	specs := t.Specs()
	for _, s := range specs {
		if err := b.EnsureTopic(ctx, s); err != nil {
			return fmt.Errorf("ensure topic %s: %w", s.Name, err)
		}
	}
	return nil
}

// Run serves until ctx is done. A batch that cannot be committed is
// aborted; the orchestrator then drops its memory images, re-subscribes,
// and the batch's events are delivered again.
func (o *Orchestrator) Run(ctx context.Context) error {
	if err := EnsureTopics(ctx, o.bus, o.opts.Topics); err != nil {
		return err
	}
	if err := o.openProducers(ctx); err != nil {
		return err
	}
	defer o.closeProducers()
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := o.serve(ctx)
		if ctx.Err() != nil {
			return nil
		}
		o.log.Warn().Err(err).Dur("backoff", backoff).Msg("orchestrator restarting its subscription")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
	return nil
}

func (o *Orchestrator) openProducers(ctx context.Context) error {
	t := o.opts.Topics
	var err error
	open := func(topic string) bus.Producer {
		if err != nil {
			return nil
		}
		var p bus.Producer
		p, err = o.bus.Producer(ctx, bus.ProducerOptions{Topic: topic})
		return p
	}
	o.history, o.snapshots = nil, nil
	for p := range max(t.Partitions, 1) {
		history, snapshots := t.History, t.Snapshots
		if t.Partitions > 0 {
			history, snapshots = o.bus.Namespace().Partition(history, p), o.bus.Namespace().Partition(snapshots, p)
		}
		o.history, o.snapshots = append(o.history, open(history)), append(o.snapshots, open(snapshots))
	}
	o.status, o.decisions, o.timerTopic = open(t.Status), open(t.Decisions), open(t.Timers)
	if err != nil {
		o.closeProducers()
		return fmt.Errorf("orchestrator: %w", err)
	}
	return nil
}

func (o *Orchestrator) closeProducers() {
	all := append([]bus.Producer{o.status, o.decisions, o.timerTopic}, o.history...)
	for _, p := range append(all, o.snapshots...) {
		if p != nil {
			_ = p.Close()
		}
	}
}

// partitionOf is the index of img's producer in o.history and o.snapshots:
// the partition Pulsar routes its key to, as for its events.
func (o *Orchestrator) partitionOf(img *image) int {
	if o.opts.Topics.Partitions == 0 {
		return 0
	}
	return img.snap.Partition
}

// batch collects the effects of one batch of events, committed together.
type batch struct {
	now     time.Time
	touched []*image
	isTouch map[*image]bool
	records map[*image][]Record
	status  map[*image]bool
	deleted []*image
	out     []outMsg
	acks    []*bus.Message
}

type outMsg struct {
	p   bus.Producer
	msg *bus.OutMessage
}

func (b *batch) touch(img *image) {
	if !b.isTouch[img] {
		b.isTouch[img] = true
		b.touched = append(b.touched, img)
	}
}

func (b *batch) record(img *image, r Record) {
	img.snap.Seq++
	r.ProcessID, r.Seq, r.At = img.snap.ProcessID, img.snap.Seq, b.now
	b.records[img] = append(b.records[img], r)
	b.touch(img)
}

// handleBatch applies msgs (all of loaded partitions) and issues the
// decisions that have a free slot, in one transaction. msgs may be empty
// when only queued processes are to be issued.
func (o *Orchestrator) handleBatch(ctx context.Context, msgs []*bus.Message) error {
	b := &batch{
		now: o.opts.Clock().UTC(), isTouch: map[*image]bool{}, records: map[*image][]Record{},
		status: map[*image]bool{},
	}
	for _, m := range msgs {
		if o.route(ctx, b, m) {
			b.acks = append(b.acks, m)
		}
	}
	for _, img := range b.touched {
		if needsDecision(img) {
			o.slots.enqueue(img.snap.ProcessID)
		}
	}
	if err := o.issueQueued(b); err != nil {
		o.nackAll(msgs)
		return err
	}
	if len(b.touched) == 0 && len(b.out) == 0 && len(b.acks) == 0 {
		return nil
	}
	parts := map[int]bool{}
	for _, m := range msgs {
		parts[m.Partition] = true
	}
	for _, img := range b.touched {
		parts[img.snap.Partition] = true
	}
	if err := o.commit(ctx, b, parts); err != nil {
		return fmt.Errorf("orchestrator: batch of %d not committed: %w", len(msgs), err)
	}
	o.statsMu.Lock()
	o.batches++
	o.statsMu.Unlock()
	for _, img := range b.deleted {
		delete(o.images, img.snap.ProcessID)
	}
	return nil
}

func (o *Orchestrator) nackAll(msgs []*bus.Message) {
	for _, m := range msgs {
		o.cons.Nack(m, errors.New("orchestrator batch failed"))
	}
}

// route handles one message; false means it was dead-lettered (and so
// acknowledged) already.
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
	if env.ProcessID == "" {
		return deadLetter(fmt.Sprintf("%s message without a process_id", env.Type))
	}
	if env.ProcessID != m.Key {
		return deadLetter(fmt.Sprintf("message key %q differs from its process_id %q", m.Key, env.ProcessID))
	}
	switch env.Type {
	case protocol.TypeStart, protocol.TypeDecisionResult, protocol.TypeResult, protocol.TypeStarted, protocol.TypeHeartbeat, protocol.TypeTimerFired, protocol.TypeSignal, protocol.TypeAdminAction:
	default:
		return deadLetter(fmt.Sprintf("unknown message type %q on the events topic", env.Type))
	}
	pid := env.ProcessID
	img := o.images[pid]
	if img != nil && seen(img, env.ID) {
		o.drop(DropDuplicate, log, env.ID)
		return true
	}
	switch env.Type {
	case protocol.TypeStart:
		var req protocol.StartRequest
		if err := env.DecodePayload(&req); err != nil {
			return deadLetter(err.Error())
		}
		if img != nil {
			o.drop(DropAlreadyStarted, log, "a process with this id exists")
			return true
		}
		def, err := o.reg.Get(ctx, req.Definition, req.Version)
		if err != nil {
			return deadLetter(fmt.Sprintf("cannot start %s: %v", pid, err))
		}
		img = &image{def: def, snap: Snapshot{
			ProcessID: pid, Definition: def.Name, Version: def.Version, Partition: m.Partition, CreatedAt: b.now,
		}}
		o.images[pid] = img
		o.accept(b, img, env.ID, workflow.Event{V: workflow.EventVersion, Type: workflow.EventStart, ProcessID: pid, Input: req.Input, Actor: req.Actor, Time: env.Time, Parent: req.Parent})
		log.Info().Str("definition", def.Name).Int("version", def.Version).Msg("process started")
		return true
	case protocol.TypeDecisionResult:
		var res protocol.DecisionResult
		if err := env.DecodePayload(&res); err != nil {
			return deadLetter(err.Error())
		}
		if img == nil {
			o.drop(DropUnknownProcess, log, "decision result")
			return true
		}
		o.applyDecision(b, img, env.ID, &res, log)
		return true
	}
	if img == nil {
		o.drop(DropUnknownProcess, log, env.Type)
		return true
	}
	ev := workflow.Event{V: workflow.EventVersion, ProcessID: pid, Time: env.Time}
	switch env.Type {
	case protocol.TypeResult:
		var r protocol.Result
		if err := env.DecodePayload(&r); err != nil {
			return deadLetter(err.Error())
		}
		if err := r.Validate(); err != nil {
			return deadLetter("invalid result: " + err.Error())
		}
		ev.Type, ev.CommandID, ev.Attempt, ev.Item, ev.Compensation = workflow.EventResult, r.CommandID, r.Attempt, r.Item, r.Compensation
		if r.Status == protocol.StatusCompleted {
			ev.Output = r.Output
		} else {
			retryable := r.Error.Retryable
			ev.Error = &workflow.ErrorInfo{Type: r.Error.Type, Message: r.Error.Message, Retryable: &retryable}
		}
	case protocol.TypeStarted, protocol.TypeHeartbeat:
		pev, record, bad := progressEvent(env, img, b.now)
		if bad != "" {
			return deadLetter(bad)
		}
		if !record {
			return true // a heartbeat: kept in memory (progress.go)
		}
		ev = pev
	case protocol.TypeTimerFired:
		var t protocol.TimerFired
		if err := env.DecodePayload(&t); err != nil {
			return deadLetter(err.Error())
		}
		switch t.Kind {
		case protocol.TimerDecisionTimeout:
			o.decisionTimeout(b, img, t, log)
			return true
		case protocol.TimerRetention:
			o.expire(b, img, log)
			return true
		}
		ev.Type, ev.TimerID, ev.FiredAt = workflow.EventTimer, t.TimerID, t.FiredAt
		if workflow.TimerKind(t.Kind) == workflow.TimerHeartbeatTimeout && !(img.snap.State != nil && img.snap.State.Status.Terminal()) {
			o.foldBeats(b, img, t.TimerID)
		}
	case protocol.TypeSignal:
		var s protocol.Signal
		if err := env.DecodePayload(&s); err != nil {
			return deadLetter(err.Error())
		}
		ev.Type, ev.Signal, ev.Data, ev.Actor, ev.Reason = workflow.EventSignal, s.Name, s.Data, s.Actor, s.Reason
	case protocol.TypeAdminAction:
		var a protocol.AdminRequest
		if err := env.DecodePayload(&a); err != nil {
			return deadLetter(err.Error())
		}
		ev.Type, ev.StepID, ev.Output, ev.Actor, ev.Reason = workflow.EventType(a.Action), a.StepID, a.Output, a.Actor, a.Reason
		switch ev.Type {
		case workflow.EventRetry, workflow.EventSkip, workflow.EventCancel, workflow.EventTerminate, workflow.EventCompensate:
		default:
			return deadLetter(fmt.Sprintf("unknown admin action %q (want retry, skip, cancel or terminate)", a.Action))
		}
	default:
		return deadLetter(fmt.Sprintf("unknown message type %q on the events topic", env.Type))
	}
	if err := ev.Validate(); err != nil {
		return deadLetter(err.Error())
	}
	if img.snap.State != nil && img.snap.State.Status.Terminal() && !lateForFinished(img, &ev) &&
		!(ev.Type == workflow.EventCompensate && img.snap.State.Status == workflow.StatusCompleted) { // a parent compensates a completed child
		o.drop(DropTerminal, log, string(ev.Type))
		return true
	}
	o.accept(b, img, env.ID, ev)
	return true
}

func seen(img *image, id string) bool {
	for _, s := range img.snap.Seen {
		if s == id {
			return true
		}
	}
	return false
}

func (o *Orchestrator) accept(b *batch, img *image, envID string, ev workflow.Event) {
	img.snap.Seen = append(img.snap.Seen, envID)
	if n := len(img.snap.Seen) - o.opts.SeenLimit; n > 0 {
		img.snap.Seen = append([]string(nil), img.snap.Seen[n:]...)
	}
	b.record(img, Record{Kind: RecordEvent, Event: &ev, EnvelopeID: envID})
	img.snap.Pending = append(img.snap.Pending, PendingEvent{Seq: img.snap.Seq, Event: ev})
}

// issue sends the pending events of a process to a decider.
func (o *Orchestrator) issue(b *batch, img *image) error {
	last := img.snap.Pending[len(img.snap.Pending)-1].Seq
	img.snap.Outstanding = &Outstanding{
		TaskID: fmt.Sprintf("%s/%d", img.snap.ProcessID, last), Upto: last, Now: b.now, Issued: 1, IssuedAt: b.now,
	}
	b.touch(img)
	return o.sendTask(b, img)
}

func (o *Orchestrator) sendTask(b *batch, img *image) error {
	out := img.snap.Outstanding
	evs := make([]workflow.Event, 0, len(img.snap.Pending))
	for _, p := range img.snap.Pending {
		if p.Seq <= out.Upto {
			evs = append(evs, p.Event)
		}
	}
	task := protocol.DecisionTask{
		TaskID: out.TaskID, ProcessID: img.snap.ProcessID, Definition: img.snap.Definition, Version: img.snap.Version,
		State: img.snap.State, Events: evs, Now: out.Now, ReplyTo: o.opts.Topics.Events,
	}
	payload, err := encode(protocol.TypeDecisionTask, fmt.Sprintf("task:%s#%d", out.TaskID, out.Issued), img.snap.ProcessID, b.now, task)
	if err != nil {
		return err
	}
	b.out = append(b.out, outMsg{o.decisions, &bus.OutMessage{Key: img.snap.ProcessID, Payload: payload}})
	return o.setTimer(b, protocol.Timer{
		TimerID: fmt.Sprintf("decision:%s#%d", out.TaskID, out.Issued), ProcessID: img.snap.ProcessID,
		Kind: protocol.TimerDecisionTimeout, Step: out.TaskID, FireAt: b.now.Add(o.opts.DecisionTimeout),
	})
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

func (o *Orchestrator) decisionTimeout(b *batch, img *image, t protocol.TimerFired, log zerolog.Logger) {
	out := img.snap.Outstanding
	if out == nil || fmt.Sprintf("decision:%s#%d", out.TaskID, out.Issued) != t.TimerID {
		o.drop(DropStaleTimer, log, t.TimerID)
		return
	}
	out.Issued++
	b.touch(img)
	log.Warn().Str("task_id", out.TaskID).Int("issued", out.Issued).Msg("decision timed out; re-issuing it")
	if err := o.sendTask(b, img); err != nil {
		log.Error().Err(err).Msg("cannot re-issue decision")
	}
}

func (o *Orchestrator) applyDecision(b *batch, img *image, envID string, res *protocol.DecisionResult, log zerolog.Logger) {
	out := img.snap.Outstanding
	if out == nil || out.TaskID != res.TaskID {
		o.drop(DropStaleDecision, log, res.TaskID)
		return
	}
	rec := Record{Kind: RecordDecision, TaskID: out.TaskID, Upto: out.Upto, Now: out.Now, EnvelopeID: envID}
	if res.Now.After(out.Now) {
		// The decider decided later than the task was issued (it waited in
		// the queue); replay must decide at the same time.
		rec.Now = res.Now
	}
	if res.Error != "" || res.Decision == nil || res.Decision.State == nil {
		rec.Kind, rec.Error = RecordRejected, res.Error
		log.Error().Str("task_id", res.TaskID).Str("error", res.Error).Msg("decision failed; its events are rejected")
	} else {
		d := res.Decision
		obs := o.opts.Observer
		obs.DecisionApplied(img.snap.Definition, b.now.Sub(out.IssuedAt))
		var oldest time.Time
		for _, p := range img.snap.Pending {
			if p.Seq <= out.Upto && !p.Event.Time.IsZero() && (oldest.IsZero() || p.Event.Time.Before(oldest)) {
				oldest = p.Event.Time
			}
		}
		if !oldest.IsZero() && len(d.Commands) > 0 {
			obs.EventToCommand(img.snap.Definition, b.now.Sub(oldest))
		}
		observeDecision(obs, img.snap.Definition, img.snap.State, d.State, d)
		img.snap.State = d.State
		rec.Status, rec.Ignored = d.Status, d.Ignored
		for _, c := range d.Commands {
			rec.Commands = append(rec.Commands, c.ID)
		}
		for _, t := range d.Timers {
			rec.Timers = append(rec.Timers, t.ID)
		}
		for _, ig := range d.Ignored {
			o.drop(string(ig.Reason), log, ig.Detail)
		}
		b.status[img] = true
		if d.StatusChanged {
			log.Info().Str("status", string(d.Status)).Msg("process status changed")
			if d.Status.Terminal() {
				_ = o.setTimer(b, protocol.Timer{
					TimerID: "retention:" + img.snap.ProcessID, ProcessID: img.snap.ProcessID,
					Kind: protocol.TimerRetention, FireAt: b.now.Add(o.opts.Retention),
				})
			}
		}
	}
	keep := img.snap.Pending[:0]
	for _, p := range img.snap.Pending {
		if p.Seq > out.Upto {
			keep = append(keep, p)
		}
	}
	img.snap.Pending = keep
	img.snap.Outstanding = nil
	o.slots.release(img.snap.ProcessID)
	b.record(img, rec)
	if img.snap.State != nil && img.snap.State.Status.Terminal() {
		keep := img.snap.Pending[:0]
		for _, p := range img.snap.Pending {
			if lateForFinished(img, &p.Event) {
				keep = append(keep, p) // a late success still matters (progress.go)
				continue
			}
			o.drop(DropTerminal, log, string(p.Event.Type))
		}
		img.snap.Pending = keep
	}
}

// expire forgets a finished process once its retention has passed.
func (o *Orchestrator) expire(b *batch, img *image, log zerolog.Logger) {
	if img.snap.State == nil || !img.snap.State.Status.Terminal() {
		o.drop(DropStaleTimer, log, "retention of a live process")
		return
	}
	pid := img.snap.ProcessID
	b.out = append(b.out,
		outMsg{o.snapshots[o.partitionOf(img)], &bus.OutMessage{Key: pid}}, // empty payload: deleted from the compacted view
		outMsg{o.status, &bus.OutMessage{Key: pid}},
	)
	b.deleted = append(b.deleted, img)
	log.Info().Msg("finished process expired")
}

func statusOf(img *image) StatusRecord {
	r := StatusRecord{
		ProcessID: img.snap.ProcessID, Definition: img.snap.Definition, Version: img.snap.Version, Seq: img.snap.Seq,
		Partition: img.snap.Partition, HistoryIDs: img.snap.HistoryIDs,
	}
	st := img.snap.State
	if st == nil {
		r.Status = workflow.StatusRunning
		r.StartedAt = img.snap.CreatedAt
		r.UpdatedAt = img.snap.CreatedAt
		return r
	}
	r.Status, r.StartedAt, r.UpdatedAt, r.EndedAt = st.Status, st.StartedAt, st.UpdatedAt, st.EndedAt
	r.Steps = map[string]string{}
	for _, s := range st.Steps {
		r.Steps[s.ID] = string(s.Status)
	}
	if st.Failure != nil && st.Failure.Error != nil {
		r.LastError = st.Failure.StepID + ": " + st.Failure.Error.Type + ": " + st.Failure.Error.Message
	}
	return r
}
