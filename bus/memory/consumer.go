package memory

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sort"
	"strconv"
	"time"

	"github.com/pulsaga/pulsaga/bus"
)

const defaultNackDelay = time.Second

// subscription is a durable cursor over a topic (all its partitions, or the
// one partition it was opened on) shared by its consumers.
type subscription struct {
	b         *Broker
	name      string
	topicName string
	t         *topic
	typ       bus.SubscriptionType
	cursors   []*cursor
	consumers []*consumer // sorted by name, then id
	nextCons  int64
	rr        int
	// active is the consumer of each cursor on Exclusive and Failover
	// subscriptions.
	active map[*cursor]*consumer
	// holds counts, per key, the unacknowledged messages a consumer holds
	// (KeyShared keeps a key with one consumer while it holds any).
	holds map[string]*keyHold
	// waiters are the consumers waiting in Receive, in arrival order
	// (Shared only).
	waiters []*consumer
	// ackTimeouts counts the consumers with an AckTimeout.
	ackTimeouts int
	wake        chan struct{}
	whole       bool // covers every partition of t
}

type keyHold struct {
	c *consumer
	n int
}

// cursor is the subscription's position in one partition, with the state
// of every message it has read and not yet seen acknowledged.
type cursor struct {
	p      *partition
	next   int64       // next log index to read
	states []*msgState // by log index
}

type msgState struct {
	cur         *cursor
	e           *entry
	holder      *consumer // the consumer it was delivered to, nil when waiting
	deliveredAt time.Time
	deliveries  int
	readyAt     time.Time // not delivered before (nack delay)
	cause       string    // last nack cause
	tx          *tx       // acknowledged in this open transaction
}

func (s *subscription) signalLocked() {
	close(s.wake)
	s.wake = make(chan struct{})
}

func (s *subscription) addCursorLocked(p *partition, latest bool) {
	c := &cursor{p: p}
	if latest {
		c.next = int64(len(p.log))
	}
	s.cursors = append(s.cursors, c)
	p.subs = append(p.subs, s)
}

func (s *subscription) addPartitionsLocked() {
	if !s.whole {
		return
	}
	for _, p := range s.t.parts[len(s.cursors):] {
		s.addCursorLocked(p, false)
	}
	s.rebalanceLocked()
	s.signalLocked()
}

// window bounds the messages a cursor has read and not seen acknowledged:
// past it, the subscription waits for acknowledgements, as Pulsar stops
// dispatching at its maximum of unacknowledged messages. It keeps the cost
// of a dispatch independent of the backlog.
const window = 10000

// fillLocked reads the committed entries up to the visible limit into
// message states, at most window of them.
func (c *cursor) fillLocked() {
	lim := c.p.visibleLimit()
	for ; c.next < lim && len(c.states) < window; c.next++ {
		e := c.p.log[c.next]
		if e.state != committed {
			continue
		}
		c.states = append(c.states, &msgState{cur: c, e: e})
	}
}

func (c *cursor) find(idx int64) (int, *msgState) {
	i := sort.Search(len(c.states), func(i int) bool { return c.states[i].e.idx >= idx })
	if i < len(c.states) && c.states[i].e.idx == idx {
		return i, c.states[i]
	}
	return -1, nil
}

func (c *cursor) removeLocked(st *msgState) {
	i, got := c.find(st.e.idx)
	switch {
	case got != st:
	case i == 0: // the usual case: acknowledgements in order
		c.states[0] = nil
		c.states = c.states[1:]
	default:
		c.states = append(c.states[:i], c.states[i+1:]...)
	}
}

func (s *subscription) holdLocked(st *msgState, c *consumer, now time.Time) {
	st.holder = c
	st.deliveredAt = now
	h := s.holds[st.e.key]
	if h == nil || h.c != c {
		h = &keyHold{c: c}
		s.holds[st.e.key] = h
	}
	h.n++
}

// releaseLocked takes a message from its holder; it becomes deliverable at
// readyAt.
func (s *subscription) releaseLocked(st *msgState, readyAt time.Time) {
	if st.holder == nil {
		st.readyAt = readyAt
		return
	}
	if h := s.holds[st.e.key]; h != nil && h.c == st.holder {
		h.n--
		if h.n <= 0 {
			delete(s.holds, st.e.key)
		}
	}
	st.holder = nil
	st.readyAt = readyAt
}

