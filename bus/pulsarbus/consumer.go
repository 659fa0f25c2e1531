package pulsarbus

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
)

const (
	defaultNackDelay        = time.Second
	defaultReceiveQueueSize = 1000
	// maxClientNackDelay is the longest redelivery delay handed to the
	// client's negative-ack tracker (whose tick is a third of it); longer
	// NackDelays wait in a timer first. Ack timeouts nack with this delay.
	maxClientNackDelay = 100 * time.Millisecond
	// maxTracked bounds the per-message redelivery counts and nack causes a
	// consumer keeps.
	maxTracked = 100_000
)

type consumer struct {
	b        *Bus
	opts     bus.SubscribeOptions
	topic    string
	dlqTopic string
	c        pulsar.Consumer
	log      zerolog.Logger
	// countLocally: the broker only counts redeliveries on Shared and
	// KeyShared subscriptions; on the others the bus counts what it saw.
	countLocally bool
	// nackWait is how long a nack waits before it reaches the client
	// (NackDelay minus the client's own delay).
	nackWait time.Duration
	// dl records deliveries durably when MaxDeliveries and
	// CountDeliveriesDurably are set (see deliveries.go); nil otherwise.
	dl *deliveryLog
	// since is when the subscription was made (the warm-up of
	// LazyDeliveryRecords counts from it).
	since time.Time
	// nparts is the topic's partition count as OwnedPartitions last read
	// it, +1 (0: not read yet).
	nparts atomic.Int64

	mu     sync.Mutex
	closed bool
	live   map[string]*delivery // received, not yet settled, by message id
	// inTx holds the messages acknowledged in a transaction that has not
	// ended. A copy arriving meanwhile is not delivered: when an
	// acknowledging transaction aborts, the broker redelivers its messages
	// and this consumer nacks them too, so a second copy could reach the
	// application while the first is being acknowledged again.
	inTx map[string]struct{}
	// owned is signalled when the broker reports an active-consumer
	// change of a Failover subscription (ownership.go).
	owned   chan struct{}
	counts  map[string]int      // deliveries seen, when counting locally
	causes  map[string]string   // last nack cause, for the dead-letter reason
	entries map[entryKey]*entry // batched entries being acknowledged
	// done, doneRing and doneNext remember the last doneEntries entries
	// acknowledged as a whole (see entryDone).
	done     map[entryKey]struct{}
	doneRing []entryKey
	doneNext int
	// acked, ackedRing and ackedNext remember the last doneEntries messages
	// acknowledged (plainly or by a committed transaction): a copy that
	// arrives later is a duplicate (a Key_Shared subscription may redeliver
	// a message acknowledged in an aborted transaction by itself, besides
	// the bus's nack), and is acknowledged again instead of delivered.
	acked     map[string]struct{}
	ackedRing []string
	ackedNext int
	// reack and reackEntries are duplicates to acknowledge again (in case
	// the first acknowledgement was lost), outside c.mu.
	reack        []pulsar.Message
	reackEntries []entryKey
	timers       map[*time.Timer]struct{}
	stop         chan struct{}
	wg           sync.WaitGroup
}

// delivery is one received message.
type delivery struct {
	key   string // serialized message id
	pm    pulsar.Message
	at    time.Time
	n     int    // delivery number, 1 on the first (deaths of consumers charged)
	entry *entry // the batched entry it belongs to, nil when not batched
	idx   int
	// With delivery records (deliveries.go): total counts every known
	// delivery (n only those charged); recorded says this one was;
	// survive re-records it as survived after CrashWindow.
	total    int
	recorded bool
	survive  *time.Timer
}

var (
	_ bus.Consumer    = (*consumer)(nil)
	_ bus.TxListAcker = (*consumer)(nil)
)

