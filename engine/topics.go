// Package engine is pulsaga's distributed runtime: the orchestrator, which
// owns processes partition by partition and keeps their event streams and
// memory images in Pulsar, and the stateless decider, which turns a
// process's state and new events into commands (see docs/architecture.md).
package engine

import (
	"time"

	"github.com/pulsaga/pulsaga/bus"
)

// Topics names the engine's topics (short names, resolved in the bus's
// namespace) and how many partitions the process-keyed ones have.
type Topics struct {
	// Events carries everything that can change a process, keyed by
	// process id; orchestrators share it through a Failover subscription.
	Events string
	// History holds each process's event stream (dense sequence numbers),
	// partitioned like Events so partition p of both hold the same processes.
	History string
	// Snapshots holds the latest memory image of each process (compacted).
	Snapshots string
	// Status is the admin table: one summary per process (compacted).
	Status string
	// Definitions holds registered definitions, keyed name@version (compacted).
	Definitions string
	// Decisions carries decision tasks to the deciders (Shared).
	Decisions string
	// Partitions of Events, History and Snapshots.
	Partitions int
	// HistoryRetention keeps event streams this long after they are written
	// (-1: forever).
	HistoryRetention time.Duration
}

// DefaultTopics are the names used unless configured otherwise.
func DefaultTopics() Topics {
	return Topics{
		Events: "events", History: "history", Snapshots: "snapshots", Status: "status",
		Definitions: "definitions", Decisions: "decisions", Partitions: 4,
		HistoryRetention: 7 * 24 * time.Hour,
	}
}

// Specs are the topics to create, with the policies the engine relies on.
func (t Topics) Specs() []bus.TopicSpec {
	forever := time.Duration(-1)
	return []bus.TopicSpec{
		// Inputs are deleted once acknowledged; a day of retention helps
		// operators look at what came in.
		{Name: t.Events, Partitions: t.Partitions, RetentionTime: 24 * time.Hour, RetentionSizeMB: -1},
		{Name: t.History, Partitions: t.Partitions, RetentionTime: t.HistoryRetention, RetentionSizeMB: -1},
		{Name: t.Snapshots, Partitions: t.Partitions, Compacted: true, RetentionTime: forever, RetentionSizeMB: -1},
		{Name: t.Status, Compacted: true, RetentionTime: forever, RetentionSizeMB: -1},
		{Name: t.Definitions, Compacted: true, RetentionTime: forever, RetentionSizeMB: -1},
		{Name: t.Decisions},
	}
}
