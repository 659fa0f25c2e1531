package engine

import (
	"fmt"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/workflow"
)

// inputKind says what a message of the events topic asks of a process.
type inputKind uint8

const (
	// inStart creates a process.
	inStart inputKind = iota + 1
	// inEvent is a workflow event for Decide: a result, a signal, an admin
	// action, a (legacy) logical timer.
	inEvent
	// inWake is the process's physical timer: its due logical timers
	// become timer events.
	inWake
	// inDecision is a remote decider's answer.
	inDecision
	// inDecisionTimeout re-issues a remote decision nobody answered.
	inDecisionTimeout
	// inRetention is a retention timer of the previous engine (one per
	// finished process); it is dropped.
	inRetention
	// inHeartbeat is a worker's heartbeat: kept in memory, not recorded
	// (progress.go).
	inHeartbeat
)

// input is one message of the events topic, decoded and checked.
type input struct {
	kind  inputKind
	envID string
	pid   string
	// when the sender produced it (envelope time)
	sent time.Time

	start   protocol.StartRequest // inStart
	event   workflow.Event        // inEvent
	fireAt  time.Time             // inWake, inDecisionTimeout
	firedAt time.Time             // inWake: when the relay handed it over
	timerID string                // inWake, inDecisionTimeout
	// commandID is the command a heartbeat is about (inHeartbeat).
	commandID string
	result    *protocol.DecisionResult // inDecision
}

// Timer kinds the orchestrator sets for itself.
const (
	// TimerWake is a process's physical timer: it fires at the earliest
	// deadline among the process's logical timers (workflow.State.Timers).
	TimerWake = "wake"
)

// parseInput decodes the payload of an envelope received on the events
// topic with message key key. An error is the reason to dead-letter it.
func parseInput(env *bus.Envelope, key string) (input, error) {
	in := input{envID: env.ID, pid: env.ProcessID, sent: env.Time}
	if env.ProcessID == "" {
		return in, fmt.Errorf("%s message without a process_id", env.Type)
	}
	if env.ProcessID != key {
		return in, fmt.Errorf("message key %q differs from its process_id %q", key, env.ProcessID)
	}
	ev := workflow.Event{V: workflow.EventVersion, ProcessID: env.ProcessID, Time: env.Time}
	switch env.Type {
	case protocol.TypeStart:
		var req protocol.StartRequest
		if err := env.DecodePayload(&req); err != nil {
			return in, err
		}
		if req.ProcessID != "" && req.ProcessID != env.ProcessID {
			return in, fmt.Errorf("start request for %q in an envelope of %q", req.ProcessID, env.ProcessID)
		}
		if req.Definition == "" {
			return in, fmt.Errorf("start request for %s names no definition", env.ProcessID)
		}
		req.ProcessID = env.ProcessID
		in.kind, in.start = inStart, req
		return in, nil
	case protocol.TypeDecisionResult:
		var res protocol.DecisionResult
		if err := env.DecodePayload(&res); err != nil {
			return in, err
		}
		if res.TaskID == "" {
			return in, fmt.Errorf("decision result without a task_id")
		}
		if err := res.Expand(); err != nil { // a compressed decision
			return in, err
		}
		in.kind, in.result = inDecision, &res
		return in, nil
	case protocol.TypeResult:
		var r protocol.Result
		if err := env.DecodePayload(&r); err != nil {
			return in, err
		}
		if err := r.Validate(); err != nil {
			return in, fmt.Errorf("invalid result: %w", err)
		}
		if r.ProcessID != env.ProcessID {
			return in, fmt.Errorf("result for process %q in an envelope of %q", r.ProcessID, env.ProcessID)
		}
		ev.Type, ev.CommandID, ev.Attempt, ev.Item, ev.Compensation = workflow.EventResult, r.CommandID, r.Attempt, r.Item, r.Compensation
		if r.Status == protocol.StatusCompleted {
			ev.Output = r.Output
		} else {
			retryable := r.Error.Retryable
			ev.Error = &workflow.ErrorInfo{Type: r.Error.Type, Message: r.Error.Message, Retryable: &retryable}
		}
	case protocol.TypeStarted, protocol.TypeHeartbeat:
		if err := parseProgress(env, &in, ev); err != nil {
			return in, err
		}
		if in.kind == inHeartbeat {
			return in, nil
		}
		ev = in.event
	case protocol.TypeTimerFired:
		var t protocol.TimerFired
		if err := env.DecodePayload(&t); err != nil {
			return in, err
		}
		if t.TimerID == "" {
			return in, fmt.Errorf("fired timer without a timer_id")
		}
		switch t.Kind {
		case TimerWake:
			if t.FireAt.IsZero() {
				return in, fmt.Errorf("wake timer %s without fire_at", t.TimerID)
			}
			in.kind, in.fireAt, in.firedAt, in.timerID = inWake, t.FireAt, t.FiredAt, t.TimerID
			return in, nil
		case protocol.TimerDecisionTimeout:
			in.kind, in.fireAt, in.timerID = inDecisionTimeout, t.FireAt, t.TimerID
			return in, nil
		case protocol.TimerRetention:
			in.kind = inRetention
			return in, nil
		}
		// A logical timer sent on its own (by an engine before one physical
		// timer per process): Decide matches it by id.
		ev.Type, ev.TimerID, ev.FiredAt = workflow.EventTimer, t.TimerID, t.FiredAt
	case protocol.TypeSignal:
		var s protocol.Signal
		if err := env.DecodePayload(&s); err != nil {
			return in, err
		}
		ev.Type, ev.Signal, ev.Data, ev.Actor, ev.Reason = workflow.EventSignal, s.Name, s.Data, s.Actor, s.Reason
	case protocol.TypeAdminAction:
		var a protocol.AdminRequest
		if err := env.DecodePayload(&a); err != nil {
			return in, err
		}
		ev.Type, ev.StepID, ev.Output, ev.Actor, ev.Reason = workflow.EventType(a.Action), a.StepID, a.Output, a.Actor, a.Reason
		switch ev.Type {
		case workflow.EventRetry, workflow.EventSkip, workflow.EventCancel, workflow.EventTerminate, workflow.EventCompensate:
		default:
			return in, fmt.Errorf("unknown admin action %q (want retry, skip, cancel, terminate or compensate)", a.Action)
		}
	default:
		return in, fmt.Errorf("unknown message type %q on the events topic", env.Type)
	}
	if err := ev.Validate(); err != nil {
		return in, err
	}
	in.kind, in.event = inEvent, ev
	return in, nil
}