// Subscribe opens a consumer on a subscription.
func (b *Bus) Subscribe(ctx context.Context, opts bus.SubscribeOptions) (bus.Consumer, error) {
	switch {
	case opts.Topic == "":
		return nil, fmt.Errorf("%w: Subscribe: %w", bus.ErrBadOptions, errNoTopic)
	case opts.Subscription == "":
		return nil, fmt.Errorf("%w: Subscribe to %s: subscription is required", bus.ErrBadOptions, opts.Topic)
	case opts.MaxDeliveries < 0, opts.NackDelay < 0, opts.AckTimeout < 0, opts.ReceiveQueueSize < 0:
		return nil, fmt.Errorf("%w: Subscribe to %s: MaxDeliveries, NackDelay, AckTimeout and ReceiveQueueSize must not be negative",
			bus.ErrBadOptions, opts.Topic)
	}
	var st pulsar.SubscriptionType
	switch opts.Type {
	case bus.Exclusive:
		st = pulsar.Exclusive
	case bus.Failover:
		st = pulsar.Failover
	case bus.Shared:
		st = pulsar.Shared
	case bus.KeyShared:
		st = pulsar.KeyShared
	default:
		return nil, fmt.Errorf("%w: Subscribe to %s: unknown subscription type %d", bus.ErrBadOptions, opts.Topic, opts.Type)
	}
	var pos pulsar.SubscriptionInitialPosition
	switch opts.InitialPosition {
	case bus.Earliest:
		pos = pulsar.SubscriptionPositionEarliest
	case bus.Latest:
		pos = pulsar.SubscriptionPositionLatest
	default:
		return nil, fmt.Errorf("%w: Subscribe to %s: unknown initial position %d", bus.ErrBadOptions, opts.Topic, opts.InitialPosition)
	}
	if b.isClosed() {
		return nil, fmt.Errorf("pulsarbus: subscribe to %s: %w", opts.Topic, bus.ErrClosed)
	}
	if opts.NackDelay == 0 {
		opts.NackDelay = defaultNackDelay
	}
	if opts.ReceiveQueueSize == 0 {
		opts.ReceiveQueueSize = defaultReceiveQueueSize
	}
	topic := b.cfg.Namespace.Topic(opts.Topic)
	c := &consumer{
		b: b, opts: opts, topic: topic,
		countLocally: st == pulsar.Exclusive || st == pulsar.Failover,
		live:         map[string]*delivery{}, inTx: map[string]struct{}{}, counts: map[string]int{}, causes: map[string]string{},
		entries: map[entryKey]*entry{}, done: map[entryKey]struct{}{}, acked: map[string]struct{}{}, timers: map[*time.Timer]struct{}{}, stop: make(chan struct{}),
		owned: make(chan struct{}, 1),
		log:   b.log.With().Str("topic", topic).Str("subscription", opts.Subscription).Logger(),
	}
	c.dlqTopic = opts.DeadLetterTopic
	if c.dlqTopic == "" {
		c.dlqTopic = bus.DeadLetterTopic(topic, opts.Subscription)
	}
	c.dlqTopic = b.cfg.Namespace.Topic(c.dlqTopic)
	clientNack := min(opts.NackDelay, maxClientNackDelay)
	c.nackWait = opts.NackDelay - clientNack
	precision := int64(0) // no rounding of nack times: NackDelay is a minimum
	co := pulsar.ConsumerOptions{
		Topic:                       topic,
		SubscriptionName:            opts.Subscription,
		Type:                        st,
		Name:                        opts.ConsumerName,
		SubscriptionInitialPosition: pos,
		NackRedeliveryDelay:         clientNack,
		NackPrecisionBit:            &precision,
		ReceiverQueueSize:           opts.ReceiveQueueSize,
	}
	if st == pulsar.Failover {
		co.EventListener = ownershipEvents{c}
	}
	if opts.MaxDeliveries > 0 && opts.CountDeliveriesDurably {
		dl, err := b.openDeliveryLog(ctx, deliveriesTopic(topic, opts.Subscription), c.log)
		if err != nil {
			return nil, fmt.Errorf("pulsarbus: subscribe %s to %s: delivery records: %w", opts.Subscription, topic, err)
		}
		c.dl = dl
	}
	type res struct {
		c   pulsar.Consumer
		err error
	}
	ch := make(chan res, 1)
	go func() {
		pc, err := b.client.Subscribe(co)
		ch <- res{pc, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			c.closeDeliveryLog()
			return nil, wrap(r.err, "subscribe %s to %s (%s)", opts.Subscription, topic, opts.Type)
		}
		c.c = r.c
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.err == nil && r.c != nil {
				r.c.Close()
			}
		}()
		c.closeDeliveryLog()
		return nil, fmt.Errorf("pulsarbus: subscribe %s to %s: %w", opts.Subscription, topic, ctx.Err())
	}
	if err := b.register(c); err != nil {
		c.c.Close()
		c.closeDeliveryLog()
		return nil, fmt.Errorf("pulsarbus: subscribe %s to %s: %w", opts.Subscription, topic, err)
	}
	if opts.AckTimeout > 0 {
		c.wg.Add(1)
		go c.ackTimeouts()
	}
	c.since = time.Now()
	return c, nil
}

