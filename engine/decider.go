package engine

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/timers"
	"github.com/pulsaga/pulsaga/worker"
	"github.com/pulsaga/pulsaga/workflow"
)

// DeciderOptions configure a decider.
type DeciderOptions struct {
	// Name identifies the instance (default "decider").
	Name string
	// Topics are the engine's topics.
	Topics Topics
	// Concurrency is the number of tasks decided at once (default 4).
	Concurrency int
	// MaxDeliveries dead-letters a task that keeps failing (default 5).
	MaxDeliveries int
	// TxTimeout bounds a decision's transaction (default 10s), see
	// OrchestratorOptions.TxTimeout.
	TxTimeout time.Duration
	// Clock stamps messages, and dates a decision whose task waited in the
	// queue: a decision is made at max(task.Now, Clock()), recorded in the
	// result, so attempt timeouts count from when the command is sent.
	Clock func() time.Time
}

// Decider is stateless: it takes decision tasks, runs workflow.Decide, and
// emits the commands, the timers and the decision result in one
// transaction with the acknowledgement of the task. A task delivered twice
// (a decider died before committing, or the orchestrator re-issued it)
// yields the same command ids; the orchestrator accepts only the first
// result.
type Decider struct {
	bus  bus.Bus
	reg  *Registry
	opts DeciderOptions
	log  zerolog.Logger

	mu        sync.Mutex
	producers map[string]bus.Producer
}

// NewDecider creates a decider; Run starts it.
func NewDecider(b bus.Bus, reg *Registry, opts DeciderOptions, log zerolog.Logger) *Decider {
	if opts.Name == "" {
		opts.Name = "decider"
	}
	if opts.Topics.Events == "" {
		opts.Topics = DefaultTopics()
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 4
	}
	if opts.MaxDeliveries <= 0 {
		opts.MaxDeliveries = 5
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.TxTimeout <= 0 {
		opts.TxTimeout = 10 * time.Second
	}
	return &Decider{bus: b, reg: reg, opts: opts, producers: map[string]bus.Producer{},
		log: log.With().Str("component", "decider").Str("instance", opts.Name).Logger()}
}

// Run decides until ctx is done.
func (d *Decider) Run(ctx context.Context) error {
	if err := EnsureTopics(ctx, d.bus, d.opts.Topics); err != nil {
		return err
	}
	cons, err := d.bus.Subscribe(ctx, bus.SubscribeOptions{
		Topic: d.opts.Topics.Decisions, Subscription: "deciders", Type: bus.Shared, ConsumerName: d.opts.Name,
		MaxDeliveries: d.opts.MaxDeliveries, NackDelay: 500 * time.Millisecond, ReceiveQueueSize: 4 * d.opts.Concurrency,
	})
	if err != nil {
		return fmt.Errorf("decider: %w", err)
	}
	defer cons.Close()
	defer d.closeProducers()
	var wg sync.WaitGroup
	for i := 0; i < d.opts.Concurrency; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				m, err := cons.Receive(ctx)
				if err != nil {
					return
				}
				if err := d.handle(ctx, cons, m); err != nil {
					d.log.Warn().Err(err).Str("key", m.Key).Msg("decision not emitted; the task will come again")
					cons.Nack(m, err)
				}
			}
		}()
	}
	wg.Wait()
	return nil
}

