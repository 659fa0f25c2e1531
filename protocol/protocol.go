// Package protocol defines the messages that cross pulsaga's topics: the
// commands the engine puts on a service's job queue, the results a worker
// sends back, fired timers, signals, start requests and admin actions. Every
// message is a bus.Envelope (JSON) whose payload is one of the types here;
// docs/protocol.md and docs/schemas/*.schema.json describe them for workers
// written in any language with a plain Pulsar client.
package protocol

import (
	"encoding/json"
	"fmt"
	"time"
)

// Envelope types.
const (
	TypeCommand     = "command"      // engine → worker, on jobs.<service>
	TypeResult      = "result"       // worker → engine, on the command's reply topic
	TypeStarted     = "started"      // worker → engine, on the reply topic: a command started (progress.go)
	TypeHeartbeat   = "heartbeat"    // worker → engine, on the reply topic: a started command is alive
	TypeTimer       = "timer"        // engine → timers topic (delayed)
	TypeTimerFired  = "timer.fired"  // timer relay → events
	TypeSignal      = "signal"       // anyone → events
	TypeStart       = "start"        // anyone → events (or the start topic)
	TypeAdminAction = "admin.action" // admin → events
)

// Command asks a worker to run one attempt of one step (or of its
// compensation). Delivery is at least once: a worker may see the same
// command twice (same CommandID), and every attempt of a step carries the
// same IdempotencyKey: the service must not do the work twice for one key.
type Command struct {
	// CommandID is stable for one attempt: a redelivery carries the same id.
	CommandID string `json:"command_id"`
	ProcessID string `json:"process_id"`
	// Definition and Version name the saga definition the process runs.
	Definition string `json:"definition,omitempty"`
	Version    int    `json:"version,omitempty"`
	// Step is the step id; Item is the for_each item index, if any.
	Step string `json:"step"`
	Item *int   `json:"item,omitempty"`
	// Attempt counts from 1.
	Attempt int `json:"attempt"`
	// Service is the job queue; Command the operation to run.
	Service string `json:"service"`
	Command string `json:"command"`
	// Compensation is true when this undoes a completed step.
	Compensation bool `json:"compensation,omitempty"`
	// Input is the evaluated step input.
	Input json.RawMessage `json:"input,omitempty"`
	// IdempotencyKey is stable across the attempts of a step (and for_each
	// item): "<process>/<step>[<item>]", with "/compensate" appended for
	// its compensation. Pass it to the service: a second command with a
	// key it has seen must not do the work again, only answer as the first.
	IdempotencyKey string `json:"idempotency_key"`
	// Compensates is, on a compensation, the idempotency key of the work it
	// undoes. OutcomeUnknown is true when the engine never saw that work's
	// result (an attempt timed out): it may never have happened, and the
	// compensation must then succeed doing nothing.
	Compensates    string `json:"compensates,omitempty"`
	OutcomeUnknown bool   `json:"outcome_unknown,omitempty"`
	// TimeoutMS is the attempt's start-to-close timeout in milliseconds (0:
	// none): the engine times the attempt out that long after a worker
	// reported it started (TypeStarted).
	TimeoutMS int64 `json:"timeout_ms,omitempty"`
	// ScheduleTimeoutMS (0: none) is how long the engine waits for a worker
	// to start the attempt before the step fails for good: report started
	// at once for such commands.
	ScheduleTimeoutMS int64 `json:"schedule_timeout_ms,omitempty"`
	// HeartbeatTimeoutMS (0: none) is the longest silence the engine allows
	// between heartbeats of a started attempt (TypeHeartbeat).
	HeartbeatTimeoutMS int64 `json:"heartbeat_timeout_ms,omitempty"`
	// Deadline is the step's deadline across all its attempts (zero: none):
	// the engine stops waiting then; work past it is wasted.
	Deadline time.Time `json:"deadline,omitzero"`
	// ReplyTo is the topic the result goes to, keyed by ProcessID.
	ReplyTo string `json:"reply_to"`
}

// Result status values.
const (
	StatusCompleted = "completed"
	StatusFailed    = "failed"
)

// Error describes a failed attempt.
type Error struct {
	// Type classifies the error (e.g. "NoSeats"); retry policies name the
	// types that are not worth retrying.
	Type string `json:"type"`
	// Message is for people.
	Message string `json:"message"`
	// Retryable false means: do not retry, whatever the policy says.
	Retryable bool `json:"retryable"`
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Type, e.Message) }

