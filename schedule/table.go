package schedule

import (
	"context"
	"fmt"
	"sort"
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
	table *bus.Table[*Record]
}

// NewTable reads the schedules topic.
func NewTable(b bus.Bus) *Table {
	return &Table{table: bus.NewTable(b, bus.TableOptions[*Record]{
		Topic:  RecordsTopic,
		Ensure: func(ctx context.Context) error { return EnsureTopics(ctx, b) },
		Decode: func(m *bus.Message) (string, *Record, bool) {
			env, err := bus.DecodeEnvelope(m.Payload)
			if err != nil || env.Type != TypeRecord {
				return "", nil, false
			}
			var r Record
			if env.DecodePayload(&r) != nil {
				return "", nil, false
			}
			return m.Key, &r, true
		},
		Copy: (*Record).clone,
	})}
}

// Refresh reads what was written since the last call.
func (t *Table) Refresh(ctx context.Context) error {
	if err := t.table.Read(ctx); err != nil {
		return fmt.Errorf("schedules table: %w", err)
	}
	return nil
}

// set records what the scheduler itself just committed.
func (t *Table) set(name string, r *Record) {
	if r == nil {
		t.table.Delete(name)
		return
	}
	t.table.Put(name, r)
}

// Get returns one schedule (a copy).
func (t *Table) Get(name string) (*Record, bool) { return t.table.Get(name) }

// List returns every schedule, by name.
func (t *Table) List() []*Record {
	out := t.table.Rows()
	sort.Slice(out, func(i, j int) bool { return out[i].Spec.Name < out[j].Spec.Name })
	return out
}

// Close releases the reader.
func (t *Table) Close() error { return t.table.Close() }
