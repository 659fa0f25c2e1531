package engine

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/tracing"
)

// OrchestratorOptions configure an orchestrator.
type OrchestratorOptions struct {
	// Name identifies the instance; Failover gives partitions out by name,
	// so it must be unique and stable (default "orchestrator").
	Name string
	// Topics are the engine's topics.
	Topics protocol.Topics
	// Decider is where decisions are made: DeciderInline (default) inside
	// the batch that received the events, or DeciderRemote by cmd/decider
	// over the decisions topic. Both apply a decision with the same code
	// and emit its effects in the orchestrator's batch transaction.
	Decider string
	// BatchSize bounds the events handled in one transaction (default
	// 256). Batches are smaller when the machine cannot send that many
	// within the transaction timeout (adaptive.go).
	BatchSize int
	// BatchWait is how long to wait for more events once one has arrived
	// (default 2ms) while a batch is on its way; with none on its way the
	// inputs already received go at once (an unloaded engine does not
	// wait at every hop, and a loaded one always has a batch on its way).
	BatchWait time.Duration
	// JobBatchMessages bounds the commands that share one broker entry on
	// a job queue (default DefaultJobBatchMessages). The broker measured
	// (Pulsar 4.0.7) stores a topic's transactional entries one after
	// another, so a batch's commands to one queue, one entry each, took
	// ~75 ms to send with 50 of them and bounded the engine to ~330 trip
	// sagas/s; in entries of up to 8 they take a few ms (docs/benchmarks.md,
	// session 6). A Shared subscription hands
	// an entry to one worker as a whole, and a worker's crash brings back
	// the entry's commands it had finished too: keep it at most the
	// workers' concurrency (both SDKs' default is 8). 1: one command an
	// entry (best spread, slowest).
	JobBatchMessages int
	// SnapshotEvery snapshots a process once this many of its records are
	// not covered by its last snapshot (default 64).
	SnapshotEvery int
	// SnapshotAfter snapshots a process whose records are not all covered
	// once it has been idle this long (default 5s), so that the history a
	// restart replays stays short.
	SnapshotAfter time.Duration
	// BatchSpacing: while a batch is on its way, the next one is launched
	// this long after it at the earliest, unless the inputs waiting fill a
	// batch (default 25ms; negative: as soon as a slot is free). At partial
	// load a free slot otherwise takes a few inputs at once, and every batch
	// is a transaction whose fixed cost — coordinator log records, a commit
	// marker on each partition it touched, an entry per producer — the
	// broker pays again: at 128 sagas in flight, 25 ms cut the broker's CPU
	// per saga by a quarter (1.56 → 1.19 ms) and its entries per saga 8.7 →
	// 7.7 (docs/benchmarks.md, session 8). A batch launched with no other
	// on its way never waits (an unloaded engine's latency is unchanged).
	BatchSpacing time.Duration
	// MaxInFlight bounds the batches on their way at once: built and
	// sending, or committing (default 2: the loop builds batch N+1 while
	// batch N commits; batches commit in order). More overlap more, but
	// each transaction then stays open longer on a loaded machine.
	MaxInFlight int
	// DecisionTimeout re-issues a remote decision task that got no answer
	// for this long, then for twice as long, ... (default 30s; remote mode
	// only). No timer is set per task: a once-a-second sweep of the
	// outstanding tasks does it (orchestrator_remote.go).
	DecisionTimeout time.Duration
	// AnswerWait (remote mode): a batch that issues decision tasks sends
	// them at once and waits up to this long for their answers before it
	// launches, so that the answers that come in time are applied in the
	// same transaction as the events they decide: one flight and one
	// history entry per decision instead of two (default
	// DefaultAnswerWait; negative: never wait). Only the processes with a
	// task wait; the rest of their batch launches at once
	// (orchestrator_hold.go).
	AnswerWait time.Duration
	// Retention keeps a finished process's image and status this long
	// (default 24h); its history follows Topics.HistoryRetention.
	Retention time.Duration
	// SeenLimit is how many recent signal and admin-action ids each process
	// remembers to drop duplicates (default 32; results and timers are
	// matched by their own ids).
	SeenLimit int
	// OwnershipPoll is how often the orchestrator asks the broker which
	// partitions it owns (default DefaultOwnershipPoll); it also asks at
	// once when the broker tells its consumer of a change. A partition it
	// gains is taken over at once: the broker fences the previous owner
	// (ownership.go). Each question costs the broker a topic-stats request
	// per partition.
	OwnershipPoll time.Duration
	// MaxOutstanding bounds the decisions in flight (issued, not yet
	// answered) of this instance (default DefaultMaxOutstanding). A process
	// with pending events and no free slot waits in a FIFO queue and gets
	// one task with all its pending events when a slot frees, so decision
	// tasks never wait in the deciders' queue for longer than the decision
	// timeout just because too many were issued at once.
	MaxOutstanding int
	// TxTimeout is how long the broker keeps a transaction of this
	// instance open before aborting it by itself: after a crash, the
	// inputs of its last batches come back after at most this (default
	// 10s). Longer delays a takeover (results held by a dead owner's open
	// transaction come back only then, and attempt timeouts may fire
	// meanwhile); shorter fails batches that take longer to send (seen at
	// load 25 on two cores with -race: a 256-input batch needed > 10s).
	TxTimeout time.Duration
	// MaxMessageBytes is the largest message the broker accepts (default
	// bus.MaxPayloadBytes): a decision whose command or state would not fit
	// fails its process instead of failing every batch that carries it.
	MaxMessageBytes int
	// Observer receives measurements for metrics (default NopObserver).
	Observer Observer
	// Tracer exports a trace per process (nil: none; package tracing).
	Tracer *tracing.Tracer
	// Clock returns the current time (default time.Now).
	Clock func() time.Time
}