func (d *Decider) handle(ctx context.Context, cons bus.Consumer, m *bus.Message) error {
	env, err := bus.DecodeOrDeadLetter(ctx, cons, m)
	if err != nil {
		d.log.Warn().Err(err).Msg("undecodable decision task")
		return nil
	}
	if env.Type != TypeDecisionTask {
		return cons.DeadLetter(ctx, m, fmt.Sprintf("unexpected message type %q on the decisions topic", env.Type))
	}
	var task DecisionTask
	if err := env.DecodePayload(&task); err != nil {
		return cons.DeadLetter(ctx, m, err.Error())
	}
	if task.ReplyTo == "" || task.TaskID == "" || task.ProcessID == "" {
		return cons.DeadLetter(ctx, m, "decision task needs task_id, process_id and reply_to")
	}
	log := d.log.With().Str("process_id", task.ProcessID).Str("task_id", task.TaskID).Logger()
	now := task.Now
	if c := d.opts.Clock().UTC(); c.After(now) {
		now = c
	}
	task.Now = now
	res := DecisionResult{TaskID: task.TaskID, ProcessID: task.ProcessID, Decider: d.opts.Name, Now: now}
	var tx bus.Tx
	var out []outMsg
	def, err := d.reg.Get(ctx, task.Definition, task.Version)
	if err != nil {
		res.Error = err.Error()
	} else if dec, err := workflow.Decide(def, task.State, task.Events, now); err != nil {
		res.Error = err.Error()
	} else {
		res.Decision = &dec
		if out, err = d.effects(ctx, &task, &dec); err != nil {
			return err
		}
	}
	if res.Error != "" {
		log.Error().Str("error", res.Error).Msg("no decision possible")
	}
	payload, err := encode(TypeDecisionResult, "decision:"+task.TaskID, task.ProcessID, d.opts.Clock(), res)
	if err != nil {
		return err
	}
	reply, err := d.producer(ctx, task.ReplyTo)
	if err != nil {
		return err
	}
	out = append(out, outMsg{reply, &bus.OutMessage{Key: task.ProcessID, Payload: payload}})
	if tx, err = d.bus.BeginTx(ctx, d.opts.TxTimeout); err != nil {
		return err
	}
	if err := sendAll(ctx, out, tx); err != nil {
		_ = tx.Abort(context.WithoutCancel(ctx))
		return err
	}
	if err := cons.AckTx(ctx, m, tx); err != nil {
		_ = tx.Abort(context.WithoutCancel(ctx))
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	if res.Decision != nil {
		log.Debug().Int("commands", len(res.Decision.Commands)).Int("timers", len(res.Decision.Timers)).Str("status", string(res.Decision.Status)).Msg("decided")
	}
	return nil
}

// effects turns a decision into messages: commands on the job queues
// (delayed when they are retries) and timers.
func (d *Decider) effects(ctx context.Context, task *DecisionTask, dec *workflow.Decision) ([]outMsg, error) {
	var out []outMsg
	for _, c := range dec.Commands {
		cmd := protocol.Command{
			CommandID: c.ID, ProcessID: c.ProcessID, Definition: task.Definition, Version: task.Version,
			Step: c.StepID, Item: c.Item, Attempt: c.Attempt, Service: c.Service, Command: c.Command,
			Compensation: c.Compensation, Input: c.Input, IdempotencyKey: c.IdempotencyKey,
			Deadline: c.Deadline, ReplyTo: task.ReplyTo,
		}
		payload, err := encode(protocol.TypeCommand, c.ID, c.ProcessID, task.Now, cmd)
		if err != nil {
			return nil, err
		}
		p, err := d.producer(ctx, worker.JobTopic(c.Service))
		if err != nil {
			return nil, err
		}
		out = append(out, outMsg{p, &bus.OutMessage{Key: c.ProcessID, Payload: payload, DeliverAt: c.NotBefore}})
	}
	tp, err := d.producer(ctx, timers.Topic)
	if err != nil {
		return nil, err
	}
	for _, t := range dec.Timers {
		msg, err := timers.Message(protocol.Timer{
			TimerID: t.ID, ProcessID: t.ProcessID, Kind: string(t.Kind), Step: t.StepID, FireAt: t.FireAt, Target: task.ReplyTo,
		}, task.Now, timers.DefaultMaxHop)
		if err != nil {
			return nil, err
		}
		out = append(out, outMsg{tp, msg})
	}
	return out, nil
}

func sendAll(ctx context.Context, out []outMsg, tx bus.Tx) error {
	var mu sync.Mutex
	var first error
	used := map[bus.Producer]bool{}
	for _, m := range out {
		m.msg.Tx = tx
		used[m.p] = true
		m.p.SendAsync(ctx, m.msg, func(_ bus.MessageID, err error) {
			if err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		})
	}
	for p := range used {
		if err := p.Flush(ctx); err != nil {
			return err
		}
	}
	mu.Lock()
	defer mu.Unlock()
	return first
}

func (d *Decider) producer(ctx context.Context, topic string) (bus.Producer, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if p, ok := d.producers[topic]; ok {
		return p, nil
	}
	// The engine's own topics exist (EnsureTopics); a job queue is created
	// on first use.
	if svc, ok := strings.CutPrefix(topic, "jobs."); ok {
		if err := d.bus.EnsureTopic(ctx, worker.JobTopicSpec(svc)); err != nil {
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
