package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Inbound is a received message whose envelope decoded and whose payload
// passed its decoder.
type Inbound[T any] struct {
	*Message
	// Env is the message's envelope.
	Env *Envelope
	// Value is what the decoder made of it.
	Value T
}

// ConsumeOptions tune Consume.
type ConsumeOptions struct {
	// BatchSize is the most messages handed on at once (default 100).
	BatchSize int
	// BatchWait is how long a batch waits for more messages after its
	// first (default 5ms). Negative: take only what has arrived already.
	BatchWait time.Duration
	// Receivers is how many goroutines receive at once (default 1). Use
	// more where a Receive costs a broker round trip (a subscription with
	// CountDeliveriesDurably on pulsarbus).
	Receivers int
	// Types are the envelope types accepted; a message of another type is
	// dead-lettered. Empty: any type reaches the decoder.
	Types []string
	// OnDrop, when set, is told of each message that did not reach the
	// handler: dead-lettered with reason (err nil), or nacked because
	// dead-lettering it failed (err says why; it will come again).
	OnDrop func(m *Message, reason string, err error)
}

// Defaults of ConsumeOptions.
const (
	DefaultConsumeBatch = 100
	DefaultConsumeWait  = 5 * time.Millisecond
)

// Consume is the one receive loop of pulsaga's components: it receives
// messages of c in batches (it waits for a first message, then takes those
// that arrive within BatchWait, up to BatchSize), decodes each envelope,
// checks its type and runs decode on it; a message that fails any of these
// is dead-lettered with the reason (the decoder's error is the reason:
// decode must be pure, so that an error means the message can never be
// handled) and the others are handed to handle, in the order received.
//
// handle owns the messages it is given: it acknowledges, nacks or
// dead-letters each (typically through a Batch). Consume returns nil when
// ctx ends, the error of a handle call that failed (the loop stops), or
// the error that stopped receiving. Messages received but not handed on
// when it stops are left to the consumer (delivered again once it closes).
func Consume[T any](ctx context.Context, c Consumer, opts ConsumeOptions,
	decode func(*Envelope) (T, error), handle func(context.Context, []Inbound[T]) error) error {
	if opts.BatchSize <= 0 {
		opts.BatchSize = DefaultConsumeBatch
	}
	if opts.BatchWait == 0 {
		opts.BatchWait = DefaultConsumeWait
	}
	if opts.Receivers <= 0 {
		opts.Receivers = 1
	}
	rctx, stop := context.WithCancel(ctx)
	in := make(chan *Message, opts.BatchSize)
	failed := make(chan error, 1)
	var receivers sync.WaitGroup
	defer func() {
		stop()
		receivers.Wait()
	}()
	for range opts.Receivers {
		receivers.Go(func() {
			for {
				m, err := c.Receive(rctx)
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
	var batch []*Message
	for {
		batch = gather(rctx, in, batch[:0], opts.BatchSize, opts.BatchWait)
		if len(batch) == 0 {
			select {
			case err := <-failed:
				return fmt.Errorf("bus: receive: %w", err)
			default:
				return nil
			}
		}
		good := make([]Inbound[T], 0, len(batch))
		for _, m := range batch {
			if v, env, reason := decodeOne(m, opts.Types, decode); reason == "" {
				good = append(good, Inbound[T]{Message: m, Env: env, Value: v})
			} else {
				drop(ctx, c, m, reason, opts.OnDrop)
			}
		}
		if len(good) > 0 {
			if err := handle(rctx, good); err != nil {
				return err
			}
		}
	}
}

// gather waits for a message, then takes those that come within wait, up
// to max. It returns what it has when ctx ends (nothing if it ended first).
func gather(ctx context.Context, in <-chan *Message, msgs []*Message, max int, wait time.Duration) []*Message {
	select {
	case <-ctx.Done():
		return msgs
	case m := <-in:
		msgs = append(msgs, m)
	}
	if wait < 0 {
		for len(msgs) < max {
			select {
			case m := <-in:
				msgs = append(msgs, m)
			default:
				return msgs
			}
		}
		return msgs
	}
	linger := time.NewTimer(wait)
	defer linger.Stop()
	for len(msgs) < max {
		select {
		case <-ctx.Done():
			return msgs
		case m := <-in:
			msgs = append(msgs, m)
		case <-linger.C:
			return msgs
		}
	}
	return msgs
}

// decodeOne returns the decoded value, or the reason to dead-letter m.
func decodeOne[T any](m *Message, types []string, decode func(*Envelope) (T, error)) (v T, env *Envelope, reason string) {
	env, err := DecodeEnvelope(m.Payload)
	if err != nil {
		var de *DecodeError
		if errors.As(err, &de) {
			return v, nil, de.Reason
		}
		return v, nil, err.Error()
	}
	if len(types) > 0 && !slices.Contains(types, env.Type) {
		return v, nil, fmt.Sprintf("unexpected message type %q on the %s topic, want %s", env.Type, ShortName(BaseTopic(m.Topic)), quoteList(types))
	}
	v, err = safeDecode(decode, env)
	if err != nil {
		var de *DecodeError
		if errors.As(err, &de) {
			return v, nil, de.Reason
		}
		return v, nil, err.Error()
	}
	return v, env, ""
}

// safeDecode turns a decoder's panic into an error: a message must not
// take the process down.
func safeDecode[T any](decode func(*Envelope) (T, error), env *Envelope) (v T, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s payload could not be decoded (decoder panicked: %v)", env.Type, r)
		}
	}()
	return decode(env)
}

func quoteList(types []string) string {
	q := make([]string, len(types))
	for i, t := range types {
		q[i] = fmt.Sprintf("%q", t)
	}
	if len(q) == 1 {
		return q[0]
	}
	return "one of " + strings.Join(q, ", ")
}

// drop dead-letters m with reason, or nacks it when that fails.
func drop(ctx context.Context, c Consumer, m *Message, reason string, onDrop func(*Message, string, error)) {
	err := c.DeadLetter(ctx, m, reason)
	if err != nil {
		c.Nack(m, errors.New(reason))
		err = fmt.Errorf("bus: dead-letter a message from %s (%s): %w (nacked)", m.Topic, reason, err)
	}
	if onDrop != nil {
		onDrop(m, reason, err)
	}
}

// JSON is a decoder for Consume: it unmarshals the payload into a T and,
// when *T has a Validate method, checks it (its error is the dead-letter
// reason).
func JSON[T any](env *Envelope) (T, error) {
	var v T
	if err := env.DecodePayload(&v); err != nil {
		return v, err
	}
	if val, ok := any(&v).(interface{ Validate() error }); ok {
		if err := val.Validate(); err != nil {
			return v, err
		}
	}
	return v, nil
}