func (s *subscription) ackLocked(st *msgState) {
	s.releaseLocked(st, time.Time{})
	st.cur.removeLocked(st)
}

// rebalanceLocked picks the active consumer of each partition (Exclusive
// and Failover), as Pulsar does: consumers sorted by name, partition i to
// consumer i mod n, a topic without partitions to the first. Messages the
// previous active consumer holds go back to be delivered to the new one.
func (s *subscription) rebalanceLocked() {
	if s.typ != bus.Failover && s.typ != bus.Exclusive {
		return
	}
	for _, cur := range s.cursors {
		var next *consumer
		if n := len(s.consumers); n > 0 {
			i := 0
			if cur.p.t.partitioned {
				i = cur.p.index % n
			}
			next = s.consumers[i]
		}
		old := s.active[cur]
		if old == next {
			continue
		}
		s.active[cur] = next
		next.ownershipChanged()
		old.ownershipChanged()
		if old != nil {
			for _, st := range cur.states {
				if st.holder == old {
					s.releaseLocked(st, time.Time{})
				}
			}
		}
	}
}

// keyOwner is the consumer a KeyShared key belongs to.
func (s *subscription) keyOwner(key string) *consumer {
	h := fnv.New32a()
	h.Write([]byte(key))
	return s.consumers[h.Sum32()%uint32(len(s.consumers))]
}

// pickLocked finds the next message for c, dead-lettering on the way those
// that reached c's MaxDeliveries. When there is none it returns the time
// at which one may become ready (zero if only an event can bring one).
func (s *subscription) pickLocked(c *consumer, now time.Time) (*bus.Message, time.Time) {
	var wakeAt time.Time
	soon := func(t time.Time) {
		if wakeAt.IsZero() || t.Before(wakeAt) {
			wakeAt = t
		}
	}
	// Delivery times are honoured on Shared and KeyShared only, as in
	// Pulsar.
	delays := s.typ == bus.Shared || s.typ == bus.KeyShared
	released := false
	defer func() {
		if released {
			s.signalLocked() // other consumers may take them
		}
	}()
	for {
		var found *msgState
		n := len(s.cursors)
		for k := 0; k < n && found == nil; k++ {
			cur := s.cursors[(s.rr+k)%n]
			cur.fillLocked()
			// Ack timeouts are the holder's: expired messages go back.
			for _, st := range cur.states {
				if s.ackTimeouts == 0 {
					break
				}
				if st.holder != nil && st.holder.opts.AckTimeout > 0 {
					exp := st.deliveredAt.Add(st.holder.opts.AckTimeout)
					if !exp.After(now) {
						s.releaseLocked(st, now)
						released = true
					} else {
						soon(exp)
					}
				}
			}
			if (s.typ == bus.Failover || s.typ == bus.Exclusive) && s.active[cur] != c {
				continue
			}
			for _, st := range cur.states {
				if st.holder != nil || st.tx != nil {
					continue
				}
				ready := st.readyAt
				if delays && st.e.deliverAt.After(ready) {
					ready = st.e.deliverAt
				}
				if ready.After(now) {
					soon(ready)
					continue
				}
				if s.typ == bus.KeyShared {
					if s.keyOwner(st.e.key) != c {
						continue
					}
					if h := s.holds[st.e.key]; h != nil && h.c != c {
						continue
					}
				}
				found = st
				break
			}
		}
		if found == nil {
			return nil, wakeAt
		}
		s.rr++
		if max := c.opts.MaxDeliveries; max > 0 && found.deliveries >= max {
			reason := found.cause
			if reason == "" {
				reason = fmt.Sprintf("not acknowledged after %d deliveries", found.deliveries)
			}
			msg := found.e.message(found.cur.p, found.deliveries)
			s.deadLetterLocked(c, msg, reason, found.deliveries, now)
			s.ackLocked(found)
			continue
		}
		msg := found.e.message(found.cur.p, found.deliveries)
		found.deliveries++
		s.holdLocked(found, c, now)
		return msg, time.Time{}
	}
}

