package workflow

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/pulsaga/pulsaga/internal/jsonfast"
)

// Decision is the outcome of folding events into a state.
type Decision struct {
	// State is the new state (a copy; the input state is never modified).
	State *State `json:"state"`
	// Commands to send, in a stable order. A command with NotBefore is a
	// retry: send it as a delayed message.
	Commands []Command `json:"commands,omitempty"`
	// Timers to set, and ids of pending timers to cancel. A timer set and
	// cancelled within one decision appears in neither list.
	Timers       []Timer  `json:"timers,omitempty"`
	CancelTimers []string `json:"cancel_timers,omitempty"`
	// Ignored lists the events that changed nothing, with the reason.
	Ignored []Ignored `json:"ignored,omitempty"`
	// Status is State.Status; StatusChanged says whether this decision
	// changed it.
	Status        Status `json:"status"`
	StatusChanged bool   `json:"status_changed"`
}

// Decide folds events into a process state and says what happens next. It
// is pure and deterministic: no I/O, no clock (now is the time of the
// decision), no global randomness. st may be nil for a process that has not
// started (the first event must then be a start). The returned error is
// only for misuse (nil definition, state of another definition, malformed
// event); events that do not apply are reported in Decision.Ignored.
func Decide(def *Definition, st *State, events []Event, now time.Time) (Decision, error) {
	if def == nil {
		return Decision{}, ErrNilDefinition
	}
	now = now.UTC()
	var s *State
	if st == nil {
		s = &State{V: StateVersion}
	} else {
		if st.V > StateVersion {
			return Decision{}, fmt.Errorf("%w: state v%d (this code reads up to v%d)", ErrUnsupportedVersion, st.V, StateVersion)
		}
		if st.Status != StatusNew {
			if st.Workflow != def.Name || st.Version != def.Version || len(st.Steps) != len(def.Steps) {
				return Decision{}, fmt.Errorf("%w: state of %s v%d, definition %s v%d", ErrDefinitionMismatch, st.Workflow, st.Version, def.Name, def.Version)
			}
			for i, ss := range st.Steps {
				if ss == nil || ss.ID != def.Steps[i].ID {
					return Decision{}, fmt.Errorf("%w: step %d differs", ErrDefinitionMismatch, i)
				}
			}
		}
		s = st.clone()
	}
	pid := s.ProcessID
	for i := range events {
		if err := events[i].Validate(); err != nil {
			return Decision{}, &EventError{Index: i, Type: string(events[i].Type), Err: err}
		}
		if pid == "" && events[i].Type == EventStart {
			pid = events[i].ProcessID
		}
		if pid != "" && events[i].ProcessID != "" && events[i].ProcessID != pid {
			return Decision{}, &EventError{Index: i, Type: string(events[i].Type), Err: fmt.Errorf("%w: event for process %q given to process %q", ErrInvalidEvent, events[i].ProcessID, pid)}
		}
	}
	d := &decider{def: def, s: s, now: now, before: s.Status}
	for i := range events {
		if ev, ok := d.withinLimits(i, &events[i]); ok {
			d.apply(i, ev)
		}
	}
	if s.Status != StatusNew && !s.Status.Terminal() {
		d.advance()
	}
	d.checkStateLimit()
	if s.Status != d.before || len(d.cmds) > 0 || len(d.timers) > 0 {
		s.UpdatedAt = now
	}
	return Decision{
		State:         s,
		Commands:      d.cmds,
		Timers:        d.timers,
		CancelTimers:  d.cancels,
		Ignored:       d.ignored,
		Status:        s.Status,
		StatusChanged: s.Status != d.before,
	}, nil
}

type decider struct {
	def     *Definition
	s       *State
	now     time.Time
	before  Status
	cmds    []Command
	timers  []Timer
	cancels []string
	ignored []Ignored
	env     *Env
	envOut  []bool
	// cmdBytes is the estimated size of cmds; full says that the next
	// command would take it over MaxDecisionBytes (see limits.go).
	cmdBytes int
	full     bool
}

func (d *decider) ignore(i int, ev *Event, r IgnoreReason, format string, args ...any) {
	d.ignored = append(d.ignored, Ignored{Index: i, Type: ev.Type, Reason: r, Detail: fmt.Sprintf(format, args...)})
}

// ---------------------------------------------------------------- events

func (d *decider) apply(i int, ev *Event) {
	s := d.s
	if ev.Type == EventStart {
		if s.Status != StatusNew {
			d.ignore(i, ev, IgnoreAlreadyStarted, "process %s already started (status %s)", s.ProcessID, s.Status)
			return
		}
		d.start(ev)
		return
	}
	if s.Status == StatusNew {
		d.ignore(i, ev, IgnoreNotStarted, "process has not started")
		return
	}
	if ev.Type == EventCompensate { // call.go: a parent compensates this child
		d.compensateCompleted(i, ev)
		return
	}
	if s.Status.Terminal() {
		if LateSuccess(s, ev) {
			d.result(i, ev) // recorded; a compensated process compensates it
			return
		}
		d.ignore(i, ev, IgnoreTerminal, "process is %s", s.Status)
		return
	}
	switch ev.Type {
	case EventResult:
		d.result(i, ev)
	case EventStarted:
		d.started(i, ev)
	case EventHeartbeat:
		d.heartbeat(i, ev)
	case EventTimer:
		d.timerFired(i, ev)
	case EventSignal:
		d.signal(i, ev)
	case EventRetry:
		d.adminRetry(i, ev)
	case EventSkip:
		d.adminSkip(i, ev)
	case EventCancel:
		if s.Status != StatusRunning && s.Status != StatusPaused {
			d.ignore(i, ev, IgnoreNotApplicable, "cannot cancel a %s process", s.Status)
			return
		}
		s.Admin = d.admin(ev)
		d.startCompensating()
	case EventTerminate:
		s.Admin = d.admin(ev)
		d.finish(StatusTerminated)
	}
}

