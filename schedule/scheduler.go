package schedule

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/timers"
	"github.com/pulsaga/pulsaga/workflow"
)

// Options configure a Scheduler.
type Options struct {
	// Name identifies the instance (Failover picks the active consumer by
	// name: unique and stable, default "scheduler").
	Name string
	// Topics are the engine's topics: starts and cancels go to Events, the
	// overlap policy reads Status.
	Topics protocol.Topics
	// Registry checks that a schedule's definition exists at each tick.
	Registry *engine.Registry
	// TxTimeout bounds the transaction of one message (default 30s).
	TxTimeout time.Duration
	// Clock returns the current time (default time.Now).
	Clock func() time.Time
}

// Scheduler is the component that handles schedule-events. Any number run
// (one per orchestrator binary); one is active at a time.
type Scheduler struct {
	bus  bus.Bus
	opts Options
	log  zerolog.Logger
}

// NewScheduler creates a scheduler; Run starts it.
func NewScheduler(b bus.Bus, opts Options, log zerolog.Logger) *Scheduler {
	if opts.Name == "" {
		opts.Name = "scheduler"
	}
	opts.Topics = opts.Topics.WithDefaults()
	if opts.TxTimeout <= 0 {
		opts.TxTimeout = 30 * time.Second
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	return &Scheduler{bus: b, opts: opts, log: log.With().Str("component", "scheduler").Str("instance", opts.Name).Logger()}
}

// run is the state of one Run.
type run struct {
	s                       *Scheduler
	cons                    bus.Consumer
	records, events, timers bus.Producer
	table                   *Table
	status                  *engine.StatusTable
}

// Run handles schedule events until ctx ends. A message that cannot be
// handled for a passing reason (the broker) is nacked and comes again.
func (s *Scheduler) Run(ctx context.Context) error {
	if err := EnsureTopics(ctx, s.bus); err != nil {
		return err
	}
	cons, err := s.bus.Subscribe(ctx, bus.SubscribeOptions{
		Topic: EventsTopic, Subscription: Subscription, Type: bus.Failover, ConsumerName: s.opts.Name,
		MaxDeliveries: 20, NackDelay: time.Second,
	})
	if err != nil {
		return fmt.Errorf("scheduler: %w", err)
	}
	defer cons.Close()
	r := &run{s: s, cons: cons, table: NewTable(s.bus), status: engine.NewStatusTable(s.bus, s.opts.Topics.Status)}
	defer r.table.Close()
	defer r.status.Close()
	for _, p := range []struct {
		dst   *bus.Producer
		topic string
	}{{&r.records, RecordsTopic}, {&r.events, s.opts.Topics.Events}, {&r.timers, s.opts.Topics.Timers}} {
		if *p.dst, err = s.bus.Producer(ctx, bus.ProducerOptions{Topic: p.topic}); err != nil {
			return fmt.Errorf("scheduler: %w", err)
		}
		defer (*p.dst).Close()
	}
	for {
		m, err := cons.Receive(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("scheduler: %w", err)
		}
		if err := r.handle(ctx, m); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			s.log.Warn().Err(err).Str("key", m.Key).Msg("schedule event not handled; it will come again")
			cons.Nack(m, err)
		}
	}
}

// handle decides one message and commits its effects with its
// acknowledgement. A returned error means: try again later.
func (r *run) handle(ctx context.Context, m *bus.Message) error {
	s := r.s
	env, err := bus.DecodeOrDeadLetter(ctx, r.cons, m)
	if err != nil {
		s.log.Warn().Err(err).Msg("undecodable schedule event dead-lettered")
		return nil
	}
	// The table must hold every record written so far, by this instance
	// or by the one that was active before it.
	if err := r.table.Refresh(ctx); err != nil {
		return err
	}
	now := s.opts.Clock().UTC()
	name := env.ProcessID
	old, _ := r.table.Get(name)
	var eff Effects
	switch env.Type {
	case TypeRequest:
		var req Request
		if err := env.DecodePayload(&req); err != nil {
			return r.cons.DeadLetter(ctx, m, err.Error())
		}
		if req.Name != name {
			return r.cons.DeadLetter(ctx, m, fmt.Sprintf("request for schedule %q keyed %q", req.Name, name))
		}
		switch req.Op {
		case OpPut:
			if req.Spec == nil {
				return r.cons.DeadLetter(ctx, m, "put without a spec")
			}
			if eff, err = Put(old, *req.Spec, req.Actor, now); err != nil {
				return r.cons.DeadLetter(ctx, m, err.Error())
			}
		case OpPause:
			eff = Pause(old, req.Actor, now)
		case OpResume:
			eff = Resume(old, req.Actor, now)
		case OpDelete:
			eff = Delete(old)
		default:
			return r.cons.DeadLetter(ctx, m, fmt.Sprintf("unknown schedule operation %q (want put, pause, resume or delete)", req.Op))
		}
	case protocol.TypeTimerFired:
		var t protocol.TimerFired
		if err := env.DecodePayload(&t); err != nil {
			return r.cons.DeadLetter(ctx, m, err.Error())
		}
		if t.Kind != TimerKind {
			return r.cons.DeadLetter(ctx, m, fmt.Sprintf("timer of kind %q on %s, want %q", t.Kind, EventsTopic, TimerKind))
		}
		obs, err := r.observe(ctx, old)
		if err != nil {
			return err
		}
		eff = Tick(old, t.TimerID, t.FireAt, now, obs)
	default:
		return r.cons.DeadLetter(ctx, m, fmt.Sprintf("unexpected message type %q on %s (want %s or %s)", env.Type, EventsTopic, TypeRequest, protocol.TypeTimerFired))
	}
	log := s.log.With().Str("schedule", name).Str("type", env.Type).Logger()
	if eff.Ignored != "" {
		log.Debug().Str("reason", eff.Ignored).Msg("schedule event changed nothing")
		return r.cons.Ack(ctx, m)
	}
	if err := r.commit(ctx, m, name, eff, now); err != nil {
		return err
	}
	if eff.Delete {
		r.table.set(name, nil)
	} else if eff.Record != nil {
		r.table.set(name, eff.Record)
	}
	for _, st := range eff.Starts {
		log.Info().Str("process_id", st.ProcessID).Time("tick", st.Tick).Msg("scheduled process started")
	}
	for _, st := range eff.Stops {
		log.Info().Str("process_id", st.ProcessID).Str("action", st.Action).Msg("previous run stopped (overlap policy)")
	}
	return nil
}

