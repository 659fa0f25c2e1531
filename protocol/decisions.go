package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/pulsaga/pulsaga/internal/jsonfast"
	"github.com/pulsaga/pulsaga/workflow"
)

// Compact decision tasks and results (remote decider mode).
//
// A task carries a process's whole state and a result its whole new
// state, twice per decision, as JSON that repeats its keys: the largest
// messages the engine writes. Above CompactAbove bytes of JSON, a task
// carries its state, and a result its decision, zstd-compressed instead
// (StateZstd, DecisionZstd: base64 in the envelope's JSON), typically a
// fifth of the size. A decider answers in the form the task came in: a
// task with StateZstd (an orchestrator that reads compressed answers) gets
// a compressed answer when that is smaller, a plain task a plain answer,
// so deciders are upgraded before orchestrators.
//
// Split state. The orchestrator encoded every task's state and decoded
// every answer's, the decider the same the other way round: a third of the
// remote mode's CPU (session 11's profile), for a state that had just
// crossed the wire the other way. An answer to a task with SplitState
// carries its new state compressed on its own as well
// (DecisionResult.StateZstd), beside the whole decision; the orchestrator
// keeps those bytes with the state and sends them, unchanged, as the
// process's next task's StateZstd (UseState) and in its snapshot; a
// decider that answered the previous task keeps the state it decoded or
// made with those bytes, and takes it when the next task's bytes are the
// same (ExpandFrom) instead of decoding them again. The bytes are the
// state's JSON compressed, as everywhere else: a task whose state was
// encoded afresh reads the same. The decision keeps its state too (the
// state's JSON is encoded once and spliced into it): an orchestrator of an
// earlier version that takes over a partition with such a task
// outstanding ignores state_zstd and applies the decision as before —
// unless the task says StateApart (an orchestrator that reads the state
// from state_zstd alone): then the decision leaves the state out, and it is
// compressed once instead of twice.

// CompactAbove is the size of a state's (or a decision's) JSON above which
// it travels zstd-compressed.
const CompactAbove = 512

// maxDecompressed bounds what a compressed state or decision may expand
// to (a corrupt or hostile payload cannot make a reader allocate more).
const maxDecompressed = 64 << 20

var (
	zenc = sync.OnceValue(func() *zstd.Encoder {
		e, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1),
			zstd.WithLowerEncoderMem(true), zstd.WithWindowSize(1<<17))
		if err != nil {
			panic(fmt.Sprintf("protocol: zstd encoder: %v", err))
		}
		return e
	})
	zdec = sync.OnceValue(func() *zstd.Decoder {
		d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(maxDecompressed), zstd.WithDecoderLowmem(true))
		if err != nil {
			panic(fmt.Sprintf("protocol: zstd decoder: %v", err))
		}
		return d
	})
)

// compact returns v's JSON compressed when it is larger than CompactAbove
// and compression makes it smaller; nil: v is best sent as it is.
func compact(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return compactJSON(b), nil
}

// compactJSON returns b compressed when it is larger than CompactAbove and
// compression makes it smaller; nil: b is best sent as it is.
func compactJSON(b []byte) []byte {
	if len(b) <= CompactAbove {
		return nil
	}
	// (base64 in the envelope: worth it below 3/4 of the JSON)
	if c := zenc().EncodeAll(b, make([]byte, 0, len(b)/3)); len(c) < len(b)*3/4 {
		return c
	}
	return nil
}

func expand(z []byte, v any, what string) error {
	b, err := zdec().DecodeAll(z, nil)
	if err != nil {
		return fmt.Errorf("%w: %s: zstd: %v", ErrInvalid, what, err)
	}
	if err := jsonfast.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrInvalid, what, err)
	}
	return nil
}

// SetState puts st in the task, compressed when large (the orchestrator's
// side).
func (t *DecisionTask) SetState(st *workflow.State) error {
	t.State, t.StateZstd = nil, nil
	if st == nil {
		return nil
	}
	z, err := compact(st)
	if err != nil {
		return fmt.Errorf("protocol: decision task %s: state: %w", t.TaskID, err)
	}
	if z == nil {
		t.State = st
	}
	t.StateZstd = z
	return nil
}

// UseState puts z in the task as its state: the compressed JSON of the
// process's state, kept from the answer that made it (or from its
// snapshot), sent without encoding the state again.
func (t *DecisionTask) UseState(z []byte) {
	t.State, t.StateZstd = nil, z
}

// Compact says whether the task came in the compact form: its sender reads
// compressed answers.
func (t *DecisionTask) Compact() bool { return len(t.StateZstd) > 0 || t.AcceptZstd }

