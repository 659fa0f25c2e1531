package workflow

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// KindCall is a step that runs another workflow as a child process and
// waits for its outcome (docs/language.md#child-sagas).
const KindCall StepKind = "call"

// Call is what a call step starts.
type Call struct {
	Definition string
	Version    int // 0: the latest registered when the child starts
	Input      *Template
}

// EngineService is the reserved service of the commands the engine carries
// out itself instead of sending them to a job queue: the effects of call
// steps on their child processes.
const EngineService = "pulsaga.engine"

// Commands of EngineService. Their input is a ChildCommand.
const (
	// CmdStartChild starts the child (ChildCommand.Definition, Version,
	// Input) with the id ChildCommand.ProcessID and the parent reference;
	// when the child ends, its outcome comes back as the result of this
	// command: completed with the child's output, or failed with the
	// child's error (ErrTypeChild* when it has none of its own).
	CmdStartChild = "StartChild"
	// CmdCancelChild and CmdTerminateChild send cancel or terminate to the
	// child (the parent stopped waiting for it). Fire and forget: no result.
	CmdCancelChild    = "CancelChild"
	CmdTerminateChild = "TerminateChild"
	// CmdCompensateChild (a compensation command) re-opens a completed child
	// to run its own compensation; the result comes back when the child is
	// compensated (completed) or its compensation failed (failed).
	CmdCompensateChild = "CompensateChild"
	// CmdReleaseChild says the parent ended: a completed child it kept for
	// a compensation that will never come may now expire. No result.
	CmdReleaseChild = "ReleaseChild"
)

// Error types of call steps.
const (
	// ErrTypeCallDepth: the child would be deeper than MaxCallDepth.
	ErrTypeCallDepth = "CallDepthExceeded"
	// ErrTypeChildFailed, ErrTypeChildCompensated, ErrTypeChildTerminated:
	// the child ended so, without an error of its own to pass on.
	ErrTypeChildFailed      = "ChildFailed"
	ErrTypeChildCompensated = "ChildCompensated"
	ErrTypeChildTerminated  = "ChildTerminated"
	// ErrTypeUnknownDefinition: the called definition is not registered
	// when the child starts.
	ErrTypeUnknownDefinition = "UnknownDefinition"
)

// MaxCallDepth bounds the nesting of child processes: a root process has
// depth 0, its children 1, … A call that would start a child deeper than
// this fails (CallDepthExceeded, not retried).
const MaxCallDepth = 8

// ChildCommand is the input of an EngineService command.
type ChildCommand struct {
	// ProcessID is the child's id.
	ProcessID string `json:"process_id"`
	// Definition, Version, Input and Depth: what StartChild starts.
	Definition string          `json:"definition,omitempty"`
	Version    int             `json:"version,omitempty"`
	Input      json.RawMessage `json:"input,omitempty"`
	Depth      int             `json:"depth,omitempty"`
}

// ParentRef links a child process to the call that started it. The
// engine reports the child's outcome as the result of CommandID, sent to
// ReplyTo keyed by ProcessID.
type ParentRef struct {
	ProcessID string `json:"process_id"`
	CommandID string `json:"command_id"`
	ReplyTo   string `json:"reply_to,omitempty"`
	// Depth is the child's depth (1 for a child of a root process).
	Depth int `json:"depth"`
}

// ChildID is the id of the child started by attempt n of a call step (item
// -1 without for_each): "<parent>:<step>:<n>" or "<parent>:<step>.<item>:<n>".
// It is stable, so a command redelivered or a decision replayed starts the
// same child, and it has no '/', which process ids may not contain.
func ChildID(parent, step string, item, attempt int) string {
	var b strings.Builder
	b.WriteString(parent)
	b.WriteByte(':')
	b.WriteString(step)
	if item >= 0 {
		b.WriteByte('.')
		b.WriteString(strconv.Itoa(item))
	}
	b.WriteByte(':')
	b.WriteString(strconv.Itoa(attempt))
	return b.String()
}

// ChildOutcome is the result the engine reports to the parent when a
// child process ends with status st (and state s).
func ChildOutcome(s *State) (output json.RawMessage, e *ErrorInfo) {
	switch s.Status {
	case StatusCompleted:
		out := s.Output
		if len(out) == 0 {
			out = json.RawMessage("null")
		}
		return out, nil
	case StatusCompensated:
		e = &ErrorInfo{Type: ErrTypeChildCompensated, Message: fmt.Sprintf("child %s was compensated", s.ProcessID)}
	case StatusTerminated:
		e = &ErrorInfo{Type: ErrTypeChildTerminated, Message: fmt.Sprintf("child %s was terminated", s.ProcessID), Retryable: ptr(false)}
	default:
		e = &ErrorInfo{Type: ErrTypeChildFailed, Message: fmt.Sprintf("child %s %s", s.ProcessID, s.Status)}
	}
	if s.Failure != nil && s.Failure.Error != nil {
		// the child's own error, so non_retryable lists name its types
		c := *s.Failure.Error
		where := s.ProcessID
		if s.Failure.StepID != "" {
			where += " step " + s.Failure.StepID
		}
		c.Message = fmt.Sprintf("child %s (%s): %s", where, s.Status, c.Message)
		e = &c
	}
	return nil, e
}