// deadLetterLocked publishes msg to c's dead-letter topic with the reason.
func (s *subscription) deadLetterLocked(c *consumer, msg *bus.Message, reason string, deliveries int, now time.Time) {
	t, part, err := s.b.lookupLocked(c.dlq)
	if err != nil {
		// The name was checked when the consumer subscribed; a topic
		// cannot disappear, so this is a programming error.
		panic(fmt.Sprintf("memory bus: dead-letter topic %s: %v", c.dlq, err))
	}
	if part == nil {
		part = t.partitionFor(msg.Key)
	}
	props := copyProps(msg.Properties)
	if props == nil {
		props = make(map[string]string, 6)
	}
	props[bus.PropDLQReason] = reason
	props[bus.PropDLQOriginTopic] = msg.Topic
	props[bus.PropDLQOriginID] = bus.FormatMessageID(msg.ID)
	props[bus.PropDLQSubscription] = s.name
	props[bus.PropDLQDeliveries] = strconv.Itoa(deliveries)
	props[bus.PropDLQDeadLetteredAt] = now.UTC().Format(time.RFC3339Nano)
	part.appendLocked(&bus.OutMessage{Key: msg.Key, Payload: msg.Payload, Properties: props}, now, committed)
}

// stateOf finds the state of a received message in s.
func (s *subscription) stateOf(msg *bus.Message) (*msgState, error) {
	if msg == nil {
		return nil, fmt.Errorf("%w: nil message", bus.ErrBadOptions)
	}
	part, idx, err := parseID(msg.ID)
	if err != nil {
		return nil, err
	}
	for _, cur := range s.cursors {
		if cur.p.index == part && cur.p.name() == msg.Topic {
			_, st := cur.find(idx)
			return st, nil
		}
	}
	return nil, fmt.Errorf("%w: message from %s is not of subscription %s on %s", bus.ErrBadOptions, msg.Topic, s.name, s.topicName)
}

type consumer struct {
	bus  *Bus
	s    *subscription
	id   int64
	name string
	opts bus.SubscribeOptions
	dlq  string

	closed bool // under the broker lock
	done   chan struct{}
	// owned is signalled when the consumer gains or loses a partition of
	// a Failover or Exclusive subscription (ownership.go).
	owned chan struct{}
}

var (
	_ bus.Consumer    = (*consumer)(nil)
	_ bus.TxListAcker = (*consumer)(nil)
)

func less(a, b *consumer) bool {
	if a.name != b.name {
		return a.name < b.name
	}
	return a.id < b.id
}

// Subscribe implements bus.Bus.
func (x *Bus) Subscribe(ctx context.Context, opts bus.SubscribeOptions) (bus.Consumer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := x.checkOpen(); err != nil {
		return nil, err
	}
	if err := validateSubscribe(opts); err != nil {
		return nil, err
	}
	if opts.NackDelay == 0 {
		opts.NackDelay = defaultNackDelay
	}
	name := x.ns.Topic(opts.Topic)
	dlq := opts.DeadLetterTopic
	if dlq == "" {
		// As bus/pulsarbus: the base topic's short name, in this
		// connection's namespace.
		dlq = bus.DeadLetterTopic(name, opts.Subscription)
	}
	dlq = x.ns.Topic(dlq)

	b := x.b
	b.mu.Lock()
	t, part, err := b.lookupLocked(name)
	if err == nil {
		_, _, err = b.lookupLocked(dlq)
	}
	if err != nil {
		b.mu.Unlock()
		return nil, err
	}
	key := name + "\x00" + opts.Subscription
	s := b.subs[key]
	switch {
	case s == nil:
		s = &subscription{
			b: b, name: opts.Subscription, topicName: name, t: t, typ: opts.Type,
			active: make(map[*cursor]*consumer), holds: make(map[string]*keyHold),
			wake: make(chan struct{}), whole: part == nil,
		}
		if part != nil {
			s.addCursorLocked(part, opts.InitialPosition == bus.Latest)
		} else {
			for _, p := range t.parts {
				s.addCursorLocked(p, opts.InitialPosition == bus.Latest)
			}
			t.subs[opts.Subscription] = s
		}
		b.subs[key] = s
	case s.typ != opts.Type && len(s.consumers) > 0:
		b.mu.Unlock()
		return nil, fmt.Errorf("%w: subscription %s on %s is %s, not %s", bus.ErrBadOptions, opts.Subscription, name, s.typ, opts.Type)
	case s.typ != opts.Type:
		// Pulsar lets a subscription change type while nobody is on it.
		s.typ = opts.Type
		clear(s.active)
	case s.typ == bus.Exclusive && len(s.consumers) > 0:
		b.mu.Unlock()
		return nil, fmt.Errorf("memory bus: exclusive subscription %s on %s already has a consumer", opts.Subscription, name)
	}
	s.nextCons++
	c := &consumer{bus: x, s: s, id: s.nextCons, name: opts.ConsumerName, opts: opts, dlq: dlq, done: make(chan struct{}), owned: make(chan struct{}, 1)}
	if c.name == "" {
		c.name = fmt.Sprintf("consumer-%06d", c.id)
	}
	i := sort.Search(len(s.consumers), func(i int) bool { return less(c, s.consumers[i]) })
	s.consumers = append(s.consumers, nil)
	copy(s.consumers[i+1:], s.consumers[i:])
	s.consumers[i] = c
	if c.opts.AckTimeout > 0 {
		s.ackTimeouts++
	}
	s.rebalanceLocked()
	s.signalLocked()
	b.mu.Unlock()

	x.mu.Lock()
	if x.closed {
		x.mu.Unlock()
		c.close()
		return nil, fmt.Errorf("memory bus: %w", bus.ErrClosed)
	}
	x.consumers[c] = struct{}{}
	x.mu.Unlock()
	return c, nil
}