func (d *decider) admin(ev *Event) *AdminAction {
	return &AdminAction{Type: ev.Type, StepID: ev.StepID, Actor: ev.Actor, Reason: ev.Reason, At: d.now}
}

func (d *decider) start(ev *Event) {
	s := d.s
	s.V = StateVersion
	s.ProcessID = ev.ProcessID
	s.Workflow = d.def.Name
	s.Version = d.def.Version
	s.Input = ev.Input
	s.Parent = ev.Parent // call.go
	if len(s.Input) == 0 {
		s.Input = json.RawMessage("null")
	}
	s.StartedAt = d.now
	s.Steps = make([]*StepState, len(d.def.Steps))
	for i, step := range d.def.Steps {
		s.Steps[i] = &StepState{ID: step.ID, Status: StepPending}
	}
	s.Status = StatusRunning
	if d.startOverLimit() {
		return
	}
	if err := d.def.ValidateInput(s.Input); err != nil {
		s.Failure = &Failure{Error: &ErrorInfo{Type: ErrTypeInvalidInput, Message: err.Error()}, At: d.now}
		d.finish(StatusFailed)
		return
	}
	if d.def.WorkflowTimeout > 0 {
		d.setTimer(Timer{Kind: TimerWorkflowTimeout, FireAt: d.now.Add(d.def.WorkflowTimeout)}, "", -1, false, 0)
	}
}

func (d *decider) result(i int, ev *Event) {
	a, ok := d.findAttempt(i, ev)
	if !ok {
		return
	}
	ref, k, idx, at := a.ref, a.k, a.idx, a.at
	if at.Outcome != OutcomeInFlight {
		d.lateResult(i, ev, a)
		return
	}
	d.cancelAttemptTimers(ref, func(TimerKind) bool { return true })
	at.EndedAt = d.now
	if ev.Error == nil {
		at.Outcome = OutcomeCompleted
		d.completeRun(a, ev.Output)
		return
	}
	at.Outcome = OutcomeFailed
	at.Error = ev.Error
	if ev.Error.Type == "" {
		e := *ev.Error
		e.Type = ErrTypeUnknown
		at.Error = &e
	}
	d.attemptFailed(k, idx, ref.comp, at.Error)
}

// attemptFailed retries the run or fails it for good.
func (d *decider) attemptFailed(k, idx int, comp bool, e *ErrorInfo) {
	step := d.def.Steps[k]
	ss := d.s.Steps[k]
	run := ss.Runs[idx]
	policy := step.Retry
	if comp {
		run = ss.Compensations[idx]
		policy = step.Compensate.Retry
	}
	run.Error = e
	retryable := e.IsRetryable() && !policy.IsNonRetryable(e.Type) && run.Attempt-run.Budget < policy.MaxAttempts
	if !comp && d.s.Status != StatusRunning && d.s.Status != StatusPaused {
		retryable = false // compensating: no new work
	}
	if retryable {
		next := d.now.Add(backoff(policy, run.Attempt-run.Budget, commandID(d.s.ProcessID, step.ID, itemIdx(step, idx), comp, run.Attempt)))
		if !comp && !ss.DeadlineAt.IsZero() && !next.Before(ss.DeadlineAt) {
			d.runFailed(k, idx, &ErrorInfo{Type: ErrTypeDeadline, Message: fmt.Sprintf("the next attempt would start after the step deadline (last error: %s)", e.Type), Retryable: ptr(false)})
			return
		}
		run.Status = RunRetrying
		run.NextAt = next
		return
	}
	if comp {
		run.Status = RunFailed
		ss.Status = StepCompensationFailed
		d.s.Status = StatusCompensationFailed
		return
	}
	d.runFailed(k, idx, e)
}

// runFailed marks a forward run failed for good and applies the step's
// failure policy.
func (d *decider) runFailed(k, idx int, e *ErrorInfo) {
	step := d.def.Steps[k]
	ss := d.s.Steps[k]
	run := ss.Runs[idx]
	run.Status = RunFailed
	run.Error = e
	run.NextAt = time.Time{}
	if step.ForEach != nil && step.OnFailure == OnFailureContinue {
		d.runSettled(k) // other items go on; the step settles when all have
		return
	}
	d.stepFailed(k, itemPtr(step, idx), e)
}

// stepFailed fails a step for good and applies its policy.
func (d *decider) stepFailed(k int, item *int, e *ErrorInfo) {
	step := d.def.Steps[k]
	ss := d.s.Steps[k]
	if ss.Status == StepFailed {
		return
	}
	ss.Status = StepFailed
	ss.Error = e
	ss.EndedAt = d.now
	d.env = nil
	d.cancelStepTimers(k, false)
	// Pending items of a failed for_each step will never run; retrying ones
	// are abandoned.
	for _, r := range ss.Runs {
		if r.Status == RunRetrying {
			r.Status = RunFailed
			r.NextAt = time.Time{}
		}
	}
	if step.OnFailure == OnFailureContinue {
		return
	}
	s := d.s
	if s.Status != StatusRunning && s.Status != StatusPaused {
		return // already compensating or stopped: nothing more to decide
	}
	if s.Failure == nil || s.Status == StatusRunning {
		s.Failure = &Failure{StepID: step.ID, Item: item, Error: e, At: d.now}
	}
	switch step.OnFailure {
	case OnFailureFail:
		d.finish(StatusFailed)
	case OnFailurePause:
		s.Status = StatusPaused
	default:
		d.startCompensating()
	}
}

