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
// The relay works in batches: it takes the due timers that are available
// (up to BatchSize, received by several goroutines at once; after the first
// it lingers BatchWait for more), sends
// them all without waiting for each (SendAsync, then Flush) — each fired
// timer to its target topic keyed by its process id, each re-armed hop back
// to the timers topic — and only once a send has succeeded acknowledges that
// timer. Loops batches may be on their way at once, each taken by its own
// consumer of the shared subscription. The order between timers is not kept
// and need not be: each fired timer stands alone and is matched by its id.
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
	"slices"
	"sync"
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
	// Loops is how many batches may be on their way at once, each taken by
	// its own consumer of the subscription (default 4).
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
	DefaultLoops     = 4
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

// loop is one consumer of the subscription relaying a batch at a time.
type loop struct {
	r       *Relay
	cons    bus.Consumer
	self    bus.Producer            // the timers topic, for hops
	targets map[string]bus.Producer // by target topic
	log     zerolog.Logger
}

// loop relays batches until ctx is done.
func (r *Relay) loop(ctx context.Context, name string) error {
	cons, err := r.bus.Subscribe(ctx, bus.SubscribeOptions{
		Topic: r.opts.Topic, Subscription: r.opts.Subscription, Type: bus.Shared, ConsumerName: name,
		MaxDeliveries: r.opts.MaxDeliveries, NackDelay: time.Second,
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
	l := &loop{r: r, cons: cons, self: self, targets: map[string]bus.Producer{}, log: r.log}
	if name != r.opts.Name {
		l.log = r.log.With().Str("loop", name).Logger()
	}
	defer func() {
		_ = self.Close()
		for _, p := range l.targets {
			_ = p.Close()
		}
	}()
	// Several receives at once feed the batches: a Receive can cost a
	// broker round trip (pulsarbus records each delivery of a subscription
	// with MaxDeliveries before returning it).
	rctx, stop := context.WithCancel(ctx)
	in := make(chan *bus.Message, r.opts.BatchSize)
	failed := make(chan error, 1)
	var receivers sync.WaitGroup
	defer func() {
		stop()
		receivers.Wait() // before the consumer closes, which gives back what they hold
	}()
	for range r.receivers() {
		receivers.Go(func() {
			for {
				m, err := cons.Receive(rctx)
				if err != nil {
					if rctx.Err() == nil {
						select {
						case failed <- err:
						default:
						}
						stop()
					}
					return
				}
				select {
				case in <- m:
				case <-rctx.Done():
					return
				}
			}
		})
	}
	for {
		msgs := l.gather(rctx, in)
		if msgs == nil {
			select {
			case err := <-failed:
				return fmt.Errorf("timer relay: receive: %w", err)
			default:
				return nil // stopping: what was received is delivered again
			}
		}
		l.relay(rctx, msgs)
	}
}

// receivers is how many goroutines of a loop receive timers at once.
func (r *Relay) receivers() int { return min(r.opts.BatchSize, 16) }

// gather waits for a timer, then takes those that come within BatchWait,
// up to BatchSize. It returns nil when ctx is done.
func (l *loop) gather(ctx context.Context, in <-chan *bus.Message) []*bus.Message {
	var msgs []*bus.Message
	select {
	case <-ctx.Done():
		return nil
	case m := <-in:
		msgs = append(msgs, m)
	}
	linger := time.NewTimer(l.r.opts.BatchWait)
	defer linger.Stop()
	for len(msgs) < l.r.opts.BatchSize {
		select {
		case <-ctx.Done():
			return nil
		case m := <-in:
			msgs = append(msgs, m)
		case <-linger.C:
			return msgs
		}
	}
	return msgs
}

// pending is a timer of a batch on its way: out is sent with p, then msg is
// acknowledged.
type pending struct {
	msg   *bus.Message
	t     protocol.Timer
	out   *bus.OutMessage
	p     bus.Producer
	fired bool  // out is the timer.fired event (else a re-armed hop)
	err   error // the send's outcome
}

// relay sends the timers of a batch at once, then settles each: a sent timer
// is acknowledged, one whose send failed is nacked.
func (l *loop) relay(ctx context.Context, msgs []*bus.Message) {
	now := l.r.opts.Clock()
	batch := make([]*pending, 0, len(msgs))
	for _, m := range msgs {
		p, err := l.prepare(ctx, m, now)
		if err != nil {
			l.log.Warn().Err(err).Msg("timer not relayed; it will be delivered again")
			l.cons.Nack(m, err)
			continue
		}
		if p != nil {
			batch = append(batch, p)
		}
	}
	if len(batch) == 0 {
		return
	}
	var wg sync.WaitGroup
	wg.Add(len(batch))
	var used []bus.Producer
	for _, p := range batch {
		if !slices.Contains(used, p.p) {
			used = append(used, p.p)
		}
		p.p.SendAsync(ctx, p.out, func(_ bus.MessageID, err error) {
			p.err = err
			wg.Done()
		})
	}
	for _, pr := range used {
		// Flush sends what is queued now instead of after the batching
		// delay; each message's outcome comes to its own callback.
		_ = pr.Flush(ctx)
	}
	sent := make(chan struct{})
	go func() {
		wg.Wait()
		close(sent)
	}()
	select {
	case <-sent:
	case <-ctx.Done():
		// Stopping before the outcomes came: nothing of the batch is
		// acknowledged, so all of it is delivered again.
		return
	}
	for _, p := range batch {
		l.settle(ctx, p, now)
	}
}

// prepare turns a received message into the message to send for it. It
// returns nil and no error for a message it settled itself (dead-lettered
// with its reason), and an error for one to nack.
func (l *loop) prepare(ctx context.Context, msg *bus.Message, now time.Time) (*pending, error) {
	env, err := bus.DecodeOrDeadLetter(ctx, l.cons, msg)
	if err != nil {
		// Dead-lettered with its reason, or nacked if that failed.
		l.log.Warn().Err(err).Str("topic", msg.Topic).Msg("undecodable timer")
		return nil, nil
	}
	if env.Type != protocol.TypeTimer {
		return nil, l.cons.DeadLetter(ctx, msg, fmt.Sprintf("unexpected message type %q on the timers topic, want %q", env.Type, protocol.TypeTimer))
	}
	var t protocol.Timer
	if err := env.DecodePayload(&t); err != nil {
		return nil, l.cons.DeadLetter(ctx, msg, err.Error())
	}
	if t.TimerID == "" || t.ProcessID == "" || t.Target == "" || t.FireAt.IsZero() {
		return nil, l.cons.DeadLetter(ctx, msg, "timer needs timer_id, process_id, target and fire_at")
	}
	if now.Before(t.FireAt) {
		// A long timer on one of its hops: send it on.
		t.Hops++
		out, err := Message(t, now, l.r.opts.MaxHop)
		if err != nil {
			return nil, l.cons.DeadLetter(ctx, msg, err.Error())
		}
		return &pending{msg: msg, t: t, out: out, p: l.self}, nil
	}
	p, err := l.target(ctx, t.Target)
	if err != nil {
		return nil, err
	}
	fired := protocol.TimerFired{Timer: t, FiredAt: now.UTC()}
	out, err := bus.NewEnvelope(protocol.TypeTimerFired, "fired:"+t.TimerID, t.ProcessID, now, fired)
	if err != nil {
		return nil, err
	}
	out.CausationID = env.ID
	b, err := out.Encode()
	if err != nil {
		return nil, err
	}
	return &pending{msg: msg, t: t, out: &bus.OutMessage{Key: t.ProcessID, Payload: b}, p: p, fired: true}, nil
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

// settle acknowledges a timer that was sent and nacks one whose send failed.
func (l *loop) settle(ctx context.Context, p *pending, now time.Time) {
	log := l.log.With().Str("process_id", p.t.ProcessID).Str("timer_id", p.t.TimerID).Logger()
	if p.err != nil {
		log.Warn().Err(p.err).Msg("timer not relayed; it will be delivered again")
		l.cons.Nack(p.msg, p.err)
		return
	}
	if p.fired {
		if l.r.opts.Observe != nil {
			l.r.opts.Observe(p.t.Kind, now.Sub(p.t.FireAt))
		}
		log.Debug().Dur("lateness", now.Sub(p.t.FireAt)).Msg("timer fired")
	} else {
		log.Debug().Time("fire_at", p.t.FireAt).Int("hops", p.t.Hops).Msg("timer re-armed")
	}
	if err := l.cons.Ack(ctx, p.msg); err != nil {
		// Relayed but not acknowledged: it comes back and is relayed again,
		// which its target ignores by id.
		log.Warn().Err(err).Msg("relayed timer not acknowledged; it will be delivered and relayed again")
		l.cons.Nack(p.msg, err)
	}
}
