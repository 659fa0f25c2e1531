package bus

import (
	"context"
	"sync"
)

// Table is a compacted topic read as a table: the latest row of each key,
// an empty payload (a tombstone) deleting its key. Read catches up with
// what was written since the last Read; Get and Rows answer from memory.
// The status table, the schedules and the bulk jobs are Tables.
type Table[V any] struct {
	b Bus
	o TableOptions[V]

	mu     sync.Mutex
	reader Reader
	rows   map[string]V
}

// TableOptions says which topic a Table reads and how a message becomes a
// row.
type TableOptions[V any] struct {
	// Topic is the compacted topic.
	Topic string
	// Ensure, when set, runs before the first read (it creates the topic).
	Ensure func(ctx context.Context) error
	// Decode turns a message into a row and its key; ok false: the message
	// is not a row (another type, undecodable) and is skipped.
	Decode func(m *Message) (key string, row V, ok bool)
	// Stale, when set, says that row, read after old for the same key, is
	// older than it and is dropped (a deposed writer's late row).
	Stale func(old, row V) bool
	// Copy, when set, is what Get and Rows hand out instead of a row itself
	// (rows that share memory with the table).
	Copy func(V) V
}

// NewTable returns a table that has read nothing yet.
func NewTable[V any](b Bus, o TableOptions[V]) *Table[V] {
	return &Table[V]{b: b, o: o, rows: map[string]V{}}
}

// Read reads what was written to the topic since the last Read: when it
// returns nil, every row written before the call is in the table.
func (t *Table[V]) Read(ctx context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.reader == nil {
		if t.o.Ensure != nil {
			if err := t.o.Ensure(ctx); err != nil {
				return err
			}
		}
		rd, err := t.b.Reader(ctx, ReaderOptions{Topic: t.o.Topic, Compacted: true})
		if err != nil {
			return err
		}
		t.reader = rd
	}
	for {
		more, err := t.reader.HasNext(ctx)
		if err != nil || !more {
			return err
		}
		m, err := t.reader.Next(ctx)
		if err != nil {
			return err
		}
		if len(m.Payload) == 0 {
			delete(t.rows, m.Key)
			continue
		}
		key, row, ok := t.o.Decode(m)
		if !ok {
			continue
		}
		if old, had := t.rows[key]; had && t.o.Stale != nil && t.o.Stale(old, row) {
			continue
		}
		t.rows[key] = row
	}
}

// Get returns key's row.
func (t *Table[V]) Get(key string) (V, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	row, ok := t.rows[key]
	if ok && t.o.Copy != nil {
		row = t.o.Copy(row)
	}
	return row, ok
}

// Rows returns every row, in no particular order.
func (t *Table[V]) Rows() []V {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]V, 0, len(t.rows))
	for _, row := range t.rows {
		if t.o.Copy != nil {
			row = t.o.Copy(row)
		}
		out = append(out, row)
	}
	return out
}

// Put sets key's row without reading it (what the writer itself just
// committed, before its reader gets there).
func (t *Table[V]) Put(key string, row V) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.rows[key] = row
}

// Delete removes key's row.
func (t *Table[V]) Delete(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.rows, key)
}

// Close releases the reader; a later Read opens a new one.
func (t *Table[V]) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.reader == nil {
		return nil
	}
	err := t.reader.Close()
	t.reader = nil
	return err
}