// runSettled updates a step after one of its runs completed or failed.
func (d *decider) runSettled(k int) {
	ss := d.s.Steps[k]
	if ss.Status != StepRunning && ss.Status != StepWaiting {
		return // a failed step whose other items finish: nothing to join
	}
	anyFailed, anyCancelled := false, false
	for _, r := range ss.Runs {
		switch r.Status {
		case RunCompleted, RunSkipped:
		case RunFailed:
			anyFailed = true
		case RunCancelled:
			anyCancelled = true
		default:
			return
		}
	}
	step := d.def.Steps[k]
	if step.ForEach == nil {
		ss.setOutput(ss.Runs[0].Output)
	} else {
		ss.setOutput(joinOutputs(ss.Runs))
	}
	ss.EndedAt = d.now
	d.cancelStepTimers(k, false)
	d.env = nil
	if anyFailed {
		ss.Status = StepFailed
		for _, r := range ss.Runs {
			if r.Status == RunFailed {
				ss.Error = r.Error
				break
			}
		}
		return
	}
	if anyCancelled {
		ss.Status = StepCancelled
		ss.setOutput(nil)
		return
	}
	ss.Status = StepCompleted
	ss.Error = nil
}

func joinOutputs(runs []*Run) json.RawMessage {
	n := 2
	for _, r := range runs {
		n += len(r.Output) + 5
	}
	b := make([]byte, 0, n)
	b = append(b, '[')
	for i, r := range runs {
		if i > 0 {
			b = append(b, ',')
		}
		if len(r.Output) == 0 || r.Status != RunCompleted && r.Status != RunSkipped && !r.Late {
			b = append(b, "null"...)
		} else {
			b = append(b, r.Output...)
		}
	}
	return append(b, ']')
}

func (d *decider) compensationDone(k int) {
	ss := d.s.Steps[k]
	for _, c := range ss.Compensations {
		if c != nil && c.Status != RunCompleted && c.Status != RunSkipped {
			return
		}
	}
	ss.Status = StepCompensated
}

func (d *decider) timerFired(i int, ev *Event) {
	s := d.s
	ti := -1
	for j := range s.Timers {
		if s.Timers[j].ID == ev.TimerID {
			ti = j
			break
		}
	}
	if ti < 0 {
		d.ignore(i, ev, IgnoreTimerNotPending, "timer %s is not pending", ev.TimerID)
		return
	}
	t := s.Timers[ti]
	s.Timers = append(s.Timers[:ti], s.Timers[ti+1:]...)
	if t.Kind == TimerWorkflowTimeout {
		if s.Status != StatusRunning && s.Status != StatusPaused {
			return
		}
		e := &ErrorInfo{Type: ErrTypeWorkflowTimeout, Message: fmt.Sprintf("the workflow timeout of %s passed", d.def.WorkflowTimeout), Retryable: ptr(false)}
		s.Failure = &Failure{Error: e, At: d.now}
		if d.def.OnFailure == OnFailureCompensate {
			d.startCompensating()
		} else {
			d.finish(StatusFailed)
		}
		return
	}
	k, ok := d.def.index[t.StepID]
	if !ok {
		return // a timer of a step this definition does not have
	}
	ss := s.Steps[k]
	step := d.def.Steps[k]
	switch t.Kind {
	case TimerAttemptTimeout, TimerScheduleTimeout, TimerHeartbeatTimeout:
		d.progressTimerFired(t, ev)
	case TimerDeadline:
		if ss.Status != StepRunning {
			return
		}
		e := &ErrorInfo{Type: ErrTypeDeadline, Message: fmt.Sprintf("step deadline of %s passed", step.Deadline), Retryable: ptr(false)}
		var failedItem *int
		for ri, r := range ss.Runs {
			if r.Status == RunRunning || r.Status == RunRetrying || r.Status == RunPending {
				if r.Status == RunRunning {
					at := &r.Attempts[len(r.Attempts)-1]
					at.Outcome = OutcomeAbandoned
					at.EndedAt = d.now
					d.cancelAttemptTimers(cmdRef{step: step.ID, item: itemIdx(step, ri), attempt: r.Attempt}, func(TimerKind) bool { return true })
					d.stopTimedOutChild(k, ri, r.Attempt, false) // call.go
				}
				r.Status = RunFailed
				r.Error = e
				r.NextAt = time.Time{}
				if failedItem == nil {
					failedItem = itemPtr(step, ri)
				}
			}
		}
		if step.ForEach != nil && step.OnFailure == OnFailureContinue {
			d.runSettled(k)
			return
		}
		d.stepFailed(k, failedItem, e)
	case TimerSleep, TimerUntil:
		if ss.Status != StepWaiting || len(ss.Runs) == 0 {
			return
		}
		ss.Runs[0].Status = RunCompleted
		ss.Runs[0].Output = json.RawMessage("null")
		d.runSettled(k)
	case TimerSignalTimeout:
		if ss.Status != StepWaiting || len(ss.Runs) == 0 {
			return
		}
		e := &ErrorInfo{Type: ErrTypeSignalTimeout, Message: fmt.Sprintf("no signal %q within %s", step.Wait.Signal, step.Wait.Timeout), Retryable: ptr(false)}
		ss.Runs[0].Status = RunFailed
		ss.Runs[0].Error = e
		d.stepFailed(k, nil, e)
	}
}

func (d *decider) signal(i int, ev *Event) {
	s := d.s
	if s.Status != StatusRunning && s.Status != StatusPaused {
		d.ignore(i, ev, IgnoreNotApplicable, "signal %q arrived while the process is %s", ev.Signal, s.Status)
		return
	}
	got := false
	for k, step := range d.def.Steps {
		if step.Kind != KindWait || step.Wait.Signal != ev.Signal || (ev.StepID != "" && ev.StepID != step.ID) {
			continue
		}
		ss := s.Steps[k]
		if ss.Status != StepWaiting {
			continue
		}
		got = true
		data := ev.Data
		if len(data) == 0 {
			data = json.RawMessage("null")
		}
		ss.Runs[0].Status = RunCompleted
		ss.Runs[0].Output = data
		d.runSettled(k)
	}
	if !got {
		d.bufferSignal(i, ev) // signals.go
	}
}

