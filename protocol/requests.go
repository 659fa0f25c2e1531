package protocol

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/pulsaga/pulsaga/workflow"
)

// Envelope types between the orchestrator and remote deciders (the
// decisions topic and back).
const (
	TypeDecisionTask   = "decision.task"   // orchestrator → decisions
	TypeDecisionResult = "decision.result" // decider → the task's reply topic
)

// Kinds of the timers the orchestrator sets for itself (the others are
// workflow.TimerKind values).
const (
	TimerDecisionTimeout = "decision_timeout"
	TimerRetention       = "retention"
)

// ErrInvalid marks a message that can never be accepted as it is (test it
// with errors.Is): the start relay dead-letters it, a client refuses to send
// it.
var ErrInvalid = errors.New("protocol: invalid message")

// StartRequest starts a process; it is the payload of a TypeStart envelope
// on the events topic (keyed by ProcessID, envelope id "start:<process>") or
// on the starts topic. Starting an id that exists is idempotent.
type StartRequest struct {
	ProcessID  string          `json:"process_id"`
	Definition string          `json:"definition"`
	Version    int             `json:"version,omitempty"` // 0: the latest registered
	Input      json.RawMessage `json:"input,omitempty"`
	Actor      string          `json:"actor,omitempty"`
	// Parent, on the start of a child process, names the call step that
	// started it (package child; docs/language.md#child-sagas).
	Parent *workflow.ParentRef `json:"parent,omitempty"`
}

// StartEnvelopeID is the envelope id of a process's start request: one per
// process, so the engine recognises a resent start.
func StartEnvelopeID(processID string) string { return "start:" + processID }

// Validate checks the fields every start needs (errors wrap ErrInvalid).
func (r *StartRequest) Validate() error {
	switch {
	case r.ProcessID == "":
		return fmt.Errorf("%w: a start request needs a process_id", ErrInvalid)
	case workflow.CheckProcessID(r.ProcessID) != nil:
		return fmt.Errorf("%w: start request: %w", ErrInvalid, workflow.CheckProcessID(r.ProcessID))
	case r.Definition == "":
		return fmt.Errorf("%w: start request for %s needs a definition", ErrInvalid, r.ProcessID)
	case r.Version < 0:
		return fmt.Errorf("%w: start request for %s has version %d, want 0 (the latest) or more", ErrInvalid, r.ProcessID, r.Version)
	case len(r.Input) > 0 && !json.Valid(r.Input):
		return fmt.Errorf("%w: the input of start request %s is not JSON", ErrInvalid, r.ProcessID)
	}
	return nil
}

// Admin actions.
const (
	ActionRetry     = "retry"
	ActionSkip      = "skip"
	ActionCancel    = "cancel"
	ActionTerminate = "terminate"
	// ActionCompensate is sent by a parent process to a child it compensates
	// (package child): a completed child re-opens to run its compensation.
	ActionCompensate = "compensate"
)

// AdminRequest is an operator's action on a process; it is the payload of a
// TypeAdminAction envelope on the events topic, keyed by ProcessID.
type AdminRequest struct {
	ProcessID string `json:"process_id"`
	// Action is retry, skip, cancel or terminate.
	Action string          `json:"action"`
	StepID string          `json:"step_id,omitempty"`
	Output json.RawMessage `json:"output,omitempty"` // skip
	Actor  string          `json:"actor"`
	Reason string          `json:"reason,omitempty"`
}

// DecisionTask asks a decider for the next decision of one process. A task
// re-issued after a timeout is identical (same Now, same events), so every
// command it yields has the same id as the first time.
type DecisionTask struct {
	TaskID     string `json:"task_id"`
	ProcessID  string `json:"process_id"`
	Definition string `json:"definition"`
	Version    int    `json:"version"`
	// State is the process's state (nil before its first decision), or
	// StateZstd the same JSON zstd-compressed (a large state; decisions.go).
	State     *workflow.State  `json:"state,omitempty"`
	StateZstd []byte           `json:"state_zstd,omitempty"`
	Events    []workflow.Event `json:"events"`
	Now       time.Time        `json:"now"`
	ReplyTo   string           `json:"reply_to"`
	// AcceptZstd: the sender reads a compressed answer (DecisionZstd) even
	// when the task's own state is plain.
	AcceptZstd bool `json:"accept_zstd,omitempty"`
	// SplitState: the sender also reads an answer whose new state travels
	// compressed apart from its decision (DecisionResult.StateZstd), and
	// sends those same bytes back as the next task's StateZstd
	// (decisions.go).
	SplitState bool `json:"split_state,omitempty"`
	// StateApart (with SplitState): the sender takes the answer's new state
	// from its StateZstd alone, so the decision leaves it out when it
	// travels there — the state compressed once, not twice (an
	// orchestrator of session 16 or later; earlier ones read the
	// decision's own state, and do not set it).
	StateApart bool `json:"state_apart,omitempty"`
}

// Validate checks the fields a decider needs to answer (errors wrap
// ErrInvalid).
func (t *DecisionTask) Validate() error {
	if t.ReplyTo == "" || t.TaskID == "" || t.ProcessID == "" {
		return fmt.Errorf("%w: decision task needs task_id, process_id and reply_to", ErrInvalid)
	}
	return nil
}

// DecisionResult is a decider's answer.
type DecisionResult struct {
	TaskID    string             `json:"task_id"`
	ProcessID string             `json:"process_id"`
	Decision  *workflow.Decision `json:"decision,omitempty"`
	// DecisionZstd is the decision's JSON zstd-compressed, instead of
	// Decision, in the answer to a compact task (decisions.go).
	DecisionZstd []byte `json:"decision_zstd,omitempty"`
	// StateZstd is the new state's JSON zstd-compressed, apart from the
	// decision (whose State is then absent), in the answer to a task that
	// set SplitState (decisions.go). After Expand, Decision.State holds it
	// decoded and StateZstd still holds these bytes.
	StateZstd []byte `json:"state_zstd,omitempty"`
	// Error says why no decision could be made (the events are then
	// recorded as rejected).
	Error string `json:"error,omitempty"`
	// Now is the time the decision was made at: the task's Now or, when the
	// task waited in the queue, the decider's clock (never earlier than the
	// task's Now). Attempt timeouts and deadlines count from it, so a
	// command decided late is not born already timed out; the orchestrator
	// records it with the decision so a replay decides identically.
	Now     time.Time `json:"now,omitzero"`
	Decider string    `json:"decider,omitempty"`
}