func validateSubscribe(o bus.SubscribeOptions) error {
	switch {
	case o.Topic == "":
		return fmt.Errorf("%w: subscribe needs a topic", bus.ErrBadOptions)
	case o.Subscription == "":
		return fmt.Errorf("%w: subscribe to %s needs a subscription name", bus.ErrBadOptions, o.Topic)
	case o.Type < bus.Exclusive || o.Type > bus.KeyShared:
		return fmt.Errorf("%w: unknown subscription type %d", bus.ErrBadOptions, int(o.Type))
	case o.InitialPosition != bus.Earliest && o.InitialPosition != bus.Latest:
		return fmt.Errorf("%w: unknown initial position %d", bus.ErrBadOptions, int(o.InitialPosition))
	case o.MaxDeliveries < 0:
		return fmt.Errorf("%w: max deliveries %d is negative", bus.ErrBadOptions, o.MaxDeliveries)
	case o.NackDelay < 0:
		return fmt.Errorf("%w: nack delay %s is negative", bus.ErrBadOptions, o.NackDelay)
	case o.AckTimeout < 0:
		return fmt.Errorf("%w: ack timeout %s is negative", bus.ErrBadOptions, o.AckTimeout)
	case o.ReceiveQueueSize < 0:
		return fmt.Errorf("%w: receive queue size %d is negative", bus.ErrBadOptions, o.ReceiveQueueSize)
	}
	return nil
}

func (c *consumer) errClosed() error {
	return fmt.Errorf("memory consumer %s of %s: %w", c.name, c.s.name, bus.ErrClosed)
}