func (o *OrchestratorOptions) defaults() {
	if o.Observer == nil {
		o.Observer = NopObserver{}
	}
	if o.OwnershipPoll <= 0 {
		o.OwnershipPoll = DefaultOwnershipPoll
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
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 2
	}
	if o.AnswerWait == 0 {
		o.AnswerWait = DefaultAnswerWait
	}
	if o.BatchSpacing == 0 {
		o.BatchSpacing = DefaultBatchSpacing
	}
	if o.JobBatchMessages <= 0 {
		o.JobBatchMessages = DefaultJobBatchMessages
	}
	if o.SnapshotEvery <= 0 {
		o.SnapshotEvery = 64
	}
	if o.SnapshotAfter <= 0 {
		o.SnapshotAfter = 5 * time.Second
	}
	if o.DecisionTimeout <= 0 {
		o.DecisionTimeout = 30 * time.Second
	}
	if o.Retention <= 0 {
		o.Retention = 24 * time.Hour
	}
	if o.SeenLimit <= 0 {
		o.SeenLimit = 32
	}
	if o.MaxOutstanding <= 0 {
		o.MaxOutstanding = DefaultMaxOutstanding
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Decider == "" {
		o.Decider = DeciderInline
	}
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = bus.MaxPayloadBytes
	}
}

// Validate checks the options a caller can get wrong.
func (o OrchestratorOptions) Validate() error {
	switch o.Decider {
	case "", DeciderInline, DeciderRemote:
		return nil
	}
	return fmt.Errorf("%w: decider %q (want %q or %q)", bus.ErrBadOptions, o.Decider, DeciderInline, DeciderRemote)
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
	DropNotOwned       = "not_owned"
)

// DefaultMaxOutstanding is the default OrchestratorOptions.MaxOutstanding:
// about what one decider answers within the default decision timeout on a
// busy two-core machine, so a task issued at once is answered before it is
// re-issued.
const DefaultMaxOutstanding = 512

