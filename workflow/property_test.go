package workflow

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"testing"
	"time"
)

// Inputs that satisfy the schemas of the testdata definitions.
var simInputs = map[string]string{
	"trip-booking":         `{"customer":"c","amount":5}`,
	"order-fulfilment":     `{"order_id":"o","customer":"c","lines":[{"sku":"a","qty":1},{"sku":"b","qty":2},{"sku":"c","qty":1}]}`,
	"nightly-pipeline":     `{"date":"2026-01-01","full_rebuild":true}`,
	"user-onboarding":      `{"email":"e"}`,
	"loan-approval":        `{"applicant":"a","amount":50000}`,
	"subscription-renewal": `{"subscription_id":"s","renews_at":"2026-01-05T00:00:00Z","plan":"p"}`,
	"media-transcode":      `{"video_id":"v"}`,
}

// One output that every expression of the testdata definitions can read.
const simOutput = `{"payment_id":"x","score":600,"path":"p","reservation_id":"r","charge_id":"c","tracking":"t","shipment_id":"s","table":"t","account_id":"a","valid_until":"v","approved":true,"officer":"o","reservation":"r","renditions":["1080p"]}`

// TestPropertyRandomOrders drives every testdata definition with random
// results, timer firings, duplicates, signals and admin actions in random
// orders (fixed seeds), and checks the saga invariants after every
// decision.
func TestPropertyRandomOrders(t *testing.T) {
	files, _ := filepath.Glob("../testdata/*.yaml")
	seeds := 200
	if testing.Short() {
		seeds = 20
	}
	for _, f := range files {
		def, err := LoadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(def.Name, func(t *testing.T) {
			ends := map[Status]int{}
			for seed := uint64(1); seed <= uint64(seeds); seed++ {
				ends[simulate(t, def, seed)]++
			}
			t.Logf("final statuses over %d seeds: %v", seeds, ends)
		})
	}
}

type compKey struct {
	step string
	item int
}

func simulate(t *testing.T, def *Definition, seed uint64) Status {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 0x5a9a))
	pid := fmt.Sprintf("sim-%d", seed)
	now := t0
	outstanding := map[string]Command{}
	delivered := []Event{}
	fired := []string{}
	compSucceeded := map[compKey]int{}
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("seed %d: "+format, append([]any{seed}, args...)...)
	}
	d, err := Decide(def, nil, []Event{{Type: EventStart, ProcessID: pid, Input: json.RawMessage(simInputs[def.Name])}}, now)
	if err != nil {
		fail("start: %v", err)
	}
	for _, c := range d.Commands {
		outstanding[c.ID] = c
	}
	st := d.State
	terminalFor := 0
	for iter := 0; iter < 300 && terminalFor < 3; iter++ {
		var batch []Event
		for n := 1 + r.IntN(3); n > 0; n-- {
			if ev, ok := randomEvent(r, def, st, outstanding, delivered, fired); ok {
				batch = append(batch, ev)
			}
		}
		if len(batch) == 0 {
			break // nothing can happen any more (e.g. a wait with no timeout and no signal)
		}
		now = now.Add(time.Duration(r.IntN(20000)) * time.Millisecond)
		prev := st
		d, err := Decide(def, st, batch, now)
		if err != nil {
			fail("decide: %v", err)
		}
		ignored := map[int]bool{}
		for _, ig := range d.Ignored {
			ignored[ig.Index] = true
		}
		for i, ev := range batch {
			switch ev.Type {
			case EventResult:
				delete(outstanding, ev.CommandID)
				delivered = append(delivered, ev)
				if ref, _ := parseCommandID(pid, ev.CommandID); ref.comp && ev.Error == nil && !ignored[i] {
					k := compKey{ref.step, ref.item}
					compSucceeded[k]++
					if compSucceeded[k] > 1 {
						fail("compensation of %v accepted twice", k)
					}
				}
			case EventTimer:
				fired = append(fired, ev.TimerID)
			}
		}
		st = d.State
		checkInvariants(t, fmt.Sprintf("seed %d", seed), def, prev, d, batch)
		for _, c := range d.Commands {
			outstanding[c.ID] = c
		}
		if st.Status.Terminal() {
			terminalFor++
		}
		if r.IntN(4) == 0 {
			st = roundTrip(t, st)
		}
	}
	if st.Status == StatusCompensated {
		// every run of a step with a compensate block that may have done its
		// work was compensated exactly once (or skipped by an admin)
		for k, step := range def.Steps {
			if step.Compensate == nil {
				continue
			}
			ss := st.Steps[k]
			for i, run := range ss.Runs {
				if run.Status == RunSkipped || !run.possiblyDone() {
					continue
				}
				item := itemIdx(step, i)
				c := ss.Compensations
				if c == nil || c[i] == nil {
					fail("completed %s[%d] never compensated", step.ID, item)
				}
				if c[i].Status == RunCompleted && compSucceeded[compKey{step.ID, item}] != 1 {
					fail("%s[%d] compensated %d times", step.ID, item, compSucceeded[compKey{step.ID, item}])
				}
				if c[i].Status != RunCompleted && c[i].Status != RunSkipped {
					fail("%s[%d] compensation %s at the end", step.ID, item, c[i].Status)
				}
			}
		}
	}
	return st.Status
}