func (d *decider) adminRetry(i int, ev *Event) {
	s := d.s
	if ev.StepID != "" {
		if _, ok := d.def.index[ev.StepID]; !ok {
			d.ignore(i, ev, IgnoreNotApplicable, "unknown step %q", ev.StepID)
			return
		}
	}
	match := func(k int) bool { return ev.StepID == "" || d.def.Steps[k].ID == ev.StepID }
	done := 0
	switch s.Status {
	case StatusPaused:
		for k, step := range d.def.Steps {
			ss := s.Steps[k]
			if !match(k) || ss.Status != StepFailed || step.OnFailure == OnFailureContinue {
				continue
			}
			done++
			ss.Error = nil
			ss.EndedAt = time.Time{}
			d.env = nil
			if step.Kind != KindTask || len(ss.Runs) == 0 {
				ss.Status = StepPending // starts again from scratch
				continue
			}
			ss.Status = StepRunning
			gen := 1
			for _, r := range ss.Runs {
				gen += r.Attempt
				if r.Status != RunFailed {
					continue
				}
				r.Status = RunRetrying
				r.NextAt = time.Time{}
				r.Budget = r.Attempt
				r.Error = nil
			}
			if step.Deadline > 0 {
				ss.DeadlineAt = d.now.Add(step.Deadline)
				d.setTimer(Timer{Kind: TimerDeadline, FireAt: ss.DeadlineAt}, step.ID, -1, false, gen)
			}
		}
		if done > 0 && s.Status == StatusPaused && !d.anyPausingFailure() {
			s.Status = StatusRunning
			s.Failure = nil
			s.Admin = d.admin(ev)
		}
	case StatusCompensationFailed, StatusCompensating:
		for k := range d.def.Steps {
			ss := s.Steps[k]
			if !match(k) {
				continue
			}
			for _, c := range ss.Compensations {
				if c != nil && c.Status == RunFailed {
					c.Status = RunRetrying
					c.NextAt = time.Time{}
					c.Budget = c.Attempt
					done++
					ss.Status = StepCompensating
				}
			}
		}
		if done > 0 && !d.anyCompensationFailed() {
			s.Status = StatusCompensating
			s.Admin = d.admin(ev)
		}
	}
	if done == 0 {
		d.ignore(i, ev, IgnoreNotApplicable, "nothing to retry (process %s)", s.Status)
	}
}

// anyPausingFailure reports whether a failed step still holds the process
// paused.
func (d *decider) anyPausingFailure() bool {
	for k, step := range d.def.Steps {
		if d.s.Steps[k].Status == StepFailed && step.OnFailure != OnFailureContinue {
			return true
		}
	}
	return false
}

func (d *decider) anyCompensationFailed() bool {
	for _, ss := range d.s.Steps {
		for _, c := range ss.Compensations {
			if c != nil && c.Status == RunFailed {
				return true
			}
		}
	}
	return false
}

func (d *decider) adminSkip(i int, ev *Event) {
	s := d.s
	k, ok := d.def.index[ev.StepID]
	if !ok {
		d.ignore(i, ev, IgnoreNotApplicable, "unknown step %q", ev.StepID)
		return
	}
	ss := s.Steps[k]
	out := ev.Output
	if len(out) == 0 {
		out = json.RawMessage("null")
	}
	switch {
	case s.Status == StatusCompensationFailed && ss.Status == StepCompensationFailed:
		for _, c := range ss.Compensations {
			if c != nil && c.Status == RunFailed {
				c.Status = RunSkipped
			}
		}
		d.compensationDone(k)
		if ss.Status != StepCompensated {
			ss.Status = StepCompensating
		}
		if !d.anyCompensationFailed() {
			s.Status = StatusCompensating
		}
	case (s.Status == StatusPaused || s.Status == StatusRunning) && (ss.Status == StepFailed && s.Status == StatusPaused || ss.Status == StepWaiting):
		d.cancelStepTimers(k, true)
		ss.Status = StepSkipped
		ss.setOutput(out)
		ss.Error = nil
		ss.EndedAt = d.now
		for _, r := range ss.Runs {
			if r.Status != RunCompleted {
				r.Status = RunSkipped
			}
		}
		d.env = nil
		if s.Status == StatusPaused && !d.anyPausingFailure() {
			s.Status = StatusRunning
			s.Failure = nil
		}
	default:
		d.ignore(i, ev, IgnoreNotApplicable, "cannot skip step %s (%s) of a %s process", ev.StepID, ss.Status, s.Status)
		return
	}
	s.Admin = d.admin(ev)
}

// startCompensating stops new work; advance compensates once nothing is in
// flight.
func (d *decider) startCompensating() {
	s := d.s
	d.stopChildren(d.liveChildren(), CmdCancelChild) // call.go
	s.Status = StatusCompensating
	d.cancelTimersOfKind(TimerWorkflowTimeout)
	for k, step := range d.def.Steps {
		ss := s.Steps[k]
		if ss.Status == StepWaiting {
			ss.Status = StepCancelled
			ss.EndedAt = d.now
			d.cancelStepTimers(k, true)
			for _, r := range ss.Runs {
				if r.Status == RunRunning {
					r.Status = RunCancelled
				}
			}
		}
		if step.Kind == KindTask && ss.Status == StepRunning {
			for _, r := range ss.Runs {
				if r.Status == RunRetrying || r.Status == RunPending {
					r.Status = RunCancelled
					r.NextAt = time.Time{}
				}
			}
			d.runSettled(k)
		}
	}
	d.env = nil
}

