// Package memory is an in-process implementation of bus.Bus for `pulsaga
// dev` and fast unit tests. It follows Pulsar's model closely enough to pass
// the shared conformance suite in bus/bustest: partitioned topics keyed by a
// stable hash, Exclusive / Failover / Shared / KeyShared subscriptions,
// delayed delivery on Shared and KeyShared only, nacks, ack timeouts,
// dead-letter topics, readers (also of a compacted view) and transactions.
//
// A Broker holds the topics; each Bus made by New is one connection to it.
// Closing a Bus behaves like a client that crashed: its consumers' messages
// that were not acknowledged go back to their subscriptions.
//
// Consumers pull: a message is handed to a consumer when it calls Receive,
// which is Pulsar's behaviour with a receive queue of zero; on a Shared
// subscription the consumers waiting in Receive take messages in turn. Nothing runs in
// the background except the timers of transaction timeouts and the
// goroutines that complete SendAsync calls, which end when their producer's
// queue is empty.
package memory

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"github.com/pulsaga/pulsaga/bus"
)

// Options configure a connection to an in-memory broker.
type Options struct {
	// Broker is the broker to connect to; nil makes a new private one.
	// Connections that share a Broker see the same topics, which is how a
	// test simulates several processes.
	Broker *Broker
	// Namespace resolves short topic names (default bus.DefaultNamespace).
	Namespace bus.Namespace
}

// Broker holds topics, subscriptions and transactions shared by the
// connections made on it. Its zero value is not usable: call NewBroker.
type Broker struct {
	mu sync.Mutex
	// released is closed and replaced whenever a producer lets go of a
	// partition (AccessWaitForExclusive waits for it).
	released chan struct{}
	topics   map[string]*topic // by full name (without partition suffix)
	subs     map[string]*subscription
	nextTx   int64
	// open are the transactions not yet ended (EndTransactions).
	open map[*tx]struct{}
	now  func() time.Time
}

// NewBroker returns an empty broker.
func NewBroker() *Broker {
	return &Broker{
		released: make(chan struct{}),
		topics:   make(map[string]*topic),
		subs:     make(map[string]*subscription),
		open:     make(map[*tx]struct{}),
		now:      time.Now,
	}
}

// Bus is one connection to a Broker. It implements bus.Bus.
type Bus struct {
	b  *Broker
	ns bus.Namespace

	mu        sync.Mutex
	closed    bool
	producers map[*producer]struct{}
	consumers map[*consumer]struct{}
	readers   map[*reader]struct{}
}

var _ bus.Bus = (*Bus)(nil)

// New connects to opts.Broker (or to a new private broker).
func New(opts Options) *Bus {
	b := opts.Broker
	if b == nil {
		b = NewBroker()
	}
	ns := opts.Namespace
	if ns == (bus.Namespace{}) {
		ns = bus.DefaultNamespace
	}
	return &Bus{
		b:         b,
		ns:        ns,
		producers: make(map[*producer]struct{}),
		consumers: make(map[*consumer]struct{}),
		readers:   make(map[*reader]struct{}),
	}
}

// Broker returns the broker this bus is connected to, so that more
// connections can be made to it.
func (x *Bus) Broker() *Broker { return x.b }

// Namespace implements bus.Bus.
func (x *Bus) Namespace() bus.Namespace { return x.ns }

func (x *Bus) checkOpen() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return fmt.Errorf("memory bus: %w", bus.ErrClosed)
	}
	return nil
}