func (c *consumer) where() string { return c.topic + " subscription " + c.opts.Subscription }

// Receive blocks until a message is available or ctx is done. Messages past
// MaxDeliveries are dead-lettered here and not returned.
func (c *consumer) Receive(ctx context.Context) (*bus.Message, error) {
	for {
		c.mu.Lock()
		closed := c.closed
		c.mu.Unlock()
		if closed {
			return nil, fmt.Errorf("pulsarbus: receive from %s: %w", c.where(), bus.ErrClosed)
		}
		pm, err := c.c.Receive(ctx)
		if err != nil {
			c.mu.Lock()
			closed := c.closed
			c.mu.Unlock()
			if closed {
				return nil, fmt.Errorf("pulsarbus: receive from %s: %w", c.where(), bus.ErrClosed)
			}
			if ctx.Err() != nil {
				return nil, fmt.Errorf("pulsarbus: receive from %s: %w", c.where(), ctx.Err())
			}
			return nil, wrap(err, "receive from %s", c.where())
		}
		d, deliver := c.track(pm)
		c.reackDuplicates()
		if !deliver {
			continue
		}
		c.recordDelivery(ctx, d)
		if over, reason := c.overLimit(d); over {
			// Delivered MaxDeliveries times already, and not acknowledged
			// (ack timeout, or a consumer that went away).
			msg := toMessage(pm, d.key, d.total-1)
			// Dead-lettering is not bounded by the caller's receive deadline
			// (opening the DLQ producer can take seconds on a busy broker).
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.b.cfg.OperationTimeout)
			err := c.deadLetter(dctx, d, msg, d.total-1, reason)
			cancel()
			if err != nil {
				c.log.Error().Err(err).Str("id", pm.ID().String()).Msg("dead-lettering a message past MaxDeliveries failed; it will be delivered again")
				c.clientNack(d)
			}
			continue
		}
		return toMessage(pm, d.key, d.total-1), nil
	}
}

// track records a received message. It returns false for a duplicate: a
// message the application still holds (Exclusive and Failover subscriptions
// redeliver everything unacknowledged on a nack, to keep order; a
// reconnection redelivers too), or a message of a redelivered batched entry
// that was already acknowledged.
func (c *consumer) track(pm pulsar.Message) (*delivery, bool) {
	id := pm.ID()
	key := string(id.Serialize())
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, held := c.live[key]; held {
		return nil, false
	}
	if _, pending := c.inTx[key]; pending {
		return nil, false
	}
	if _, done := c.acked[key]; done {
		c.reack = append(c.reack, pm)
		return nil, false
	}
	d := &delivery{key: key, pm: pm, at: time.Now()}
	if id.BatchSize() > 1 && id.BatchIdx() >= 0 && int(id.BatchIdx()) < int(id.BatchSize()) {
		ek := entryKey{partition: id.PartitionIdx(), ledger: id.LedgerID(), entry: id.EntryID()}
		if _, done := c.done[ek]; done {
			c.reackEntries = append(c.reackEntries, ek)
			return nil, false
		}
		e := c.entries[ek]
		if e == nil || len(e.msgs) != int(id.BatchSize()) {
			e = newEntry(ek, int(id.BatchSize()))
			c.entries[ek] = e
		}
		d.entry, d.idx = e, int(id.BatchIdx())
		e.msgs[d.idx] = pm
		if e.state[d.idx] != idxPending {
			return nil, false
		}
	}
	d.n = int(pm.RedeliveryCount()) + 1
	d.total = d.n
	if c.countLocally {
		if len(c.counts) >= maxTracked {
			// Messages taken over by another consumer are never settled
			// here; start counting afresh rather than grow for ever.
			clear(c.counts)
		}
		c.counts[key]++
		d.n = max(d.n, c.counts[key])
		d.total = d.n
	}
	if c.dl != nil {
		// The durable count too, before d is visible in live: a Nack of
		// an earlier copy of this message takes d from live at once.
		rec := c.dl.recorded(key)
		if c.opts.CrashWindow > 0 && rec.total > 0 {
			// With a crash window the record is the charged count: it
			// charges the deliveries that ended (death or nack) within
			// the window and clears them when one outlives it. The
			// broker's count, raised by every nack — a result that could
			// not be published after long work (a broker outage), a
			// release at shutdown that reached the broker — would charge
			// those too. Late nacks stay bounded by 10 × MaxDeliveries.
			d.total = max(d.n, rec.total+1)
			d.n = rec.charged + 1
		} else {
			d.n = max(d.n, rec.charged+1)
			d.total = max(d.n, rec.total+1)
		}
		d.recorded = c.mustRecord(d.n, rec)
	}
	c.live[key] = d
	return d, true
}