// finish ends the process with a terminal status.
func (d *decider) finish(st Status) {
	s := d.s
	s.Status = st
	s.EndedAt = d.now
	s.Signals = nil          // no wait will take them
	kids := d.liveChildren() // call.go
	for _, t := range s.Timers {
		d.cancelTimerID(t.ID)
	}
	s.Timers = nil
	// Commands decided in this same decision are not sent after all when
	// the process stops.
	if st == StatusFailed || st == StatusTerminated {
		for _, c := range d.cmds {
			k := d.def.index[c.StepID]
			ss := s.Steps[k]
			runs := ss.Runs
			if c.Compensation {
				runs = ss.Compensations
			}
			idx := 0
			if c.Item != nil {
				idx = *c.Item
			}
			if idx < len(runs) && runs[idx] != nil && c.Attempt <= len(runs[idx].Attempts) {
				runs[idx].Attempts[c.Attempt-1].Outcome = OutcomeAbandoned
			}
		}
		d.cmds = nil
		d.stopChildren(kids, CmdTerminateChild) // call.go: the parent ended, its children stop
	}
	d.releaseChildren() // call.go
	// Whatever was still in flight is abandoned: its results will be
	// ignored.
	for _, ss := range s.Steps {
		for _, runs := range [][]*Run{ss.Runs, ss.Compensations} {
			for _, r := range runs {
				if r == nil || (r.Status != RunRunning && r.Status != RunRetrying) {
					continue
				}
				r.Status = RunCancelled
				r.NextAt = time.Time{}
				for a := range r.Attempts {
					if r.Attempts[a].Outcome == OutcomeInFlight {
						r.Attempts[a].Outcome = OutcomeAbandoned
						r.Attempts[a].EndedAt = d.now
					}
				}
			}
		}
		if ss.Status == StepWaiting || ss.Status == StepRunning {
			ss.Status = StepCancelled
		}
	}
}

// ---------------------------------------------------------------- advance

// advance starts whatever is due after the events were folded.
func (d *decider) advance() {
	for range 4 * (len(d.def.Steps) + 2) {
		if !d.advanceOnce() {
			return
		}
		if d.s.Status.Terminal() {
			return
		}
	}
}

func (d *decider) advanceOnce() bool {
	s := d.s
	switch s.Status {
	case StatusRunning:
		changed := false
		for k, step := range d.def.Steps {
			if s.Status != StatusRunning {
				return true
			}
			ss := s.Steps[k]
			switch ss.Status {
			case StepPending:
				if d.needsMet(step) {
					d.startStep(k)
					changed = true
				}
			case StepRunning:
				if d.dispatchRuns(k, false) {
					changed = true
				}
			}
		}
		if s.Status == StatusRunning && d.allSettled() {
			d.complete()
			return true
		}
		return changed
	case StatusPaused:
		changed := false
		for k := range d.def.Steps {
			if s.Steps[k].Status == StepRunning && d.dispatchRuns(k, true) {
				changed = true
			}
		}
		return changed
	case StatusCompensating:
		if d.forwardInFlight() {
			return false
		}
		return d.compensate()
	case StatusCompensationFailed:
		return false
	}
	return false
}

func (d *decider) needsMet(step *Step) bool {
	for _, k := range step.needs {
		if !d.satisfies(k) {
			return false
		}
	}
	return true
}

// satisfies reports whether step k counts as done for the steps that need
// it: completed, skipped, or failed under on_failure: continue.
func (d *decider) satisfies(k int) bool {
	switch d.s.Steps[k].Status {
	case StepCompleted, StepSkipped:
		return true
	case StepFailed:
		return d.def.Steps[k].OnFailure == OnFailureContinue
	}
	return false
}

func (d *decider) allSettled() bool {
	for k := range d.def.Steps {
		if !d.satisfies(k) {
			return false
		}
	}
	return true
}

func (d *decider) forwardInFlight() bool {
	for _, ss := range d.s.Steps {
		for _, r := range ss.Runs {
			if r.Status == RunRunning {
				return true
			}
		}
	}
	return false
}

func (d *decider) complete() {
	s := d.s
	if d.def.Output != nil {
		v, err := d.def.Output.Eval(d.envFor(d.def.Output, -1, -1))
		if err == nil {
			var b []byte
			b, err = json.Marshal(v)
			s.Output = b
		}
		if err != nil {
			s.Failure = &Failure{Error: &ErrorInfo{Type: ErrTypeExpression, Message: "output: " + err.Error(), Retryable: ptr(false)}, At: d.now}
			d.finish(StatusFailed)
			return
		}
	}
	d.finish(StatusCompleted)
}

func (d *decider) exprFailed(k int, what string, err error) {
	e := &ErrorInfo{Type: ErrTypeExpression, Message: what + ": " + err.Error(), Retryable: ptr(false)}
	ss := d.s.Steps[k]
	if ss.Status == StepPending {
		ss.Status = StepRunning
		ss.StartedAt = d.now
	}
	d.stepFailed(k, nil, e)
}