// Expand decodes a compressed state into State (the decider's side); an
// error (wrapping ErrInvalid) means the task can never be decided.
func (t *DecisionTask) Expand() error {
	if len(t.StateZstd) == 0 {
		return nil
	}
	if t.State != nil {
		return fmt.Errorf("%w: decision task %s has both state and state_zstd", ErrInvalid, t.TaskID)
	}
	st := new(workflow.State)
	if err := expand(t.StateZstd, st, "decision task "+t.TaskID+": state_zstd"); err != nil {
		return err
	}
	// (a sender of compressed states reads compressed answers)
	t.State, t.StateZstd, t.AcceptZstd = st, nil, true
	return nil
}

// ExpandFrom takes st as the task's state, instead of decoding it, when
// the task's StateZstd is z: st was decoded from z, or made with it, by
// this decider (its answer to the process's previous task). It reports
// whether it did; false: call Expand.
func (t *DecisionTask) ExpandFrom(z []byte, st *workflow.State) bool {
	if st == nil || t.State != nil || len(z) == 0 || !bytes.Equal(t.StateZstd, z) {
		return false
	}
	t.State, t.StateZstd, t.AcceptZstd = st, nil, true
	return true
}

// SetDecision puts d in the result: compressed when compressed is true
// (the task was compact) and d is large, as it is otherwise; with split
// (the task's SplitState) too, its state on its own in StateZstd when
// large.
// With apart (the task's StateApart) the decision leaves out a state that
// travels in StateZstd. On an error the result holds no decision.
func (r *DecisionResult) SetDecision(d *workflow.Decision, compressed, split, apart bool) error {
	r.Decision, r.DecisionZstd, r.StateZstd = d, nil, nil
	if d == nil || !compressed {
		return nil
	}
	b, zs, err := decisionJSON(d, split, apart)
	if err != nil {
		r.Decision = nil
		return fmt.Errorf("protocol: decision result %s: %w", r.TaskID, err)
	}
	r.StateZstd = zs
	if z := compactJSON(b); z != nil {
		r.Decision, r.DecisionZstd = nil, z
	} else if apart && zs != nil && d.State != nil {
		rest := *d // (b left the state out: so does the plain decision)
		rest.State = nil
		r.Decision = &rest
	}
	return nil
}

// decisionJSON is d's JSON and, with split, its state's JSON compressed
// when large (nil otherwise): the state is encoded once, and its JSON
// spliced into the decision's — or, with apart and the state compressed,
// left out of it (Expand takes it from the compressed bytes).
func decisionJSON(d *workflow.Decision, split, apart bool) ([]byte, []byte, error) {
	if !split || d.State == nil {
		b, err := json.Marshal(d)
		return b, nil, err
	}
	sj, err := json.Marshal(d.State)
	if err != nil {
		return nil, nil, fmt.Errorf("state: %w", err)
	}
	rest := *d
	rest.State = nil
	b, err := json.Marshal(&rest)
	if err != nil {
		return nil, nil, err
	}
	zs := compactJSON(sj)
	if apart && zs != nil {
		return b, zs, nil
	}
	// (State is Decision's first field and has no omitempty)
	const head = `{"state":null`
	if !bytes.HasPrefix(b, []byte(head)) {
		return nil, nil, fmt.Errorf("a decision's JSON starts %.20q, not %q", b, head)
	}
	out := make([]byte, 0, len(b)-len("null")+len(sj))
	out = append(append(append(out, `{"state":`...), sj...), b[len(head):]...)
	return out, zs, nil
}

// Expand decodes a compressed decision into Decision (the orchestrator's
// side). StateZstd, when present, is kept: the bytes of Decision.State
// (decoded into it only when the decision came without its state). An
// error (wrapping ErrInvalid) means the result can never be applied.
// Expanding an expanded result changes nothing.
func (r *DecisionResult) Expand() error {
	if len(r.DecisionZstd) > 0 {
		if r.Decision != nil {
			return fmt.Errorf("%w: decision result %s has both decision and decision_zstd", ErrInvalid, r.TaskID)
		}
		d := new(workflow.Decision)
		if err := expand(r.DecisionZstd, d, "decision result "+r.TaskID+": decision_zstd"); err != nil {
			return err
		}
		r.Decision, r.DecisionZstd = d, nil
	}
	if len(r.StateZstd) == 0 {
		return nil
	}
	switch {
	case r.Decision == nil:
		return fmt.Errorf("%w: decision result %s has a state_zstd but no decision", ErrInvalid, r.TaskID)
	case r.Decision.State != nil:
		return nil // (the decision's own state; StateZstd holds its bytes)
	}
	st := new(workflow.State)
	if err := expand(r.StateZstd, st, "decision result "+r.TaskID+": state_zstd"); err != nil {
		return err
	}
	r.Decision.State = st
	return nil
}
