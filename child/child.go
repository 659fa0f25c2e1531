// Package child carries out the effects of call steps (child sagas,
// docs/language.md#child-sagas). workflow.Decide emits them as commands
// for the reserved service "pulsaga.engine"; the Service here consumes that
// job queue like a worker, but instead of answering at once it starts,
// cancels, terminates or compensates the child process through the events
// topic, and reports the child's outcome to the parent as the result of the
// command once the child has ended:
//
//   - StartChild: a record on the compacted "children" topic (what the
//     parent waits for), then a start request with the parent reference.
//     A definition that is not registered fails the command at once
//     (UnknownDefinition).
//   - CompensateChild: a record, then a "compensate" admin action: the
//     completed child re-opens and runs its own compensation.
//   - CancelChild, TerminateChild: an admin action, no result.
//   - ReleaseChild: nothing yet (a completed child expires after the
//     orchestrator's retention).
//
// The watcher of each Service reads the children records and the status
// table; when a child has ended (or, for a compensation, is compensated or
// its compensation failed) it rebuilds the child's state (ReadProcess) and
// sends the parent a protocol.Result for the command: the child's output,
// or its error (workflow.ChildOutcome). Every orchestrator binary runs a
// Service; the results are idempotent (same envelope id, and the parent
// ignores a second result for an attempt), so several watchers may report
// the same outcome.
package child

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/workflow"
)

// Watch kinds.
const (
	KindStart      = "start"
	KindCompensate = "compensate"
)

// TypeWatch is the envelope type of a record on the children topic.
const TypeWatch = "child.watch"

// Watch is a child whose outcome a parent waits for.
type Watch struct {
	Child string `json:"child"`
	Kind  string `json:"kind"`
	// Command is the parent's command to answer.
	Command protocol.Command `json:"command"`
	// AfterSeq: only a status row newer than this counts (a compensation
	// of a child whose row already says compensation_failed).
	AfterSeq int64     `json:"after_seq,omitempty"`
	At       time.Time `json:"at"`
}

// Options configure a Service.
type Options struct {
	Name     string
	Topics   protocol.Topics
	Registry *engine.Registry
	// Every is how often the watcher looks at the status table (default
	// 200ms).
	Every time.Duration
}

// Service runs the engine's own job queue and the watcher.
type Service struct {
	bus  bus.Bus
	opts Options
	log  zerolog.Logger

	statusMu sync.Mutex
	status   *engine.StatusTable
	ps       *producers
}

// New creates a Service; Run starts it.
func New(b bus.Bus, opts Options, log zerolog.Logger) *Service {
	opts.Topics = opts.Topics.WithDefaults()
	if opts.Name == "" {
		opts.Name = "engine"
	}
	if opts.Every <= 0 {
		opts.Every = 200 * time.Millisecond
	}
	return &Service{bus: b, opts: opts, log: log.With().Str("component", "children").Logger()}
}

// Run serves until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	for _, spec := range []bus.TopicSpec{
		protocol.JobTopicSpec(workflow.EngineService),
		{Name: protocol.ChildrenTopic, Compacted: true, RetentionTime: -1, RetentionSizeMB: -1},
	} {
		if err := s.bus.EnsureTopic(ctx, spec); err != nil {
			return fmt.Errorf("children: %w", err)
		}
	}
	s.status = engine.NewStatusTable(s.bus, s.opts.Topics.Status)
	defer s.status.Close()
	s.ps = &producers{bus: s.bus}
	defer s.ps.close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, 2)
	go func() { errs <- s.commands(ctx); cancel() }()
	go func() { errs <- s.watch(ctx); cancel() }()
	err := errors.Join(<-errs, <-errs)
	if ctx.Err() != nil && err == nil {
		return nil
	}
	return err
}

func (s *Service) envelope(typ, id, key string, payload any) ([]byte, error) {
	env, err := bus.NewEnvelope(typ, id, key, time.Now(), payload)
	if err != nil {
		return nil, err
	}
	return env.Encode()
}

// commands consumes jobs.pulsaga.engine.
func (s *Service) commands(ctx context.Context) error {
	cons, err := s.bus.Subscribe(ctx, bus.SubscribeOptions{
		Topic: protocol.JobTopic(workflow.EngineService), Subscription: protocol.EngineSubscription, Type: bus.Shared,
		ConsumerName: s.opts.Name, MaxDeliveries: 10, NackDelay: time.Second,
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("children: %w", err)
	}
	defer cons.Close()
	for {
		m, err := cons.Receive(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("children: %w", err)
		}
		if err := s.command(ctx, cons, m); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			s.log.Warn().Err(err).Msg("engine command not carried out; it will come again")
			cons.Nack(m, err)
		}
	}
}

