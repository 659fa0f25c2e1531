// Package timers implements every wait of the engine — retry backoff,
// attempt timeouts, deadlines, sleep, until, signal timeouts, decision
// timeouts — as Pulsar delayed messages. There is no timer service and no
// polling: a timer is a message on the timers topic delivered at its fire
// time to a Shared subscription (Pulsar honours delays on Shared and
// Key_Shared subscriptions only), and the Relay forwards it, as a
// timer.fired event keyed by process id, to the topic that asked for it.
//
// Whether a fired timer still matters is the process's business: the
// orchestrator ignores a timer that is no longer pending (cancelled,
// superseded, fired already, or redelivered after a broker restart) by its
// id. So the relay may deliver a timer more than once, never early.
//
// Delays longer than MaxHop (a broker may cap delayed delivery with
// delayedDeliveryMaxDelayInMillis) are split: the timer is sent for
// now+MaxHop and re-armed by the relay until its fire time comes.
package timers

import (
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/protocol"
)

// Topic is the timers topic.
const Topic = "timers"

// DefaultMaxHop is the longest single delay sent to the broker.
const DefaultMaxHop = 24 * time.Hour

// TopicSpec is how the timers topic is created: pending timers are
// unacknowledged messages, kept by the subscription whatever the retention.
func TopicSpec() bus.TopicSpec { return bus.TopicSpec{Name: Topic} }

// Message builds the delayed message of a timer, as of now. Set its Tx to
// send it in a transaction.
func Message(t protocol.Timer, now time.Time, maxHop time.Duration) (*bus.OutMessage, error) {
	if t.TimerID == "" || t.ProcessID == "" || t.Target == "" || t.FireAt.IsZero() {
		return nil, fmt.Errorf("%w: timer needs timer_id, process_id, target and fire_at", bus.ErrBadOptions)
	}
	if maxHop <= 0 {
		maxHop = DefaultMaxHop
	}
	at := t.FireAt
	if limit := now.Add(maxHop); at.After(limit) {
		at = limit
	}
	env, err := bus.NewEnvelope(protocol.TypeTimer, fmt.Sprintf("timer:%s:%d", t.TimerID, t.Hops), t.ProcessID, now, t)
	if err != nil {
		return nil, err
	}
	b, err := env.Encode()
	if err != nil {
		return nil, err
	}
	return &bus.OutMessage{Key: t.ProcessID, Payload: b, DeliverAt: at}, nil
}

// RelayOptions configure a Relay.
type RelayOptions struct {
	// Subscription is shared by every relay instance (default "timer-relay").
	Subscription string
	// Name identifies this instance.
	Name string
	// MaxHop is the longest delay sent to the broker (default 24h).
	MaxHop time.Duration
	// MaxDeliveries dead-letters a timer that keeps failing (default 20).
	MaxDeliveries int
	// Observe, when set, is called with each fired timer's lateness.
	Observe func(kind string, lateness time.Duration)
	// Clock returns the current time (default time.Now).
	Clock func() time.Time
}

// Relay moves fired timers to their target topics.
type Relay struct {
	bus  bus.Bus
	opts RelayOptions
	log  zerolog.Logger
}

// NewRelay creates a relay.
func NewRelay(b bus.Bus, opts RelayOptions, log zerolog.Logger) *Relay {
	if opts.Subscription == "" {
		opts.Subscription = "timer-relay"
	}
	if opts.MaxHop <= 0 {
		opts.MaxHop = DefaultMaxHop
	}
	if opts.MaxDeliveries <= 0 {
		opts.MaxDeliveries = 20
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	return &Relay{bus: b, opts: opts, log: log.With().Str("component", "timer-relay").Logger()}
}

// Run relays timers until ctx is done.
func (r *Relay) Run(ctx context.Context) error {
	if err := r.bus.EnsureTopic(ctx, TopicSpec()); err != nil {
		return fmt.Errorf("timer relay: %w", err)
	}
	cons, err := r.bus.Subscribe(ctx, bus.SubscribeOptions{
		Topic: Topic, Subscription: r.opts.Subscription, Type: bus.Shared, ConsumerName: r.opts.Name,
		MaxDeliveries: r.opts.MaxDeliveries, NackDelay: time.Second,
	})
	if err != nil {
		return fmt.Errorf("timer relay: subscribe: %w", err)
	}
	defer cons.Close()
	self, err := r.bus.Producer(ctx, bus.ProducerOptions{Topic: Topic})
	if err != nil {
		return fmt.Errorf("timer relay: %w", err)
	}
	defer self.Close()
	targets := map[string]bus.Producer{}
	defer func() {
		for _, p := range targets {
			_ = p.Close()
		}
	}()
	for {
		msg, err := cons.Receive(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("timer relay: receive: %w", err)
		}
		if err := r.handle(ctx, cons, self, targets, msg); err != nil {
			r.log.Warn().Err(err).Msg("timer not relayed; it will be delivered again")
			cons.Nack(msg, err)
		}
	}
}

func (r *Relay) handle(ctx context.Context, cons bus.Consumer, self bus.Producer, targets map[string]bus.Producer, msg *bus.Message) error {
	env, err := bus.DecodeOrDeadLetter(ctx, cons, msg)
	if err != nil {
		// Dead-lettered with its reason, or released if that failed.
		r.log.Warn().Err(err).Str("topic", msg.Topic).Msg("undecodable timer")
		return nil
	}
	if env.Type != protocol.TypeTimer {
		return cons.DeadLetter(ctx, msg, fmt.Sprintf("unexpected message type %q on the timers topic, want %q", env.Type, protocol.TypeTimer))
	}
	var t protocol.Timer
	if err := env.DecodePayload(&t); err != nil {
		return cons.DeadLetter(ctx, msg, err.Error())
	}
	if t.TimerID == "" || t.ProcessID == "" || t.Target == "" || t.FireAt.IsZero() {
		return cons.DeadLetter(ctx, msg, "timer needs timer_id, process_id, target and fire_at")
	}
	now := r.opts.Clock()
	log := r.log.With().Str("process_id", t.ProcessID).Str("timer_id", t.TimerID).Logger()
	if now.Before(t.FireAt) {
		// A long timer on one of its hops: send it on.
		t.Hops++
		out, err := Message(t, now, r.opts.MaxHop)
		if err != nil {
			return cons.DeadLetter(ctx, msg, err.Error())
		}
		if _, err := self.Send(ctx, out); err != nil {
			return err
		}
		log.Debug().Time("fire_at", t.FireAt).Int("hops", t.Hops).Msg("timer re-armed")
		return cons.Ack(ctx, msg)
	}
	p, ok := targets[t.Target]
	if !ok {
		if p, err = r.bus.Producer(ctx, bus.ProducerOptions{Topic: t.Target}); err != nil {
			return err
		}
		targets[t.Target] = p
	}
	fired := protocol.TimerFired{Timer: t, FiredAt: now.UTC()}
	out, err := bus.NewEnvelope(protocol.TypeTimerFired, "fired:"+t.TimerID, t.ProcessID, now, fired)
	if err != nil {
		return err
	}
	out.CausationID = env.ID
	b, err := out.Encode()
	if err != nil {
		return err
	}
	if _, err := p.Send(ctx, &bus.OutMessage{Key: t.ProcessID, Payload: b}); err != nil {
		return err
	}
	if r.opts.Observe != nil {
		r.opts.Observe(t.Kind, now.Sub(t.FireAt))
	}
	log.Debug().Dur("lateness", now.Sub(t.FireAt)).Msg("timer fired")
	return cons.Ack(ctx, msg)
}
