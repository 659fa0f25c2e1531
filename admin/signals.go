package admin

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/workflow"
)

// pendingTakesSignals says whether a wait step that has not started yet
// keeps a signal for later. It is false until buffered signals (issue
// #12) land: until then such a signal would be ignored, so it is refused.
const pendingTakesSignals = false

// CheckSignal says whether a process can take a signal, from its status
// row and its definition, so the caller hears why not instead of a signal
// the decider ignores. It refuses (ErrConflict) a signal to a finished
// process, a signal no wait step of the definition waits for, a signal
// whose wait steps have all ended, and (until signals are buffered) one
// whose wait steps have not started; the message lists the signals the
// process waits for. The CLI's direct mode uses it too.
func CheckSignal(def *workflow.Definition, row engine.StatusRecord, name string) error {
	pid := row.ProcessID
	if row.Status.Terminal() {
		return fmt.Errorf("%w: process %s is %s; it takes no signals", ErrConflict, pid, row.Status)
	}
	if def == nil {
		return nil // the definition is unknown here: the decider decides
	}
	var steps, pending []string
	for _, st := range def.Steps {
		if st.Kind != workflow.KindWait || st.Wait.Signal != name {
			continue
		}
		steps = append(steps, st.ID)
		switch stepStatus(row, st.ID) {
		case workflow.StepWaiting:
			return nil
		case workflow.StepPending:
			if pendingTakesSignals {
				return nil
			}
			pending = append(pending, st.ID)
		}
	}
	waits := waitedSignals(def, row)
	switch {
	case len(steps) == 0:
		return fmt.Errorf("%w: process %s (%s v%d) has no step that waits for signal %q; %s", ErrConflict, pid, row.Definition, row.Version, name, waits)
	case len(pending) > 0:
		return fmt.Errorf("%w: process %s does not wait for signal %q yet (step %s has not started); %s", ErrConflict, pid, name, strings.Join(pending, ", "), waits)
	}
	return fmt.Errorf("%w: process %s no longer waits for signal %q (step %s ended); %s", ErrConflict, pid, name, strings.Join(steps, ", "), waits)
}

func stepStatus(row engine.StatusRecord, id string) workflow.StepStatus {
	if s := workflow.StepStatus(row.Steps[id]); s != "" {
		return s
	}
	return workflow.StepPending
}

// waitedSignals lists the signals a process can take now, with their
// steps.
func waitedSignals(def *workflow.Definition, row engine.StatusRecord) string {
	by := map[string][]string{}
	for _, st := range def.Steps {
		if st.Kind != workflow.KindWait {
			continue
		}
		switch stepStatus(row, st.ID) {
		case workflow.StepWaiting:
			by[st.Wait.Signal] = append(by[st.Wait.Signal], st.ID)
		case workflow.StepPending:
			if pendingTakesSignals {
				by[st.Wait.Signal] = append(by[st.Wait.Signal], st.ID)
			}
		}
	}
	if len(by) == 0 {
		return "it waits for no signal now"
	}
	names := make([]string, 0, len(by))
	for n := range by {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, n := range names {
		slices.Sort(by[n])
		parts[i] = fmt.Sprintf("%s (step %s)", n, strings.Join(by[n], ", "))
	}
	return "it waits for " + strings.Join(parts, ", ")
}