// take removes a live delivery; ok is false for a message this consumer
// does not hold (already settled, or received by another consumer).
func (c *consumer) take(msg *bus.Message) (*delivery, bool) {
	if msg == nil {
		return nil, false
	}
	key := string(msg.ID)
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.live[key]
	if ok {
		delete(c.live, key)
	}
	return d, ok
}

// forget drops what is kept about a settled message.
func (c *consumer) forget(d *delivery) {
	c.mu.Lock()
	delete(c.counts, d.key)
	delete(c.causes, d.key)
	survive := d.survive
	c.mu.Unlock()
	if c.dl != nil {
		if survive != nil {
			survive.Stop()
		}
		// A record of an earlier delivery may exist without this one
		// being recorded (a lazy consumer whose follower was behind).
		if d.recorded || d.total > 1 || c.dl.recorded(d.key).total > 0 {
			c.dl.settled(d.key)
		}
	}
}

// Ack acknowledges a message.
func (c *consumer) Ack(ctx context.Context, msg *bus.Message) error {
	if msg == nil {
		return fmt.Errorf("%w: ack on %s: nil message", bus.ErrBadOptions, c.where())
	}
	d, ok := c.take(msg)
	if !ok {
		return c.ackUnknown(msg)
	}
	c.forget(d)
	if d.entry != nil {
		return c.settleEntry(d, idxAcked, nil, false)
	}
	c.rememberAcked(d.key)
	if err := c.c.Ack(d.pm); err != nil {
		return wrap(err, "ack %s on %s", d.pm.ID(), c.where())
	}
	return nil
}

// rememberAcked records an acknowledged message (see consumer.acked).
func (c *consumer) rememberAcked(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.ackedRing) < doneEntries {
		c.ackedRing = append(c.ackedRing, key)
	} else {
		delete(c.acked, c.ackedRing[c.ackedNext])
		c.ackedRing[c.ackedNext] = key
		c.ackedNext = (c.ackedNext + 1) % doneEntries
	}
	c.acked[key] = struct{}{}
}

// reackDuplicates acknowledges again the duplicates track dropped.
func (c *consumer) reackDuplicates() {
	c.mu.Lock()
	msgs, entries := c.reack, c.reackEntries
	c.reack, c.reackEntries = nil, nil
	c.mu.Unlock()
	for _, m := range msgs {
		_ = c.c.Ack(m)
	}
	for _, k := range entries {
		_ = c.c.AckID((&entry{key: k}).id())
	}
}

