package pulsarbus

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"sync"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"

	"github.com/pulsaga/pulsaga/bus"
)

// propDeliverAt carries OutMessage.DeliverAt to receivers: the client does
// not expose a received message's deliver-at time. It is removed from
// Message.Properties on receipt.
const propDeliverAt = "pulsaga-deliver-at"

const (
	defaultBatchingMaxDelay = time.Millisecond
	defaultSendTimeout      = 30 * time.Second
)

type producer struct {
	b           *Bus
	topic       string
	opts        bus.ProducerOptions
	sendTimeout time.Duration
	p           pulsar.Producer

	closed sync.Once
}

var _ bus.Producer = (*producer)(nil)

// Producer opens a producer on a topic. Batching is key-based (a batch holds
// one key), so per-key order and KeyShared dispatch hold on any topic,
// unless opts.MixedKeys (then a batch holds what was sent together).
// Transactional messages are batched too: the patched client (see
// third_party/pulsar-client-go/PULSAGA.md) never mixes transactions, or
// transactional and plain messages, in one batch. A transactional send that
// fails or times out leaves the client transaction in error: its commit
// then fails with bus.ErrTxFailed.
func (b *Bus) Producer(ctx context.Context, opts bus.ProducerOptions) (bus.Producer, error) {
	if opts.Topic == "" {
		return nil, fmt.Errorf("%w: Producer: %w", bus.ErrBadOptions, errNoTopic)
	}
	if opts.SendTimeout < 0 {
		return nil, fmt.Errorf("%w: Producer %s: SendTimeout must not be negative", bus.ErrBadOptions, opts.Topic)
	}
	if b.isClosed() {
		return nil, fmt.Errorf("pulsarbus: producer on %s: %w", opts.Topic, bus.ErrClosed)
	}
	topic := b.cfg.Namespace.Topic(opts.Topic)
	pr := &producer{b: b, topic: topic, opts: opts, sendTimeout: opts.SendTimeout}
	if pr.sendTimeout == 0 {
		pr.sendTimeout = defaultSendTimeout
	}
	po := pulsar.ProducerOptions{
		Topic:              topic,
		Name:               opts.Name,
		SendTimeout:        pr.sendTimeout,
		BatcherBuilderType: pulsar.KeyBasedBatchBuilder,
		// bus.KeyPartition: the routing both buses share.
		HashingScheme: pulsar.JavaStringHash,
	}
	switch opts.AccessMode {
	case bus.AccessShared:
		po.ProducerAccessMode = pulsar.ProducerAccessModeShared
	case bus.AccessExclusive:
		po.ProducerAccessMode = pulsar.ProducerAccessModeExclusive
	case bus.AccessWaitForExclusive:
		po.ProducerAccessMode = pulsar.ProducerAccessModeWaitForExclusive
	case bus.AccessExclusiveWithFencing:
		po.ProducerAccessMode = pulsar.ProducerAccessModeExclusiveWithFencing
		// Closed on this side only: a CLOSE_PRODUCER meeting the next
		// owner's fencing producer deadlocks the broker's IO threads
		// (see pulsar.ProducerOptions.CloseWithoutRequest). The broker
		// drops the producer when the next owner fences it out or when
		// this bus's connection closes.
		po.CloseWithoutRequest = true
	default:
		return nil, fmt.Errorf("%w: Producer %s: unknown access mode %d", bus.ErrBadOptions, opts.Topic, opts.AccessMode)
	}
	if opts.MixedKeys {
		po.BatcherBuilderType = pulsar.DefaultBatchBuilder
	}
	if opts.BatchingMaxMessages < 0 {
		return nil, fmt.Errorf("%w: Producer %s: BatchingMaxMessages must not be negative", bus.ErrBadOptions, opts.Topic)
	}
	po.BatchingMaxMessages = uint(opts.BatchingMaxMessages)
	switch {
	case opts.BatchingMaxDelay < 0:
		po.DisableBatching = true
	case opts.BatchingMaxDelay == 0:
		po.BatchingMaxPublishDelay = defaultBatchingMaxDelay
	default:
		po.BatchingMaxPublishDelay = opts.BatchingMaxDelay
	}
	p, err := b.createProducer(ctx, po)
	for err != nil && opts.AccessMode == bus.AccessWaitForExclusive && ctx.Err() == nil && isTimeout(err) {
		// The broker answers a waiting producer once it has the topic; a
		// wait longer than the operation timeout is asked again.
		p, err = b.createProducer(ctx, po)
	}
	if err != nil {
		if fenced := fencedError(err); fenced != nil {
			return nil, fmt.Errorf("pulsarbus: open %s producer on %s: %w", opts.AccessMode, topic, fenced)
		}
		return nil, wrap(err, "open %s producer on %s", opts.AccessMode, topic)
	}
	pr.p = p
	if err := b.register(pr); err != nil {
		p.Close()
		return nil, fmt.Errorf("pulsarbus: producer on %s: %w", topic, err)
	}
	return pr, nil
}