func checkInvariants(t *testing.T, label string, def *Definition, prev *State, d Decision, batch []Event) {
	t.Helper()
	st := d.State
	fail := func(format string, args ...any) {
		t.Helper()
		b, _ := json.Marshal(batch)
		t.Fatalf("%s: "+format+"\nbatch: %s", append(append([]any{label}, args...), b)...)
	}
	// Two exceptions to "terminal is terminal": a parent compensates a
	// completed child (call.go), and a success that arrives after a process
	// was compensated (work it never saw succeed) sends it back to
	// compensating, to undo that work.
	compensated := false
	late := false
	for i, ev := range batch {
		compensated = compensated || (ev.Type == EventCompensate && prev.Status == StatusCompleted)
		late = late || LateSuccess(prev, &batch[i])
	}
	reopenedLate := late && prev.Status == StatusCompensated && st.Status == StatusCompensating
	if prev.Status.Terminal() && !compensated {
		if st.Status != prev.Status && !reopenedLate {
			fail("terminal status %s became %s", prev.Status, st.Status)
		}
		for _, c := range d.Commands {
			if !reopenedLate || !c.Compensation {
				fail("command %s after the end", c.ID)
			}
		}
		if len(d.Timers) > 0 && !reopenedLate {
			fail("timers after the end")
		}
	}
	if st.Status.Terminal() && len(st.Timers) > 0 {
		fail("pending timers after the end: %v", st.Timers)
	}
	for _, c := range d.Commands {
		step, ok := def.Step(c.StepID)
		if !ok {
			fail("command for unknown step %s", c.StepID)
		}
		if c.Service == EngineService && (c.Command == CmdCancelChild || c.Command == CmdTerminateChild || c.Command == CmdReleaseChild) {
			if step.Kind != KindCall {
				fail("child command %s of a %s step", c.ID, step.Kind)
			}
			continue // stopping or releasing a child is how a parent stops or ends
		}
		if c.IdempotencyKey == "" || c.ProcessID != st.ProcessID {
			fail("command %s lacks identity", c.ID)
		}
		if !c.Compensation {
			// no command for a step whose needs are unmet
			for _, n := range step.Needs {
				k := def.index[n]
				s := st.Steps[k].Status
				ok := s == StepCompleted || s == StepSkipped || (s == StepFailed && def.Steps[k].OnFailure == OnFailureContinue)
				if !ok {
					fail("command %s sent while its need %s is %s", c.ID, n, s)
				}
			}
			if st.Status != StatusRunning && st.Status != StatusPaused {
				fail("forward command %s while %s", c.ID, st.Status)
			}
			continue
		}
		// a compensation only after the compensations of every step that
		// depends on it, and only of a completed run
		k := def.index[c.StepID]
		for _, dep := range def.transitiveDependents(k) {
			if def.Steps[dep].Compensate == nil {
				continue
			}
			ds := st.Steps[dep]
			for ri, run := range ds.Runs {
				if run.Status == RunSkipped || !run.possiblyDone() {
					continue
				}
				if ri >= len(ds.Compensations) || ds.Compensations[ri] == nil {
					fail("compensation %s while completed dependent %s has no compensation", c.ID, ds.ID)
				}
				if cr := ds.Compensations[ri]; cr.Status != RunCompleted && cr.Status != RunSkipped {
					fail("compensation %s before the compensation of dependent %s (%s)", c.ID, ds.ID, cr.Status)
				}
			}
		}
		idx := 0
		if c.Item != nil {
			idx = *c.Item
		}
		// (a compensation decided for an unknown outcome goes on when a late
		// failure then shows that the work was not done: it is harmless)
		decided := c.Attempt > 1 && k < len(prev.Steps) && idx < len(prev.Steps[k].Compensations) && prev.Steps[k].Compensations[idx] != nil
		if r := st.Steps[k].Runs[idx]; !decided && (!r.possiblyDone() || r.Status == RunSkipped) {
			fail("compensation %s of a run that is %s and cannot have done its work", c.ID, r.Status)
		}
		if want := !st.Steps[k].Runs[idx].outcomeKnown(); c.OutcomeUnknown != want {
			fail("compensation %s has outcome_unknown %v, want %v", c.ID, c.OutcomeUnknown, want)
		}
	}
}