// ackUnknown acknowledges a message this consumer does not hold (acked
// twice, or a copy): a plain message is acknowledged by id, a batched one
// is left alone (acknowledging its id would acknowledge its whole entry).
func (c *consumer) ackUnknown(msg *bus.Message) error {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return fmt.Errorf("pulsarbus: ack on %s: %w", c.where(), bus.ErrClosed)
	}
	id, err := pulsar.DeserializeMessageID(msg.ID)
	if err != nil {
		return fmt.Errorf("%w: ack on %s: message id: %v", bus.ErrBadOptions, c.where(), err)
	}
	if id.BatchSize() > 1 {
		// Acknowledged after its ack timeout, say: record it in its entry
		// if that is still being acknowledged.
		ek := entryKey{partition: id.PartitionIdx(), ledger: id.LedgerID(), entry: id.EntryID()}
		c.mu.Lock()
		e := c.entries[ek]
		c.mu.Unlock()
		if e != nil && id.BatchIdx() >= 0 && int(id.BatchIdx()) < len(e.state) {
			return c.settleEntry(&delivery{key: string(msg.ID), entry: e, idx: int(id.BatchIdx())}, idxAcked, nil, false)
		}
		return nil
	}
	c.rememberAcked(string(msg.ID))
	if c.dl != nil {
		c.dl.settled(string(msg.ID))
	}
	if err := c.c.AckID(id); err != nil {
		return wrap(err, "ack %s on %s", id, c.where())
	}
	return nil
}

// AckTx acknowledges a message as part of tx.
func (c *consumer) AckTx(ctx context.Context, msg *bus.Message, btx bus.Tx) error {
	if msg == nil {
		return fmt.Errorf("%w: ack on %s: nil message", bus.ErrBadOptions, c.where())
	}
	t, ok := btx.(*tx)
	if !ok || t == nil || t.b != c.b {
		return fmt.Errorf("%w: ack on %s: the transaction was not begun on this bus", bus.ErrBadOptions, c.where())
	}
	d, ok := c.take(msg)
	if !ok {
		return fmt.Errorf("%w: ack in a transaction on %s: message %x is not held by this consumer (already acknowledged, nacked or timed out)",
			bus.ErrTxFailed, c.where(), msg.ID)
	}
	if err := t.addAck(c, d); err != nil {
		c.restore(d)
		return err
	}
	c.mu.Lock()
	c.inTx[d.key] = struct{}{}
	c.mu.Unlock()
	if d.entry != nil {
		return c.settleEntry(d, idxInTx, t, false)
	}
	if err := c.c.AckWithTxn(d.pm, t.t); err != nil {
		err = wrap(err, "ack %s on %s in a transaction", d.pm.ID(), c.where())
		if !errors.Is(err, bus.ErrTxFailed) {
			err = fmt.Errorf("%w (the transaction cannot commit): %w", bus.ErrTxFailed, err)
		}
		return err
	}
	return nil
}

