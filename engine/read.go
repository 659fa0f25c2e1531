package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/workflow"
)

// ErrUnknownProcess: no process has that id (or it has expired).
var ErrUnknownProcess = errors.New("unknown process")

// ProcessView is one process as an operator sees it.
type ProcessView struct {
	Status StatusRecord `json:"status"`
	// State is the state as of the last decision, rebuilt by replaying the
	// process's own records through workflow.Decide.
	State *workflow.State `json:"state,omitempty"`
	// Records is the whole event stream, in sequence order.
	Records []Record `json:"records"`
	// Pending are accepted events not yet folded into State.
	Pending []workflow.Event `json:"pending,omitempty"`
}

// ReadProcess reads one process's event stream — exactly its own history
// entries, located by row.HistoryIDs — and rebuilds its state by folding
// them as the orchestrator does (Decide is deterministic). It never scans
// other processes' data beyond the entries that sit between its own.
func ReadProcess(ctx context.Context, b bus.Bus, topics protocol.Topics, reg *Registry, row StatusRecord) (*ProcessView, error) {
	view := &ProcessView{Status: row}
	topic := topics.History
	if topics.Partitions > 0 {
		topic = b.Namespace().Partition(topics.History, row.Partition)
	}
	const maxSkip = 32 // reopen at the next id rather than read others' entries
	want := int64(1)   // the next record's sequence number
	for i := 0; i < len(row.HistoryIDs); {
		rd, err := b.Reader(ctx, bus.ReaderOptions{Topic: topic, StartID: row.HistoryIDs[i], StartInclusive: true})
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", row.ProcessID, err)
		}
		found := i
		for skipped := 0; skipped <= maxSkip && found < len(row.HistoryIDs); {
			more, err := rd.HasNext(ctx)
			if err != nil || !more {
				break
			}
			m, err := rd.Next(ctx)
			if err != nil {
				rd.Close()
				return nil, fmt.Errorf("read %s: %w", row.ProcessID, err)
			}
			e, ok := decodeHistory(m.Payload)
			if !ok || e.ProcessID != row.ProcessID || len(e.Records) == 0 || e.Records[0].Seq != want {
				skipped++
				continue
			}
			view.Records = append(view.Records, e.Records...)
			want = e.Records[len(e.Records)-1].Seq + 1
			found++
			skipped = 0
		}
		rd.Close()
		if found == i { // the entry at HistoryIDs[i] was not found
			return nil, fmt.Errorf("read %s: record %d is missing from %s (expired by retention?)", row.ProcessID, want, topic)
		}
		i = found
	}
	def, err := reg.Get(ctx, row.Definition, row.Version)
	if err != nil {
		return nil, err
	}
	view.State, view.Pending, err = Replay(def, view.Records)
	if err != nil {
		return nil, fmt.Errorf("replay %s: %w", row.ProcessID, err)
	}
	return view, nil
}

// Replay rebuilds a process's state from its records with the fold of the
// live path: each decision record runs Decide on the events up to its Upto
// with its recorded time.
func Replay(def *workflow.Definition, records []Record) (*workflow.State, []workflow.Event, error) {
	if len(records) == 0 {
		return nil, nil, nil
	}
	img := &image{pid: records[0].ProcessID, def: def}
	for _, r := range records {
		if err := img.fold(r, nil); err != nil {
			return nil, nil, err
		}
	}
	out := make([]workflow.Event, len(img.pending))
	for i, p := range img.pending {
		out[i] = p.Event
	}
	return img.state, out, nil
}

func decodeHistory(payload []byte) (*HistoryEntry, bool) {
	e, err := DecodeHistory(payload)
	return e, err == nil
}