// callInput is the input of the engine command of attempt n of a call
// run (or of its compensation).
func (d *decider) callInput(k, idx int, comp bool, n int) (json.RawMessage, error) {
	step := d.def.Steps[k]
	ss := d.s.Steps[k]
	item := itemIdx(step, idx)
	if comp {
		run := ss.Runs[idx]
		n := run.Attempt
		if run.Done > 0 {
			n = run.Done // a late success: that attempt's child did the work (attempts.go)
		}
		return json.Marshal(ChildCommand{ProcessID: ChildID(d.s.ProcessID, step.ID, item, n)})
	}
	depth := 1
	if d.s.Parent != nil {
		depth = d.s.Parent.Depth + 1
	}
	if depth > MaxCallDepth {
		return nil, &callDepthError{depth: depth}
	}
	var input json.RawMessage
	if step.Call.Input != nil {
		v, err := step.Call.Input.Eval(d.envFor(step.Call.Input, k, item))
		if err == nil {
			input, err = json.Marshal(v)
		}
		if err != nil {
			return nil, err
		}
	}
	return json.Marshal(ChildCommand{
		ProcessID: ChildID(d.s.ProcessID, step.ID, item, n), Definition: step.Call.Definition, Version: step.Call.Version,
		Input: input, Depth: depth,
	})
}

type callDepthError struct{ depth int }

func (e *callDepthError) Error() string {
	return fmt.Sprintf("the child would be at depth %d, deeper than %d", e.depth, MaxCallDepth)
}

// childCommand appends a fire-and-forget engine command about the child
// of attempt n of run idx of call step k.
func (d *decider) childCommand(k, idx, n int, command string) {
	step := d.def.Steps[k]
	item := itemIdx(step, idx)
	child := ChildID(d.s.ProcessID, step.ID, item, n)
	in, _ := json.Marshal(ChildCommand{ProcessID: child})
	id := commandID(d.s.ProcessID, step.ID, item, false, n) + "/" + strings.ToLower(command)
	d.cmds = append(d.cmds, Command{
		ID: id, ProcessID: d.s.ProcessID, StepID: step.ID, Attempt: n, Item: itemPtr(step, idx),
		Service: EngineService, Command: command, Input: in, IdempotencyKey: id,
	})
}

// liveChildren lists the call attempts whose child may still run: (step,
// run, attempt).
func (d *decider) liveChildren() [][3]int {
	var out [][3]int
	for k, step := range d.def.Steps {
		if step.Kind != KindCall {
			continue
		}
		for idx, r := range d.s.Steps[k].Runs {
			if r.Status == RunRunning && r.Attempt > 0 && r.Attempts[r.Attempt-1].Outcome == OutcomeInFlight {
				out = append(out, [3]int{k, idx, r.Attempt})
			}
		}
	}
	return out
}

// stopChildren cancels (the parent compensates) or terminates (it ended)
// the children the parent no longer waits for.
func (d *decider) stopChildren(kids [][3]int, command string) {
	for _, c := range kids {
		d.childCommand(c[0], c[1], c[2], command)
	}
}

// releaseChildren lets the completed children of a finished parent
// expire: no compensation will ask for them any more.
func (d *decider) releaseChildren() {
	for k, step := range d.def.Steps {
		if step.Kind != KindCall {
			continue
		}
		ss := d.s.Steps[k]
		for idx, r := range ss.Runs {
			if r.Status != RunCompleted || r.Attempt == 0 {
				continue
			}
			if idx < len(ss.Compensations) && ss.Compensations[idx] != nil && ss.Compensations[idx].Status == RunCompleted {
				continue // compensated: it ended on its own
			}
			d.childCommand(k, idx, r.Attempt, CmdReleaseChild)
		}
	}
}

// stopTimedOutChild cancels the child of an attempt the parent stopped
// waiting for (its timeout or the step's deadline).
func (d *decider) stopTimedOutChild(k, idx, n int, comp bool) {
	if comp || d.def.Steps[k].Kind != KindCall {
		return
	}
	d.childCommand(k, idx, n, CmdCancelChild)
}

// compensateCompleted handles EventCompensate: a parent compensates this
// (child) process. A completed process re-opens to run its own
// compensation; one whose compensation failed retries it.
func (d *decider) compensateCompleted(i int, ev *Event) {
	s := d.s
	switch s.Status {
	case StatusCompleted:
		s.Admin = d.admin(ev)
		s.Status = StatusCompensating
		s.EndedAt = time.Time{}
	case StatusCompensationFailed:
		d.adminRetry(i, &Event{Type: EventRetry, Actor: ev.Actor, Reason: ev.Reason})
	case StatusRunning, StatusPaused:
		s.Admin = d.admin(ev)
		d.startCompensating()
	default:
		d.ignore(i, ev, IgnoreNotApplicable, "cannot compensate a %s process", s.Status)
	}
}
