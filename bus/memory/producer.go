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
	if p.pname == "" {
		return
	}
	p.bus.b.mu.Lock()
	delete(p.t.producerNames, p.pname)
	p.bus.b.mu.Unlock()
}