// Orchestrator owns processes partition by partition (a Failover
// subscription on the events topic), appends accepted events to their
// streams, keeps their memory images, and decides for them one decision at
// a time per process: inside its batch (DeciderInline), or through the
// deciders with at most MaxOutstanding decisions in flight (DeciderRemote).
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
	// terms are the loaded partitions' history and snapshots producers
	// (ownership.go), by partition (0 when the topics are not
	// partitioned); the loop's.
	terms map[int]*term
	// events are producers on partitions of the events topic, for inputs
	// that arrived on another partition than their process's (route);
	// opened on first use, by the loop only.
	events map[int]bus.Producer

	// jobs are the producers of the job queues, by service (opened on
	// first use, by the loop only).
	jobs map[string]bus.Producer

	m      machine
	adapt  *adaptive
	images map[string]*image
	// recovering are loaded images whose physical timer may be missing
	// (machine.recoverTimers), handled in the next batch.
	recovering []*image
	// busy counts the uncommitted batches each process is in; inflight is
	// the number of batches on their way (orchestrator_commit.go).
	busy     map[string]int
	inflight int
	// held is the batch waiting for the answers to its tasks, if any
	// (orchestrator_hold.go).
	held *heldBatch
	// gen counts the failures the loop reset partitions for: the batches
	// launched before one are aborted with it (orchestrator_reset.go).
	gen uint64
	// resetsInARow counts the failures not caused by ownership since the
	// last batch committed (maxResetsInARow).
	resetsInARow int
	// flying mirrors inflight for the receiving goroutine: with no batch
	// on its way, a batch does not wait BatchWait for more inputs.
	flying atomic.Int32
	// Snapshots and checkpoints (orchestrator_snapshot.go).
	batchNo   uint64
	uncovered map[*image]struct{}
	tails     map[int]*tail
	// spare is the transaction begun ahead for the next flight (txspare.go).
	spare *spareTx
	sweep []*image
	// warm are the images not frozen; retention and expiring, the finished
	// processes by the end of their retention and those due (frozen.go,
	// retention.go).
	warm map[*image]struct{}
	// freezeQ are the images the last sweep found freezable, frozen a few
	// per loop iteration (frozen.go).
	freezeQ   []*image
	retention *retention
	expiring  []*image
	own       *ownership
	parts     partitions
	slots     *slots
	ready     readiness

	statsMu     sync.Mutex
	drops       map[string]int64
	forwarded   int64
	batches     int64
	failed      int64 // batches not committed
	limitNow    int   // the adaptive batch limit, as of the last landed batch
	outstanding int
	queued      int
	imageCounts ImageCounts
}

// NewOrchestrator creates an orchestrator; Run starts it.
func NewOrchestrator(b bus.Bus, reg *Registry, opts OrchestratorOptions, log zerolog.Logger) *Orchestrator {
	opts.defaults()
	return &Orchestrator{
		bus: b, reg: reg, opts: opts,
		log:    log.With().Str("component", "orchestrator").Str("instance", opts.Name).Logger(),
		images: map[string]*image{}, slots: newSlots(opts.MaxOutstanding), drops: map[string]int64{},
		jobs: map[string]bus.Producer{}, terms: map[int]*term{}, events: map[int]bus.Producer{},
		adapt: newAdaptive(opts.BatchSize, opts.TxTimeout), limitNow: opts.BatchSize,
		m: machine{
			remote: opts.Decider == DeciderRemote, seenLimit: opts.SeenLimit,
			replyTo: b.Namespace().Topic(opts.Topics.Events), maxMessage: opts.MaxMessageBytes, obs: opts.Observer, tracer: opts.Tracer,
			taskSalt: strings.ToLower(rand.Text()[:6]) + "-",
		},
	}
}

