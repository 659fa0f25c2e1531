package workflow

import (
	"encoding/json"
	"fmt"
	"time"
)

// LateTimerTolerance is how late a worker-progress timer (schedule,
// start-to-close or heartbeat timeout) may fire and still be acted on. A
// timer that the timer relay handed over later than this after its fire_at
// means the broker (or the relay) could not deliver in time, so the engine
// could not have heard from the worker either: the timeout is given a fresh
// period from the time it fired instead (at most MaxLateGraces times per
// attempt), and a broker outage costs no attempt.
const LateTimerTolerance = 5 * time.Second

// MaxLateGraces bounds the late timers of one attempt that are re-armed
// instead of acted on, so that a broker late for ever cannot keep an
// attempt alive for ever.
const MaxLateGraces = 3

// attemptRef locates one attempt in the state.
type attemptRef struct {
	ref cmdRef
	k   int // step index
	idx int // run index (item, or 0)
	run *Run
	at  *Attempt
}

// findAttempt locates the attempt an event's command id names, or reports
// it as unknown (and returns false).
func (d *decider) findAttempt(i int, ev *Event) (attemptRef, bool) {
	s := d.s
	ref, ok := parseCommandID(s.ProcessID, ev.CommandID)
	if !ok {
		d.ignore(i, ev, IgnoreUnknownCommand, "command %s was not sent by this process", ev.CommandID)
		return attemptRef{}, false
	}
	k, ok := d.def.index[ref.step]
	if !ok {
		d.ignore(i, ev, IgnoreUnknownCommand, "command %s names unknown step %q", ev.CommandID, ref.step)
		return attemptRef{}, false
	}
	ss := s.Steps[k]
	runs := ss.Runs
	if ref.comp {
		runs = ss.Compensations
	}
	idx := max(ref.item, 0)
	if (ref.item >= 0) != (d.def.Steps[k].ForEach != nil) || idx >= len(runs) || runs[idx] == nil {
		d.ignore(i, ev, IgnoreUnknownCommand, "command %s was not sent by this process", ev.CommandID)
		return attemptRef{}, false
	}
	run := runs[idx]
	if ref.attempt > len(run.Attempts) || run.Attempts[ref.attempt-1].CommandID != ev.CommandID {
		d.ignore(i, ev, IgnoreUnknownCommand, "attempt %d of %s was never sent", ref.attempt, ev.CommandID)
		return attemptRef{}, false
	}
	return attemptRef{ref: ref, k: k, idx: idx, run: run, at: &run.Attempts[ref.attempt-1]}, true
}

// timeouts returns the start-to-close, schedule and heartbeat timeouts of
// step k's command (or of its compensation).
func (d *decider) timeouts(k int, comp bool) (timeout, schedule, heartbeat time.Duration) {
	step := d.def.Steps[k]
	if comp {
		c := step.Compensate
		return c.Timeout, c.ScheduleTimeout, c.HeartbeatTimeout
	}
	return step.Timeout, step.ScheduleTimeout, step.HeartbeatTimeout
}

// ---------------------------------------------------------------- started, heartbeat

// started folds a worker's report that it started an attempt: the
// start-to-close timeout (and the heartbeat timeout) count from now. A
// second start of the same attempt (its command redelivered to another
// worker after its holder died or let it go) does not restart the
// start-to-close clock, which counts from the attempt's first start
// (Temporal's rule): an attempt whose workers keep dying faster than its
// timeout still times out, and its retry (same idempotency key) is sent.
// Only the heartbeat timeout, if any, counts again from the new start.
func (d *decider) started(i int, ev *Event) {
	a, ok := d.findAttempt(i, ev)
	if !ok {
		return
	}
	if a.at.Outcome != OutcomeInFlight {
		d.ignore(i, ev, IgnoreAttemptSettled, "attempt %d of %s is already %s", a.ref.attempt, a.ref.step, a.at.Outcome)
		return
	}
	d.startAttempt(a)
}