// EnsureTopic implements bus.Bus. A non-partitioned topic is also created
// on first use, as Pulsar does with automatic topic creation.
func (x *Bus) EnsureTopic(ctx context.Context, spec bus.TopicSpec) error {
	if err := x.checkOpen(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if spec.Name == "" {
		return fmt.Errorf("%w: topic spec has no name", bus.ErrBadOptions)
	}
	if spec.Partitions < 0 {
		return fmt.Errorf("%w: topic %s: partitions %d is negative", bus.ErrBadOptions, spec.Name, spec.Partitions)
	}
	name := x.ns.Topic(spec.Name)
	if bus.BaseTopic(name) != name {
		return fmt.Errorf("%w: topic %s names a partition", bus.ErrBadOptions, name)
	}
	b := x.b
	b.mu.Lock()
	defer b.mu.Unlock()
	t, ok := b.topics[name]
	if !ok {
		t = b.newTopicLocked(name, spec.Partitions)
		t.compacted = spec.Compacted
		return nil
	}
	switch {
	case t.partitioned == (spec.Partitions > 0) && len(t.parts) == max(spec.Partitions, 1):
	case t.partitioned && spec.Partitions > len(t.parts):
		for i := len(t.parts); i < spec.Partitions; i++ {
			t.parts = append(t.parts, &partition{t: t, index: i, wake: make(chan struct{})})
		}
		for _, s := range t.subs {
			s.addPartitionsLocked()
		}
	default:
		return fmt.Errorf("%w: topic %s exists with %d partitions (partitioned=%v), cannot make it %d",
			bus.ErrBadOptions, name, len(t.parts), t.partitioned, spec.Partitions)
	}
	t.compacted = t.compacted || spec.Compacted
	return nil
}

// Producer implements bus.Bus.
func (x *Bus) Producer(ctx context.Context, opts bus.ProducerOptions) (bus.Producer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if opts.Topic == "" {
		return nil, fmt.Errorf("%w: producer needs a topic", bus.ErrBadOptions)
	}
	if opts.SendTimeout < 0 {
		return nil, fmt.Errorf("%w: negative send timeout", bus.ErrBadOptions)
	}
	name := x.ns.Topic(opts.Topic)
	x.b.mu.Lock()
	t, part, err := x.b.lookupLocked(name)
	if err != nil {
		x.b.mu.Unlock()
		return nil, err
	}
	p := &producer{bus: x, t: t, part: part, name: name, pname: opts.Name, idle: closedChan()}
	if err := x.b.acquireLocked(ctx, p, opts.AccessMode); err != nil {
		x.b.mu.Unlock()
		return nil, fmt.Errorf("memory producer on %s (%s): %w", name, opts.AccessMode, err)
	}
	if opts.Name != "" {
		if _, busy := t.producerNames[opts.Name]; busy {
			x.b.releaseLocked(p)
			x.b.mu.Unlock()
			return nil, fmt.Errorf("%w: a producer named %q is already connected to %s", bus.ErrBadOptions, opts.Name, name)
		}
		t.producerNames[opts.Name] = struct{}{}
	}
	x.b.mu.Unlock()

	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		p.releaseName()
		return nil, fmt.Errorf("memory bus: %w", bus.ErrClosed)
	}
	x.producers[p] = struct{}{}
	return p, nil
}

// Close implements bus.Bus: it closes every producer, consumer and reader
// of this connection, like a client process that stops. Unacknowledged
// messages go back to their subscriptions.
func (x *Bus) Close() error {
	x.mu.Lock()
	if x.closed {
		x.mu.Unlock()
		return nil
	}
	x.closed = true
	ps, cs, rs := x.producers, x.consumers, x.readers
	x.producers, x.consumers, x.readers = nil, nil, nil
	x.mu.Unlock()
	for p := range ps {
		p.abort()
	}
	for c := range cs {
		c.close()
	}
	for r := range rs {
		r.close()
	}
	return nil
}

func closedChan() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

// topic is a topic with one partition (not partitioned) or several.
type topic struct {
	name          string
	partitioned   bool
	parts         []*partition
	compacted     bool
	subs          map[string]*subscription
	rr            int // round robin for messages without a key
	producerNames map[string]struct{}
}

func (b *Broker) newTopicLocked(name string, partitions int) *topic {
	t := &topic{
		name:          name,
		partitioned:   partitions > 0,
		subs:          make(map[string]*subscription),
		producerNames: make(map[string]struct{}),
	}
	for i := 0; i < max(partitions, 1); i++ {
		t.parts = append(t.parts, &partition{t: t, index: i, wake: make(chan struct{})})
	}
	b.topics[name] = t
	return t
}

// lookupLocked finds (or auto-creates, non-partitioned) a topic by full
// name. A name of one partition of a partitioned topic returns that
// partition; otherwise part is nil.
func (b *Broker) lookupLocked(name string) (*topic, *partition, error) {
	if t, ok := b.topics[name]; ok {
		return t, nil, nil
	}
	if base := bus.BaseTopic(name); base != name {
		if t, ok := b.topics[base]; ok && t.partitioned {
			var i int
			if _, err := fmt.Sscanf(name[len(base):], "-partition-%d", &i); err != nil || i >= len(t.parts) {
				return nil, nil, fmt.Errorf("%w: %s: no such partition of %s (%d partitions)", bus.ErrBadOptions, name, base, len(t.parts))
			}
			return t, t.parts[i], nil
		}
	}
	return b.newTopicLocked(name, 0), nil, nil
}