// startStep starts a step whose needs are met.
func (d *decider) startStep(k int) {
	step := d.def.Steps[k]
	ss := d.s.Steps[k]
	if step.When != nil {
		v, err := step.When.Eval(d.envFor(step.When, -1, -1))
		if err != nil {
			d.exprFailed(k, "when", err)
			return
		}
		b, ok := v.(bool)
		if !ok {
			d.exprFailed(k, "when", fmt.Errorf("when must be true or false, got %T", v))
			return
		}
		if !b {
			ss.Status = StepSkipped
			ss.StartedAt = d.now
			ss.EndedAt = d.now
			d.env = nil
			return
		}
	}
	ss.StartedAt = d.now
	ss.Status = StepRunning
	d.env = nil
	attempt := 1
	if len(ss.Runs) > 0 {
		attempt = ss.Runs[0].Attempt + 1
	}
	switch step.Kind {
	case KindSleep:
		ss.Status = StepWaiting
		ss.Runs = []*Run{{Status: RunRunning, Attempt: attempt}}
		d.setTimer(Timer{Kind: TimerSleep, FireAt: d.now.Add(step.Sleep)}, step.ID, -1, false, attempt)
		return
	case KindUntil:
		v, err := step.Until.Eval(d.envFor(step.Until, -1, -1))
		var at time.Time
		if err == nil {
			at, err = toTime(v)
		}
		if err != nil {
			d.exprFailed(k, "until", err)
			return
		}
		ss.Runs = []*Run{{Status: RunRunning, Attempt: attempt}}
		if !at.After(d.now) {
			ss.Runs[0].Status = RunCompleted
			ss.Runs[0].Output = json.RawMessage("null")
			d.runSettled(k)
			return
		}
		ss.Status = StepWaiting
		d.setTimer(Timer{Kind: TimerUntil, FireAt: at}, step.ID, -1, false, attempt)
		return
	case KindWait:
		ss.Status = StepWaiting
		ss.Runs = []*Run{{Status: RunRunning, Attempt: attempt}}
		if data, ok := d.takeBufferedSignal(k); ok { // signals.go
			ss.Runs[0].Status = RunCompleted
			ss.Runs[0].Output = data
			d.runSettled(k)
			return
		}
		if step.Wait.Timeout > 0 {
			d.setTimer(Timer{Kind: TimerSignalTimeout, FireAt: d.now.Add(step.Wait.Timeout)}, step.ID, -1, false, attempt)
		}
		return
	}
	// task
	if step.ForEach != nil {
		v, err := step.ForEach.Eval(d.envFor(step.ForEach, -1, -1))
		if err != nil {
			d.exprFailed(k, "for_each", err)
			return
		}
		var items []any
		switch x := v.(type) {
		case nil:
		case []any:
			items = x
		default:
			d.exprFailed(k, "for_each", fmt.Errorf("for_each must yield a list, got %T", v))
			return
		}
		if len(items) > MaxForEachItems {
			d.limitFailed(k, &LimitError{Limit: "max_for_each_items", What: "the for_each list of step " + step.ID, Size: len(items), Max: MaxForEachItems})
			return
		}
		ss.Items = make([]json.RawMessage, len(items))
		ss.Runs = make([]*Run, len(items))
		for i, it := range items {
			b, err := json.Marshal(it)
			if err != nil {
				d.exprFailed(k, "for_each", err)
				return
			}
			ss.Items[i] = b
			ss.Runs[i] = &Run{Status: RunPending}
		}
	} else {
		ss.Runs = []*Run{{Status: RunPending}}
	}
	if step.Deadline > 0 {
		ss.DeadlineAt = d.now.Add(step.Deadline)
		d.setTimer(Timer{Kind: TimerDeadline, FireAt: ss.DeadlineAt}, step.ID, -1, false, 1)
	}
	if len(ss.Runs) == 0 {
		ss.setOutput(json.RawMessage("[]"))
		ss.Status = StepCompleted
		ss.EndedAt = d.now
		d.cancelStepTimers(k, false)
		return
	}
	d.dispatchRuns(k, false)
}

// dispatchRuns sends the due attempts of a running task step.
func (d *decider) dispatchRuns(k int, retriesOnly bool) bool {
	step := d.def.Steps[k]
	ss := d.s.Steps[k]
	if (step.Kind != KindTask && step.Kind != KindCall) || ss.Status != StepRunning || d.full {
		return false
	}
	inflight := 0
	for _, r := range ss.Runs {
		if r.Status == RunRunning {
			inflight++
		}
	}
	changed := false
	for i, r := range ss.Runs {
		if r.Status != RunRetrying && (r.Status != RunPending || retriesOnly) {
			continue
		}
		if step.MaxParallel > 0 && inflight >= step.MaxParallel && r.Status == RunPending {
			continue
		}
		if !d.send(k, i, false) {
			return true
		}
		if ss.Status != StepRunning {
			return true
		}
		inflight++
		changed = true
	}
	return changed
}

