package memory

import (
	"context"
	"fmt"
	"sync"

	"github.com/pulsaga/pulsaga/bus"
)

type producer struct {
	bus   *Bus
	t     *topic
	part  *partition // set when the producer was opened on one partition
	name  string
	pname string

	// fenced (under the broker's mutex): another producer took exclusive
	// access from this one.
	fenced bool

	mu      sync.Mutex
	closed  bool
	queue   []asyncSend
	running bool
	idle    chan struct{} // closed while no SendAsync is queued or running
	wg      sync.WaitGroup
}

type asyncSend struct {
	ctx  context.Context
	msg  bus.OutMessage
	done func(bus.MessageID, error)
}

var _ bus.Producer = (*producer)(nil)

func (p *producer) Topic() string { return p.name }

func (p *producer) Send(ctx context.Context, msg *bus.OutMessage) (bus.MessageID, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if msg == nil {
		return nil, fmt.Errorf("%w: nil message", bus.ErrBadOptions)
	}
	return p.send(msg)
}

func (p *producer) send(msg *bus.OutMessage) (bus.MessageID, error) {
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("memory producer %s: %w", p.name, bus.ErrClosed)
	}
	if err := bus.CheckSize(p.name, msg); err != nil {
		return nil, err
	}
	var t *tx
	if msg.Tx != nil {
		var ok bool
		if t, ok = msg.Tx.(*tx); !ok {
			return nil, fmt.Errorf("%w: transaction %T was not made by the memory bus", bus.ErrBadOptions, msg.Tx)
		}
	}
	b := p.bus.b
	b.mu.Lock()
	defer b.mu.Unlock()
	part := p.part
	if part == nil {
		part = p.t.partitionFor(msg.Key)
	}
	if p.fenced {
		return nil, fmt.Errorf("memory producer %s: %w", p.name, bus.ErrFenced)
	}
	if t == nil {
		e := part.appendLocked(msg, b.now(), committed)
		return makeID(part.index, e.idx), nil
	}
	if err := t.usableLocked(); err != nil {
		return nil, err
	}
	e := part.appendLocked(msg, b.now(), pending)
	t.sends = append(t.sends, txSend{part: part, e: e})
	return makeID(part.index, e.idx), nil
}

func (p *producer) SendAsync(ctx context.Context, msg *bus.OutMessage, done func(bus.MessageID, error)) {
	if done == nil {
		done = func(bus.MessageID, error) {}
	}
	if msg == nil {
		done(nil, fmt.Errorf("%w: nil message", bus.ErrBadOptions))
		return
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		done(nil, fmt.Errorf("memory producer %s: %w", p.name, bus.ErrClosed))
		return
	}
	p.queue = append(p.queue, asyncSend{ctx: ctx, msg: *msg, done: done})
	if !p.running {
		p.running = true
		p.idle = make(chan struct{})
		p.wg.Add(1)
		go p.drain()
	}
	p.mu.Unlock()
}

// drain sends the queued messages in order and calls their callbacks, then
// ends when the queue is empty.
func (p *producer) drain() {
	defer p.wg.Done()
	for {
		p.mu.Lock()
		if len(p.queue) == 0 {
			p.running = false
			close(p.idle)
			p.mu.Unlock()
			return
		}
		it := p.queue[0]
		p.queue[0] = asyncSend{}
		p.queue = p.queue[1:]
		p.mu.Unlock()
		var id bus.MessageID
		err := it.ctx.Err()
		if err == nil {
			id, err = p.send(&it.msg)
		}
		it.done(id, err)
	}
}

func (p *producer) Flush(ctx context.Context) error {
	p.mu.Lock()
	idle, closed := p.idle, p.closed
	p.mu.Unlock()
	if closed {
		return fmt.Errorf("memory producer %s: %w", p.name, bus.ErrClosed)
	}
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close sends what is queued, then closes.
func (p *producer) Close() error {
	p.mu.Lock()
	idle := p.idle
	p.mu.Unlock()
	<-idle
	p.abort()
	p.bus.mu.Lock()
	delete(p.bus.producers, p)
	p.bus.mu.Unlock()
	return nil
}

// abort closes at once: queued messages fail with ErrClosed.
func (p *producer) abort() {
	p.mu.Lock()
	already := p.closed
	p.closed = true
	p.mu.Unlock()
	p.wg.Wait()
	if !already {
		p.releaseName()
	}
}

func (p *producer) releaseName() {
	p.bus.b.mu.Lock()
	defer p.bus.b.mu.Unlock()
	p.bus.b.releaseLocked(p)
	if p.pname != "" {
		delete(p.t.producerNames, p.pname)
	}
}

// parts are the partitions p writes to.
func (p *producer) parts() []*partition {
	if p.part != nil {
		return []*partition{p.part}
	}
	return p.t.parts
}

// acquireLocked connects p to its partitions with the access it asks for.
// For AccessWaitForExclusive it waits, unlocking the broker meanwhile.
func (b *Broker) acquireLocked(ctx context.Context, p *producer, mode bus.AccessMode) error {
	parts := p.parts()
	switch mode {
	case bus.AccessShared:
		for _, pt := range parts {
			if pt.exclusive != nil {
				return fmt.Errorf("%w: %s is held by an exclusive producer", bus.ErrFenced, pt.name())
			}
		}
	case bus.AccessExclusive, bus.AccessWaitForExclusive:
		for {
			busy := ""
			for _, pt := range parts {
				if len(pt.producers) > 0 {
					busy = pt.name()
					break
				}
			}
			if busy == "" {
				break
			}
			if mode == bus.AccessExclusive {
				return fmt.Errorf("%w: %s has other producers", bus.ErrFenced, busy)
			}
			released := b.released
			b.mu.Unlock()
			select {
			case <-released:
				b.mu.Lock()
			case <-ctx.Done():
				b.mu.Lock()
				return ctx.Err()
			}
		}
	case bus.AccessExclusiveWithFencing:
		for _, pt := range parts {
			for q := range pt.producers {
				q.fenced = true
				b.releaseLocked(q)
			}
		}
	default:
		return fmt.Errorf("%w: unknown access mode %d", bus.ErrBadOptions, mode)
	}
	for _, pt := range parts {
		if pt.producers == nil {
			pt.producers = map[*producer]struct{}{}
		}
		pt.producers[p] = struct{}{}
		if mode != bus.AccessShared {
			pt.exclusive = p
			pt.epoch++
		}
	}
	return nil
}

// releaseLocked disconnects p from its partitions.
func (b *Broker) releaseLocked(p *producer) {
	for _, pt := range p.parts() {
		if _, ok := pt.producers[p]; !ok {
			continue
		}
		delete(pt.producers, p)
		if pt.exclusive == p {
			pt.exclusive = nil
		}
	}
	close(b.released)
	b.released = make(chan struct{})
}
