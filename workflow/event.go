package workflow

import (
	"encoding/json"
	"fmt"
	"time"
)

// EventVersion is the schema version of Event written by this code.
const EventVersion = 1

// EventType discriminates events.
type EventType string

// Event types. Admin actions are events too, so they are recorded in the
// process's stream with who did them and why.
const (
	EventStart     EventType = "start"     // start a process (input)
	EventResult    EventType = "result"    // a worker's result for a command
	EventStarted   EventType = "started"   // a worker started a command (command_id)
	EventHeartbeat EventType = "heartbeat" // a started command is still running (command_id, beat_at)
	EventTimer     EventType = "timer"     // a timer fired (timer_id)
	EventSignal    EventType = "signal"    // an external signal (signal, data)
	EventRetry     EventType = "retry"     // admin: retry a failed step / compensation
	EventSkip      EventType = "skip"      // admin: skip a step with an output
	EventCancel    EventType = "cancel"    // admin: cancel (compensate)
	EventTerminate EventType = "terminate" // admin: stop at once, no compensation
	// EventCompensate: the parent of this (child) process compensates it
	// (call.go); a completed process re-opens to run its compensation.
	EventCompensate EventType = "compensate"
)

// Event is anything that can change a process. One flat struct with a Type
// discriminator keeps the JSON simple for workers in any language.
type Event struct {
	V         int       `json:"v"`
	Type      EventType `json:"type"`
	ProcessID string    `json:"process_id,omitempty"`
	// Time is informational (when the event was produced); Decide uses its
	// now argument, never this field.
	Time time.Time `json:"time,omitzero"`

	// start
	Input json.RawMessage `json:"input,omitempty"`
	// Parent, on the start of a child process, names the call that
	// started it (call.go).
	Parent *ParentRef `json:"parent,omitempty"`

	// result: CommandID identifies the attempt; the other fields are
	// informational copies of the command's.
	CommandID    string          `json:"command_id,omitempty"`
	Attempt      int             `json:"attempt,omitempty"`
	Item         *int            `json:"item,omitempty"`
	Compensation bool            `json:"compensation,omitempty"`
	Output       json.RawMessage `json:"output,omitempty"` // result output; skip: the step's output
	Error        *ErrorInfo      `json:"error,omitempty"`  // result failed

	// heartbeat: BeatAt is when the engine received the newest heartbeat
	// of the attempt (heartbeats are folded in one event, see
	// docs/protocol.md).
	BeatAt time.Time `json:"beat_at,omitzero"`

	// timer: FiredAt is when the timer relay handed the timer over (zero:
	// on time); a worker-progress timer that fired more than
	// LateTimerTolerance after its fire_at is re-armed, not acted on.
	TimerID string    `json:"timer_id,omitempty"`
	FiredAt time.Time `json:"fired_at,omitzero"`

	// signal: Name and Data; StepID optionally targets one wait step.
	Signal string          `json:"signal,omitempty"`
	Data   json.RawMessage `json:"data,omitempty"`

	// admin actions (retry, skip, cancel, terminate) and signals: StepID
	// targets a step (retry: empty means every failed step).
	StepID string `json:"step_id,omitempty"`
	Actor  string `json:"actor,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// ErrorInfo describes a failure.
type ErrorInfo struct {
	Type    string `json:"type"`
	Message string `json:"message,omitempty"`
	// Retryable false makes the error final whatever the retry policy says.
	// Absent means retryable.
	Retryable *bool `json:"retryable,omitempty"`
}

// IsRetryable reports whether the worker allowed a retry.
func (e *ErrorInfo) IsRetryable() bool { return e == nil || e.Retryable == nil || *e.Retryable }

// Error types produced by the engine itself.
const (
	ErrTypeTimeout         = "Timeout"          // an attempt timed out (start-to-close)
	ErrTypeScheduleTimeout = "ScheduleTimeout"  // no worker started the attempt in time
	ErrTypeHeartbeat       = "HeartbeatTimeout" // a started attempt stopped heartbeating
	ErrTypeDeadline        = "DeadlineExceeded" // a step's deadline passed
	ErrTypeSignalTimeout   = "SignalTimeout"    // a wait step timed out
	ErrTypeWorkflowTimeout = "WorkflowTimeout"  // the workflow timeout passed
	ErrTypeExpression      = "ExpressionError"  // an expression failed at run time
	ErrTypeInvalidInput    = "InvalidInput"     // the start input does not match the schema
	ErrTypeUnknown         = "Error"            // a failed result without an error
)

var knownEvents = map[EventType]bool{
	EventStart: true, EventResult: true, EventStarted: true, EventHeartbeat: true, EventTimer: true, EventSignal: true,
	EventRetry: true, EventSkip: true, EventCancel: true, EventTerminate: true, EventCompensate: true,
}

// Validate checks that an event is well-formed (not that it applies).
func (e *Event) Validate() error {
	if e.V < 0 || e.V > EventVersion {
		return fmt.Errorf("%w: event v%d (this code reads up to v%d)", ErrUnsupportedVersion, e.V, EventVersion)
	}
	if !knownEvents[e.Type] {
		return fmt.Errorf("%w: unknown type %q", ErrInvalidEvent, e.Type)
	}
	switch e.Type {
	case EventStart:
		if e.ProcessID == "" {
			return fmt.Errorf("%w: start without process_id", ErrInvalidEvent)
		}
		if err := CheckProcessID(e.ProcessID); err != nil {
			return fmt.Errorf("%w: start: %w", ErrInvalidEvent, err)
		}
		if len(e.Input) > 0 && !json.Valid(e.Input) {
			return fmt.Errorf("%w: start input is not JSON", ErrInvalidEvent)
		}
	case EventResult:
		if e.CommandID == "" {
			return fmt.Errorf("%w: result without command_id", ErrInvalidEvent)
		}
		if len(e.Output) > 0 && !json.Valid(e.Output) {
			return fmt.Errorf("%w: result output is not JSON", ErrInvalidEvent)
		}
	case EventStarted, EventHeartbeat:
		if e.CommandID == "" {
			return fmt.Errorf("%w: %s without command_id", ErrInvalidEvent, e.Type)
		}
	case EventTimer:
		if e.TimerID == "" {
			return fmt.Errorf("%w: timer without timer_id", ErrInvalidEvent)
		}
	case EventSignal:
		if e.Signal == "" {
			return fmt.Errorf("%w: signal without a name", ErrInvalidEvent)
		}
		if len(e.Data) > 0 && !json.Valid(e.Data) {
			return fmt.Errorf("%w: signal data is not JSON", ErrInvalidEvent)
		}
	case EventSkip:
		if e.StepID == "" {
			return fmt.Errorf("%w: skip without step_id", ErrInvalidEvent)
		}
		if len(e.Output) > 0 && !json.Valid(e.Output) {
			return fmt.Errorf("%w: skip output is not JSON", ErrInvalidEvent)
		}
	}
	return nil
}

// IgnoreReason says why an event changed nothing.
type IgnoreReason string

// Reasons for ignoring an event.
const (
	IgnoreNotStarted      IgnoreReason = "not_started"       // the process has not started
	IgnoreAlreadyStarted  IgnoreReason = "already_started"   // a second start with the same id
	IgnoreTerminal        IgnoreReason = "terminal"          // the process has ended
	IgnoreUnknownCommand  IgnoreReason = "unknown_command"   // no such command was ever sent
	IgnoreDuplicateResult IgnoreReason = "duplicate_result"  // this attempt (or its run) already has this result
	IgnoreAttemptSettled  IgnoreReason = "attempt_settled"   // started/heartbeat of an attempt that has a result or timed out
	IgnoreStaleAttempt    IgnoreReason = "stale_attempt"     // the attempt was abandoned (deadline, ...)
	IgnoreAfterTimeout    IgnoreReason = "after_timeout"     // the attempt had timed out
	IgnoreTimerNotPending IgnoreReason = "timer_not_pending" // cancelled, superseded or already fired
	IgnoreNoWaitingStep   IgnoreReason = "no_waiting_step"   // a signal nobody waits for
	IgnoreNotApplicable   IgnoreReason = "not_applicable"    // an admin action that does not apply now
)

// Ignored records an event that changed nothing, and why.
type Ignored struct {
	Index  int          `json:"index"` // position in the batch
	Type   EventType    `json:"type"`
	Reason IgnoreReason `json:"reason"`
	Detail string       `json:"detail"`
}
