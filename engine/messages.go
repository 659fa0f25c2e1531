package engine

import (
	"fmt"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/workflow"
)

// Envelope types internal to the engine (the worker-facing ones and the
// decision task and result are in package protocol).
const (
	TypeHistory    = "history"
	TypeSnapshot   = "snapshot"
	TypeCheckpoint = "checkpoint"
	TypeStatus     = "status"
	TypeDefinition = "definition"
)

// Record kinds in a process's event stream.
const (
	RecordEvent    = "event"    // an accepted input
	RecordDecision = "decision" // a decision applied
	RecordRejected = "rejected" // inputs a decider could not fold
	// RecordFailed: the engine failed the process instead of applying a
	// decision it could not carry out (a command or the state above the
	// broker's message size); Error says why.
	RecordFailed = "failed"
)

// Record is one entry of a process's event stream, with a dense sequence
// number (1, 2, 3, ...).
type Record struct {
	ProcessID string    `json:"process_id"`
	Seq       int64     `json:"seq"`
	Kind      string    `json:"kind"`
	At        time.Time `json:"at"`
	// event
	Event      *workflow.Event `json:"event,omitempty"`
	EnvelopeID string          `json:"envelope_id,omitempty"`
	// Definition and Version: on the start record, the definition the
	// process runs (a replay that finds no snapshot starts from it).
	Definition string `json:"definition,omitempty"`
	Version    int    `json:"version,omitempty"`
	// decision
	TaskID   string             `json:"task_id,omitempty"`
	Upto     int64              `json:"upto,omitempty"`
	Now      time.Time          `json:"now,omitzero"`
	Status   workflow.Status    `json:"status,omitempty"`
	Commands []string           `json:"commands,omitempty"`
	Timers   []string           `json:"timers,omitempty"`
	Ignored  []workflow.Ignored `json:"ignored,omitempty"`
	Error    string             `json:"error,omitempty"`
	// Wake are the fire times of the process's physical timers pending
	// after this decision (at most one per process, see docs/architecture.md).
	Wake []time.Time `json:"wake,omitempty"`
}

// HistoryEntry is one message of the history topic: the records one batch
// appended to one process's stream, in order.
type HistoryEntry struct {
	ProcessID string   `json:"process_id"`
	Records   []Record `json:"records"`
}

// CheckpointKey is the key of a partition's checkpoint on the snapshots
// topic (process ids cannot start with '~').
const CheckpointKey = "~checkpoint"

// FenceKey is the key of a partition's fence messages on the snapshots
// topic: written by a batch that acknowledges inputs of the partition, or
// touches its processes, without writing its streams otherwise, because a
// batch must write through the partition's term (the fencing producers,
// see ownership.go) so that it fails as a whole if another instance took
// the partition over meanwhile. Its payload is empty (a tombstone: the
// compacted view keeps nothing of it); loading skips it.
const FenceKey = "~fence"

// Checkpoint says where the replay of a history partition starts: every
// record before Start is covered by a snapshot (or belongs to a process
// that expired). It is written on the snapshots topic, in the transaction
// of the snapshots that let it move on.
type Checkpoint struct {
	Partition int `json:"partition"`
	// Start is the first history message to replay (nil: the earliest);
	// with After, the replay starts after it.
	Start bus.MessageID `json:"start,omitempty"`
	After bool          `json:"after,omitempty"`
}

// Outstanding is the decision in flight.
type Outstanding struct {
	TaskID   string    `json:"task_id"`
	Upto     int64     `json:"upto"`
	Now      time.Time `json:"now"`
	Issued   int       `json:"issued"`
	IssuedAt time.Time `json:"issued_at"`
}

// PendingEvent is an accepted event not yet folded into the state.
type PendingEvent struct {
	Seq   int64          `json:"seq"`
	Event workflow.Event `json:"event"`
}

// Snapshot is a process's memory image as stored on the snapshots topic,
// written in the same transaction as the records it reflects.
type Snapshot struct {
	ProcessID   string          `json:"process_id"`
	Definition  string          `json:"definition"`
	Version     int             `json:"version"`
	State       *workflow.State `json:"state,omitempty"`
	Seq         int64           `json:"seq"`
	Pending     []PendingEvent  `json:"pending,omitempty"`
	Outstanding *Outstanding    `json:"outstanding,omitempty"`
	// Seen holds the envelope ids of recent signals and admin actions, to
	// drop duplicates.
	Seen []string `json:"seen,omitempty"`
	// Armed are the fire times of the physical timers still to come.
	Armed []time.Time `json:"armed,omitempty"`
	// HistoryIDs are the positions of this process's history entries (one
	// per batch that appended records) on its history partition, so reading
	// one process costs its own size.
	HistoryIDs []bus.MessageID `json:"history_ids,omitempty"`
	// Partition is the history partition holding the records.
	Partition int       `json:"partition"`
	CreatedAt time.Time `json:"created_at"`
	// StateZstd is State's JSON zstd-compressed, when known (image.stateZ):
	// encodeSnapshot writes these bytes instead of encoding State, and
	// DecodeSnapshot sets them when the snapshot held its state compressed.
	StateZstd []byte `json:"-"`
}

// StatusRecord is a process's row in the admin table (the status topic).
type StatusRecord struct {
	ProcessID  string            `json:"process_id"`
	Definition string            `json:"definition"`
	Version    int               `json:"version"`
	Status     workflow.Status   `json:"status"`
	Steps      map[string]string `json:"steps,omitempty"`
	LastError  string            `json:"last_error,omitempty"`
	Seq        int64             `json:"seq"`
	StartedAt  time.Time         `json:"started_at,omitzero"`
	UpdatedAt  time.Time         `json:"updated_at,omitzero"`
	EndedAt    time.Time         `json:"ended_at,omitzero"`
	// Partition and HistoryIDs locate the process's records on the history
	// topic, so reading one process costs its own size (ReadProcess).
	Partition  int             `json:"partition"`
	HistoryIDs []bus.MessageID `json:"history_ids,omitempty"`
}

// DefinitionRecord is a registered definition.
type DefinitionRecord struct {
	Name         string    `json:"name"`
	Version      int       `json:"version"`
	File         string    `json:"file"`
	Source       string    `json:"source"`
	RegisteredAt time.Time `json:"registered_at"`
}

// DefinitionKey is the key of a definition on the definitions topic.
func DefinitionKey(name string, version int) string { return fmt.Sprintf("%s@%d", name, version) }

func encode(typ, id, pid string, at time.Time, payload any) ([]byte, error) {
	return bus.EncodeEnvelope(bus.Envelope{Type: typ, ID: id, ProcessID: pid, Time: at}, payload)
}
