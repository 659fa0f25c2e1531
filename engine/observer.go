package engine

import (
	"time"

	"github.com/pulsaga/pulsaga/workflow"
)

// Observer receives the orchestrator's measurements, for metrics. Its
// methods are called on the orchestrator's loop: they must be fast and
// goroutine-safe.
type Observer interface {
	// DecisionApplied: a decision came back, latency after its task was issued.
	DecisionApplied(definition string, latency time.Duration)
	// EventToCommand: the oldest event a decision folded was produced this
	// long before the decision's commands were sent.
	EventToCommand(definition string, latency time.Duration)
	// StepChanged: a step moved from one status to another.
	StepChanged(definition, step string, from, to workflow.StepStatus)
	// CommandSent: a command went out (attempt > 1 is a retry).
	CommandSent(definition, step string, attempt int, compensation bool)
	// ProcessChanged: a process moved from one status to another ("" for new).
	ProcessChanged(definition string, from, to workflow.Status)
	// Dropped: an input was dropped or dead-lettered, with the reason.
	Dropped(reason string)
}

// DecisionQueueObserver is an Observer that also wants the decision
// backpressure gauges (OrchestratorOptions.MaxOutstanding): the orchestrator
// calls DecisionQueue whenever the counts change, from its loop.
type DecisionQueueObserver interface {
	// DecisionQueue: decisions in flight (issued, not yet answered) and
	// processes waiting for a free slot.
	DecisionQueue(outstanding, queued int)
}

// BatchObserver is an Observer that also wants the phases of each batch
// the orchestrator committed (where a saga's hops spend their time under
// load, docs/benchmarks.md): the orchestrator calls BatchCommitted from its
// loop once a batch's transaction has committed.
type BatchObserver interface {
	// BatchCommitted: a batch of inputs committed. first is its first round
	// of sends (history entries and messages), counted from its
	// transaction's begin, so its wait for the previous batch's first round
	// is in it; second its second round (snapshots and status rows); commit
	// its commit.
	BatchCommitted(inputs int, first, second, commit time.Duration)
}

// NopObserver observes nothing.
type NopObserver struct{}

func (NopObserver) DecisionApplied(string, time.Duration)                                {}
func (NopObserver) EventToCommand(string, time.Duration)                                 {}
func (NopObserver) StepChanged(string, string, workflow.StepStatus, workflow.StepStatus) {}
func (NopObserver) CommandSent(string, string, int, bool)                                {}
func (NopObserver) ProcessChanged(string, workflow.Status, workflow.Status)              {}
func (NopObserver) Dropped(string)                                                       {}

// observeDecision reports what a decision changed.
func observeDecision(o Observer, def string, before, after *workflow.State, d *workflow.Decision) {
	prev := map[string]workflow.StepStatus{}
	var from workflow.Status
	if before != nil {
		from = before.Status
		for _, s := range before.Steps {
			prev[s.ID] = s.Status
		}
	}
	if after != nil {
		for _, s := range after.Steps {
			p, ok := prev[s.ID]
			if !ok {
				p = workflow.StepPending
			}
			if p != s.Status {
				o.StepChanged(def, s.ID, p, s.Status)
			}
		}
		if after.Status != from {
			o.ProcessChanged(def, from, after.Status)
		}
	}
	for _, c := range d.Commands {
		o.CommandSent(def, c.StepID, c.Attempt, c.Compensation)
	}
}
