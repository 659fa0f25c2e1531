package memory

import (
	"context"
	"fmt"

	"github.com/pulsaga/pulsaga/bus"
)

type reader struct {
	bus       *Bus
	p         *partition
	pos       int64
	compacted bool
	// seen holds the keys a compacted reader has delivered a value of, so
	// that it delivers their deletion (an empty payload) but not that of
	// keys it never showed.
	seen   map[string]bool
	closed bool // under the broker lock
	done   chan struct{}
}

var _ bus.Reader = (*reader)(nil)

// Reader implements bus.Bus.
func (x *Bus) Reader(ctx context.Context, opts bus.ReaderOptions) (bus.Reader, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := x.checkOpen(); err != nil {
		return nil, err
	}
	if opts.Topic == "" {
		return nil, fmt.Errorf("%w: reader needs a topic", bus.ErrBadOptions)
	}
	if opts.StartLatest && opts.StartID != nil {
		return nil, fmt.Errorf("%w: reader of %s: StartLatest and StartID are exclusive", bus.ErrBadOptions, opts.Topic)
	}
	name := x.ns.Topic(opts.Topic)
	b := x.b
	b.mu.Lock()
	t, part, err := b.lookupLocked(name)
	if err == nil && part == nil {
		if t.partitioned {
			err = fmt.Errorf("%w: %s is partitioned; read one partition at a time (%s)", bus.ErrBadOptions, name, bus.Namespace{}.Partition(name, 0))
		}
		part = t.parts[0]
	}
	r := &reader{bus: x, p: part, compacted: opts.Compacted, seen: make(map[string]bool), done: make(chan struct{})}
	if err == nil {
		switch {
		case opts.StartLatest:
			r.pos = int64(len(part.log))
		case opts.StartID != nil:
			var pi int
			var idx int64
			pi, idx, err = parseID(opts.StartID)
			if err == nil && pi != part.index {
				err = fmt.Errorf("%w: message id of partition %d given to a reader of %s", bus.ErrBadOptions, pi, part.name())
			}
			r.pos = idx
			if !opts.StartInclusive {
				r.pos++
			}
		}
	}
	b.mu.Unlock()
	if err != nil {
		return nil, err
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return nil, fmt.Errorf("memory bus: %w", bus.ErrClosed)
	}
	x.readers[r] = struct{}{}
	return r, nil
}

// scanLocked finds the next entry to deliver from r.pos without moving.
func (r *reader) scanLocked() (*entry, int64) {
	lim := r.p.visibleLimit()
	for pos := r.pos; pos < lim; pos++ {
		e := r.p.log[pos]
		if e.state != committed {
			continue
		}
		if r.compacted {
			if e.key != "" && r.p.lastByKey[e.key] > e.idx {
				continue
			}
			if e.key != "" && len(e.payload) == 0 && !r.seen[e.key] {
				continue
			}
		}
		return e, pos + 1
	}
	return nil, lim
}

func (r *reader) Next(ctx context.Context) (*bus.Message, error) {
	b := r.bus.b
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		b.mu.Lock()
		if r.closed {
			b.mu.Unlock()
			return nil, fmt.Errorf("memory reader of %s: %w", r.p.name(), bus.ErrClosed)
		}
		e, pos := r.scanLocked()
		if e != nil {
			r.pos = pos
			if r.compacted {
				r.seen[e.key] = len(e.payload) > 0
			}
			msg := e.message(r.p, 0)
			b.mu.Unlock()
			return msg, nil
		}
		// What was skipped stays skipped (aborted, superseded, or the
		// deletion of a key never shown): do not scan it again.
		r.pos = max(r.pos, pos)
		wake := r.p.wake
		b.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-r.done:
		case <-wake:
		}
	}
}

func (r *reader) HasNext(ctx context.Context) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	b := r.bus.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if r.closed {
		return false, fmt.Errorf("memory reader of %s: %w", r.p.name(), bus.ErrClosed)
	}
	e, _ := r.scanLocked()
	return e != nil, nil
}

func (r *reader) Close() error {
	r.close()
	r.bus.mu.Lock()
	delete(r.bus.readers, r)
	r.bus.mu.Unlock()
	return nil
}

func (r *reader) close() {
	b := r.bus.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if !r.closed {
		r.closed = true
		close(r.done)
	}
}
