package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/workflow"
)

// DeciderOptions configure a decider (the remote decider mode,
// OrchestratorOptions.Decider = DeciderRemote).
type DeciderOptions struct {
	// Name identifies the instance (default "decider").
	Name string
	// Topics are the engine's topics.
	Topics protocol.Topics
	// Concurrency is the number of batches whose answers are on their way
	// at once (default 4).
	Concurrency int
	// MaxBatch bounds the tasks of one batch (default 64): a batch's
	// answers are sent together, each task acknowledged once its answer is
	// sent.
	MaxBatch int
	// BatchWait is how long a batch waits for more tasks after its first
	// (default 3ms).
	BatchWait time.Duration
	// MaxDeliveries dead-letters a task that keeps failing (default 5).
	MaxDeliveries int
	// Clock dates a decision whose task waited in the queue: a decision is
	// made at max(task.Now, Clock()), recorded in the result, so attempt
	// timeouts count from when the command is sent.
	Clock func() time.Time
	// StateCache is how many processes' last states the decider keeps
	// decoded (default 4096; negative: none): the state it sent in an
	// answer, taken instead of decoding the process's next task when that
	// task carries the same bytes (protocol/decisions.go, "Split state").
	// With several deciders a process's next task reaches this one only
	// sometimes (the subscription is Shared); a miss decodes, as without.
	StateCache int
}