func (d *decider) startAttempt(a attemptRef) {
	at := a.at
	at.Starts++
	timeout, _, heartbeat := d.timeouts(a.k, a.ref.comp)
	if at.Starts > 1 {
		// Started again: the start-to-close timer armed at the first
		// start stays; the new holder's heartbeats count from now.
		if heartbeat > 0 {
			d.cancelAttemptTimers(a.ref, func(k TimerKind) bool { return k == TimerHeartbeatTimeout })
			at.BeatAt = d.now
			d.armAttemptTimer(a, TimerHeartbeatTimeout, d.now.Add(heartbeat))
		}
		return
	}
	if at.StartedAt.IsZero() {
		at.StartedAt = d.now
	}
	d.cancelAttemptTimers(a.ref, func(TimerKind) bool { return true })
	if timeout > 0 {
		d.armAttemptTimer(a, TimerAttemptTimeout, d.now.Add(timeout))
	}
	if heartbeat > 0 {
		at.BeatAt = d.now
		d.armAttemptTimer(a, TimerHeartbeatTimeout, d.now.Add(heartbeat))
	}
}

// heartbeat folds the newest heartbeat of a started attempt (the engine
// folds many heartbeats into one event): the heartbeat timeout counts from
// ev.BeatAt. A heartbeat of an attempt not known to be started starts it.
func (d *decider) heartbeat(i int, ev *Event) {
	a, ok := d.findAttempt(i, ev)
	if !ok {
		return
	}
	at := a.at
	if at.Outcome != OutcomeInFlight {
		d.ignore(i, ev, IgnoreAttemptSettled, "attempt %d of %s is already %s", a.ref.attempt, a.ref.step, at.Outcome)
		return
	}
	if at.Starts == 0 {
		d.startAttempt(a)
	}
	_, _, hb := d.timeouts(a.k, a.ref.comp)
	if hb <= 0 {
		return // no heartbeat timeout: nothing to re-arm
	}
	beat := ev.BeatAt.UTC()
	if beat.IsZero() || beat.After(d.now) {
		beat = d.now
	}
	if !beat.After(at.BeatAt) {
		return // not newer than what was folded
	}
	at.BeatAt = beat
	fire := beat.Add(hb)
	if !fire.After(d.now) {
		fire = d.now.Add(hb)
	}
	d.cancelAttemptTimers(a.ref, func(k TimerKind) bool { return k == TimerHeartbeatTimeout })
	d.armAttemptTimer(a, TimerHeartbeatTimeout, fire)
}

// armAttemptTimer sets a timer of one attempt, with an id of its own.
func (d *decider) armAttemptTimer(a attemptRef, kind TimerKind, at time.Time) {
	a.at.Arms++
	step := d.def.Steps[a.k]
	item := itemIdx(step, a.idx)
	t := Timer{Kind: kind, FireAt: at}
	t.ProcessID = d.s.ProcessID
	t.StepID = step.ID
	t.Attempt = a.ref.attempt
	t.Compensation = a.ref.comp
	if item >= 0 {
		t.Item = ptr(item)
	}
	t.ID = attemptTimerID(d.s.ProcessID, kind, step.ID, item, a.ref.comp, a.ref.attempt, a.at.Arms)
	d.s.Timers = append(d.s.Timers, t)
	d.timers = append(d.timers, t)
}

// cancelAttemptTimers cancels the pending timers of one attempt whose kind
// matches.
func (d *decider) cancelAttemptTimers(r cmdRef, kind func(TimerKind) bool) {
	d.removeTimers(func(t *Timer) bool {
		return !(t.progressTimer() && kind(t.Kind) && t.StepID == r.step && t.Attempt == r.attempt &&
			t.Compensation == r.comp && timerItem(t) == r.item)
	})
}

func timerItem(t *Timer) int {
	if t.Item == nil {
		return -1
	}
	return *t.Item
}

