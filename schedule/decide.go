package schedule

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/pulsaga/pulsaga/workflow"
)

// State is what a schedule remembers between ticks.
type State struct {
	// Revision counts the changes of spec or pause; a tick armed under an
	// older revision is stale.
	Revision int64 `json:"revision"`
	// ArmedID and ArmedAt are the pending tick (none while paused).
	ArmedID string    `json:"armed_id,omitempty"`
	ArmedAt time.Time `json:"armed_at,omitzero"`
	// LastTick is the last tick handled; LastProcessID the last run started.
	LastTick      time.Time `json:"last_tick,omitzero"`
	LastProcessID string    `json:"last_process_id,omitempty"`
	// Running are the runs started and not yet seen finished (not tracked
	// under overlap: allow).
	Running []Run `json:"running,omitempty"`
	// Started and Skipped count ticks; LastSkip says why the last skipped
	// one was.
	Started  int64  `json:"started"`
	Skipped  int64  `json:"skipped"`
	LastSkip string `json:"last_skip,omitempty"`
	// CreatedAt, UpdatedAt and Actor: when, and by whom, it last changed.
	CreatedAt time.Time `json:"created_at,omitzero"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
	Actor     string    `json:"actor,omitempty"`
}

// Run is a process a schedule started.
type Run struct {
	ProcessID string    `json:"process_id"`
	Tick      time.Time `json:"tick"`
	// Seen: the status table has shown it (so its absence later means it
	// finished and expired, not that it has not started yet).
	Seen bool `json:"seen,omitempty"`
}

// Record is a schedule as stored: its spec and its state.
type Record struct {
	Spec  Spec  `json:"spec"`
	State State `json:"state"`
}

// Start is a process to start.
type Start struct {
	ProcessID string          `json:"process_id"`
	Tick      time.Time       `json:"tick"`
	Input     json.RawMessage `json:"input,omitempty"`
}

// Stop is a live run to cancel or terminate (overlap policy).
type Stop struct {
	ProcessID string `json:"process_id"`
	// Action is "cancel" or "terminate".
	Action string `json:"action"`
	Reason string `json:"reason"`
}

// Effects are what handling one message does.
type Effects struct {
	// Record is the new record to write; nil: nothing to write (or, with
	// Delete, a tombstone).
	Record *Record
	Delete bool
	// Starts, in tick order, and Stops, before the starts.
	Starts []Start
	Stops  []Stop
	// Arm is the next tick to arm (nil: none).
	Arm *Arm
	// Ignored says why a message changed nothing ("" when it did).
	Ignored string
}

// Arm is a tick to send as a delayed message.
type Arm struct {
	ID string
	At time.Time
}

// Observed is what the scheduler saw outside the record when a tick came.
type Observed struct {
	// Status returns a process's status from the status table (false: not
	// in it).
	Status func(pid string) (workflow.Status, bool)
	// DefinitionErr is why the definition cannot be started (nil: it can).
	DefinitionErr error
}

func armID(name string, rev int64, at time.Time) string {
	return "schedule:" + name + ":" + strconv.FormatInt(rev, 10) + ":" + strconv.FormatInt(at.UnixNano(), 10)
}

func (r *Record) clone() *Record {
	c := *r
	c.State.Running = append([]Run(nil), r.State.Running...)
	return &c
}

// arm points the record at its next tick after t.
func (r *Record) arm(t time.Time) *Arm {
	at := r.Spec.Next(t)
	r.State.ArmedAt, r.State.ArmedID = at, armID(r.Spec.Name, r.State.Revision, at)
	return &Arm{ID: r.State.ArmedID, At: at}
}

func (r *Record) disarm() {
	r.State.ArmedAt, r.State.ArmedID = time.Time{}, ""
}

// Put creates a schedule or replaces its spec. A spec identical to the
// current one changes nothing. A replaced spec keeps the counters and the
// live runs, and ticks from now on under the new spec.
func Put(old *Record, spec Spec, actor string, now time.Time) (Effects, error) {
	if err := spec.Normalize(); err != nil {
		return Effects{}, err
	}
	var r *Record
	if old == nil {
		r = &Record{Spec: spec, State: State{CreatedAt: now}}
	} else {
		a, _ := json.Marshal(old.Spec)
		b, _ := json.Marshal(spec)
		if string(a) == string(b) {
			return Effects{Ignored: "the schedule already has this spec"}, nil
		}
		r = old.clone()
		r.Spec = spec
	}
	r.State.Revision++
	r.State.UpdatedAt, r.State.Actor = now, actor
	eff := Effects{Record: r}
	if spec.Paused {
		r.disarm()
	} else {
		eff.Arm = r.arm(now)
	}
	return eff, nil
}

// Pause stops the ticks of a schedule until Resume.
func Pause(old *Record, actor string, now time.Time) Effects {
	if old == nil {
		return Effects{Ignored: "no such schedule"}
	}
	if old.Spec.Paused {
		return Effects{Ignored: "the schedule is paused already"}
	}
	r := old.clone()
	r.Spec.Paused = true
	r.State.Revision++
	r.State.UpdatedAt, r.State.Actor = now, actor
	r.disarm()
	return Effects{Record: r}
}

// Resume starts the ticks again from now: ticks that fell while the
// schedule was paused are not caught up.
func Resume(old *Record, actor string, now time.Time) Effects {
	if old == nil {
		return Effects{Ignored: "no such schedule"}
	}
	if !old.Spec.Paused {
		return Effects{Ignored: "the schedule is not paused"}
	}
	r := old.clone()
	r.Spec.Paused = false
	r.State.Revision++
	r.State.UpdatedAt, r.State.Actor = now, actor
	return Effects{Record: r, Arm: r.arm(now)}
}

// Delete removes a schedule; its pending tick will find nothing.
func Delete(old *Record) Effects {
	if old == nil {
		return Effects{Ignored: "no such schedule"}
	}
	return Effects{Delete: true}
}

// Tick handles the fired tick id (due at at) at now.
func Tick(old *Record, id string, at, now time.Time, obs Observed) Effects {
	switch {
	case old == nil:
		return Effects{Ignored: "no such schedule (deleted)"}
	case old.Spec.Paused:
		return Effects{Ignored: "the schedule is paused"}
	case old.State.ArmedID != id:
		return Effects{Ignored: "stale tick (the schedule changed or this tick was handled)"}
	}
	if now.Before(at) {
		now = at // the relay never fires early; trust the timer over a lagging clock
	}
	r := old.clone()
	s := &r.State
	spec := &r.Spec
	window := time.Duration(spec.CatchUpWindow)
	skip := func(n int, why string) {
		if n > 0 {
			s.Skipped += int64(n)
			s.LastSkip = why
		}
	}
	// Ticks older than the catch-up window are skipped unseen.
	lo := at
	if cut := now.Add(-window); lo.Before(cut) {
		first := spec.Next(cut.Add(-time.Nanosecond))
		skip(countTicks(spec, at, first), fmt.Sprintf("missed by more than the catch-up window (%s)", window))
		lo = first
	}
	// The ticks due: lo and every later one up to now.
	var due []time.Time
	for t := lo; !t.IsZero() && !t.After(now) && len(due) < maxEnumerated; t = spec.Next(t) {
		due = append(due, t)
	}
	var run []time.Time
	var rest *time.Time // catch_up: all with more than one message handles
	missed := func(t time.Time) bool { return now.Sub(t) > MissedAfter }
	switch spec.CatchUp {
	case CatchUpAll:
		run = due
		if len(run) > MaxCatchUpPerTick {
			rest = &due[MaxCatchUpPerTick]
			run = due[:MaxCatchUpPerTick]
		}
	case CatchUpNone:
		for _, t := range due {
			if !missed(t) {
				run = append(run, t)
			}
		}
		skip(len(due)-len(run), "missed (catch_up: none)")
	default: // latest
		if n := len(due); n > 0 {
			run = due[n-1:]
			skip(n-1, "missed (catch_up: latest starts only the most recent)")
		}
	}
	eff := Effects{Record: r}
	r.refreshRunning(obs.Status)
	for _, t := range run {
		s.LastTick = t
		if obs.DefinitionErr != nil {
			skip(1, "cannot start: "+obs.DefinitionErr.Error())
			continue
		}
		if len(s.Running) > 0 {
			switch spec.Overlap {
			case OverlapSkip:
				skip(1, "the previous run "+s.Running[len(s.Running)-1].ProcessID+" is still live (overlap: skip)")
				continue
			case OverlapCancelPrevious, OverlapTerminatePrevious:
				action := "cancel"
				if spec.Overlap == OverlapTerminatePrevious {
					action = "terminate"
				}
				for _, p := range s.Running {
					eff.Stops = append(eff.Stops, Stop{ProcessID: p.ProcessID, Action: action, Reason: fmt.Sprintf("schedule %s: tick %s (overlap: %s)", spec.Name, t.Format(time.RFC3339), spec.Overlap)})
				}
				s.Running = nil
			}
		}
		pid := ProcessID(spec.Name, t)
		input, err := spec.input(t, now)
		if err != nil {
			skip(1, "input: "+err.Error())
			continue
		}
		eff.Starts = append(eff.Starts, Start{ProcessID: pid, Tick: t, Input: input})
		s.Started++
		s.LastProcessID = pid
		if spec.Overlap != OverlapAllow {
			s.Running = append(s.Running, Run{ProcessID: pid, Tick: t})
			if n := len(s.Running) - MaxTracked; n > 0 {
				s.Running = append([]Run(nil), s.Running[n:]...)
			}
		}
	}
	if rest != nil {
		// the rest of the backlog: at once, in the next message
		s.ArmedAt, s.ArmedID = *rest, armID(spec.Name, s.Revision, *rest)
		eff.Arm = &Arm{ID: s.ArmedID, At: *rest}
		return eff
	}
	if len(due) > 0 {
		s.LastTick = due[len(due)-1]
	}
	eff.Arm = r.arm(now)
	return eff
}

// maxEnumerated bounds the ticks looked at in one message (a day of
// one-second ticks).
const maxEnumerated = 100_000

// countTicks counts the ticks in [from, to), up to maxEnumerated.
func countTicks(spec *Spec, from, to time.Time) int {
	if spec.Every > 0 {
		every := int64(spec.Every)
		return int((to.UnixNano() - from.UnixNano() + every - 1) / every)
	}
	n := 0
	for t := from; !t.IsZero() && t.Before(to) && n < maxEnumerated; t = spec.Next(t) {
		n++
	}
	return n
}

// refreshRunning drops the runs the status table shows finished: terminal,
// or gone from the table after having been seen in it (expired). A run not
// seen yet is still starting.
func (r *Record) refreshRunning(status func(string) (workflow.Status, bool)) {
	if status == nil {
		return
	}
	keep := r.State.Running[:0]
	for _, p := range r.State.Running {
		st, ok := status(p.ProcessID)
		switch {
		case ok && st.Terminal():
			continue
		case ok:
			p.Seen = true
		case p.Seen:
			continue
		}
		keep = append(keep, p)
	}
	r.State.Running = keep
}

// input evaluates the spec's input for the tick at t.
func (s *Spec) input(t, now time.Time) (json.RawMessage, error) {
	if len(s.Input) == 0 {
		return nil, nil
	}
	tmpl, err := workflow.CompileJSONTemplate(s.Input, "schedule")
	if err != nil {
		return nil, err
	}
	if !tmpl.HasExpressions() {
		return s.Input, nil
	}
	return tmpl.EvalWith(map[string]any{"schedule": map[string]any{
		"name": s.Name, "time": t.UTC().Format(time.RFC3339), "fired_at": now.UTC().Format(time.RFC3339Nano),
		"definition": s.Definition,
	}})
}
