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
//
// # Batches and delivery guarantees
//
// The relay works in batches, through the bus's one receive loop and one
// sender (bus.Consume, bus.Batch, bus.Pipeline): it takes the due timers
// that are available (up to BatchSize, received by several goroutines at
// once; after the first it lingers BatchWait for more), dead-letters what
// is not a valid timer, and forwards each timer — the fired timer to its
// target topic keyed by its process id, a re-armed hop back to the timers
// topic — acknowledging it once its own send has succeeded. It never waits
// for a batch before taking the next: up to Depth batches are on their way
// at once, and Loops consumers of the shared subscription may each run
// such a pipeline. The order between timers is not kept and need not be:
// each fired timer stands alone and is matched by its id.
//
// Delivery is at least once, never early:
//
//   - A timer whose send fails is nacked on its own (the rest of its batch is
//     acknowledged) and delivered again after the subscription's nack delay;
//     after MaxDeliveries failed deliveries it is dead-lettered.
//   - A timer the relay sent but did not acknowledge — the relay stopped or
//     crashed between the two, or the acknowledgement was lost — is delivered
//     again and relayed again. The target then gets a second timer.fired
//     event for it with the same envelope id ("fired:<timer id>"; only
//     FiredAt differs) and ignores it because the timer is no longer
//     pending; a re-armed hop sent twice fires twice, with the same outcome.
//   - A timer is relayed to its target only when the relay's clock has
//     reached its FireAt; one delivered before (a hop, or a broker that
//     delivers early) is re-armed instead.
//   - A message that cannot be decoded, is not a timer, or lacks a field
//     is dead-lettered at once with the reason; the relay goes on.
package timers

import (
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/protocol"
)

// DefaultMaxHop is the longest single delay sent to the broker.
const DefaultMaxHop = 24 * time.Hour

// Message builds the delayed message of a timer, as of now. Set its Tx to
// send it in a transaction.
func Message(t protocol.Timer, now time.Time, maxHop time.Duration) (*bus.OutMessage, error) {
	if err := t.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", bus.ErrBadOptions, err)
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
	// Topic is the timers topic (default protocol.TimersTopic).
	Topic string
	// Subscription is shared by every relay instance (default
	// protocol.TimerRelaySubscription).
	Subscription string
	// Name identifies this instance.
	Name string
	// MaxHop is the longest delay sent to the broker (default 24h).
	MaxHop time.Duration
	// MaxDeliveries dead-letters a timer that keeps failing (default 20).
	MaxDeliveries int
	// BatchSize is the most timers relayed together (default 100).
	BatchSize int
	// BatchWait is how long a batch waits for more timers after its first
	// (default 5ms).
	BatchWait time.Duration
	// Depth is how many batches of a loop may be on their way at once: the
	// loop gathers and sends the next batch while the sends of the earlier
	// ones complete (default 4).
	Depth int
	// Loops is how many consumers of the subscription relay at once, each
	// with its own batches (default 1).
	Loops int
	// Observe, when set, is called with each fired timer's lateness.
	Observe func(kind string, lateness time.Duration)
	// Clock returns the current time (default time.Now).
	Clock func() time.Time
}

// Defaults of RelayOptions.
const (
	DefaultBatchSize = 100
	DefaultBatchWait = 5 * time.Millisecond
	DefaultDepth     = 4
	DefaultLoops     = 1
)

// Relay moves fired timers to their target topics.
type Relay struct {
	bus  bus.Bus
	opts RelayOptions
	log  zerolog.Logger
}