// Batches returns how many batches committed and failed, and how many
// work units the next batch may take (adaptive.go). It is safe to call
// from any goroutine.
func (o *Orchestrator) Batches() (committed, failed int64, limit int) {
	o.statsMu.Lock()
	defer o.statsMu.Unlock()
	return o.batches, o.failed, o.limitNow
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

// Forwarded returns how many inputs arrived on another partition of the
// events topic than their process's and were forwarded to it.
func (o *Orchestrator) Forwarded() int64 {
	o.statsMu.Lock()
	defer o.statsMu.Unlock()
	return o.forwarded
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
// aborted and its events are delivered again; only the partitions it
// involved are reset (orchestrator_reset.go). After repeated failures not
// caused by ownership, the orchestrator drops its memory images and
// re-subscribes.
func (o *Orchestrator) Run(ctx context.Context) error {
	if err := o.opts.Validate(); err != nil {
		return err
	}
	if err := EnsureTopics(ctx, o.bus, o.opts.Topics); err != nil {
		return err
	}
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		// Producers are opened for each subscription: a producer whose
		// transaction was ended under it (a new owner aborts a deposed
		// owner's batch) may not recover, so a fresh start gets fresh ones.
		o.statsMu.Lock()
		committed := o.batches
		o.statsMu.Unlock()
		err := o.openProducers(ctx)
		if err == nil {
			err = o.serve(ctx)
			o.closeProducers()
		}
		if ctx.Err() != nil {
			return nil
		}
		o.statsMu.Lock()
		if o.batches > committed {
			backoff = 100 * time.Millisecond // it made progress: not a failure in a row
		}
		o.statsMu.Unlock()
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

// decisionBatchMessages bounds the decision tasks of one broker entry (the
// deciders' batch is 64 tasks by default).
const decisionBatchMessages = 32

func (o *Orchestrator) openProducers(ctx context.Context) error {
	t := o.opts.Topics
	var err error
	open := func(po bus.ProducerOptions) bus.Producer {
		if err != nil {
			return nil
		}
		var p bus.Producer
		p, err = o.bus.Producer(ctx, po)
		return p
	}
	// The status rows of a batch share broker entries (the status table is
	// read by readers; bus.ProducerOptions.MixedKeys); timers go to a
	// Shared subscription: one key a batch. Decision tasks share entries
	// too, at most decisionBatchMessages each: a decider is handed an entry
	// whole, so the bound keeps the tasks spread over several deciders;
	// deciders are stateless and a process has one task at a time, so
	// nothing needs one key an entry. One entry per task cost the broker
	// ~0.3 ms of CPU per trip saga (remote mode at 1,000 in flight: 1.86 ->
	// ~1.5 ms per saga).
	o.status = open(bus.ProducerOptions{Topic: t.Status, MixedKeys: true})
	o.timerTopic = open(bus.ProducerOptions{Topic: t.Timers})
	o.decisions = open(bus.ProducerOptions{Topic: t.Decisions, MixedKeys: true, BatchingMaxMessages: decisionBatchMessages})
	if err != nil {
		o.closeProducers()
		return fmt.Errorf("orchestrator: %w", err)
	}
	return nil
}

func (o *Orchestrator) closeProducers() {
	for _, p := range []bus.Producer{o.status, o.decisions, o.timerTopic} {
		if p != nil {
			_ = p.Close()
		}
	}
	o.status, o.decisions, o.timerTopic = nil, nil, nil
	for svc, p := range o.jobs {
		_ = p.Close()
		delete(o.jobs, svc)
	}
	for i, p := range o.events {
		_ = p.Close()
		delete(o.events, i)
	}
}

// DefaultJobBatchMessages is OrchestratorOptions.JobBatchMessages's
// default: the workers' default concurrency in both SDKs.
const DefaultJobBatchMessages = 8

// jobProducer is the producer of a service's job queue, created on first
// use. Its batches mix keys, up to JobBatchMessages commands an entry (see
// there).
func (o *Orchestrator) jobProducer(ctx context.Context, service string) (bus.Producer, error) {
	if p := o.jobs[service]; p != nil {
		return p, nil
	}
	if err := o.bus.EnsureTopic(ctx, protocol.JobTopicSpec(service)); err != nil {
		return nil, fmt.Errorf("orchestrator: job queue of %s: %w", service, err)
	}
	p, err := o.bus.Producer(ctx, bus.ProducerOptions{Topic: protocol.JobTopic(service), MixedKeys: true,
		BatchingMaxMessages: o.opts.JobBatchMessages})
	if err != nil {
		return nil, fmt.Errorf("orchestrator: job queue of %s: %w", service, err)
	}
	o.jobs[service] = p
	return p, nil
}

// partitionOf is the index of img's term (o.terms): the partition its
// process id routes to (bus.KeyPartition), 0 when the topics are not
// partitioned.
func (o *Orchestrator) partitionOf(img *image) int {
	if o.opts.Topics.Partitions == 0 {
		return 0
	}
	return img.partition
}

// termOf is the term of partition p's streams. The loop only touches
// processes of loaded partitions, which have one.
func (o *Orchestrator) termOf(p int) *term {
	if o.opts.Topics.Partitions == 0 {
		p = 0
	}
	return o.terms[p]
}

// eventsPartition is a producer on partition p of the events topic.
func (o *Orchestrator) eventsPartition(ctx context.Context, p int) (bus.Producer, error) {
	if pr := o.events[p]; pr != nil {
		return pr, nil
	}
	pr, err := o.bus.Producer(ctx, protocol.EventsProducer(o.bus.Namespace().Partition(o.opts.Topics.Events, p)))
	if err != nil {
		return nil, fmt.Errorf("orchestrator: events partition %d: %w", p, err)
	}
	o.events[p] = pr
	return pr, nil
}
