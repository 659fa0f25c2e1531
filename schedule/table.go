package schedule

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/protocol"
)

// Topic names (short, resolved in the bus's namespace).
const (
	// RecordsTopic holds one record per schedule (compacted).
	RecordsTopic = protocol.SchedulesTopic
	// EventsTopic carries control requests and fired ticks to the active
	// scheduler (one Failover subscription).
	EventsTopic = protocol.ScheduleEventsTopic
	// Subscription is the schedulers' subscription on EventsTopic.
	Subscription = protocol.SchedulerSubscription
)

// Envelope types.
const (
	TypeRecord  = "schedule"         // a record on RecordsTopic
	TypeRequest = "schedule.request" // a control request on EventsTopic
	// TimerKind is the kind of the tick timers.
	TimerKind = "schedule"
)

// TopicSpecs are the topics schedules need.
func TopicSpecs() []bus.TopicSpec {
	return []bus.TopicSpec{
		{Name: RecordsTopic, Compacted: true, RetentionTime: -1, RetentionSizeMB: -1},
		{Name: EventsTopic, RetentionTime: 24 * time.Hour, RetentionSizeMB: -1},
	}
}

// EnsureTopics creates the topics of schedules.
func EnsureTopics(ctx context.Context, b bus.Bus) error {
	for _, s := range TopicSpecs() {
		if err := b.EnsureTopic(ctx, s); err != nil {
			return fmt.Errorf("schedules: ensure topic %s: %w", s.Name, err)
		}
	}
	return nil
}

// Table is the schedules topic read as a table (any instance can list
// schedules from it).
type Table struct {
	bus bus.Bus

	mu     sync.Mutex
	reader bus.Reader
	rows   map[string]*Record
}

// NewTable reads the schedules topic.
func NewTable(b bus.Bus) *Table { return &Table{bus: b, rows: map[string]*Record{}} }

// Refresh reads what was written since the last call.
func (t *Table) Refresh(ctx context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.reader == nil {
		if err := EnsureTopics(ctx, t.bus); err != nil {
			return err
		}
		rd, err := t.bus.Reader(ctx, bus.ReaderOptions{Topic: RecordsTopic, Compacted: true})
		if err != nil {
			return fmt.Errorf("schedules table: %w", err)
		}
		t.reader = rd
	}
	for {
		more, err := t.reader.HasNext(ctx)
		if err != nil {
			return fmt.Errorf("schedules table: %w", err)
		}
		if !more {
			return nil
		}
		m, err := t.reader.Next(ctx)
		if err != nil {
			return fmt.Errorf("schedules table: %w", err)
		}
		if len(m.Payload) == 0 {
			delete(t.rows, m.Key)
			continue
		}
		env, err := bus.DecodeEnvelope(m.Payload)
		if err != nil || env.Type != TypeRecord {
			continue
		}
		var r Record
		if env.DecodePayload(&r) != nil {
			continue
		}
		t.rows[m.Key] = &r
	}
}

// set records what the scheduler itself just committed.
func (t *Table) set(name string, r *Record) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if r == nil {
		delete(t.rows, name)
		return
	}
	t.rows[name] = r
}

// Get returns one schedule (a copy).
func (t *Table) Get(name string) (*Record, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r, ok := t.rows[name]
	if !ok {
		return nil, false
	}
	return r.clone(), true
}

// List returns every schedule, by name.
func (t *Table) List() []*Record {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*Record, 0, len(t.rows))
	for _, r := range t.rows {
		out = append(out, r.clone())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Spec.Name < out[j].Spec.Name })
	return out
}

// Close releases the reader.
func (t *Table) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.reader != nil {
		err := t.reader.Close()
		t.reader = nil
		return err
	}
	return nil
}