// partition is the log of one partition.
type partition struct {
	t     *topic
	index int
	log   []*entry
	// pendingIdx lists, in order, the entries of open transactions.
	pendingIdx []int64
	// lastByKey is the index of the latest committed entry of each key.
	lastByKey map[string]int64
	// wake is closed and replaced whenever the visible log changes.
	wake chan struct{}
	subs []*subscription
	// producers connected to the partition (through the topic or its
	// partition's name); exclusive is the one holding it exclusively.
	producers map[*producer]struct{}
	exclusive *producer
	epoch     int64
}

func (p *partition) name() string {
	if p.t.partitioned {
		return fmt.Sprintf("%s-partition-%d", p.t.name, p.index)
	}
	return p.t.name
}

type entryState int

const (
	committed entryState = iota
	pending              // sent in an open transaction
	aborted              // sent in an aborted transaction
)

type entry struct {
	idx         int64
	key         string
	payload     []byte
	props       map[string]string
	publishTime time.Time
	deliverAt   time.Time
	state       entryState
}

// visibleLimit is the index of the first entry of an open transaction (or
// the log length): like Pulsar's max read position, nothing past it is
// dispatched until that transaction ends.
func (p *partition) visibleLimit() int64 {
	if len(p.pendingIdx) > 0 {
		return p.pendingIdx[0]
	}
	return int64(len(p.log))
}

// settleLocked records that the transactional entry idx was committed or
// aborted.
func (p *partition) settleLocked(idx int64) {
	for i, v := range p.pendingIdx {
		if v == idx {
			p.pendingIdx = append(p.pendingIdx[:i], p.pendingIdx[i+1:]...)
			return
		}
	}
}

func (p *partition) appendLocked(m *bus.OutMessage, now time.Time, state entryState) *entry {
	e := &entry{
		idx:         int64(len(p.log)),
		key:         m.Key,
		payload:     append([]byte(nil), m.Payload...),
		props:       copyProps(m.Properties),
		publishTime: now,
		deliverAt:   m.DeliverAt,
		state:       state,
	}
	p.log = append(p.log, e)
	if state == pending {
		p.pendingIdx = append(p.pendingIdx, e.idx)
	} else {
		p.committedLocked(e)
	}
	return e
}

// committedLocked makes e visible: it is the latest value of its key and
// readers and subscriptions are woken.
func (p *partition) committedLocked(e *entry) {
	if p.lastByKey == nil {
		p.lastByKey = make(map[string]int64)
	}
	if last, ok := p.lastByKey[e.key]; !ok || last < e.idx {
		p.lastByKey[e.key] = e.idx
	}
	p.changedLocked()
}

// changedLocked wakes readers and subscriptions of the partition.
func (p *partition) changedLocked() {
	close(p.wake)
	p.wake = make(chan struct{})
	for _, s := range p.subs {
		s.signalLocked()
	}
}

func copyProps(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Message IDs are 13 bytes: a format byte, the partition (uint32) and the
// entry index (uint64), big endian, so they sort in publish order within a
// partition.
const idFormat = 0x01

func makeID(partition int, idx int64) bus.MessageID {
	id := make([]byte, 13)
	id[0] = idFormat
	binary.BigEndian.PutUint32(id[1:5], uint32(partition))
	binary.BigEndian.PutUint64(id[5:], uint64(idx))
	return id
}

func parseID(id bus.MessageID) (partition int, idx int64, err error) {
	if len(id) != 13 || id[0] != idFormat {
		return 0, 0, fmt.Errorf("%w: message id %x was not made by the memory bus", bus.ErrBadOptions, []byte(id))
	}
	return int(binary.BigEndian.Uint32(id[1:5])), int64(binary.BigEndian.Uint64(id[5:])), nil
}

func (e *entry) message(p *partition, redeliveries int) *bus.Message {
	return &bus.Message{
		Topic:           p.name(),
		Partition:       p.index,
		ID:              makeID(p.index, e.idx),
		Key:             e.key,
		Payload:         append([]byte(nil), e.payload...),
		Properties:      copyProps(e.props),
		PublishTime:     e.publishTime,
		DeliverAt:       e.deliverAt,
		RedeliveryCount: redeliveries,
	}
}

// partitionFor picks the partition of a key like pulsar-client-go's default
// router (JavaStringHash modulo partitions); messages without a key go
// round robin.
func (t *topic) partitionFor(key string) *partition {
	if len(t.parts) == 1 {
		return t.parts[0]
	}
	if key == "" {
		t.rr++
		return t.parts[t.rr%len(t.parts)]
	}
	return t.parts[javaStringHash(key)%uint32(len(t.parts))]
}

func javaStringHash(s string) uint32 {
	var h uint32
	for i := 0; i < len(s); i++ {
		h = 31*h + uint32(s[i])
	}
	return h
}