// randomEvent picks something that could happen now.
func randomEvent(r *rand.Rand, def *Definition, st *State, outstanding map[string]Command, delivered []Event, fired []string) (Event, bool) {
	ids := make([]string, 0, len(outstanding))
	for id := range outstanding {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for try := 0; try < 8; try++ {
		switch x := r.IntN(100); {
		case x < 55 && len(ids) > 0:
			id := ids[r.IntN(len(ids))]
			switch y := r.IntN(10); {
			case y < 7:
				return Event{Type: EventResult, CommandID: id, Output: json.RawMessage(simOutput)}, true
			case y < 9:
				return errEv(id, "Transient", true), true
			default:
				return errEv(id, "Permanent", false), true
			}
		case x < 63 && len(ids) > 0:
			// workers report their starts and heartbeats
			id := ids[r.IntN(len(ids))]
			if r.IntN(3) == 0 {
				return beatEv(id, t0.Add(time.Duration(r.IntN(3600))*time.Second)), true
			}
			return startedEv(id), true
		case x < 75 && len(st.Timers) > 0:
			tm := st.Timers[r.IntN(len(st.Timers))]
			if r.IntN(4) == 0 {
				// handed over late, as after a broker outage
				return lateFireEv(tm.ID, tm.FireAt.Add(time.Duration(r.IntN(120))*time.Second)), true
			}
			return fireEv(tm.ID), true
		case x < 80 && len(delivered) > 0:
			ev := delivered[r.IntN(len(delivered))]
			if ev.Error != nil && r.IntN(2) == 0 {
				// a redelivery of a failed attempt that succeeds this time
				return Event{Type: EventResult, CommandID: ev.CommandID, Output: json.RawMessage(simOutput)}, true
			}
			return ev, true // duplicate
		case x < 82 && len(fired) > 0:
			return fireEv(fired[r.IntN(len(fired))]), true // stale timer
		case x < 88:
			for _, step := range def.Steps {
				if step.Kind == KindWait {
					return Event{Type: EventSignal, Signal: step.Wait.Signal, Data: json.RawMessage(`{"approved":true,"officer":"o","reservation":"r","renditions":["1080p"]}`)}, true
				}
			}
		case x < 94 && (st.Status == StatusPaused || st.Status == StatusCompensationFailed):
			if r.IntN(2) == 0 {
				return Event{Type: EventRetry, Actor: "sim"}, true
			}
			for _, ss := range st.Steps {
				if ss.Status == StepFailed || ss.Status == StepCompensationFailed {
					return Event{Type: EventSkip, StepID: ss.ID, Output: json.RawMessage(simOutput), Actor: "sim"}, true
				}
			}
		case x < 96:
			return Event{Type: EventCancel, Actor: "sim"}, true
		case x < 97:
			return Event{Type: EventTerminate, Actor: "sim"}, true
		case x < 98:
			return Event{Type: EventStart, ProcessID: st.ProcessID}, true
		}
	}
	return Event{}, false
}
