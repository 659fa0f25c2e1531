package engine

import (
	"time"

	"github.com/pulsaga/pulsaga/tracing"
	"github.com/pulsaga/pulsaga/workflow"
)

// Tracing hooks (package tracing builds and exports the spans): a command
// carries its attempt's trace context, and every live decision is handed
// to the tracer, which only queues it. Both do nothing without a tracer.

// commandTraceparent is the W3C trace context of a command ("" when
// tracing is off).
func (m *machine) commandTraceparent(c *workflow.Command) string {
	return m.tracer.CommandTraceparent(c.ProcessID, c.ID)
}

// pendingUpto are the pending events a decision up to upto folds (before
// the fold), for its span; nil when tracing is off.
func (m *machine) pendingUpto(img *image, upto int64) []workflow.Event {
	if m.tracer == nil {
		return nil
	}
	var evs []workflow.Event
	for _, p := range img.pending {
		if p.Seq <= upto {
			evs = append(evs, p.Event)
		}
	}
	return evs
}

// traceDecision hands a live decision to the tracer. The decision's span
// starts when the oldest event it folded was produced (remote: or when its
// task was issued, the earlier) and ends when it is applied.
func (m *machine) traceDecision(img *image, taskID string, issuedAt, oldest, now time.Time, before *workflow.State, d *workflow.Decision, events []workflow.Event) {
	if m.tracer == nil {
		return
	}
	start := issuedAt
	if !oldest.IsZero() && oldest.Before(start) {
		start = oldest
	}
	m.tracer.DecisionApplied(tracing.Decision{
		ProcessID: img.pid, Definition: img.def.Name, Version: img.def.Version, TaskID: taskID,
		IssuedAt: start, AppliedAt: now, Before: before, After: img.state, Decision: d, Events: events, Def: img.def,
	})
}