// send dispatches the next attempt of a run. It returns false when the
// input could not be evaluated (the step failed).
func (d *decider) send(k, idx int, comp bool) bool {
	step := d.def.Steps[k]
	ss := d.s.Steps[k]
	run := ss.Runs[idx]
	service, command, tmpl := step.Service, step.Command, step.Input
	timeout, schedule, heartbeat := d.timeouts(k, comp)
	// A compensation of work whose result the engine never saw: the
	// service must find that work by the key it undoes.
	unknown := false
	if comp {
		run = ss.Compensations[idx]
		service, command, tmpl = step.Compensate.Service, step.Compensate.Command, step.Compensate.Input
		unknown = !ss.Runs[idx].outcomeKnown()
	}
	item := itemIdx(step, idx)
	var input json.RawMessage
	var err error
	if step.Kind == KindCall { // call.go: a command the engine carries out
		// The engine starts it at once: no schedule or heartbeat timeout.
		schedule, heartbeat = 0, 0
		service, command = EngineService, CmdStartChild
		if comp {
			command = CmdCompensateChild
		}
		input, err = d.callInput(k, idx, comp, run.Attempt+1)
	} else {
		var v any
		v, err = tmpl.Eval(d.envFor(tmpl, k, item))
		if err == nil {
			input, err = json.Marshal(v)
		}
	}
	if err != nil && unknown {
		// The input reads an output that never came (a member of null):
		// the service identifies the work by the compensates key alone.
		input, err = json.RawMessage("null"), nil
	}
	if err != nil {
		e := &ErrorInfo{Type: ErrTypeExpression, Message: "input: " + err.Error(), Retryable: ptr(false)}
		if de, ok := err.(*callDepthError); ok {
			e = &ErrorInfo{Type: ErrTypeCallDepth, Message: de.Error(), Retryable: ptr(false)}
		}
		run.Error = e
		if comp {
			run.Status = RunFailed
			ss.Status = StepCompensationFailed
			d.s.Status = StatusCompensationFailed
			return false
		}
		d.runFailed(k, idx, e)
		return false
	}
	run.Attempt++
	n := run.Attempt
	key := idempotencyKey(d.s.ProcessID, step.ID, item, comp)
	id := key + "/" + strconv.Itoa(n)
	start := d.now
	var notBefore time.Time
	if run.Status == RunRetrying && run.NextAt.After(d.now) {
		notBefore = run.NextAt
		start = notBefore
	}
	cmd := Command{
		ID: id, ProcessID: d.s.ProcessID, StepID: step.ID, Attempt: n, Item: itemPtr(step, idx),
		Service: service, Command: command, Input: input, IdempotencyKey: key, Compensation: comp,
		Timeout: timeout, ScheduleTimeout: schedule, HeartbeatTimeout: heartbeat, NotBefore: notBefore,
	}
	if comp {
		cmd.Compensates = idempotencyKey(d.s.ProcessID, step.ID, item, false)
		cmd.OutcomeUnknown = unknown
	}
	if !comp && !ss.DeadlineAt.IsZero() {
		cmd.Deadline = ss.DeadlineAt
	}
	if !d.commandFits(k, idx, comp, &cmd) {
		run.Attempt--
		return false
	}
	run.Status = RunRunning
	run.NextAt = time.Time{}
	run.Attempts = append(run.Attempts, Attempt{N: n, CommandID: id, SentAt: d.now, NotBefore: notBefore})
	// The start-to-close timeout is armed when a worker starts the
	// attempt; until then only the schedule timeout, if any, counts (from
	// when the command can be delivered).
	a := attemptRef{ref: cmdRef{step: step.ID, item: item, comp: comp, attempt: n}, k: k, idx: idx, run: run, at: &run.Attempts[n-1]}
	switch {
	case step.Kind == KindCall:
		// The engine runs it: it starts when it can be delivered.
		a.at.StartedAt, a.at.Starts = start, 1
		if timeout > 0 {
			d.armAttemptTimer(a, TimerAttemptTimeout, start.Add(timeout))
		}
	case schedule > 0:
		d.armAttemptTimer(a, TimerScheduleTimeout, start.Add(schedule))
	}
	d.cmds = append(d.cmds, cmd)
	return true
}

// compensate starts the compensations that are due; it reports whether
// anything changed.
func (d *decider) compensate() bool {
	s := d.s
	changed := false
	// Create the compensation of every run whose work may have been done
	// (completed, succeeded late, or with an unknown outcome), once; a late
	// success can add one after the others.
	for k, step := range d.def.Steps {
		if step.Compensate != nil && d.addCompensations(k) {
			changed = true
		}
	}
	allDone := true
	blocked := d.compensationsBlocked()
	for k := range d.def.Steps {
		ss := s.Steps[k]
		if ss.Compensations == nil {
			continue
		}
		if !d.compDone(k) {
			allDone = false
		}
		// a step's compensation starts after those of the steps that
		// depend on it
		if blocked[k] {
			continue
		}
		for i, c := range ss.Compensations {
			if c == nil || (c.Status != RunPending && c.Status != RunRetrying) {
				continue
			}
			if d.full {
				break // the decision is full: the rest waits for the next one
			}
			if ss.Status != StepCompensating {
				ss.Status = StepCompensating
			}
			changed = true
			if !d.send(k, i, true) {
				return true
			}
		}
	}
	if allDone {
		d.finish(StatusCompensated)
		return true
	}
	return changed
}

// addCompensations creates the missing compensation runs of step k: one
// per run that may have done its work, except runs an admin skipped. It
// reports whether it created any.
func (d *decider) addCompensations(k int) bool {
	step := d.def.Steps[k]
	ss := d.s.Steps[k]
	added := false
	for i, r := range ss.Runs {
		if r.Status == RunSkipped || !r.possiblyDone() {
			continue
		}
		if step.Kind == KindCall && !r.outcomeKnown() {
			continue // a timed-out child is cancelled (it compensates itself), not compensated
		}
		if ss.Compensations == nil {
			ss.Compensations = make([]*Run, len(ss.Runs))
		}
		if ss.Compensations[i] != nil {
			continue
		}
		ss.Compensations[i] = &Run{Status: RunPending}
		added = true
	}
	if added && ss.Status != StepCompleted && ss.Status != StepSkipped {
		// what the compensations may refer to: the outputs that came
		if step.ForEach != nil {
			ss.setOutput(joinOutputs(ss.Runs))
		} else if r := ss.Runs[0]; r.outcomeKnown() {
			ss.setOutput(r.Output)
		}
		d.env = nil
	}
	return added
}

// compDone reports whether every compensation of step k has finished (or
// there is none).
func (d *decider) compDone(k int) bool {
	for _, c := range d.s.Steps[k].Compensations {
		if c != nil && c.Status != RunCompleted && c.Status != RunSkipped {
			return false
		}
	}
	return true
}

// ---------------------------------------------------------------- timers