func (o *DeciderOptions) defaults() {
	if o.Name == "" {
		o.Name = "decider"
	}
	if o.Topics.Events == "" {
		o.Topics = protocol.DefaultTopics()
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 64
	}
	if o.BatchWait <= 0 {
		o.BatchWait = 3 * time.Millisecond
	}
	if o.MaxDeliveries <= 0 {
		o.MaxDeliveries = 5
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.StateCache == 0 {
		o.StateCache = 4096
	}
}

// DeciderStats count what a decider did since it was created.
type DeciderStats struct {
	// Tasks counts the tasks answered (their answer sent and the task
	// acknowledged): Decided with a decision, Errors with an error (unknown
	// definition, a decision that failed).
	Tasks, Decided, Errors int64
	// DeadLettered counts tasks moved to the dead-letter topic (undecodable
	// or invalid), Nacked the tasks given back to come again (definitions
	// unreadable, an answer that could not be sent).
	DeadLettered, Nacked int64
	// StatesReused counts the tasks whose state was taken from the state
	// cache instead of decoded (DeciderOptions.StateCache).
	StatesReused int64
}

// Decider is stateless: it takes decision tasks, runs workflow.Decide for
// each and sends the decision back to the task's reply topic (the events
// topic), keyed by process id; the task is acknowledged once the answer is
// sent. The decider emits nothing else: the orchestrator carries out a
// decision's effects (commands, timers, records) in its own transaction
// when the answer arrives, with the code of the inline mode.
//
// A task delivered twice (a decider died between answering and
// acknowledging, or the orchestrator re-issued it after its decision
// timeout) is answered twice; the orchestrator applies the first answer to
// the outstanding task and drops the other as stale, so no transaction is
// needed here.
type Decider struct {
	bus  bus.Bus
	reg  *Registry
	opts DeciderOptions
	log  zerolog.Logger

	mu        sync.Mutex
	producers map[string]bus.Producer

	states stateCache

	stats struct {
		tasks, decided, errors, deadLettered, nacked, reused atomic.Int64
	}
}

// NewDecider creates a decider; Run starts it.
func NewDecider(b bus.Bus, reg *Registry, opts DeciderOptions, log zerolog.Logger) *Decider {
	opts.defaults()
	return &Decider{bus: b, reg: reg, opts: opts, producers: map[string]bus.Producer{}, states: newStateCache(opts.StateCache),
		log: log.With().Str("component", "decider").Str("instance", opts.Name).Logger()}
}

// Stats returns the decider's counters.
func (d *Decider) Stats() DeciderStats {
	s := &d.stats
	return DeciderStats{
		Tasks: s.tasks.Load(), Decided: s.decided.Load(), Errors: s.errors.Load(),
		DeadLettered: s.deadLettered.Load(), Nacked: s.nacked.Load(), StatesReused: s.reused.Load(),
	}
}

// Run decides until ctx is done: bus.Consume takes the tasks in batches
// (decoding, checking and dead-lettering what is not a valid task), and
// each batch's answers are sent by a bus.Batch that acknowledges every task
// once its own answer is sent (and gives it back if that send fails), with
// up to Concurrency batches on their way.
func (d *Decider) Run(ctx context.Context) error {
	if err := EnsureTopics(ctx, d.bus, d.opts.Topics); err != nil {
		return err
	}
	cons, err := d.bus.Subscribe(ctx, bus.SubscribeOptions{
		Topic: d.opts.Topics.Decisions, Subscription: protocol.DeciderSubscription, Type: bus.Shared, ConsumerName: d.opts.Name,
		MaxDeliveries: d.opts.MaxDeliveries, NackDelay: 500 * time.Millisecond,
		ReceiveQueueSize: 2 * d.opts.MaxBatch,
	})
	if err != nil {
		return fmt.Errorf("decider: %w", err)
	}
	defer cons.Close()
	defer d.closeProducers()
	defer func() {
		st := d.Stats()
		d.log.Info().Int64("tasks", st.Tasks).Int64("decided", st.Decided).Int64("errors", st.Errors).
			Int64("dead_lettered", st.DeadLettered).Int64("nacked", st.Nacked).Int64("states_reused", st.StatesReused).
			Msg("decider stopped")
	}()
	slots := make(chan struct{}, d.opts.Concurrency)
	var inflight sync.WaitGroup
	defer inflight.Wait() // before the consumer closes: every answer sent is acknowledged or given back
	err = bus.Consume(ctx, cons, bus.ConsumeOptions{
		BatchSize: d.opts.MaxBatch, BatchWait: d.opts.BatchWait, Types: []string{protocol.TypeDecisionTask},
		OnDrop: func(m *bus.Message, reason string, err error) {
			if err != nil {
				d.stats.nacked.Add(1)
				d.log.Warn().Err(err).Str("reason", reason).Msg("dead-lettering a bad decision task failed; it will come again")
				return
			}
			d.stats.deadLettered.Add(1)
			d.log.Warn().Str("reason", reason).Str("key", m.Key).Msg("bad decision task dead-lettered")
		},
	}, d.decodeTask, func(ctx context.Context, tasks []bus.Inbound[protocol.DecisionTask]) error {
		b := bus.NewBatch(bus.BatchOptions{})
		clock := d.opts.Clock().UTC()
		var forwarded int64
		var sent atomic.Int64
		for _, in := range tasks {
			task := in.Value
			res, err := d.decide(ctx, &task, clock)
			var p bus.Producer
			var payload []byte
			if err == nil {
				payload, err = encode(protocol.TypeDecisionResult, "decision:"+task.TaskID, task.ProcessID, clock, res)
			}
			if err == nil {
				p, err = d.producer(ctx, task.ReplyTo)
			}
			if err != nil {
				d.log.Warn().Err(err).Str("process_id", task.ProcessID).Str("task_id", task.TaskID).Msg("decision not answered; the task will come again")
				cons.Nack(in.Message, err)
				d.stats.nacked.Add(1)
				continue
			}
			failed := res.Error != ""
			forwarded++
			b.Forward(p, &bus.OutMessage{Key: task.ProcessID, Payload: payload}, cons, in.Message, func(bus.MessageID) {
				sent.Add(1)
				d.stats.tasks.Add(1)
				if failed {
					d.stats.errors.Add(1)
				} else {
					d.stats.decided.Add(1)
				}
			})
		}
		if b.Len() == 0 {
			return nil
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			_ = b.Abort(context.WithoutCancel(ctx), ctx.Err())
			return nil
		}
		inflight.Go(func() {
			defer func() { <-slots }()
			if err := b.Commit(ctx); err != nil {
				// The tasks whose answer was not sent are given back.
				d.stats.nacked.Add(forwarded - sent.Load())
				d.log.Warn().Err(err).Msg("answers not sent; their tasks will come again")
			}
		})
		return nil
	})
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("decider: %w", err)
	}
	return nil
}