func (pr *producer) Topic() string { return pr.topic }

func (pr *producer) message(msg *bus.OutMessage) (*pulsar.ProducerMessage, pulsar.Producer, error) {
	if msg == nil {
		return nil, nil, fmt.Errorf("%w: nil message to %s", bus.ErrBadOptions, pr.topic)
	}
	if err := bus.CheckSize(pr.topic, msg); err != nil {
		return nil, nil, err
	}
	pm := &pulsar.ProducerMessage{Payload: msg.Payload, Key: msg.Key}
	if msg.Payload == nil {
		pm.Payload = []byte{}
	}
	if len(msg.Properties) > 0 || !msg.DeliverAt.IsZero() {
		pm.Properties = make(map[string]string, len(msg.Properties)+1)
		maps.Copy(pm.Properties, msg.Properties)
	}
	if !msg.DeliverAt.IsZero() {
		pm.DeliverAt = msg.DeliverAt
		pm.Properties[propDeliverAt] = strconv.FormatInt(msg.DeliverAt.UnixMilli(), 10)
	}
	if msg.Tx == nil {
		return pm, pr.p, nil
	}
	t, ok := msg.Tx.(*tx)
	if !ok || t.b != pr.b {
		return nil, nil, fmt.Errorf("%w: send to %s: the transaction was not begun on this bus", bus.ErrBadOptions, pr.topic)
	}
	pm.Transaction = t.t
	return pm, pr.p, nil
}

// Send sends one message and waits for the broker's receipt.
func (pr *producer) Send(ctx context.Context, msg *bus.OutMessage) (bus.MessageID, error) {
	pm, p, err := pr.message(msg)
	if err != nil {
		return nil, err
	}
	id, err := p.Send(ctx, pm)
	if err != nil {
		return nil, pr.sendError(err, msg)
	}
	return id.Serialize(), nil
}

// SendAsync queues one message; done is called once with the outcome.
func (pr *producer) SendAsync(ctx context.Context, msg *bus.OutMessage, done func(bus.MessageID, error)) {
	if done == nil {
		done = func(bus.MessageID, error) {}
	}
	pm, p, err := pr.message(msg)
	if err != nil {
		done(nil, err)
		return
	}
	p.SendAsync(ctx, pm, func(id pulsar.MessageID, _ *pulsar.ProducerMessage, err error) {
		if err != nil {
			done(nil, pr.sendError(err, msg))
			return
		}
		done(id.Serialize(), nil)
	})
}

func (pr *producer) sendError(err error, msg *bus.OutMessage) error {
	if fenced := fencedError(err); fenced != nil {
		return fmt.Errorf("pulsarbus: send to %s (key %q): %w", pr.topic, msg.Key, fenced)
	}
	if msg.Tx != nil {
		// On Pulsar 3.2-4.0.7 the topic's transaction buffer may be stuck
		// for every later transaction too (txbuffer.go).
		pr.b.healTxBuffer(pr.topic, err)
		// A failed send poisons the client transaction: it cannot commit.
		err = wrap(err, "send to %s in a transaction (key %q)", pr.topic, msg.Key)
		if !errors.Is(err, bus.ErrTxFailed) {
			err = fmt.Errorf("%w (the transaction cannot commit): %w", bus.ErrTxFailed, err)
		}
		return err
	}
	return wrap(err, "send to %s (key %q)", pr.topic, msg.Key)
}

// Flush waits until every queued message has been sent or failed.
func (pr *producer) Flush(ctx context.Context) error {
	if err := pr.p.FlushWithCtx(ctx); err != nil {
		if fenced := fencedError(err); fenced != nil {
			return fmt.Errorf("pulsarbus: flush %s: %w", pr.topic, fenced)
		}
		return wrap(err, "flush %s", pr.topic)
	}
	return nil
}

// Close waits for queued messages and closes the producer.
func (pr *producer) Close() error {
	pr.b.unregister(pr)
	pr.closeByBus()
	return nil
}

func (pr *producer) closeByBus() {
	pr.closed.Do(pr.p.Close)
}