// AckTxList acknowledges msgs as part of tx (bus.TxListAcker): what AckTx
// does for each, with one acknowledgement request per partition for the
// whole list (the patched client's AckIDListWithTxn) instead of one round
// trip per message. The error joins the failures (each wraps
// bus.ErrTxFailed: the transaction cannot commit); a message that failed
// before its request was made stays held, the others are settled by the
// transaction's end like AckTx's.
func (c *consumer) AckTxList(ctx context.Context, msgs []*bus.Message, btx bus.Tx) error {
	t, ok := btx.(*tx)
	if !ok || t == nil || t.b != c.b {
		return fmt.Errorf("%w: ack on %s: the transaction was not begun on this bus", bus.ErrBadOptions, c.where())
	}
	lister, ok := c.c.(pulsar.TxListAcker)
	if !ok {
		var errs []error
		for _, m := range msgs {
			if err := c.AckTx(ctx, m, btx); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
	var errs []error
	ids := make([]pulsar.MessageID, 0, len(msgs))
	for _, msg := range msgs {
		if msg == nil {
			errs = append(errs, fmt.Errorf("%w: ack on %s: nil message", bus.ErrBadOptions, c.where()))
			continue
		}
		d, ok := c.take(msg)
		if !ok {
			errs = append(errs, fmt.Errorf("%w: ack in a transaction on %s: message %x is not held by this consumer (already acknowledged, nacked or timed out)",
				bus.ErrTxFailed, c.where(), msg.ID))
			continue
		}
		if err := t.addAck(c, d); err != nil {
			c.restore(d)
			errs = append(errs, err)
			continue
		}
		c.mu.Lock()
		c.inTx[d.key] = struct{}{}
		c.mu.Unlock()
		if d.entry == nil {
			ids = append(ids, d.pm.ID())
			continue
		}
		id, err := c.markEntry(d, idxInTx, t, false)
		switch {
		case err != nil:
			errs = append(errs, err)
		case id != nil:
			ids = append(ids, id)
		}
	}
	if len(ids) > 0 {
		if err := lister.AckIDListWithTxn(ids, t.t); err != nil {
			err = wrap(err, "ack %d messages on %s in a transaction", len(ids), c.where())
			if !errors.Is(err, bus.ErrTxFailed) {
				err = fmt.Errorf("%w (the transaction cannot commit): %w", bus.ErrTxFailed, err)
			}
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// restore puts a delivery back in the live set.
func (c *consumer) restore(d *delivery) {
	c.mu.Lock()
	c.live[d.key] = d
	c.mu.Unlock()
}

// txSettled is called by a transaction that acknowledged d once it ends.
func (c *consumer) txSettled(d *delivery, t *tx, committed bool) {
	c.mu.Lock()
	delete(c.inTx, d.key)
	c.mu.Unlock()
	if committed {
		c.forget(d)
		if d.entry == nil {
			c.rememberAcked(d.key)
		}
	}
	if d.entry != nil {
		c.settleTxEntry(d, t, committed)
		return
	}
	if !committed {
		c.clientNack(d)
	}
}

// Nack asks for the message to be delivered again after NackDelay, or
// dead-letters it when this was its MaxDeliveries-th delivery.
func (c *consumer) Nack(msg *bus.Message, cause error) {
	d, ok := c.take(msg)
	if !ok {
		return
	}
	if cause != nil {
		c.mu.Lock()
		if len(c.causes) >= maxTracked {
			clear(c.causes)
		}
		c.causes[d.key] = cause.Error()
		c.mu.Unlock()
	}
	if n := c.chargedNow(d); c.opts.MaxDeliveries > 0 && n >= c.opts.MaxDeliveries {
		ctx, cancel := c.b.opCtx(context.Background())
		defer cancel()
		if err := c.deadLetter(ctx, d, msg, n, c.reason(d, n)); err == nil {
			return
		} else {
			c.log.Error().Err(err).Str("id", d.pm.ID().String()).Msg("dead-lettering a message at MaxDeliveries failed; it will be delivered again")
		}
	}
	if c.nackWait <= 0 {
		c.clientNack(d)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return // closing gives it back to the subscription anyway
	}
	var t *time.Timer
	t = time.AfterFunc(c.nackWait, func() {
		c.mu.Lock()
		_, pending := c.timers[t]
		delete(c.timers, t)
		c.mu.Unlock()
		if pending {
			c.clientNack(d)
		}
	})
	c.timers[t] = struct{}{}
}

// chargedNow is the charged count of a delivery in progress: d.n, or none
// once it has outlived the crash window (its survived record).
func (c *consumer) chargedNow(d *delivery) int {
	if c.dl == nil || c.opts.CrashWindow <= 0 || !d.recorded {
		return d.n
	}
	if rec := c.dl.recorded(d.key); rec.total == d.total {
		return min(d.n, rec.charged)
	}
	return d.n
}

// clientNack hands a delivery to the client's negative-ack tracker: the
// broker redelivers it (a batched entry as a whole).
func (c *consumer) clientNack(d *delivery) {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if !closed {
		c.c.Nack(d.pm)
	}
}

// reason is the dead-letter reason of a delivery: the last nack cause this
// process saw, or a count.
func (c *consumer) reason(d *delivery, deliveries int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.causes[d.key]; ok && r != "" {
		return r
	}
	return fmt.Sprintf("not acknowledged after %d deliveries", deliveries)
}

// DeadLetter moves a message to the dead-letter topic and acknowledges it.
func (c *consumer) DeadLetter(ctx context.Context, msg *bus.Message, reason string) error {
	if msg == nil {
		return fmt.Errorf("%w: dead-letter on %s: nil message", bus.ErrBadOptions, c.where())
	}
	d, ok := c.take(msg)
	if !ok {
		if err := c.publishDLQ(ctx, msg, msg.RedeliveryCount+1, reason); err != nil {
			return err
		}
		return c.ackUnknown(msg)
	}
	if err := c.deadLetter(ctx, d, msg, d.n, reason); err != nil {
		c.restore(d)
		return err
	}
	return nil
}

func (c *consumer) deadLetter(ctx context.Context, d *delivery, msg *bus.Message, deliveries int, reason string) error {
	if err := c.publishDLQ(ctx, msg, deliveries, reason); err != nil {
		return err
	}
	c.forget(d)
	if d.entry != nil {
		return c.settleEntry(d, idxAcked, nil, false)
	}
	c.rememberAcked(d.key)
	if err := c.c.Ack(d.pm); err != nil {
		return wrap(err, "ack dead-lettered %s on %s", d.pm.ID(), c.where())
	}
	return nil
}

func (c *consumer) publishDLQ(ctx context.Context, msg *bus.Message, deliveries int, reason string) error {
	p, err := c.b.dlqProducer(ctx, c.dlqTopic)
	if err != nil {
		return err
	}
	props := make(map[string]string, len(msg.Properties)+6)
	maps.Copy(props, msg.Properties)
	props[bus.PropDLQReason] = reason
	props[bus.PropDLQOriginTopic] = msg.Topic
	props[bus.PropDLQOriginID] = bus.FormatMessageID(msg.ID)
	props[bus.PropDLQSubscription] = c.opts.Subscription
	props[bus.PropDLQDeliveries] = strconv.Itoa(deliveries)
	props[bus.PropDLQDeadLetteredAt] = time.Now().UTC().Format(time.RFC3339Nano)
	payload := msg.Payload
	if payload == nil {
		payload = []byte{}
	}
	if _, err := p.Send(ctx, &pulsar.ProducerMessage{Key: msg.Key, Payload: payload, Properties: props}); err != nil {
		return wrap(err, "dead-letter %x from %s to %s", msg.ID, c.where(), c.dlqTopic)
	}
	return nil
}

// ackTimeouts nacks messages held longer than AckTimeout.
func (c *consumer) ackTimeouts() {
	defer c.wg.Done()
	every := max(c.opts.AckTimeout/4, 10*time.Millisecond)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-c.stop:
			return
		case now := <-tick.C:
			var expired []*delivery
			c.mu.Lock()
			for k, d := range c.live {
				if now.Sub(d.at) >= c.opts.AckTimeout {
					expired = append(expired, d)
					delete(c.live, k)
				}
			}
			c.mu.Unlock()
			for _, d := range expired {
				c.clientNack(d)
			}
		}
	}
}

// Close stops receiving; unacknowledged messages go back to the
// subscription.
func (c *consumer) Close() error {
	c.b.unregister(c)
	c.closeByBus()
	return nil
}

func (c *consumer) closeByBus() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	for t := range c.timers {
		t.Stop()
	}
	c.timers = nil
	close(c.stop)
	c.mu.Unlock()
	c.wg.Wait()
	c.c.Close()
	c.closeDeliveryLog()
}

func (c *consumer) closeDeliveryLog() {
	if c.dl != nil {
		c.dl.close()
	}
}

// toMessage converts a received message; key is its serialized id.
func toMessage(pm pulsar.Message, key string, redeliveries int) *bus.Message {
	id := pm.ID()
	m := &bus.Message{
		Topic:           pm.Topic(),
		Partition:       partitionOf(pm.Topic(), id),
		ID:              []byte(key),
		Key:             pm.Key(),
		Payload:         pm.Payload(),
		PublishTime:     pm.PublishTime(),
		RedeliveryCount: redeliveries,
	}
	if props := pm.Properties(); len(props) > 0 {
		m.Properties = make(map[string]string, len(props))
		for k, v := range props {
			if k == propDeliverAt {
				if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
					m.DeliverAt = time.UnixMilli(ms)
				}
				continue
			}
			m.Properties[k] = v
		}
		if len(m.Properties) == 0 {
			m.Properties = nil
		}
	}
	return m
}

// partitionOf is the partition index of a message: from its id when it came
// through a partitioned consumer, else from its topic's "-partition-N"
// suffix (a reader or consumer on one partition), else 0.
func partitionOf(topic string, id pulsar.MessageID) int {
	if base := bus.BaseTopic(topic); base != topic {
		if n, err := strconv.Atoi(topic[len(base)+len("-partition-"):]); err == nil {
			return n
		}
	}
	return max(int(id.PartitionIdx()), 0)
}
