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
//
// It works like the timer relay: bus.Consume takes the requests in batches
// and dead-letters what is not a valid start request (with the reason);
// each valid one is forwarded and acknowledged once its own send has
// succeeded (nacked if it failed), and up to StartRelayDepth batches are on
// their way at once: the relay never waits for the broker once per request.
type StartRelay struct {
	bus    bus.Bus
	topics protocol.Topics
	name   string
	log    zerolog.Logger
}

// Start relay tuning.
const (
	StartRelayBatch = 500 // most requests per batch
	StartRelayDepth = 4   // batches on their way at once
)

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
		Topic: r.topics.Starts, Subscription: protocol.StartRelaySubscription, Type: bus.Shared, ConsumerName: r.name,
		MaxDeliveries: 10, ReceiveQueueSize: StartRelayBatch * StartRelayDepth,
	})
	if err != nil {
		return fmt.Errorf("start relay: %w", err)
	}
	defer cons.Close()
	p, err := r.bus.Producer(ctx, protocol.EventsProducer(r.topics.Events))
	if err != nil {
		return fmt.Errorf("start relay: %w", err)
	}
	pipe := bus.NewPipeline(r.bus, bus.PipelineOptions{Depth: StartRelayDepth, NoTx: true})
	defer func() {
		_ = pipe.Wait(context.WithoutCancel(ctx))
		_ = p.Close()
	}()
	err = bus.Consume(ctx, cons, bus.ConsumeOptions{
		BatchSize: StartRelayBatch, Types: []string{protocol.TypeStart},
		OnDrop: func(m *bus.Message, reason string, err error) {
			r.log.Warn().Err(err).Str("reason", reason).Str("key", m.Key).Msg("bad start request dead-lettered")
		},
	}, decodeStart, func(ctx context.Context, reqs []bus.Inbound[protocol.StartRequest]) error {
		return r.relay(ctx, pipe, cons, p, reqs)
	})
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("start relay: %w", err)
	}
	return nil
}

// decodeStart reads a start request; the envelope's process id stands in
// for a missing one.
func decodeStart(env *bus.Envelope) (protocol.StartRequest, error) {
	var req protocol.StartRequest
	if err := env.DecodePayload(&req); err != nil {
		return req, err
	}
	if req.ProcessID == "" {
		req.ProcessID = env.ProcessID
	}
	return req, req.Validate()
}

// relay forwards a batch of start requests without waiting for it.
func (r *StartRelay) relay(ctx context.Context, pipe *bus.Pipeline, cons bus.Consumer, p bus.Producer, reqs []bus.Inbound[protocol.StartRequest]) error {
	b, err := pipe.Begin(ctx)
	if err != nil {
		for _, in := range reqs {
			cons.Nack(in.Message, err)
		}
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	for _, in := range reqs {
		req := in.Value
		out, err := encode(protocol.TypeStart, protocol.StartEnvelopeID(req.ProcessID), req.ProcessID, in.Env.Time, req)
		if err != nil {
			// Unencodable means it can never be relayed.
			if err := cons.DeadLetter(ctx, in.Message, err.Error()); err != nil {
				cons.Nack(in.Message, err)
			}
			continue
		}
		b.Forward(p, &bus.OutMessage{Key: req.ProcessID, Payload: out}, cons, in.Message, nil)
	}
	pipe.Commit(ctx, b, func(err error) {
		if err != nil && ctx.Err() == nil {
			r.log.Warn().Err(err).Msg("start requests not relayed; they will come again")
		}
	})
	return nil
}
