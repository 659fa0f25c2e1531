package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/protocol"
)

// StartTopic is where other systems may publish start requests without
// knowing anything else of the engine: the start relay checks them and
// forwards them, keyed by process id, to the events topic. Starting an id
// that exists is a no-op, so a resent request is harmless.
const StartTopic = "starts"

// StartRelay forwards start requests from StartTopic to the events topic.
type StartRelay struct {
	bus    bus.Bus
	topics Topics
	name   string
	log    zerolog.Logger
}

// NewStartRelay creates a start relay.
func NewStartRelay(b bus.Bus, topics Topics, name string, log zerolog.Logger) *StartRelay {
	if topics.Events == "" {
		topics = DefaultTopics()
	}
	return &StartRelay{bus: b, topics: topics, name: name, log: log.With().Str("component", "start-relay").Logger()}
}

// Run relays until ctx ends.
func (r *StartRelay) Run(ctx context.Context) error {
	if err := r.bus.EnsureTopic(ctx, bus.TopicSpec{Name: StartTopic, RetentionTime: 24 * time.Hour, RetentionSizeMB: -1}); err != nil {
		return fmt.Errorf("start relay: %w", err)
	}
	cons, err := r.bus.Subscribe(ctx, bus.SubscribeOptions{
		Topic: StartTopic, Subscription: "start-relay", Type: bus.Shared, ConsumerName: r.name, MaxDeliveries: 10,
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
	var req StartRequest
	if err := env.DecodePayload(&req); err != nil {
		return cons.DeadLetter(ctx, m, err.Error())
	}
	if req.ProcessID == "" {
		req.ProcessID = env.ProcessID
	}
	if req.ProcessID == "" || req.Definition == "" {
		return cons.DeadLetter(ctx, m, "a start request needs a process_id and a definition")
	}
	out, err := encode(protocol.TypeStart, "start:"+req.ProcessID, req.ProcessID, env.Time, req)
	if err != nil {
		return cons.DeadLetter(ctx, m, err.Error())
	}
	if _, err := p.Send(ctx, &bus.OutMessage{Key: req.ProcessID, Payload: out}); err != nil {
		return err
	}
	return cons.Ack(ctx, m)
}