// observe reads what a tick needs besides the record: the status of the
// runs it tracks and whether its definition exists.
func (r *run) observe(ctx context.Context, rec *Record) (Observed, error) {
	if rec == nil || rec.Spec.Paused {
		return Observed{}, nil
	}
	obs := Observed{}
	if len(rec.State.Running) > 0 {
		if err := r.status.Refresh(ctx); err != nil {
			return obs, err
		}
		obs.Status = func(pid string) (workflow.Status, bool) {
			row, ok := r.status.Get(pid)
			return row.Status, ok
		}
	}
	if reg := r.s.opts.Registry; reg != nil {
		if _, err := reg.Get(ctx, rec.Spec.Definition, rec.Spec.Version); err != nil {
			if !errors.Is(err, engine.ErrUnknownDefinition) {
				return obs, err
			}
			obs.DefinitionErr = err
		}
	}
	return obs, nil
}

// commit writes the effects and acknowledges m in one transaction.
func (r *run) commit(ctx context.Context, m *bus.Message, name string, eff Effects, now time.Time) (err error) {
	s := r.s
	tx, err := s.bus.BeginTx(ctx, s.opts.TxTimeout)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tx.Abort(context.WithoutCancel(ctx))
		}
	}()
	var sends []struct {
		p   bus.Producer
		msg *bus.OutMessage
	}
	add := func(p bus.Producer, msg *bus.OutMessage) {
		msg.Tx = tx
		sends = append(sends, struct {
			p   bus.Producer
			msg *bus.OutMessage
		}{p, msg})
	}
	envelope := func(typ, id, key string, payload any) ([]byte, error) {
		env, err := bus.NewEnvelope(typ, id, key, now, payload)
		if err != nil {
			return nil, err
		}
		return env.Encode()
	}
	switch {
	case eff.Delete:
		add(r.records, &bus.OutMessage{Key: name}) // tombstone
	case eff.Record != nil:
		b, err := envelope(TypeRecord, fmt.Sprintf("schedule:%s:%d", name, eff.Record.State.Revision), name, eff.Record)
		if err != nil {
			return err
		}
		add(r.records, &bus.OutMessage{Key: name, Payload: b})
	}
	actor := "schedule:" + name
	for _, st := range eff.Stops {
		b, err := envelope(protocol.TypeAdminAction, "admin:"+actor+":"+st.ProcessID+":"+st.Action, st.ProcessID,
			protocol.AdminRequest{ProcessID: st.ProcessID, Action: st.Action, Actor: actor, Reason: st.Reason})
		if err != nil {
			return err
		}
		add(r.events, &bus.OutMessage{Key: st.ProcessID, Payload: b})
	}
	if len(eff.Starts) > 0 {
		spec := eff.Record.Spec
		for _, st := range eff.Starts {
			b, err := envelope(protocol.TypeStart, protocol.StartEnvelopeID(st.ProcessID), st.ProcessID,
				protocol.StartRequest{ProcessID: st.ProcessID, Definition: spec.Definition, Version: spec.Version, Input: st.Input, Actor: actor})
			if err != nil {
				return err
			}
			add(r.events, &bus.OutMessage{Key: st.ProcessID, Payload: b})
		}
	}
	if eff.Arm != nil {
		msg, err := timers.Message(protocol.Timer{TimerID: eff.Arm.ID, ProcessID: name, Kind: TimerKind, FireAt: eff.Arm.At, Target: EventsTopic}, now, timers.DefaultMaxHop)
		if err != nil {
			return err
		}
		add(r.timers, msg)
	}
	errs := make(chan error, len(sends))
	for _, sd := range sends {
		sd.p.SendAsync(ctx, sd.msg, func(_ bus.MessageID, err error) { errs <- err })
	}
	for range sends {
		if e := <-errs; e != nil && err == nil {
			err = e
		}
	}
	if err != nil {
		return err
	}
	if err := r.cons.AckTx(ctx, m, tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}