func (s *Service) command(ctx context.Context, cons bus.Consumer, m *bus.Message) error {
	env, err := bus.DecodeOrDeadLetter(ctx, cons, m)
	if err != nil {
		return nil
	}
	if env.Type != protocol.TypeCommand {
		return cons.DeadLetter(ctx, m, fmt.Sprintf("unexpected message type %q on %s", env.Type, protocol.JobTopic(workflow.EngineService)))
	}
	var cmd protocol.Command
	if err := env.DecodePayload(&cmd); err != nil {
		return cons.DeadLetter(ctx, m, err.Error())
	}
	if err := cmd.Validate(); err != nil {
		return cons.DeadLetter(ctx, m, err.Error())
	}
	var in workflow.ChildCommand
	if err := json.Unmarshal(cmd.Input, &in); err != nil || in.ProcessID == "" {
		return cons.DeadLetter(ctx, m, fmt.Sprintf("engine command %s: input is not a child command (%v)", cmd.CommandID, err))
	}
	actor := "parent:" + cmd.ProcessID
	events, err := s.ps.get(ctx, s.opts.Topics.Events)
	if err != nil {
		return err
	}
	watches, err := s.ps.get(ctx, protocol.ChildrenTopic)
	if err != nil {
		return err
	}
	admin := func(action, reason string) error {
		b, err := s.envelope(protocol.TypeAdminAction, "admin:child:"+cmd.CommandID, in.ProcessID,
			protocol.AdminRequest{ProcessID: in.ProcessID, Action: action, Actor: actor, Reason: reason})
		if err != nil {
			return err
		}
		_, err = events.Send(ctx, &bus.OutMessage{Key: in.ProcessID, Payload: b})
		return err
	}
	watch := func(w Watch) error {
		b, err := s.envelope(TypeWatch, "watch:"+cmd.CommandID, in.ProcessID, w)
		if err != nil {
			return err
		}
		_, err = watches.Send(ctx, &bus.OutMessage{Key: cmd.CommandID, Payload: b})
		return err
	}
	log := s.log.With().Str("process_id", cmd.ProcessID).Str("child", in.ProcessID).Str("command", cmd.Command).Logger()
	switch cmd.Command {
	case workflow.CmdStartChild:
		if _, err := s.opts.Registry.Get(ctx, in.Definition, in.Version); err != nil {
			if !errors.Is(err, engine.ErrUnknownDefinition) {
				return err
			}
			if err := s.reply(ctx, cmd, nil, &protocol.Error{Type: workflow.ErrTypeUnknownDefinition, Message: err.Error()}); err != nil {
				return err
			}
			log.Warn().Err(err).Msg("child not started")
			return cons.Ack(ctx, m)
		}
		if err := watch(Watch{Child: in.ProcessID, Kind: KindStart, Command: cmd, At: time.Now().UTC()}); err != nil {
			return err
		}
		b, err := s.envelope(protocol.TypeStart, protocol.StartEnvelopeID(in.ProcessID), in.ProcessID, protocol.StartRequest{
			ProcessID: in.ProcessID, Definition: in.Definition, Version: in.Version, Input: in.Input, Actor: actor,
			Parent: &workflow.ParentRef{ProcessID: cmd.ProcessID, CommandID: cmd.CommandID, ReplyTo: cmd.ReplyTo, Depth: in.Depth},
		})
		if err != nil {
			return err
		}
		if _, err := events.Send(ctx, &bus.OutMessage{Key: in.ProcessID, Payload: b}); err != nil {
			return err
		}
		log.Info().Msg("child started")
	case workflow.CmdCompensateChild:
		if err := s.refresh(ctx); err != nil {
			return err
		}
		s.statusMu.Lock()
		row, _ := s.status.Get(in.ProcessID)
		s.statusMu.Unlock()
		if err := watch(Watch{Child: in.ProcessID, Kind: KindCompensate, Command: cmd, AfterSeq: row.Seq, At: time.Now().UTC()}); err != nil {
			return err
		}
		if err := admin(protocol.ActionCompensate, "the parent "+cmd.ProcessID+" compensates"); err != nil {
			return err
		}
	case workflow.CmdCancelChild:
		if err := admin(protocol.ActionCancel, "the parent "+cmd.ProcessID+" no longer waits for it"); err != nil {
			return err
		}
	case workflow.CmdTerminateChild:
		if err := admin(protocol.ActionTerminate, "the parent "+cmd.ProcessID+" ended"); err != nil {
			return err
		}
	case workflow.CmdReleaseChild:
	default:
		return cons.DeadLetter(ctx, m, fmt.Sprintf("unknown engine command %q (want %s, %s, %s, %s or %s)", cmd.Command,
			workflow.CmdStartChild, workflow.CmdCompensateChild, workflow.CmdCancelChild, workflow.CmdTerminateChild, workflow.CmdReleaseChild))
	}
	return cons.Ack(ctx, m)
}

func (s *Service) refresh(ctx context.Context) error {
	s.statusMu.Lock()
	defer s.statusMu.Unlock()
	return s.status.Refresh(ctx)
}

// reply sends the parent the result of its command.
func (s *Service) reply(ctx context.Context, cmd protocol.Command, out json.RawMessage, e *protocol.Error) error {
	p, err := s.ps.get(ctx, cmd.ReplyTo)
	if err != nil {
		return err
	}
	res := protocol.ResultFor(&cmd)
	res.Status, res.Output, res.Error, res.Worker = protocol.StatusCompleted, out, e, s.opts.Name
	if e != nil {
		res.Status = protocol.StatusFailed
	}
	b, err := s.envelope(protocol.TypeResult, "result:"+cmd.CommandID, cmd.ProcessID, res)
	if err != nil {
		return err
	}
	_, err = p.Send(ctx, &bus.OutMessage{Key: cmd.ProcessID, Payload: b})
	return err
}
