package pulsarbus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
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
	counts map[string]count // recorded delivery numbers by message key

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
	l := &deliveryLog{topic: full, p: p, rd: rd.(*reader), log: log, counts: map[string]count{}, done: make(chan struct{})}
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

// count is a message's recorded deliveries: charged ones (consecutive
// deliveries whose consumer may have died of it, and the one in progress:
// a survived delivery clears them, survivedCount) and all.
type count struct{ charged, total int }

// encode writes "c" when every delivery is charged (the format of earlier
// versions, which only had that number), else "c/t".
func (n count) encode() []byte {
	if n.total <= n.charged {
		return []byte(strconv.Itoa(n.charged))
	}
	return []byte(strconv.Itoa(n.charged) + "/" + strconv.Itoa(n.total))
}

// parseCount reads a record's value; ok is false for garbage.
func parseCount(b []byte) (count, bool) {
	s := string(b)
	c, t, two := strings.Cut(s, "/")
	charged, err := strconv.Atoi(c)
	if err != nil || charged < 0 {
		return count{}, false
	}
	total := charged
	if two {
		if total, err = strconv.Atoi(t); err != nil || total < charged {
			return count{}, false
		}
	}
	if total <= 0 {
		return count{}, false
	}
	return count{charged, total}, true
}

func (n count) max(o count) count {
	return count{max(n.charged, o.charged), max(n.total, o.total)}
}

// apply takes one record: a tombstone forgets the key, a count replaces
// it (records of one message are written in order by its holders; a
// survived record lowers the charged count on purpose).
func (l *deliveryLog) apply(m pulsar.Message) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(m.Payload()) == 0 {
		delete(l.counts, m.Key())
		return
	}
	n, ok := parseCount(m.Payload())
	if !ok {
		return
	}
	if len(l.counts) >= maxTracked {
		clear(l.counts) // settled elsewhere and never tombstoned; start afresh
	}
	if old, seen := l.counts[m.Key()]; seen && old.total > n.total {
		return // an older record read late
	}
	l.counts[m.Key()] = n
}

func recordKey(msgKey string) string { return bus.FormatMessageID(bus.MessageID(msgKey)) }

// recorded is the count last recorded for a message (zero: none).
func (l *deliveryLog) recorded(msgKey string) count {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counts[recordKey(msgKey)]
}

// record writes a message's count (its delivery in progress included) and
// waits until the broker has it.
func (l *deliveryLog) record(ctx context.Context, msgKey string, n count) error {
	k := recordKey(msgKey)
	l.mu.Lock()
	l.counts[k] = n
	l.mu.Unlock()
	if _, err := l.p.Send(ctx, &pulsar.ProducerMessage{Key: k, Payload: n.encode()}); err != nil {
		return wrap(err, "record delivery %d of %x on %s", n.total, msgKey, l.topic)
	}
	return nil
}

// survivedCount is the record of a delivery still held CrashWindow after
// it began: nothing charged, its deliveries kept. A message that kills its
// consumer does so within the window every time, so its charged deliveries
// only ever follow each other; one that outlived the window has shown it
// does not, and the quick deaths charged to it before were its neighbours'
// doing: messages handed out together with it — a consumer restarting
// takes a burst of redeliveries at once, and one poison among them kills
// it within milliseconds, charging them all (the chaos kit's long run
// dead-lettered 18 long-held commands that way: each had run past the
// window on other instances many times, and about one delivery in four
// landed in such a burst). So only consecutive quick deaths reach
// MaxDeliveries; the rest count towards 10 × MaxDeliveries.
func survivedCount(total int) count { return count{charged: 0, total: total} }

// survived records, without waiting, that a delivery in progress is not
// to be charged if its consumer dies from now on, nor are the quick deaths
// before it (survivedCount).
func (l *deliveryLog) survived(msgKey string, n count) {
	k := recordKey(msgKey)
	l.mu.Lock()
	if cur, ok := l.counts[k]; !ok || cur.total != n.total {
		l.mu.Unlock()
		return // settled meanwhile, or delivered again elsewhere
	}
	l.counts[k] = n
	l.mu.Unlock()
	l.p.SendAsync(context.Background(), &pulsar.ProducerMessage{Key: k, Payload: n.encode()},
		func(_ pulsar.MessageID, _ *pulsar.ProducerMessage, err error) {
			if err != nil && !errors.Is(err, pulsar.ErrProducerClosed) {
				l.log.Debug().Err(err).Str("topic", l.topic).Msg("delivery survived record")
			}
		})
	l.mu.Lock()
	_, held := l.counts[k]
	l.mu.Unlock()
	if !held {
		// Settled while this record was being sent: its tombstone may
		// have gone first; one more keeps the tombstone last.
		l.settled(msgKey)
	}
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

// defaultRecordWarmUp is SubscribeOptions.DeliveryRecordWarmUp's default.
const defaultRecordWarmUp = 10 * time.Second

// slowDeathFactor bounds the deliveries of a message whose consumers die
// after CrashWindow: SubscribeOptions.MaxDeliveries times it.
const slowDeathFactor = 10

// mustRecord says whether a delivery numbered n, whose message has the
// record rec, is recorded before it is handed out.
func (c *consumer) mustRecord(n int, rec count) bool {
	if !c.opts.LazyDeliveryRecords || n > 1 || rec.total > 0 {
		return true // eager, or a delivery that may follow a crash
	}
	warm := c.opts.DeliveryRecordWarmUp
	if warm == 0 {
		warm = defaultRecordWarmUp
	}
	return warm > 0 && time.Since(c.since) < warm
}

// overLimit says whether a received delivery is past MaxDeliveries (and
// so dead-lettered rather than handed out), with the reason.
func (c *consumer) overLimit(d *delivery) (bool, string) {
	max := c.opts.MaxDeliveries
	switch {
	case max <= 0:
		return false, ""
	case d.n > max:
		return true, c.reason(d, d.n-1)
	case c.dl != nil && c.opts.CrashWindow > 0 && d.total > slowDeathFactor*max:
		return true, fmt.Sprintf("not acknowledged after %d deliveries (%d of them not charged: ended by their consumer's death more than %s after they began or before a delivery that ran that long, or by a nack)",
			d.total-1, d.total-d.n, c.opts.CrashWindow)
	}
	return false, ""
}

// recordDelivery records a delivery about to be handed out, when it must
// be (mustRecord), and waits for the broker; with CrashWindow it arranges
// the survived record.
func (c *consumer) recordDelivery(ctx context.Context, d *delivery) {
	if c.dl == nil || !d.recorded {
		return
	}
	if over, _ := c.overLimit(d); over {
		return // dead-lettered by Receive, not delivered
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.b.cfg.OperationTimeout)
	defer cancel()
	n := count{charged: d.n, total: d.total}
	if err := c.dl.record(rctx, d.key, n); err != nil {
		// Delivered all the same: the broker's and this process's counts
		// still apply.
		c.log.Error().Err(err).Int("delivery", d.total).Msg("delivery not recorded; a consumer dying with it will not count it")
		return
	}
	if w := c.opts.CrashWindow; w > 0 {
		c.mu.Lock()
		d.survive = time.AfterFunc(w, func() {
			c.mu.Lock()
			live := c.live[d.key] == d && !c.closed
			c.mu.Unlock()
			if live {
				// Survived: the quick deaths charged before were not its
				// doing (see survivedCount).
				c.dl.survived(d.key, survivedCount(d.total))
			}
		})
		c.mu.Unlock()
	}
}
