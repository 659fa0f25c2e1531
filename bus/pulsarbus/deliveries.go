package pulsarbus

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
)

// Deliveries of a subscription with MaxDeliveries are counted durably when
// its consumers ask for it (bus.SubscribeOptions.CountDeliveriesDurably; the
// worker SDK does for job queues, the engine's own subscriptions do not:
// their consumers recover from bad input and panics themselves, so nothing
// they receive can kill them).
//
// Pulsar's redelivery count does not see a consumer that closes or dies
// holding a message: the broker gives the messages a closed consumer had
// not acknowledged to the subscription again with their count unchanged,
// and forgets every count when the subscription's last consumer leaves
// (checked against Pulsar 4.0.7 for Shared and Key_Shared subscriptions,
// with and without other consumers left, with and without a nack just
// before the close: the next consumer always saw count 0). A command that
// kills its worker would then never reach MaxDeliveries.
//
// So a consumer with MaxDeliveries and CountDeliveriesDurably records each
// delivery before Receive returns it: key = message id, value = the delivery number, on a
// compacted topic "<topic>-<subscription>-deliveries" beside the dead-letter
// topic. Every consumer of the subscription reads that topic (its compacted
// view at subscribe, then its tail), so a delivery's number is the largest of
// the broker's count + 1, the local count and the recorded number + 1. A
// message whose number exceeds MaxDeliveries is dead-lettered by Receive
// ("not acknowledged after N deliveries"). Settling a message (ack, a
// committed transaction's ack, dead-letter) writes a tombstone for its key.
//
// The cost is one write per delivery on such subscriptions, waited for
// before Receive returns (concurrent receives share the producer's
// batches), and one tombstone per settled message, not waited for: a
// broker round trip added to every Receive (BenchmarkDeliveryRecords: 8
// goroutines receiving and acknowledging a Shared backlog, 1.2k msgs/s with
// the records against 9.6k without, on a loaded 2-core machine).
//
// The record is waited for, not sent in the background: a message that
// kills its consumer typically does so within a millisecond of being
// handed out, before a background send (batched for up to 1ms) leaves the
// process, so every such crash would go uncounted and the message would
// never reach MaxDeliveries, which is the very case this exists for. A
// consumer that has the record acknowledged before it hands the message
// out counts every delivery it makes.
//
// The records are kept 24 hours (retention of the topic before compaction);
// compaction keeps the latest record of unsettled messages.
const (
	deliveriesSuffix    = "-deliveries"
	deliveriesRetention = 24 * time.Hour
)

// deliveryLog is one consumer's view and writer of its subscription's
// delivery records.
type deliveryLog struct {
	topic string
	p     pulsar.Producer
	rd    *reader // closed with the bus too
	r     pulsar.Reader
	log   zerolog.Logger

	mu     sync.Mutex
	counts map[string]int // recorded delivery numbers by message key

	cancel context.CancelFunc
	done   chan struct{}
}

// deliveriesTopic is the delivery-record topic of a subscription.
func deliveriesTopic(topic, subscription string) string {
	return bus.ShortName(bus.BaseTopic(topic)) + "-" + subscription + deliveriesSuffix
}

// openDeliveryLog creates the subscription's delivery-record topic if
// needed, reads its compacted view and keeps following it.
func (b *Bus) openDeliveryLog(ctx context.Context, topic string, log zerolog.Logger) (*deliveryLog, error) {
	if err := b.EnsureTopic(ctx, bus.TopicSpec{Name: topic, Compacted: true, RetentionTime: deliveriesRetention}); err != nil {
		return nil, err
	}
	full := b.cfg.Namespace.Topic(topic)
	p, err := b.createProducer(ctx, pulsar.ProducerOptions{
		Topic:                   full,
		SendTimeout:             b.cfg.OperationTimeout,
		BatchingMaxPublishDelay: time.Millisecond,
		BatcherBuilderType:      pulsar.KeyBasedBatchBuilder,
	})
	if err != nil {
		return nil, wrap(err, "open delivery-record producer on %s", full)
	}
	rd, err := b.Reader(ctx, bus.ReaderOptions{Topic: full, Compacted: true})
	if err != nil {
		p.Close()
		return nil, err
	}
	l := &deliveryLog{topic: full, p: p, rd: rd.(*reader), log: log, counts: map[string]int{}, done: make(chan struct{})}
	l.r = l.rd.r
	for l.r.HasNext() {
		m, err := l.r.Next(ctx)
		if err != nil {
			_ = l.rd.Close()
			p.Close()
			return nil, wrap(err, "read delivery records of %s", full)
		}
		l.apply(m)
	}
	rctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	go l.follow(rctx)
	return l, nil
}