// NewRelay creates a relay.
func NewRelay(b bus.Bus, opts RelayOptions, log zerolog.Logger) *Relay {
	if opts.Topic == "" {
		opts.Topic = protocol.TimersTopic
	}
	if opts.Subscription == "" {
		opts.Subscription = protocol.TimerRelaySubscription
	}
	if opts.MaxHop <= 0 {
		opts.MaxHop = DefaultMaxHop
	}
	if opts.MaxDeliveries <= 0 {
		opts.MaxDeliveries = 20
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = DefaultBatchSize
	}
	if opts.BatchWait <= 0 {
		opts.BatchWait = DefaultBatchWait
	}
	if opts.Depth <= 0 {
		opts.Depth = DefaultDepth
	}
	if opts.Loops <= 0 {
		opts.Loops = DefaultLoops
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	return &Relay{bus: b, opts: opts, log: log.With().Str("component", "timer-relay").Logger()}
}

// Run relays timers until ctx is done. It returns nil when ctx is done, or
// the first error that stopped one of its loops (the others are stopped
// then too).
func (r *Relay) Run(ctx context.Context) error {
	if err := r.bus.EnsureTopic(ctx, protocol.Topics{Timers: r.opts.Topic}.TimersSpec()); err != nil {
		return fmt.Errorf("timer relay: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, r.opts.Loops)
	for i := range r.opts.Loops {
		name := r.opts.Name
		if r.opts.Loops > 1 && name != "" {
			name = fmt.Sprintf("%s-%d", name, i)
		}
		go func() {
			err := r.loop(ctx, name)
			if err != nil {
				cancel()
			}
			errs <- err
		}()
	}
	var first error
	for range r.opts.Loops {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// loop is one consumer of the subscription relaying batches, up to Depth
// of them on their way at once.
type loop struct {
	r       *Relay
	cons    bus.Consumer
	self    bus.Producer            // the timers topic, for hops
	targets map[string]bus.Producer // by target topic
	pipe    *bus.Pipeline
	log     zerolog.Logger
}

// loop relays batches until ctx is done.
func (r *Relay) loop(ctx context.Context, name string) error {
	cons, err := r.bus.Subscribe(ctx, bus.SubscribeOptions{
		Topic: r.opts.Topic, Subscription: r.opts.Subscription, Type: bus.Shared, ConsumerName: name,
		MaxDeliveries: r.opts.MaxDeliveries, NackDelay: time.Second,
		ReceiveQueueSize: max(1000, r.opts.BatchSize*r.opts.Depth),
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("timer relay: subscribe: %w", err)
	}
	defer cons.Close()
	self, err := r.bus.Producer(ctx, bus.ProducerOptions{Topic: r.opts.Topic})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("timer relay: %w", err)
	}
	l := &loop{
		r: r, cons: cons, self: self, targets: map[string]bus.Producer{}, log: r.log,
		pipe: bus.NewPipeline(r.bus, bus.PipelineOptions{Depth: r.opts.Depth, NoTx: true}),
	}
	if name != r.opts.Name {
		l.log = r.log.With().Str("loop", name).Logger()
	}
	defer func() {
		// Batches on their way finish (or fail and nack) before the
		// producers close.
		_ = l.pipe.Wait(context.WithoutCancel(ctx))
		_ = self.Close()
		for _, p := range l.targets {
			_ = p.Close()
		}
	}()
	err = bus.Consume(ctx, cons, bus.ConsumeOptions{
		BatchSize: r.opts.BatchSize, BatchWait: r.opts.BatchWait, Receivers: r.receivers(),
		Types: []string{protocol.TypeTimer},
		OnDrop: func(m *bus.Message, reason string, err error) {
			l.log.Warn().Err(err).Str("reason", reason).Str("key", m.Key).Msg("bad timer dead-lettered")
		},
	}, bus.JSON[protocol.Timer], l.relay)
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("timer relay: %w", err)
	}
	return nil
}

// receivers is how many goroutines of a loop receive timers at once.
func (r *Relay) receivers() int { return min(r.opts.BatchSize, 4) }

// relay sends the timers of a batch without waiting for them: each timer
// is forwarded (fired to its target, or re-armed to the timers topic) and
// acknowledged once its own message is sent, nacked if that send fails. It
// returns once the batch is on its way; the loop gathers the next one
// meanwhile (at most Depth batches on their way).
func (l *loop) relay(ctx context.Context, timers []bus.Inbound[protocol.Timer]) error {
	b, err := l.pipe.Begin(ctx)
	if err != nil {
		for _, in := range timers {
			l.cons.Nack(in.Message, err)
		}
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	now := l.r.opts.Clock()
	for _, in := range timers {
		t := in.Value
		p, out, fired, err := l.prepare(ctx, in, now)
		if err != nil {
			l.log.Warn().Err(err).Str("process_id", t.ProcessID).Str("timer_id", t.TimerID).Msg("timer not relayed; it will be delivered again")
			l.cons.Nack(in.Message, err)
			continue
		}
		b.Forward(p, out, l.cons, in.Message, func(bus.MessageID) { l.sent(t, fired, now) })
	}
	l.pipe.Commit(ctx, b, func(err error) {
		if err != nil && ctx.Err() == nil {
			// Each failed timer was nacked on its own; the others went.
			l.log.Warn().Err(err).Msg("timers of a batch not relayed; they will be delivered again")
		}
	})
	return nil
}

// prepare is the message to send for a timer: the timer.fired event to its
// target when it is due, else its next hop to the timers topic.
func (l *loop) prepare(ctx context.Context, in bus.Inbound[protocol.Timer], now time.Time) (bus.Producer, *bus.OutMessage, bool, error) {
	t := in.Value
	if now.Before(t.FireAt) {
		// A long timer on one of its hops (or a broker that delivered it
		// early): send it on.
		t.Hops++
		out, err := Message(t, now, l.r.opts.MaxHop)
		return l.self, out, false, err
	}
	p, err := l.target(ctx, t.Target)
	if err != nil {
		return nil, nil, false, err
	}
	fired := protocol.TimerFired{Timer: t, FiredAt: now.UTC()}
	env, err := bus.NewEnvelope(protocol.TypeTimerFired, "fired:"+t.TimerID, t.ProcessID, now, fired)
	if err != nil {
		return nil, nil, false, err
	}
	env.CausationID = in.Env.ID
	b, err := env.Encode()
	if err != nil {
		return nil, nil, false, err
	}
	return p, &bus.OutMessage{Key: t.ProcessID, Payload: b}, true, nil
}

// target is the producer of a target topic, opened on first use.
func (l *loop) target(ctx context.Context, topic string) (bus.Producer, error) {
	if p, ok := l.targets[topic]; ok {
		return p, nil
	}
	p, err := l.r.bus.Producer(ctx, bus.ProducerOptions{Topic: topic})
	if err != nil {
		return nil, err
	}
	l.targets[topic] = p
	return p, nil
}

// sent observes a relayed timer (called once its message is sent, before
// its acknowledgement).
func (l *loop) sent(t protocol.Timer, fired bool, now time.Time) {
	if fired {
		if l.r.opts.Observe != nil {
			l.r.opts.Observe(t.Kind, now.Sub(t.FireAt))
		}
		if e := l.log.Debug(); e.Enabled() {
			e.Str("process_id", t.ProcessID).Str("timer_id", t.TimerID).Dur("lateness", now.Sub(t.FireAt)).Msg("timer fired")
		}
		return
	}
	if e := l.log.Debug(); e.Enabled() {
		e.Str("process_id", t.ProcessID).Str("timer_id", t.TimerID).Time("fire_at", t.FireAt).Int("hops", t.Hops).Msg("timer re-armed")
	}
}
