package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/timers"
	"github.com/pulsaga/pulsaga/workflow"
)

// taskBatch is what one transaction of a decider carries: the tasks it
// acknowledges and the messages it sends.
type taskBatch struct {
	acks            []*bus.Message
	out             []emit
	decided, errors int
}

// emit is a message to send with a producer.
type emit struct {
	p   bus.Producer
	msg *bus.OutMessage
}

// handleBatch decides the tasks of msgs and commits them. A task that
// cannot be decoded or is invalid is dead-lettered, and one that meets a
// transient failure before the transaction (definitions unreadable, a
// producer that cannot be opened) is nacked: neither holds the others
// back. The fresh tasks go into one transaction; a task delivered before
// goes into a transaction of its own, so that a task whose messages make
// every transaction fail cannot take healthy tasks with it to
// MaxDeliveries. If a transaction fails, all its tasks are nacked and come
// again; deciding them again yields the same command ids.
func (d *Decider) handleBatch(ctx context.Context, cons bus.Consumer, msgs []*bus.Message) {
	start := time.Now()
	clock := d.opts.Clock().UTC()
	fresh := &taskBatch{}
	batches := []*taskBatch{fresh}
	answered := map[string]bool{} // task ids answered in fresh
	for _, m := range msgs {
		task := d.accept(ctx, cons, m)
		if task == nil {
			continue
		}
		b := fresh
		switch {
		case m.RedeliveryCount > 0:
			b = &taskBatch{}
			batches = append(batches, b)
		case answered[task.TaskID]:
			// A copy of a task (re-issued while the first still waited):
			// one answer serves both.
			fresh.acks = append(fresh.acks, m)
			continue
		}
		out, res, err := d.decide(ctx, task, clock)
		if err != nil {
			d.log.Warn().Err(err).Str("process_id", task.ProcessID).Str("task_id", task.TaskID).Msg("decision not emitted; the task will come again")
			cons.Nack(m, err)
			d.stats.nacked.Add(1)
			continue
		}
		b.acks = append(b.acks, m)
		b.out = append(b.out, out...)
		if res.Error != "" {
			b.errors++
		} else {
			b.decided++
		}
		if b == fresh {
			answered[task.TaskID] = true
		}
	}
	var wg sync.WaitGroup
	for _, b := range batches {
		if len(b.acks) == 0 {
			continue
		}
		wg.Go(func() {
			if err := d.commit(ctx, cons, b); err != nil {
				d.log.Warn().Err(err).Int("tasks", len(b.acks)).Msg("batch not committed; its tasks will come again")
				return
			}
			d.log.Debug().Int("tasks", len(b.acks)).Int("messages", len(b.out)).Dur("took", time.Since(start)).Msg("batch committed")
		})
	}
	wg.Wait()
}

// accept decodes and checks a task; it dead-letters what is not a valid
// task and returns nil then.
func (d *Decider) accept(ctx context.Context, cons bus.Consumer, m *bus.Message) *protocol.DecisionTask {
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
	if env.Type != protocol.TypeDecisionTask {
		d.deadLetter(ctx, cons, m, fmt.Sprintf("unexpected message type %q on the decisions topic", env.Type))
		return nil
	}
	var task protocol.DecisionTask
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

// decide makes task's decision at max(task.Now, clock) and returns the
// messages it sends: its commands, its timers and its result. A task that
// cannot be decided (unknown definition, Decide failing) is answered with
// an error result; an error means nothing can be answered now.
func (d *Decider) decide(ctx context.Context, task *protocol.DecisionTask, clock time.Time) ([]emit, *protocol.DecisionResult, error) {
	now := task.Now
	if clock.After(now) {
		now = clock
	}
	task.Now = now
	res := &protocol.DecisionResult{TaskID: task.TaskID, ProcessID: task.ProcessID, Decider: d.opts.Name, Now: now}
	var out []emit
	def, err := d.reg.Get(ctx, task.Definition, task.Version)
	switch {
	case errors.Is(err, ErrUnknownDefinition):
		res.Error = err.Error()
	case err != nil:
		return nil, nil, err // the definitions could not be read: try again later
	default:
		dec, err := workflow.Decide(def, task.State, task.Events, now)
		if err != nil {
			res.Error = err.Error()
			break
		}
		res.Decision = &dec
		if out, err = d.effects(ctx, task, &dec); err != nil {
			return nil, nil, err
		}
	}
	if res.Error != "" {
		d.log.Error().Str("process_id", task.ProcessID).Str("task_id", task.TaskID).Str("error", res.Error).Msg("no decision possible")
	}
	payload, err := encode(protocol.TypeDecisionResult, "decision:"+task.TaskID, task.ProcessID, clock, res)
	if err != nil {
		return nil, nil, err
	}
	reply, err := d.producer(ctx, task.ReplyTo)
	if err != nil {
		return nil, nil, err
	}
	return append(out, emit{reply, &bus.OutMessage{Key: task.ProcessID, Payload: payload}}), res, nil
}

// effects turns a decision into messages: commands on the job queues
// (delayed when they are retries) and timers.
func (d *Decider) effects(ctx context.Context, task *protocol.DecisionTask, dec *workflow.Decision) ([]emit, error) {
	out := make([]emit, 0, len(dec.Commands)+len(dec.Timers)+1)
	for _, c := range dec.Commands {
		cmd := WireCommand(&c, task.Definition, task.Version, task.ReplyTo)
		payload, err := encode(protocol.TypeCommand, c.ID, c.ProcessID, task.Now, cmd)
		if err != nil {
			return nil, err
		}
		p, err := d.producer(ctx, protocol.JobTopic(c.Service))
		if err != nil {
			return nil, err
		}
		out = append(out, emit{p, &bus.OutMessage{Key: c.ProcessID, Payload: payload, DeliverAt: c.NotBefore}})
	}
	if len(dec.Timers) == 0 {
		return out, nil
	}
	tp, err := d.producer(ctx, d.opts.Topics.Timers)
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
		out = append(out, emit{tp, msg})
	}
	return out, nil
}

// commit sends b's messages and acknowledges its tasks in one transaction
// (one bus.Batch). If anything fails, every task of b is nacked (by the
// batch) and comes again; deciding it again yields the same command ids.
func (d *Decider) commit(ctx context.Context, cons bus.Consumer, b *taskBatch) error {
	tx, err := d.bus.BeginTx(ctx, d.opts.TxTimeout)
	if err != nil {
		d.stats.failed.Add(1)
		cause := fmt.Errorf("decider: the transaction of a batch of %d tasks did not begin: %w", len(b.acks), err)
		for _, m := range b.acks {
			cons.Nack(m, cause)
		}
		return err
	}
	s := bus.NewBatch(bus.BatchOptions{Tx: tx})
	for _, e := range b.out {
		s.Send(e.p, e.msg, nil)
	}
	for _, m := range b.acks {
		s.Ack(cons, m)
	}
	if err := s.Commit(ctx); err != nil {
		d.stats.failed.Add(1)
		return err
	}
	d.stats.transactions.Add(1)
	d.stats.tasks.Add(int64(len(b.acks)))
	d.stats.decided.Add(int64(b.decided))
	d.stats.errors.Add(int64(b.errors))
	return nil
}