// progressTimerFired acts on a schedule, start-to-close or heartbeat
// timeout of an attempt still in flight (t is no longer pending).
func (d *decider) progressTimerFired(t Timer, ev *Event) {
	k, ok := d.def.index[t.StepID]
	if !ok {
		return
	}
	step := d.def.Steps[k]
	ss := d.s.Steps[k]
	runs := ss.Runs
	if t.Compensation {
		runs = ss.Compensations
	}
	idx := max(timerItem(&t), 0)
	if idx >= len(runs) || runs[idx] == nil || t.Attempt < 1 || t.Attempt > len(runs[idx].Attempts) {
		return
	}
	run := runs[idx]
	at := &run.Attempts[t.Attempt-1]
	if at.Outcome != OutcomeInFlight {
		return
	}
	a := attemptRef{ref: cmdRef{step: step.ID, item: itemIdx(step, idx), comp: t.Compensation, attempt: t.Attempt}, k: k, idx: idx, run: run, at: at}
	timeout, schedule, heartbeat := d.timeouts(k, t.Compensation)
	period := map[TimerKind]time.Duration{TimerAttemptTimeout: timeout, TimerScheduleTimeout: schedule, TimerHeartbeatTimeout: heartbeat}[t.Kind]
	if !ev.FiredAt.IsZero() && ev.FiredAt.Sub(t.FireAt) > LateTimerTolerance && at.Graces < MaxLateGraces && period > 0 {
		// Fired late: nobody could have heard from the worker meanwhile.
		at.Graces++
		if t.Kind == TimerHeartbeatTimeout {
			at.BeatAt = d.now
		}
		d.armAttemptTimer(a, t.Kind, d.now.Add(period))
		return
	}
	var e *ErrorInfo
	switch t.Kind {
	case TimerScheduleTimeout:
		e = &ErrorInfo{Type: ErrTypeScheduleTimeout, Message: fmt.Sprintf("no worker started attempt %d within %s", t.Attempt, schedule), Retryable: ptr(false)}
	case TimerHeartbeatTimeout:
		e = &ErrorInfo{Type: ErrTypeHeartbeat, Message: fmt.Sprintf("attempt %d sent no heartbeat for %s", t.Attempt, heartbeat)}
	default:
		e = &ErrorInfo{Type: ErrTypeTimeout, Message: fmt.Sprintf("attempt %d timed out %s after its start", t.Attempt, timeout)}
	}
	d.cancelAttemptTimers(a.ref, func(TimerKind) bool { return true })
	at.Outcome = OutcomeTimedOut
	at.EndedAt = d.now
	at.Error = e
	d.stopTimedOutChild(k, idx, t.Attempt, t.Compensation) // call.go
	d.attemptFailed(k, idx, t.Compensation, e)
}

// ---------------------------------------------------------------- results

// completeRun settles a run with a success.
func (d *decider) completeRun(a attemptRef, output json.RawMessage) {
	run := a.run
	run.Status = RunCompleted
	run.Output = output
	if len(run.Output) == 0 {
		run.Output = json.RawMessage("null")
	}
	run.Error = nil
	run.NextAt = time.Time{}
	if a.ref.comp {
		d.compensationDone(a.k)
		return
	}
	d.runSettled(a.k)
}