func (c *consumer) Receive(ctx context.Context) (*bus.Message, error) {
	b := c.bus.b
	defer func() {
		b.mu.Lock()
		c.s.leaveQueueLocked(c)
		b.mu.Unlock()
	}()
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		b.mu.Lock()
		if c.closed {
			b.mu.Unlock()
			return nil, c.errClosed()
		}
		now := b.now()
		var msg *bus.Message
		var wakeAt time.Time
		if c.s.turnLocked(c) {
			msg, wakeAt = c.s.pickLocked(c, now)
		}
		if msg != nil {
			c.s.leaveQueueLocked(c)
		}
		wake := c.s.wake
		b.mu.Unlock()
		if msg != nil {
			return msg, nil
		}
		var timer *time.Timer
		var fire <-chan time.Time
		if !wakeAt.IsZero() {
			timer = time.NewTimer(wakeAt.Sub(now))
			fire = timer.C
		}
		select {
		case <-ctx.Done():
		case <-c.done:
		case <-wake:
		case <-fire:
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// turnLocked makes Shared subscriptions round robin: consumers waiting in
// Receive queue up, and only the first of the queue takes a message; a
// consumer that comes back for more goes to the end of the queue.
func (s *subscription) turnLocked(c *consumer) bool {
	if s.typ != bus.Shared {
		return true
	}
	for _, w := range s.waiters {
		if w == c {
			return s.waiters[0] == c
		}
	}
	s.waiters = append(s.waiters, c)
	return s.waiters[0] == c
}

// leaveQueueLocked takes c out of the queue of waiting consumers; the next
// one is woken.
func (s *subscription) leaveQueueLocked(c *consumer) {
	for i, w := range s.waiters {
		if w == c {
			s.waiters = append(s.waiters[:i], s.waiters[i+1:]...)
			if i == 0 && len(s.waiters) > 0 {
				s.signalLocked()
			}
			return
		}
	}
}

func (c *consumer) Ack(ctx context.Context, msg *bus.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b := c.bus.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if c.closed {
		return c.errClosed()
	}
	st, err := c.s.stateOf(msg)
	if err != nil || st == nil {
		return err
	}
	if st.tx != nil {
		return fmt.Errorf("%w: message %s is acknowledged in open transaction %d", bus.ErrBadOptions, bus.FormatMessageID(msg.ID), st.tx.id)
	}
	c.s.ackLocked(st)
	c.s.signalLocked()
	return nil
}

func (c *consumer) AckTx(ctx context.Context, msg *bus.Message, t bus.Tx) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	x, ok := t.(*tx)
	if !ok {
		return fmt.Errorf("%w: transaction %T was not made by the memory bus", bus.ErrBadOptions, t)
	}
	b := c.bus.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if c.closed {
		return c.errClosed()
	}
	if err := x.usableLocked(); err != nil {
		return err
	}
	st, err := c.s.stateOf(msg)
	if err != nil || st == nil {
		return err
	}
	if st.tx != nil && st.tx != x {
		return fmt.Errorf("%w: message %s is already acknowledged in transaction %d", bus.ErrTxFailed, bus.FormatMessageID(msg.ID), st.tx.id)
	}
	if st.tx == nil {
		c.s.releaseLocked(st, time.Time{})
		st.tx = x
		x.acks = append(x.acks, txAck{s: c.s, st: st})
		c.s.signalLocked()
	}
	return nil
}

// AckTxList acknowledges msgs in t (bus.TxListAcker): AckTx for each (the
// memory bus has no round trips to save); the error joins the failures.
func (c *consumer) AckTxList(ctx context.Context, msgs []*bus.Message, t bus.Tx) error {
	var errs []error
	for _, m := range msgs {
		if err := c.AckTx(ctx, m, t); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (c *consumer) Nack(msg *bus.Message, cause error) {
	b := c.bus.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if c.closed {
		return
	}
	st, err := c.s.stateOf(msg)
	if err != nil || st == nil || st.holder == nil || st.tx != nil {
		return
	}
	if cause != nil {
		st.cause = cause.Error()
	}
	c.s.releaseLocked(st, b.now().Add(c.opts.NackDelay))
	c.s.signalLocked()
}

func (c *consumer) DeadLetter(ctx context.Context, msg *bus.Message, reason string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if msg == nil {
		return fmt.Errorf("%w: nil message", bus.ErrBadOptions)
	}
	b := c.bus.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if c.closed {
		return c.errClosed()
	}
	st, err := c.s.stateOf(msg)
	if err != nil {
		return err
	}
	if st != nil && st.tx != nil {
		return fmt.Errorf("%w: message %s is acknowledged in open transaction %d", bus.ErrBadOptions, bus.FormatMessageID(msg.ID), st.tx.id)
	}
	deliveries := msg.RedeliveryCount + 1
	if st != nil {
		deliveries = st.deliveries
	}
	c.s.deadLetterLocked(c, msg, reason, deliveries, b.now())
	if st != nil {
		c.s.ackLocked(st)
		c.s.signalLocked()
	}
	return nil
}

func (c *consumer) Close() error {
	c.close()
	c.bus.mu.Lock()
	delete(c.bus.consumers, c)
	c.bus.mu.Unlock()
	return nil
}

// close leaves the subscription; what c held is delivered again to the
// others.
func (c *consumer) close() {
	b := c.bus.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	close(c.done)
	s := c.s
	now := b.now()
	for _, cur := range s.cursors {
		for _, st := range cur.states {
			if st.holder == c {
				s.releaseLocked(st, now)
			}
		}
	}
	for i, o := range s.consumers {
		if o == c {
			s.consumers = append(s.consumers[:i], s.consumers[i+1:]...)
			break
		}
	}
	if c.opts.AckTimeout > 0 {
		s.ackTimeouts--
	}
	s.rebalanceLocked()
	s.signalLocked()
}
