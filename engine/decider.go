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
	"github.com/pulsaga/pulsaga/workflow"
)

// DeciderOptions configure a decider (the remote decider mode,
// OrchestratorOptions.Decider = DeciderRemote).
type DeciderOptions struct {
	// Name identifies the instance (default "decider").
	Name string
	// Topics are the engine's topics.
	Topics Topics
	// Concurrency is the number of goroutines deciding (default 4).
	Concurrency int
	// MaxBatch bounds the tasks decided whose answers the broker has not
	// confirmed yet (default 64): a task is acknowledged once its answer is
	// sent.
	MaxBatch int
	// BatchWait is how long answers wait to be sent together (producer
	// batching, default 1ms).
	BatchWait time.Duration
	// MaxDeliveries dead-letters a task that keeps failing (default 5).
	MaxDeliveries int
	// Clock dates a decision whose task waited in the queue: a decision is
	// made at max(task.Now, Clock()), recorded in the result, so attempt
	// timeouts count from when the command is sent.
	Clock func() time.Time
}

func (o *DeciderOptions) defaults() {
	if o.Name == "" {
		o.Name = "decider"
	}
	if o.Topics.Events == "" {
		o.Topics = DefaultTopics()
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 64
	}
	if o.BatchWait <= 0 {
		o.BatchWait = time.Millisecond
	}
	if o.MaxDeliveries <= 0 {
		o.MaxDeliveries = 5
	}
	if o.Clock == nil {
		o.Clock = time.Now
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

	stats struct {
		tasks, decided, errors, deadLettered, nacked atomic.Int64
	}
}

// NewDecider creates a decider; Run starts it.
func NewDecider(b bus.Bus, reg *Registry, opts DeciderOptions, log zerolog.Logger) *Decider {
	opts.defaults()
	return &Decider{bus: b, reg: reg, opts: opts, producers: map[string]bus.Producer{},
		log: log.With().Str("component", "decider").Str("instance", opts.Name).Logger()}
}

// Stats returns the decider's counters.
func (d *Decider) Stats() DeciderStats {
	s := &d.stats
	return DeciderStats{
		Tasks: s.tasks.Load(), Decided: s.decided.Load(), Errors: s.errors.Load(),
		DeadLettered: s.deadLettered.Load(), Nacked: s.nacked.Load(),
	}
}

// Run decides until ctx is done.
func (d *Decider) Run(ctx context.Context) error {
	if err := EnsureTopics(ctx, d.bus, d.opts.Topics); err != nil {
		return err
	}
	cons, err := d.bus.Subscribe(ctx, bus.SubscribeOptions{
		Topic: d.opts.Topics.Decisions, Subscription: "deciders", Type: bus.Shared, ConsumerName: d.opts.Name,
		MaxDeliveries: d.opts.MaxDeliveries, NackDelay: 500 * time.Millisecond,
		ReceiveQueueSize: 2 * d.opts.MaxBatch,
	})
	if err != nil {
		return fmt.Errorf("decider: %w", err)
	}
	defer cons.Close()
	defer d.closeProducers()
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	inflight := make(chan struct{}, d.opts.MaxBatch)
	var answers sync.WaitGroup // answers sent, not yet confirmed
	var failed error
	var failOnce sync.Once
	var loops sync.WaitGroup
	for range d.opts.Concurrency {
		loops.Go(func() {
			for {
				select {
				case inflight <- struct{}{}:
				case <-rctx.Done():
					return
				}
				m, err := cons.Receive(rctx)
				switch {
				case rctx.Err() != nil:
					<-inflight
					return
				case errors.Is(err, bus.ErrClosed):
					<-inflight
					failOnce.Do(func() { failed = fmt.Errorf("decider: %w", err) })
					stop()
					return
				case err != nil:
					<-inflight
					d.log.Warn().Err(err).Msg("receiving decision tasks failed; trying again")
					select {
					case <-rctx.Done():
						return
					case <-time.After(100 * time.Millisecond):
					}
					continue
				}
				answers.Add(1)
				d.handle(ctx, cons, m, func() {
					<-inflight
					answers.Done()
				})
			}
		})
	}
	loops.Wait()
	answers.Wait() // every answer sent is acknowledged or given back
	return failed
}

// handle decides one task and sends its answer; done is called once the
// task is acknowledged, dead-lettered or given back.
func (d *Decider) handle(ctx context.Context, cons bus.Consumer, m *bus.Message, done func()) {
	task := d.accept(ctx, cons, m)
	if task == nil {
		done()
		return
	}
	giveBack := func(err error) {
		d.log.Warn().Err(err).Str("process_id", task.ProcessID).Str("task_id", task.TaskID).Msg("decision not answered; the task will come again")
		cons.Nack(m, err)
		d.stats.nacked.Add(1)
		done()
	}
	res, err := d.decide(ctx, task, d.opts.Clock().UTC())
	if err != nil {
		giveBack(err)
		return
	}
	payload, err := encode(TypeDecisionResult, "decision:"+task.TaskID, task.ProcessID, d.opts.Clock().UTC(), res)
	if err != nil {
		giveBack(err)
		return
	}
	p, err := d.producer(ctx, task.ReplyTo)
	if err != nil {
		giveBack(err)
		return
	}
	p.SendAsync(ctx, &bus.OutMessage{Key: task.ProcessID, Payload: payload}, func(_ bus.MessageID, err error) {
		if err != nil {
			giveBack(err)
			return
		}
		if err := cons.Ack(context.WithoutCancel(ctx), m); err != nil {
			// Delivered again: answered twice, the second dropped as stale.
			d.log.Warn().Err(err).Str("task_id", task.TaskID).Msg("acknowledging an answered task failed")
		}
		d.stats.tasks.Add(1)
		if res.Error != "" {
			d.stats.errors.Add(1)
		} else {
			d.stats.decided.Add(1)
		}
		done()
	})
}

// accept decodes and checks a task; it dead-letters what is not a valid
// task and returns nil then.
func (d *Decider) accept(ctx context.Context, cons bus.Consumer, m *bus.Message) *DecisionTask {
	env, err := bus.DecodeEnvelope(m.Payload)
	if err != nil {
		reason := err.Error()
		var de *bus.DecodeError
		if errors.As(err, &de) {
			reason = de.Reason
		}
		d.deadLetter(ctx, cons, m, reason)
		return nil
	}
	if env.Type != TypeDecisionTask {
		d.deadLetter(ctx, cons, m, fmt.Sprintf("unexpected message type %q on the decisions topic", env.Type))
		return nil
	}
	var task DecisionTask
	if err := env.DecodePayload(&task); err != nil {
		d.deadLetter(ctx, cons, m, err.Error())
		return nil
	}
	if task.ReplyTo == "" || task.TaskID == "" || task.ProcessID == "" {
		d.deadLetter(ctx, cons, m, "decision task needs task_id, process_id and reply_to")
		return nil
	}
	return &task
}

// deadLetter moves m to the dead-letter topic with reason, or nacks it when
// that fails (it comes again; nothing is lost).
func (d *Decider) deadLetter(ctx context.Context, cons bus.Consumer, m *bus.Message, reason string) {
	if err := cons.DeadLetter(ctx, m, reason); err != nil {
		d.log.Warn().Err(err).Str("reason", reason).Msg("dead-lettering a bad decision task failed; it will come again")
		cons.Nack(m, errors.New(reason))
		d.stats.nacked.Add(1)
		return
	}
	d.log.Warn().Str("reason", reason).Str("key", m.Key).Msg("bad decision task dead-lettered")
	d.stats.deadLettered.Add(1)
}

// decide makes task's decision at max(task.Now, clock). A task that cannot
// be decided (unknown definition, Decide failing) is answered with an
// error; an error means nothing can be answered now.
func (d *Decider) decide(ctx context.Context, task *DecisionTask, clock time.Time) (*DecisionResult, error) {
	now := task.Now
	if clock.After(now) {
		now = clock
	}
	res := &DecisionResult{TaskID: task.TaskID, ProcessID: task.ProcessID, Decider: d.opts.Name, Now: now}
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
		res.Decision = &dec
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
	p, err := d.bus.Producer(ctx, bus.ProducerOptions{Topic: topic, BatchingMaxDelay: d.opts.BatchWait})
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
