package workflow

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Limits. Every one is listed, with why, in docs/language.md#limits, and
// every error that enforces one names it by its key (max_steps, ...).
//
// They keep each message the engine writes for a process within what
// Pulsar accepts (bus.MaxPayloadBytes, 5 MiB less headers): a snapshot
// holds a state and the events not yet decided, a decision task a state
// and its events, a decision result a state and a decision's commands.
const (
	// MaxSteps bounds the steps of one definition (max_steps).
	MaxSteps = 10000
	// MaxDefinitionBytes bounds the YAML source of one definition
	// (max_definition_bytes); the definitions topic stores it in one
	// message.
	MaxDefinitionBytes = 4 << 20
	// MaxForEachItems bounds the items of one for_each step
	// (max_for_each_items): a literal list is refused at validation, a
	// longer list from an expression fails the step (LimitExceeded).
	MaxForEachItems = 1000
	// MaxPayloadBytes bounds each piece of data that enters or leaves a
	// process (max_payload_bytes): a start input, a command's input, a
	// result's output, a signal's data, a skip's output.
	MaxPayloadBytes = 256 << 10
	// MaxStateBytes bounds a process's state (max_state_bytes), as
	// estimated by StateSize.
	MaxStateBytes = 2 << 20
	// MaxDecisionBytes bounds the commands of one decision
	// (max_decision_bytes), as estimated by CommandSize: commands beyond it
	// wait for the next decision, as they would under max_parallel.
	MaxDecisionBytes = 1 << 20
	// MaxPendingBytes bounds the events the engine holds for a process
	// between two decisions (max_pending_bytes); the engine refuses more.
	MaxPendingBytes = 1 << 20
	// MaxErrorMessageBytes bounds an error message kept in the state; a
	// longer one is cut (not an error).
	MaxErrorMessageBytes = 4 << 10
)

// ErrTypeLimitExceeded is the error type of a step or process failed by a
// limit.
const ErrTypeLimitExceeded = "LimitExceeded"

// IgnoreLimitExceeded: an event whose data is over max_payload_bytes.
const IgnoreLimitExceeded IgnoreReason = "limit_exceeded"

// ErrLimitExceeded is wrapped by every LimitError.
var ErrLimitExceeded = errors.New("limit exceeded")

// LimitError says which limit a value exceeds.
type LimitError struct {
	// Limit is the key of the limit (max_payload_bytes, ...).
	Limit string
	// What is the value that exceeds it ("the output of result p/a/1").
	What string
	// Size and Max are the value's size and the limit, in the limit's unit.
	Size, Max int
}

func (e *LimitError) Error() string {
	unit := ""
	if len(e.Limit) > 6 && e.Limit[len(e.Limit)-6:] == "_bytes" {
		unit = " bytes"
	}
	return fmt.Sprintf("%s is %d%s, over the limit %s = %d%s", e.What, e.Size, unit, e.Limit, e.Max, unit)
}

// Unwrap makes a LimitError match ErrLimitExceeded.
func (e *LimitError) Unwrap() error { return ErrLimitExceeded }

// CheckPayload returns a LimitError when data is over max_payload_bytes.
func CheckPayload(what string, data json.RawMessage) error {
	if len(data) > MaxPayloadBytes {
		return &LimitError{Limit: "max_payload_bytes", What: what, Size: len(data), Max: MaxPayloadBytes}
	}
	return nil
}

func limitInfo(err error) *ErrorInfo {
	return &ErrorInfo{Type: ErrTypeLimitExceeded, Message: err.Error(), Retryable: ptr(false)}
}

// withinLimits checks an event against the limits before it is applied. It
// returns the event to apply (a copy when it had to change) and false when
// the event is to be ignored instead.
//
// A result whose output is too large becomes a failed, non-retryable
// attempt (the worker did the job, the engine cannot carry the output);
// an oversized signal or skip is ignored with the reason; an oversized
// start input fails the process (startOverLimit). Error messages and
// reasons longer than MaxErrorMessageBytes are cut.
func (d *decider) withinLimits(i int, ev *Event) (*Event, bool) {
	switch ev.Type {
	case EventResult:
		if err := CheckPayload(fmt.Sprintf("the output of result %s", ev.CommandID), ev.Output); err != nil {
			c := *ev
			c.Output = nil
			c.Error = limitInfo(err)
			return &c, true
		}
		if ev.Error != nil && len(ev.Error.Message) > MaxErrorMessageBytes {
			c := *ev
			e := *ev.Error
			e.Message = cut(e.Message)
			c.Error = &e
			return &c, true
		}
	case EventSignal:
		if err := CheckPayload(fmt.Sprintf("the data of signal %q", ev.Signal), ev.Data); err != nil {
			d.ignore(i, ev, IgnoreLimitExceeded, "%v", err)
			return nil, false
		}
	case EventSkip:
		if err := CheckPayload(fmt.Sprintf("the output of the skip of step %s", ev.StepID), ev.Output); err != nil {
			d.ignore(i, ev, IgnoreLimitExceeded, "%v", err)
			return nil, false
		}
	}
	if len(ev.Reason) > MaxErrorMessageBytes {
		c := *ev
		c.Reason = cut(c.Reason)
		return &c, true
	}
	return ev, true
}

