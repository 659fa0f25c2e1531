package workflow

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// FailurePolicy says what happens when a step fails for good.
type FailurePolicy string

// Failure policies. Continue is only valid on a step.
const (
	OnFailureCompensate FailurePolicy = "compensate"
	OnFailureFail       FailurePolicy = "fail"
	OnFailurePause      FailurePolicy = "pause"
	OnFailureContinue   FailurePolicy = "continue"
)

// StepKind is what a step does.
type StepKind string

// Step kinds.
const (
	KindTask  StepKind = "task"  // sends a command to a service
	KindSleep StepKind = "sleep" // waits a fixed duration
	KindUntil StepKind = "until" // waits until a point in time
	KindWait  StepKind = "wait"  // waits for a signal
)

// RetryPolicy governs how failed attempts of a command are retried.
type RetryPolicy struct {
	MaxAttempts        int           `json:"max_attempts"`
	InitialInterval    time.Duration `json:"initial_interval"`
	BackoffCoefficient float64       `json:"backoff_coefficient"`
	MaxInterval        time.Duration `json:"max_interval"`
	Jitter             float64       `json:"jitter"`
	NonRetryable       []string      `json:"non_retryable,omitempty"`
}

// DefaultRetry is the retry policy used when neither the workflow's
// defaults nor the step say otherwise.
var DefaultRetry = RetryPolicy{
	MaxAttempts:        3,
	InitialInterval:    time.Second,
	BackoffCoefficient: 2,
	MaxInterval:        time.Minute,
	Jitter:             0,
}

// IsNonRetryable reports whether an error type is listed as non-retryable.
func (p RetryPolicy) IsNonRetryable(errType string) bool {
	for _, t := range p.NonRetryable {
		if t == errType {
			return true
		}
	}
	return false
}

// Definition is a loaded, validated workflow. It is immutable after Load and
// safe for concurrent use by many Decide calls.
type Definition struct {
	Name        string
	Version     int
	Description string
	File        string

	// InputSchema is the compiled JSON Schema of the start input, or nil.
	InputSchema *jsonschema.Schema
	// InputSchemaJSON is the schema as written, in JSON.
	InputSchemaJSON json.RawMessage

	// Retry and Timeout are the workflow defaults (already merged with
	// DefaultRetry); each step's own values are resolved at load.
	Retry   RetryPolicy
	Timeout time.Duration
	// ScheduleTimeout and HeartbeatTimeout are the defaults of the progress
	// timeouts (0: none).
	ScheduleTimeout  time.Duration
	HeartbeatTimeout time.Duration

	OnFailure FailurePolicy
	// WorkflowTimeout bounds the whole process (0: none).
	WorkflowTimeout time.Duration

	Steps  []*Step
	Output *Template
	// Triggers start processes of this definition from Pulsar topics.
	Triggers []*Trigger

	index map[string]int
	// dependents are the steps that need each step directly (indexes, in
	// file order); topo is every step in an order where a step comes after
	// the steps it needs. Both order compensations (see graph.go).
	dependents [][]int
	topo       []int
}

// Step is one step of a workflow, with every default resolved.
type Step struct {
	ID          string
	Description string
	Kind        StepKind
	Pos         Position

	Service string
	Command string
	Input   *Template

	Needs []string

	Retry    RetryPolicy
	Timeout  time.Duration // per attempt, from its start (start-to-close), 0: none
	Deadline time.Duration // across all attempts, 0: none
	// ScheduleTimeout bounds the wait for a worker to start an attempt;
	// HeartbeatTimeout the time between a started attempt's heartbeats
	// (0: none).
	ScheduleTimeout  time.Duration
	HeartbeatTimeout time.Duration

	Compensate *Compensation

	Sleep time.Duration
	Until *Template
	Wait  *Wait
	// Call is what a call step starts (call.go).
	Call *Call

	When        *Template
	ForEach     *Template
	MaxParallel int // 0: unlimited

	// OnFailure is the step's policy, or the workflow's when the step has
	// none.
	OnFailure FailurePolicy

	index int
	needs []int
}

// Compensation undoes a completed step.
type Compensation struct {
	Service          string
	Command          string
	Input            *Template
	Retry            RetryPolicy
	Timeout          time.Duration
	ScheduleTimeout  time.Duration
	HeartbeatTimeout time.Duration
	Pos              Position
}

// Wait is a wait-for-signal step.
type Wait struct {
	Signal  string
	Timeout time.Duration // 0: forever
}

// Step returns the step with the given id.
func (d *Definition) Step(id string) (*Step, bool) {
	i, ok := d.index[id]
	if !ok {
		return nil, false
	}
	return d.Steps[i], true
}

// ValidateInput checks a start input against the input schema (if any).
func (d *Definition) ValidateInput(input json.RawMessage) error {
	if d.InputSchema == nil {
		return nil
	}
	if len(input) == 0 {
		input = json.RawMessage("null")
	}
	v, err := jsonschema.UnmarshalJSON(bytesReader(input))
	if err != nil {
		return fmt.Errorf("input is not JSON: %w", err)
	}
	if err := d.InputSchema.Validate(v); err != nil {
		return fmt.Errorf("input does not match the schema: %w", err)
	}
	return nil
}