// lateResult folds a result for an attempt that had already settled
// (timed out, abandoned, failed, or completed). A failure only tells that
// the attempt did nothing. A success is never dropped: the work was done,
// under the step's idempotency key. It completes the run if the run is
// still open; otherwise it is recorded on the run, which the saga then
// compensates if it compensates (at once if it is compensating or has
// compensated).
func (d *decider) lateResult(i int, ev *Event, a attemptRef) {
	at, run := a.at, a.run
	if ev.Error != nil {
		switch at.Outcome {
		case OutcomeTimedOut, OutcomeAbandoned:
			if at.Late == "" {
				at.Late, at.LateAt = OutcomeFailed, d.now
			}
			reason := IgnoreAfterTimeout
			if at.Outcome == OutcomeAbandoned {
				reason = IgnoreStaleAttempt
			}
			d.ignore(i, ev, reason, "attempt %d of step %s had %s; its failure (%s) is recorded: it did nothing", a.ref.attempt, a.ref.step, at.Outcome, ev.Error.Type)
		default:
			d.ignore(i, ev, IgnoreDuplicateResult, "attempt %d of step %s already has a result (%s)", a.ref.attempt, a.ref.step, at.Outcome)
		}
		return
	}
	if at.Outcome == OutcomeCompleted || at.Late == OutcomeCompleted {
		d.ignore(i, ev, IgnoreDuplicateResult, "attempt %d of step %s already succeeded", a.ref.attempt, a.ref.step)
		return
	}
	at.Late, at.LateAt = OutcomeCompleted, d.now
	output := ev.Output
	if len(output) == 0 {
		output = json.RawMessage("null")
	}
	switch run.Status {
	case RunCompleted:
		// Another attempt of the same key completed: the same work.
		d.ignore(i, ev, IgnoreDuplicateResult, "late success of attempt %d of step %s, which has completed (same idempotency key); recorded", a.ref.attempt, a.ref.step)
		return
	case RunRunning, RunRetrying, RunPending:
		// Still open: this success completes the run. A newer attempt in
		// flight is abandoned (same key: the service answers it with this
		// same work).
		for j := range run.Attempts {
			if o := &run.Attempts[j]; o.Outcome == OutcomeInFlight {
				o.Outcome, o.EndedAt = OutcomeAbandoned, d.now
				d.cancelAttemptTimers(cmdRef{step: a.ref.step, item: a.ref.item, comp: a.ref.comp, attempt: o.N}, func(TimerKind) bool { return true })
				d.stopTimedOutChild(a.k, a.idx, o.N, a.ref.comp) // call.go
			}
		}
		run.Done = a.ref.attempt
		d.completeRun(a, output)
		return
	}
	s := d.s
	ss := s.Steps[a.k]
	if a.ref.comp {
		// A compensation that had failed for good did its work after all.
		run.Status, run.Output, run.Error = RunCompleted, output, nil
		if ss.Status == StepCompensationFailed {
			ss.Status = StepCompensating
		}
		d.compensationDone(a.k)
		if s.Status == StatusCompensationFailed && !d.anyCompensationFailed() {
			s.Status = StatusCompensating
		}
		return
	}
	// A forward run that had failed or been cancelled did the work.
	run.Late = true
	run.Output = output
	run.Done = a.ref.attempt
	step := d.def.Steps[a.k]
	switch {
	case ss.Status == StepRunning:
		// a for_each step whose other items are still going
		run.Status, run.Error = RunCompleted, nil
		d.runSettled(a.k)
	case s.Status == StatusPaused && ss.Status == StepFailed && step.OnFailure != OnFailureContinue:
		// the failure the process is paused on turns out a success
		run.Status, run.Error = RunCompleted, nil
		ss.Status, ss.Error, ss.EndedAt = StepRunning, nil, time.Time{}
		d.env = nil
		d.runSettled(a.k)
		if !d.anyPausingFailure() {
			s.Status, s.Failure = StatusRunning, nil
		}
	case step.Compensate != nil && (s.Status == StatusCompensating || s.Status == StatusCompensationFailed || s.Status == StatusCompensated):
		// compensate() creates the compensation of this run
		if s.Status == StatusCompensated {
			s.Status, s.EndedAt = StatusCompensating, time.Time{}
		}
	}
	// Otherwise it is recorded: the saga does not compensate (it completed,
	// failed under fail, or was terminated, or the step is optional and the
	// process goes on); if the saga compensates later, this run is
	// compensated with the others.
}

// possiblyDone reports whether a run's work may have happened: it
// completed, a success arrived late, or an attempt timed out or was
// abandoned in flight without a later answer (its outcome is unknown).
func (r *Run) possiblyDone() bool {
	if r.Status == RunCompleted || r.Late {
		return true
	}
	for _, a := range r.Attempts {
		if (a.Outcome == OutcomeTimedOut || a.Outcome == OutcomeAbandoned) && a.Late == "" {
			return true
		}
	}
	return false
}

// outcomeKnown reports whether the engine saw the run's work succeed.
func (r *Run) outcomeKnown() bool { return r.Status == RunCompleted || r.Late }

// LateSuccess reports whether ev is a successful result that still matters
// to a finished process: the run it answers has not completed. Decide
// records it and, when the process was compensated, compensates that work
// (the process goes back to compensating). A runtime that drops the events
// of finished processes must still feed these to Decide.
func LateSuccess(st *State, ev *Event) bool {
	if st == nil || ev.Type != EventResult || ev.Error != nil {
		return false
	}
	ref, ok := parseCommandID(st.ProcessID, ev.CommandID)
	if !ok {
		return false
	}
	ss := st.StepByID(ref.step)
	if ss == nil {
		return false
	}
	runs := ss.Runs
	if ref.comp {
		runs = ss.Compensations
	}
	idx := max(ref.item, 0)
	if idx >= len(runs) || runs[idx] == nil || ref.attempt > len(runs[idx].Attempts) {
		return false
	}
	run := runs[idx]
	at := run.Attempts[ref.attempt-1]
	return at.CommandID == ev.CommandID && run.Status != RunCompleted && !run.Late &&
		at.Outcome != OutcomeCompleted && at.Late != OutcomeCompleted
}
