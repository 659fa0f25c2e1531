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
)

// DeciderOptions configure a decider.
type DeciderOptions struct {
	// Name identifies the instance (default "decider").
	Name string
	// Topics are the engine's topics.
	Topics protocol.Topics
	// Concurrency is the number of batch loops: batches of tasks decided
	// and committed at once, each in its own transaction (default 4).
	Concurrency int
	// MaxBatch bounds the tasks of one batch, i.e. of one transaction
	// (default 64).
	MaxBatch int
	// BatchWait is how long a loop that has a task waits for one more
	// before it decides its batch (default 3ms): a batch grows while tasks
	// keep arriving within BatchWait of each other, up to MaxBatch.
	BatchWait time.Duration
	// MaxDeliveries dead-letters a task that keeps failing (default 5).
	MaxDeliveries int
	// TxTimeout bounds a batch's transaction (default 10s), see
	// OrchestratorOptions.TxTimeout.
	TxTimeout time.Duration
	// Clock stamps messages, and dates a decision whose task waited in the
	// queue: a decision is made at max(task.Now, Clock()), recorded in the
	// result, so attempt timeouts count from when the command is sent.
	Clock func() time.Time
}

func (o *DeciderOptions) defaults() {
	if o.Name == "" {
		o.Name = "decider"
	}
	o.Topics = o.Topics.WithDefaults()
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
	if o.TxTimeout <= 0 {
		o.TxTimeout = 10 * time.Second
	}
}

// DeciderStats count what a decider did since it was created.
type DeciderStats struct {
	// Transactions is the number of transactions committed, Tasks the
	// decision tasks they acknowledged (answered, or duplicates of a task
	// answered in the same transaction).
	Transactions, Tasks int64
	// Decided counts the tasks answered with a decision, Errors those
	// answered with an error (unknown definition, a decision that failed).
	Decided, Errors int64
	// FailedTransactions counts transactions that did not commit; every
	// task of theirs was nacked and comes again.
	FailedTransactions int64
	// DeadLettered counts tasks moved to the dead-letter topic (undecodable
	// or invalid), Nacked the tasks nacked on their own (a transient
	// failure before their transaction: definitions unreadable, a producer
	// that could not be opened, a dead-letter that failed).
	DeadLettered, Nacked int64
}

// Decider is stateless: it takes decision tasks in batches, runs
// workflow.Decide for each, and emits the commands, the timers and the
// decision results of the whole batch in one transaction with the
// acknowledgements of its tasks. A task delivered twice (a decider died
// before committing, its batch's transaction failed, or the orchestrator
// re-issued it) yields the same command ids; the orchestrator accepts only
// the first result.
//
// A task is never dropped for its age: one the orchestrator has re-issued
// meanwhile is decided in its batch like any other (nothing waits for it),
// and whichever answer reaches the orchestrator first is taken. Copies of
// one task in one batch are answered once.
type Decider struct {
	bus  bus.Bus
	reg  *Registry
	opts DeciderOptions
	log  zerolog.Logger

	mu        sync.Mutex
	producers map[string]bus.Producer

	stats struct {
		transactions, tasks, decided, errors, failed, deadLettered, nacked atomic.Int64
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
		Transactions: s.transactions.Load(), Tasks: s.tasks.Load(), Decided: s.decided.Load(), Errors: s.errors.Load(),
		FailedTransactions: s.failed.Load(), DeadLettered: s.deadLettered.Load(), Nacked: s.nacked.Load(),
	}
}

// receivers is how many goroutines receive tasks for the batch loops, so
// that a batch is not gathered one Receive at a time when a Receive costs a
// broker round trip (pulsarbus with SubscribeOptions.CountDeliveriesDurably,
// which the decider does not set, or a consumer whose prefetch ran dry).
func (d *Decider) receivers() int { return min(d.opts.MaxBatch, 16) }

// Run decides until ctx is done.
func (d *Decider) Run(ctx context.Context) error {
	if err := EnsureTopics(ctx, d.bus, d.opts.Topics); err != nil {
		return err
	}
	cons, err := d.bus.Subscribe(ctx, bus.SubscribeOptions{
		Topic: d.opts.Topics.Decisions, Subscription: protocol.DeciderSubscription, Type: bus.Shared, ConsumerName: d.opts.Name,
		MaxDeliveries: d.opts.MaxDeliveries, NackDelay: 500 * time.Millisecond,
		// Enough prefetched for every loop to fill a batch.
		ReceiveQueueSize: d.opts.Concurrency * d.opts.MaxBatch,
	})
	if err != nil {
		return fmt.Errorf("decider: %w", err)
	}
	defer cons.Close()
	defer d.closeProducers()
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	tasks := make(chan *bus.Message, d.opts.MaxBatch)
	var failed error
	var failOnce sync.Once
	var receivers, loops sync.WaitGroup
	for range d.receivers() {
		receivers.Go(func() {
			for {
				m, err := cons.Receive(rctx)
				switch {
				case rctx.Err() != nil:
					return
				case errors.Is(err, bus.ErrClosed):
					failOnce.Do(func() { failed = fmt.Errorf("decider: %w", err) })
					stop()
					return
				case err != nil:
					d.log.Warn().Err(err).Msg("receiving decision tasks failed; trying again")
					select {
					case <-rctx.Done():
						return
					case <-time.After(100 * time.Millisecond):
					}
					continue
				}
				select {
				case tasks <- m:
				case <-rctx.Done():
					return // closing the consumer gives it back
				}
			}
		})
	}
	for range d.opts.Concurrency {
		loops.Go(func() {
			for {
				msgs := d.gather(rctx, tasks)
				if msgs == nil {
					return
				}
				d.handleBatch(ctx, cons, msgs)
			}
		})
	}
	loops.Wait()
	stop()
	receivers.Wait()
	return failed
}

// gather waits for a task, then takes more while they keep coming within
// BatchWait of each other, up to MaxBatch. It returns nil when ctx is done
// (closing the consumer gives back what was received).
func (d *Decider) gather(ctx context.Context, tasks <-chan *bus.Message) []*bus.Message {
	var msgs []*bus.Message
	select {
	case <-ctx.Done():
		return nil
	case m := <-tasks:
		msgs = append(msgs, m)
	}
	linger := time.NewTimer(d.opts.BatchWait)
	defer linger.Stop()
	for len(msgs) < d.opts.MaxBatch {
		select {
		case <-ctx.Done():
			return nil
		case m := <-tasks:
			msgs = append(msgs, m)
			linger.Reset(d.opts.BatchWait)
		case <-linger.C:
			return msgs
		}
	}
	return msgs
}

func (d *Decider) producer(ctx context.Context, topic string) (bus.Producer, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if p, ok := d.producers[topic]; ok {
		return p, nil
	}
	// The engine's own topics exist (EnsureTopics); a job queue is created
	// on first use.
	if svc, ok := protocol.JobService(topic); ok {
		if err := d.bus.EnsureTopic(ctx, protocol.JobTopicSpec(svc)); err != nil {
			return nil, err
		}
	}
	p, err := d.bus.Producer(ctx, bus.ProducerOptions{Topic: topic})
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