// follow applies the records other consumers write.
func (l *deliveryLog) follow(ctx context.Context) {
	defer close(l.done)
	for {
		m, err := l.r.Next(ctx)
		if err != nil {
			var pe *pulsar.Error
			if ctx.Err() != nil || (errors.As(err, &pe) && pe.Result() == pulsar.ConsumerClosed) {
				return // closed, by the consumer or with the bus
			}
			l.log.Warn().Err(err).Str("topic", l.topic).Msg("reading delivery records")
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		l.apply(m)
	}
}

// apply takes one record: a tombstone forgets the key, a number raises it.
func (l *deliveryLog) apply(m pulsar.Message) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(m.Payload()) == 0 {
		delete(l.counts, m.Key())
		return
	}
	n, err := strconv.Atoi(string(m.Payload()))
	if err != nil || n <= 0 {
		return
	}
	if len(l.counts) >= maxTracked {
		clear(l.counts) // settled elsewhere and never tombstoned; start afresh
	}
	l.counts[m.Key()] = max(l.counts[m.Key()], n)
}

func recordKey(msgKey string) string { return bus.FormatMessageID(bus.MessageID(msgKey)) }

// recorded is the delivery number last recorded for a message (0: none).
func (l *deliveryLog) recorded(msgKey string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counts[recordKey(msgKey)]
}

// record writes that a message is being delivered for the n-th time and
// waits until the broker has it.
func (l *deliveryLog) record(ctx context.Context, msgKey string, n int) error {
	k := recordKey(msgKey)
	l.mu.Lock()
	l.counts[k] = max(l.counts[k], n)
	l.mu.Unlock()
	if _, err := l.p.Send(ctx, &pulsar.ProducerMessage{Key: k, Payload: []byte(strconv.Itoa(n))}); err != nil {
		return wrap(err, "record delivery %d of %x on %s", n, msgKey, l.topic)
	}
	return nil
}

// settled forgets a message that will not be delivered again: a tombstone,
// not waited for (a lost one leaves a record until retention or a restart
// clears it).
func (l *deliveryLog) settled(msgKey string) {
	k := recordKey(msgKey)
	l.mu.Lock()
	delete(l.counts, k)
	l.mu.Unlock()
	l.p.SendAsync(context.Background(), &pulsar.ProducerMessage{Key: k, Payload: []byte{}},
		func(_ pulsar.MessageID, _ *pulsar.ProducerMessage, err error) {
			if err != nil && !errors.Is(err, pulsar.ErrProducerClosed) {
				l.log.Debug().Err(err).Str("topic", l.topic).Msg("delivery record tombstone")
			}
		})
}

// close flushes the tombstones and stops following.
func (l *deliveryLog) close() {
	l.cancel()
	_ = l.rd.Close()
	<-l.done
	l.p.Close()
}

// recordDelivery raises d's delivery number to the recorded one + 1 and,
// when the message is to be delivered (not past MaxDeliveries), records it.
func (c *consumer) recordDelivery(ctx context.Context, d *delivery) {
	if c.dl == nil {
		return
	}
	// d.n already counts the recorded deliveries (track).
	if d.n > c.opts.MaxDeliveries {
		return // dead-lettered by Receive, not delivered
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.b.cfg.OperationTimeout)
	defer cancel()
	if err := c.dl.record(rctx, d.key, d.n); err != nil {
		// Delivered all the same: the broker's and this process's counts
		// still apply.
		c.log.Error().Err(err).Int("delivery", d.n).Msg("delivery not recorded; a consumer dying with it will not count it")
	}
}