// Result is a worker's answer to a Command. It echoes the command's
// identifying fields so the engine can match it to the attempt.
type Result struct {
	CommandID    string          `json:"command_id"`
	ProcessID    string          `json:"process_id"`
	Step         string          `json:"step"`
	Item         *int            `json:"item,omitempty"`
	Attempt      int             `json:"attempt"`
	Compensation bool            `json:"compensation,omitempty"`
	Status       string          `json:"status"`
	Output       json.RawMessage `json:"output,omitempty"`
	Error        *Error          `json:"error,omitempty"`
	// Worker names the worker instance, for operators.
	Worker string `json:"worker,omitempty"`
	// StartedAt and FinishedAt time the attempt on the worker.
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
}

// ResultFor starts a Result answering c.
func ResultFor(c *Command) *Result {
	return &Result{
		CommandID: c.CommandID, ProcessID: c.ProcessID, Step: c.Step, Item: c.Item,
		Attempt: c.Attempt, Compensation: c.Compensation,
	}
}

// Validate checks the fields a worker needs.
func (c *Command) Validate() error {
	switch {
	case c.CommandID == "":
		return fmt.Errorf("command has no command_id")
	case c.ProcessID == "":
		return fmt.Errorf("command %s has no process_id", c.CommandID)
	case c.Command == "":
		return fmt.Errorf("command %s has no command name", c.CommandID)
	case c.ReplyTo == "":
		return fmt.Errorf("command %s has no reply_to topic", c.CommandID)
	case c.Attempt < 1:
		return fmt.Errorf("command %s has attempt %d, attempts count from 1", c.CommandID, c.Attempt)
	}
	return nil
}

// Validate checks a result is well formed.
func (r *Result) Validate() error {
	switch {
	case r.CommandID == "" || r.ProcessID == "" || r.Step == "":
		return fmt.Errorf("result needs command_id, process_id and step")
	case r.Attempt < 1:
		return fmt.Errorf("result %s has attempt %d, attempts count from 1", r.CommandID, r.Attempt)
	case r.Status == StatusCompleted:
		return nil
	case r.Status == StatusFailed:
		if r.Error == nil || r.Error.Type == "" {
			return fmt.Errorf("failed result %s needs an error with a type", r.CommandID)
		}
		return nil
	}
	return fmt.Errorf("result %s has status %q, want completed or failed", r.CommandID, r.Status)
}

// Timer is a wait: it is sent to the timers topic delayed until FireAt and
// relayed to Target when it fires. A timer that is no longer pending when
// it fires (cancelled, superseded, fired already) is ignored by its ID.
type Timer struct {
	// TimerID is stable; the process decides whether it is still pending.
	TimerID   string `json:"timer_id"`
	ProcessID string `json:"process_id"`
	// Kind says what the wait is for (attempt_timeout, sleep, ...).
	Kind string `json:"kind"`
	// Step is the step the timer belongs to, if any.
	Step string `json:"step,omitempty"`
	// FireAt is when the timer is due.
	FireAt time.Time `json:"fire_at"`
	// Target is the topic the fired timer goes to, keyed by ProcessID.
	Target string `json:"target"`
	// Hops counts re-arms of a timer longer than the broker's delay limit.
	Hops int `json:"hops,omitempty"`
}

// Validate checks the fields a timer needs to be relayed.
func (t *Timer) Validate() error {
	if t.TimerID == "" || t.ProcessID == "" || t.Target == "" || t.FireAt.IsZero() {
		return fmt.Errorf("%w: timer needs timer_id, process_id, target and fire_at", ErrInvalid)
	}
	return nil
}

// TimerFired is a timer delivered back to the engine.
type TimerFired struct {
	Timer
	// FiredAt is when the relay saw it; FiredAt-FireAt is its lateness.
	FiredAt time.Time `json:"fired_at"`
}

// Signal delivers external data to a process waiting for it.
type Signal struct {
	ProcessID string          `json:"process_id"`
	Name      string          `json:"name"`
	Data      json.RawMessage `json:"data,omitempty"`
	// SignalID deduplicates retried sends.
	SignalID string `json:"signal_id"`
	// Actor and Reason say who sent it and why (recorded in the stream).
	Actor  string `json:"actor,omitempty"`
	Reason string `json:"reason,omitempty"`
}
