package engine

import (
	"context"
	"fmt"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/protocol"
)

// StartRelay forwards start requests from the starts topic to the events
// topic. Other systems may publish start requests there without knowing
// anything else of the engine: the relay checks them and forwards them,
// keyed by process id. Starting an id that exists is a no-op, so a resent
// request is harmless.
type StartRelay struct {
	bus    bus.Bus
	topics protocol.Topics
	name   string
	log    zerolog.Logger
}

// NewStartRelay creates a start relay.
func NewStartRelay(b bus.Bus, topics protocol.Topics, name string, log zerolog.Logger) *StartRelay {
	topics = topics.WithDefaults()
	return &StartRelay{bus: b, topics: topics, name: name, log: log.With().Str("component", "start-relay").Logger()}
}

// Run relays until ctx ends.
func (r *StartRelay) Run(ctx context.Context) error {
	if err := r.bus.EnsureTopic(ctx, r.topics.StartsSpec()); err != nil {
		return fmt.Errorf("start relay: %w", err)
	}
	cons, err := r.bus.Subscribe(ctx, bus.SubscribeOptions{
		Topic: r.topics.Starts, Subscription: protocol.StartRelaySubscription, Type: bus.Shared, ConsumerName: r.name, MaxDeliveries: 10,
	})
	if err != nil {
		return fmt.Errorf("start relay: %w", err)
	}
	defer cons.Close()
	p, err := r.bus.Producer(ctx, bus.ProducerOptions{Topic: r.topics.Events})
	if err != nil {
		return fmt.Errorf("start relay: %w", err)
	}
	defer p.Close()
	for {
		m, err := cons.Receive(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("start relay: %w", err)
		}
		if err := r.relay(ctx, cons, p, m); err != nil {
			r.log.Warn().Err(err).Msg("start request not relayed; it will come again")
			cons.Nack(m, err)
		}
	}
}

func (r *StartRelay) relay(ctx context.Context, cons bus.Consumer, p bus.Producer, m *bus.Message) error {
	env, err := bus.DecodeOrDeadLetter(ctx, cons, m)
	if err != nil {
		r.log.Warn().Err(err).Msg("undecodable start request")
		return nil
	}
	if env.Type != protocol.TypeStart {
		return cons.DeadLetter(ctx, m, fmt.Sprintf("unexpected message type %q on the start topic, want %q", env.Type, protocol.TypeStart))
	}
	var req protocol.StartRequest
	if err := env.DecodePayload(&req); err != nil {
		return cons.DeadLetter(ctx, m, err.Error())
	}
	if req.ProcessID == "" {
		req.ProcessID = env.ProcessID
	}
	if err := req.Validate(); err != nil {
		return cons.DeadLetter(ctx, m, err.Error())
	}
	out, err := encode(protocol.TypeStart, protocol.StartEnvelopeID(req.ProcessID), req.ProcessID, env.Time, req)
	if err != nil {
		return cons.DeadLetter(ctx, m, err.Error())
	}
	if _, err := p.Send(ctx, &bus.OutMessage{Key: req.ProcessID, Payload: out}); err != nil {
		return err
	}
	return cons.Ack(ctx, m)
}
