package engine

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/pulsaga/pulsaga/bus"
)

// StatusTable is the compacted status topic read as a table: any instance
// can answer admin queries from it, whoever owns the processes.
type StatusTable struct {
	bus   bus.Bus
	topic string

	mu     sync.Mutex
	reader bus.Reader
	rows   map[string]StatusRecord

	// Refreshes are coalesced: one pass over the topic runs at a time, and
	// every caller that arrives meanwhile shares the pass after it.
	cmu        sync.Mutex
	cur, queue *refreshCall
}

type refreshCall struct {
	done chan struct{}
	err  error
}

// NewStatusTable reads the status topic.
func NewStatusTable(b bus.Bus, topic string) *StatusTable {
	return &StatusTable{bus: b, topic: topic, rows: map[string]StatusRecord{}}
}

// Refresh reads what was written to the topic up to now: when it returns
// nil, every row written before the call is in the table. Concurrent calls
// share passes over the topic (a pass that began before a call cannot
// serve it; the next one does), so a burst of callers costs two passes, not
// one each.
func (t *StatusTable) Refresh(ctx context.Context) error {
	t.cmu.Lock()
	if t.cur == nil {
		c := &refreshCall{done: make(chan struct{})}
		t.cur = c
		t.cmu.Unlock()
		t.passes(ctx, c)
		return c.err
	}
	if t.queue == nil {
		t.queue = &refreshCall{done: make(chan struct{})}
	}
	c := t.queue
	t.cmu.Unlock()
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// refreshTimeout bounds a pass run on behalf of other callers.
const refreshTimeout = 30 * time.Second

// passes runs c's pass, then the passes queued meanwhile, until none is.
func (t *StatusTable) passes(ctx context.Context, c *refreshCall) {
	c.err = t.pass(ctx)
	for {
		t.cmu.Lock()
		close(c.done)
		c = t.queue
		t.queue, t.cur = nil, c
		t.cmu.Unlock()
		if c == nil {
			return
		}
		// For callers whose contexts this goroutine does not have.
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), refreshTimeout)
		c.err = t.pass(pctx)
		cancel()
	}
}

// pass reads what was written since the last pass.
func (t *StatusTable) pass(ctx context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.reader == nil {
		if err := t.bus.EnsureTopic(ctx, bus.TopicSpec{Name: t.topic, Compacted: true, RetentionTime: -1, RetentionSizeMB: -1}); err != nil {
			return fmt.Errorf("status table: %w", err)
		}
		rd, err := t.bus.Reader(ctx, bus.ReaderOptions{Topic: t.topic, Compacted: true})
		if err != nil {
			return fmt.Errorf("status table: %w", err)
		}
		t.reader = rd
	}
	for {
		more, err := t.reader.HasNext(ctx)
		if err != nil {
			return fmt.Errorf("status table: %w", err)
		}
		if !more {
			return nil
		}
		m, err := t.reader.Next(ctx)
		if err != nil {
			return fmt.Errorf("status table: %w", err)
		}
		if len(m.Payload) == 0 {
			delete(t.rows, m.Key)
			continue
		}
		rp, err := DecodeStatus(m.Payload)
		if err != nil || rp == nil {
			continue
		}
		r := *rp
		if old, ok := t.rows[r.ProcessID]; ok && old.Seq > r.Seq {
			continue // an older row read after a newer one
		}
		t.rows[r.ProcessID] = r
	}
}

// Get returns one row.
func (t *StatusTable) Get(pid string) (StatusRecord, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r, ok := t.rows[pid]
	return r, ok
}

// List returns every row, by process id.
func (t *StatusTable) List() []StatusRecord {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]StatusRecord, 0, len(t.rows))
	for _, r := range t.rows {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ProcessID < out[j].ProcessID })
	return out
}

// Close releases the reader.
func (t *StatusTable) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.reader != nil {
		err := t.reader.Close()
		t.reader = nil
		return err
	}
	return nil
}