func (d *decider) setTimer(t Timer, step string, item int, comp bool, attempt int) {
	t.ProcessID = d.s.ProcessID
	t.StepID = step
	t.Attempt = attempt
	t.Compensation = comp
	if item >= 0 {
		t.Item = ptr(item)
	}
	t.ID = timerID(d.s.ProcessID, t.Kind, step, item, comp, attempt)
	for _, p := range d.s.Timers {
		if p.ID == t.ID {
			return
		}
	}
	d.s.Timers = append(d.s.Timers, t)
	d.timers = append(d.timers, t)
}

func (d *decider) cancelTimerID(id string) {
	for i := range d.timers {
		if d.timers[i].ID == id {
			d.timers = append(d.timers[:i], d.timers[i+1:]...)
			return
		}
	}
	d.cancels = append(d.cancels, id)
}

func (d *decider) removeTimers(keep func(*Timer) bool) {
	out := d.s.Timers[:0]
	for i := range d.s.Timers {
		if keep(&d.s.Timers[i]) {
			out = append(out, d.s.Timers[i])
		} else {
			d.cancelTimerID(d.s.Timers[i].ID)
		}
	}
	d.s.Timers = out
}

// cancelStepTimers cancels the step-level timers of a step (deadline,
// sleep, until, signal timeout) and, with attempts, its attempt timeouts.
func (d *decider) cancelStepTimers(k int, attempts bool) {
	id := d.def.Steps[k].ID
	d.removeTimers(func(t *Timer) bool {
		if t.StepID != id || t.Compensation {
			return true
		}
		return t.progressTimer() && !attempts
	})
}

func (d *decider) cancelTimersOfKind(kind TimerKind) {
	d.removeTimers(func(t *Timer) bool { return t.Kind != kind })
}

// ---------------------------------------------------------------- env

// envFor returns the environment to evaluate t in (nil when t has no
// expressions); item >= 0 inside a for_each step k. Only the step outputs
// that t reads are decoded (and cached on the step state).
func (d *decider) envFor(t *Template, k, item int) any {
	if t == nil || !t.hasExprs {
		return nil
	}
	s := d.s
	if d.env == nil {
		if !s.inputDecoded {
			s.inputVal = decodeJSON(s.Input)
			s.inputDecoded = true
		}
		steps := make(map[string]any, len(s.Steps))
		for i, ss := range s.Steps {
			steps[d.def.Steps[i].ID] = map[string]any{"output": nil, "status": string(ss.Status)}
		}
		d.env = &Env{
			Input: s.inputVal,
			Steps: steps,
			Process: map[string]any{
				"id": s.ProcessID, "name": d.def.Name, "version": d.def.Version,
			},
		}
		if cap(d.envOut) < len(s.Steps) {
			d.envOut = make([]bool, len(s.Steps))
		}
		d.envOut = d.envOut[:len(s.Steps)]
		clear(d.envOut)
	}
	for _, j := range t.outputs {
		if d.envOut[j] {
			continue
		}
		d.envOut[j] = true
		ss := s.Steps[j]
		if len(ss.Output) == 0 {
			continue
		}
		if !ss.outDecoded {
			ss.outVal = decodeJSON(ss.Output)
			ss.outDecoded = true
		}
		d.env.Steps[ss.ID].(map[string]any)["output"] = ss.outVal
	}
	if k >= 0 && item >= 0 {
		ss := s.Steps[k]
		var it any
		if item < len(ss.Items) {
			it = decodeJSON(ss.Items[item])
		}
		return ItemEnv{Input: d.env.Input, Steps: d.env.Steps, Process: d.env.Process, Item: it, Index: item}
	}
	return *d.env
}

func decodeJSON(b json.RawMessage) any {
	if len(b) == 0 {
		return nil
	}
	var v any
	if err := jsonfast.Unmarshal(b, &v); err != nil {
		return nil
	}
	return v
}

func toTime(v any) (time.Time, error) {
	switch x := v.(type) {
	case time.Time:
		return x.UTC(), nil
	case string:
		t, err := time.Parse(time.RFC3339Nano, x)
		if err != nil {
			return time.Time{}, fmt.Errorf("until must be an RFC 3339 time: %w", err)
		}
		return t.UTC(), nil
	}
	return time.Time{}, fmt.Errorf("until must yield a time, got %T", v)
}

// ---------------------------------------------------------------- retry

// backoff is the delay before the attempt after the n-th failed one:
// min(initial × coefficient^(n-1), max) ± jitter, where the jitter is
// derived from a hash of the command id (deterministic).
func backoff(p RetryPolicy, n int, seed string) time.Duration {
	if n < 1 {
		n = 1
	}
	delay := float64(p.InitialInterval) * math.Pow(p.BackoffCoefficient, float64(n-1))
	if p.MaxInterval > 0 && delay > float64(p.MaxInterval) {
		delay = float64(p.MaxInterval)
	}
	if p.Jitter > 0 {
		u := float64(fnv64(seed)>>11)/float64(1<<53)*2 - 1 // [-1, 1)
		delay *= 1 + p.Jitter*u
	}
	if delay < 0 {
		delay = 0
	}
	return time.Duration(delay).Round(time.Millisecond)
}

// RetryDelay exposes the backoff computation (for docs and tools): the
// delay after the n-th failed attempt of the given command id.
func RetryDelay(p RetryPolicy, n int, commandID string) time.Duration {
	return backoff(p, n, commandID)
}

// fnv64 is FNV-1a followed by the splitmix64 finalizer, so that ids that
// differ only in their last characters still spread over all 64 bits.
func fnv64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

func ptr[T any](v T) *T { return &v }

func itemIdx(step *Step, idx int) int {
	if step.ForEach == nil {
		return -1
	}
	return idx
}

func itemPtr(step *Step, idx int) *int {
	if step.ForEach == nil {
		return nil
	}
	return ptr(idx)
}
