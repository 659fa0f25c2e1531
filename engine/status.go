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
	table *bus.Table[StatusRecord]

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
	return &StatusTable{table: bus.NewTable(b, bus.TableOptions[StatusRecord]{
		Topic: topic,
		Ensure: func(ctx context.Context) error {
			return b.EnsureTopic(ctx, bus.TopicSpec{Name: topic, Compacted: true, RetentionTime: -1, RetentionSizeMB: -1})
		},
		Decode: func(m *bus.Message) (string, StatusRecord, bool) {
			r, err := DecodeStatus(m.Payload)
			if err != nil || r == nil {
				return "", StatusRecord{}, false
			}
			return r.ProcessID, *r, true
		},
		// an older row read after a newer one
		Stale: func(old, r StatusRecord) bool { return old.Seq > r.Seq },
	})}
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
	if err := t.table.Read(ctx); err != nil {
		return fmt.Errorf("status table: %w", err)
	}
	return nil
}

// Get returns one row.
func (t *StatusTable) Get(pid string) (StatusRecord, bool) { return t.table.Get(pid) }

// List returns every row, by process id.
func (t *StatusTable) List() []StatusRecord {
	out := t.table.Rows()
	sort.Slice(out, func(i, j int) bool { return out[i].ProcessID < out[j].ProcessID })
	return out
}

// Close releases the reader.
func (t *StatusTable) Close() error { return t.table.Close() }
