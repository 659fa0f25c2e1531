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

// ReadProcess reads one process's event stream — exactly its own records,
// located by row.HistoryIDs — and rebuilds its state by replaying the
// decisions recorded in it (Decide is deterministic). It never scans other
// processes' data beyond the records that sit between its own.
func ReadProcess(ctx context.Context, b bus.Bus, topics protocol.Topics, reg *Registry, row StatusRecord) (*ProcessView, error) {
	view := &ProcessView{Status: row}
	topic := topics.History
	if topics.Partitions > 0 {
		topic = b.Namespace().Partition(topics.History, row.Partition)
	}
	const maxSkip = 32 // reopen at the next id rather than read others' records
	want := int64(1)
	for i := 0; i < len(row.HistoryIDs) && want <= int64(len(row.HistoryIDs)); {
		rd, err := b.Reader(ctx, bus.ReaderOptions{Topic: topic, StartID: row.HistoryIDs[i], StartInclusive: true})
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", row.ProcessID, err)
		}
		skipped := 0
		for skipped <= maxSkip && want <= int64(len(row.HistoryIDs)) {
			more, err := rd.HasNext(ctx)
			if err != nil || !more {
				break
			}
			m, err := rd.Next(ctx)
			if err != nil {
				rd.Close()
				return nil, fmt.Errorf("read %s: %w", row.ProcessID, err)
			}
			rec, ok := decodeRecord(m.Payload)
			if !ok || rec.ProcessID != row.ProcessID || rec.Seq != want {
				skipped++
				continue
			}
			view.Records = append(view.Records, *rec)
			want++
			skipped = 0
		}
		rd.Close()
		if int(want-1) <= i { // the record at HistoryIDs[i] was not found
			return nil, fmt.Errorf("read %s: record %d is missing from %s (expired by retention?)", row.ProcessID, want, topic)
		}
		i = int(want - 1)
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

// Replay rebuilds a process's state from its records: each decision record
// folds the events up to its Upto with its Now, exactly as the decider did.
func Replay(def *workflow.Definition, records []Record) (*workflow.State, []workflow.Event, error) {
	var st *workflow.State
	type pe struct {
		seq int64
		ev  workflow.Event
	}
	var pending []pe
	for _, r := range records {
		switch r.Kind {
		case RecordEvent:
			if r.Event != nil {
				pending = append(pending, pe{r.Seq, *r.Event})
			}
		case RecordDecision, RecordRejected:
			var evs []workflow.Event
			keep := pending[:0]
			for _, p := range pending {
				if p.seq <= r.Upto {
					evs = append(evs, p.ev)
				} else {
					keep = append(keep, p)
				}
			}
			pending = keep
			if r.Kind == RecordRejected {
				continue
			}
			d, err := workflow.Decide(def, st, evs, r.Now)
			if err != nil {
				return nil, nil, fmt.Errorf("decision %s: %w", r.TaskID, err)
			}
			st = d.State
		}
	}
	out := make([]workflow.Event, len(pending))
	for i, p := range pending {
		out[i] = p.ev
	}
	return st, out, nil
}

func decodeRecord(payload []byte) (*Record, bool) {
	env, err := bus.DecodeEnvelope(payload)
	if err != nil || env.Type != TypeHistory {
		return nil, false
	}
	var r Record
	if env.DecodePayload(&r) != nil {
		return nil, false
	}
	return &r, true
}