// decodeTask decodes and checks a decision task, its state decompressed
// or taken from the state cache; an error is the reason to dead-letter it.
func (d *Decider) decodeTask(env *bus.Envelope) (protocol.DecisionTask, error) {
	task, err := bus.JSON[protocol.DecisionTask](env)
	if err != nil {
		return task, err
	}
	if z, st := d.states.get(task.ProcessID); task.ExpandFrom(z, st) {
		d.stats.reused.Add(1)
		return task, nil
	}
	return task, task.Expand()
}

// decide makes task's decision at max(task.Now, clock). A task that cannot
// be decided (unknown definition, Decide failing) is answered with an
// error; an error means nothing can be answered now.
func (d *Decider) decide(ctx context.Context, task *protocol.DecisionTask, clock time.Time) (*protocol.DecisionResult, error) {
	now := task.Now
	if clock.After(now) {
		now = clock
	}
	res := &protocol.DecisionResult{TaskID: task.TaskID, ProcessID: task.ProcessID, Decider: d.opts.Name, Now: now}
	def, err := d.reg.Get(ctx, task.Definition, task.Version)
	switch {
	case errors.Is(err, ErrUnknownDefinition):
		res.Error = err.Error()
	case err != nil:
		return nil, err // the definitions could not be read: try again later
	default:
		dec, err := workflow.Decide(def, task.State, task.Events, now)
		if err != nil {
			res.Error = err.Error()
			break
		}
		if err := res.SetDecision(&dec, task.Compact(), task.SplitState, task.StateApart); err != nil {
			res.Decision, res.Error = nil, err.Error()
			break
		}
		switch {
		case len(res.StateZstd) > 0 && !dec.State.Status.Terminal():
			d.states.put(task.ProcessID, res.StateZstd, dec.State)
		default: // nothing to reuse, or no next task is likely
			d.states.drop(task.ProcessID)
		}
	}
	if res.Error != "" {
		d.log.Error().Str("process_id", task.ProcessID).Str("task_id", task.TaskID).Str("error", res.Error).Msg("no decision possible")
	}
	return res, nil
}

func (d *Decider) producer(ctx context.Context, topic string) (bus.Producer, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if p, ok := d.producers[topic]; ok {
		return p, nil
	}
	// Answers to different processes share broker entries: the reply topic
	// (events) is read by one Failover consumer per partition, and one
	// entry per answer cost the broker more CPU than deciding.
	p, err := d.bus.Producer(ctx, bus.ProducerOptions{Topic: topic, MixedKeys: true})
	if err != nil {
		return nil, fmt.Errorf("decider: producer for %s: %w", topic, err)
	}
	d.producers[topic] = p
	return p, nil
}

func (d *Decider) closeProducers() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for t, p := range d.producers {
		_ = p.Close()
		delete(d.producers, t)
	}
}

// stateCache holds, per process, the last state a decider answered with
// and its compressed bytes (DeciderOptions.StateCache). A state is never
// modified once made (workflow.Decide copies the state it is given), so
// one is shared safely by the tasks that take it. Full, it forgets an
// arbitrary entry for each new one.
type stateCache struct {
	mu  sync.Mutex
	max int
	m   map[string]cachedState
}

type cachedState struct {
	z  []byte
	st *workflow.State
}

func newStateCache(max int) stateCache {
	return stateCache{max: max, m: map[string]cachedState{}}
}

func (c *stateCache) get(pid string) ([]byte, *workflow.State) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.m[pid]
	return e.z, e.st
}

func (c *stateCache) put(pid string, z []byte, st *workflow.State) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[pid]; !ok && len(c.m) >= c.max {
		for other := range c.m {
			delete(c.m, other)
			break
		}
	}
	c.m[pid] = cachedState{z, st}
}

func (c *stateCache) drop(pid string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, pid)
}
