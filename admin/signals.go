package admin

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/workflow"
)

// CheckSignal says whether a process can take a signal, from its status
// row and its definition, so the caller hears why not instead of a signal
// the decider ignores. It refuses (ErrConflict) a signal to a process that
// is neither running nor paused (finished, compensating), a signal no wait
// step of the definition waits for, and a signal whose wait steps have all
// started; the message lists the signals the process takes. A signal for a
// wait step that has not started yet is accepted: the process keeps it
// for the step (docs/language.md, "Signals"). The CLI's direct mode uses
// it too.
func CheckSignal(def *workflow.Definition, row engine.StatusRecord, name string) error {
	pid := row.ProcessID
	if row.Status != workflow.StatusRunning && row.Status != workflow.StatusPaused {
		return fmt.Errorf("%w: process %s is %s; it takes no signals", ErrConflict, pid, row.Status)
	}
	if def == nil {
		return nil // the definition is unknown here: the decider decides
	}
	var steps []string
	for _, st := range def.Steps {
		if st.Kind != workflow.KindWait || st.Wait.Signal != name {
			continue
		}
		steps = append(steps, st.ID)
		switch stepStatus(row, st.ID) {
		case workflow.StepWaiting, workflow.StepPending:
			return nil // taken now, or kept until the step starts
		}
	}
	if len(steps) == 0 {
		return fmt.Errorf("%w: process %s (%s v%d) has no step that waits for signal %q; %s", ErrConflict, pid, row.Definition, row.Version, name, takenSignals(def, row))
	}
	return fmt.Errorf("%w: process %s no longer waits for signal %q (step %s started already); %s", ErrConflict, pid, name, strings.Join(steps, ", "), takenSignals(def, row))
}

func stepStatus(row engine.StatusRecord, id string) workflow.StepStatus {
	if s := workflow.StepStatus(row.Steps[id]); s != "" {
		return s
	}
	return workflow.StepPending
}

// takenSignals lists the signals a process takes: those its waiting steps
// wait for, and those of wait steps not started yet (kept until then).
func takenSignals(def *workflow.Definition, row engine.StatusRecord) string {
	by := map[string][]string{}
	for _, st := range def.Steps {
		if st.Kind != workflow.KindWait {
			continue
		}
		switch status := stepStatus(row, st.ID); status {
		case workflow.StepWaiting, workflow.StepPending:
			by[st.Wait.Signal] = append(by[st.Wait.Signal], fmt.Sprintf("step %s %s", st.ID, status))
		}
	}
	if len(by) == 0 {
		return "it takes no signal any more"
	}
	names := make([]string, 0, len(by))
	for n := range by {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, n := range names {
		slices.Sort(by[n])
		parts[i] = fmt.Sprintf("%s (%s)", n, strings.Join(by[n], ", "))
	}
	return "it takes " + strings.Join(parts, ", ")
}