func cut(s string) string {
	if len(s) <= MaxErrorMessageBytes {
		return s
	}
	const mark = "… (cut)"
	n := MaxErrorMessageBytes - len(mark)
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 { // not inside a UTF-8 sequence
		n--
	}
	return s[:n] + mark
}

// startOverLimit fails a process whose start input is over
// max_payload_bytes (the input is not kept). It is called by start once
// the state is set up.
func (d *decider) startOverLimit() bool {
	s := d.s
	err := CheckPayload("the start input", s.Input)
	if err == nil {
		return false
	}
	s.Input = json.RawMessage("null")
	s.Failure = &Failure{Error: limitInfo(err), At: d.now}
	d.finish(StatusFailed)
	return true
}

// commandOverhead estimates the bytes of a command besides its input and
// ids: the envelope, field names, times and the reply topic.
const commandOverhead = 512

// CommandSize estimates the bytes a command takes on the wire.
func CommandSize(c *Command) int {
	return commandOverhead + len(c.Input) + 3*len(c.ID) + len(c.ProcessID) + len(c.StepID) + len(c.Service) + len(c.Command)
}

// commandFits is called by send before a command is added to the decision.
// A command whose input is over max_payload_bytes fails its run (false, and
// the run has failed); a command that would take the decision over
// max_decision_bytes waits for the next decision (false, and d.full is
// set: nothing more is sent in this decision). The first command of a
// decision always fits if its input does.
func (d *decider) commandFits(k, idx int, comp bool, c *Command) bool {
	if err := CheckPayload(fmt.Sprintf("the input of command %s", c.ID), c.Input); err != nil {
		e := limitInfo(err)
		ss := d.s.Steps[k]
		if comp {
			run := ss.Compensations[idx]
			run.Error = e
			run.Status = RunFailed
			ss.Status = StepCompensationFailed
			d.s.Status = StatusCompensationFailed
			return false
		}
		ss.Runs[idx].Error = e
		d.runFailed(k, idx, e)
		return false
	}
	size := CommandSize(c)
	if len(d.cmds) > 0 && d.cmdBytes+size > MaxDecisionBytes {
		d.full = true
		return false
	}
	d.cmdBytes += size
	return true
}

// stateOverhead estimates the bytes of a state's fixed fields, and of each
// step, run, attempt and timer besides their data.
const (
	stateOverhead   = 384
	stepOverhead    = 160
	runOverhead     = 96
	attemptOverhead = 160
	timerOverhead   = 192
)

// StateSize estimates the bytes of a state once encoded (JSON; the binary
// encoding is smaller). It walks the state once: O(steps + runs +
// attempts), no encoding.
func StateSize(s *State) int {
	n := stateOverhead + len(s.ProcessID) + len(s.Workflow) + len(s.Input) + len(s.Output)
	if s.Failure != nil {
		n += 64 + len(s.Failure.StepID) + errSize(s.Failure.Error)
	}
	if s.Admin != nil {
		n += 96 + len(s.Admin.StepID) + len(s.Admin.Actor) + len(s.Admin.Reason)
	}
	n += len(s.Timers) * (timerOverhead + len(s.ProcessID))
	for _, sg := range s.Signals {
		n += 96 + len(sg.Signal) + len(sg.StepID) + len(sg.Data) + len(sg.Actor)
	}
	for _, ss := range s.Steps {
		if ss == nil {
			continue
		}
		n += stepOverhead + len(ss.ID) + len(ss.Output) + errSize(ss.Error)
		for _, it := range ss.Items {
			n += len(it) + 1
		}
		for _, runs := range [][]*Run{ss.Runs, ss.Compensations} {
			for _, r := range runs {
				if r == nil {
					n += 5
					continue
				}
				n += runOverhead + len(r.Output) + errSize(r.Error)
				for _, a := range r.Attempts {
					n += attemptOverhead + len(a.CommandID) + errSize(a.Error)
				}
			}
		}
	}
	return n
}

func errSize(e *ErrorInfo) int {
	if e == nil {
		return 0
	}
	return 48 + len(e.Type) + len(e.Message)
}

// checkStateLimit fails the process at once when its state is over
// max_state_bytes after a decision: no compensation (the engine could not
// carry the state it needs), every command of the decision dropped, and
// the data dropped from the state (outputs, items) so that the failed
// state itself can be stored; the event stream keeps the data.
func (d *decider) checkStateLimit() {
	s := d.s
	if d.before.Terminal() {
		return
	}
	size := StateSize(s)
	if size <= MaxStateBytes {
		return
	}
	err := &LimitError{Limit: "max_state_bytes", What: "the state of process " + s.ProcessID, Size: size, Max: MaxStateBytes}
	s.Failure = &Failure{Error: limitInfo(err), At: d.now}
	d.finish(StatusFailed)
	s.Output = nil
	s.Signals = nil
	for _, ss := range s.Steps {
		if ss == nil {
			continue
		}
		ss.setOutput(nil)
		ss.Items = nil
		for _, runs := range [][]*Run{ss.Runs, ss.Compensations} {
			for _, r := range runs {
				if r != nil {
					r.Output = nil
				}
			}
		}
	}
	d.env = nil
}

// limitFailed fails step k with a LimitError (its on_failure policy
// applies).
func (d *decider) limitFailed(k int, err error) {
	ss := d.s.Steps[k]
	if ss.Status == StepPending {
		ss.Status = StepRunning
		ss.StartedAt = d.now
	}
	d.stepFailed(k, nil, limitInfo(err))
}
