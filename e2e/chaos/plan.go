package chaos

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"

	"github.com/pulsaga/pulsaga/workflow"
)

// Fault is what the chaos service does with one attempt of a step (or of
// its compensation).
type Fault string

const (
	// OK does the effect and answers.
	OK Fault = "ok"
	// Fail answers a retryable error without doing anything.
	Fail Fault = "fail"
	// Refuse answers a non-retryable error without doing anything.
	Refuse Fault = "refuse"
	// Lost does the effect, then never answers that attempt: the engine
	// times it out, its outcome is unknown.
	Lost Fault = "lost"
	// Crash does the effect, then the service instance kills itself
	// (SIGKILL) before answering; the command is delivered again.
	Crash Fault = "crash"
)

// Script is the faults of a run's attempts: Script[i] for attempt i+1;
// attempts past its end are OK.
type Script []Fault

// At is the fault of attempt n (from 1).
func (s Script) At(n int) Fault {
	if n < 1 || n > len(s) {
		return OK
	}
	return s[n-1]
}

// outcome is how a run ends when its attempts follow a script, given that
// the service is idempotent by a key stable across the run's attempts:
// once an attempt did the effect, every later attempt that answers
// answers with that effect's result (a replay), whatever its fault.
type outcome struct {
	ok       bool // the run completed
	effect   bool // the service did the effect (once)
	attempts int  // attempts used
}

func play(s Script, maxAttempts int) outcome {
	effect := false
	for a := 1; a <= maxAttempts; a++ {
		f := s.At(a)
		if effect && f != Lost {
			return outcome{ok: true, effect: true, attempts: a}
		}
		switch f {
		case OK, Crash:
			return outcome{ok: true, effect: true, attempts: a}
		case Lost:
			effect = true
		case Refuse:
			return outcome{ok: false, effect: effect, attempts: a}
		}
	}
	return outcome{ok: false, effect: effect, attempts: maxAttempts}
}

// Need says how many times an effect must have happened.
type Need int

const (
	// Never: no effect.
	Never Need = iota
	// Once: exactly one effect.
	Once
	// AtMostOnce: zero or one effect (which one depends on timing).
	AtMostOnce
)

func (n Need) String() string {
	switch n {
	case Never:
		return "never"
	case Once:
		return "once"
	}
	return "at most once"
}

// allows says whether count effects meet the need.
func (n Need) allows(count int) bool {
	switch n {
	case Never:
		return count == 0
	case Once:
		return count == 1
	}
	return count <= 1
}

// UnitExpect is what must be true of one unit (a step, or one item of a
// for_each step) at the service.
type UnitExpect struct {
	Effect Need
	// Undo is the need of its compensation (Never for steps without a
	// compensate block).
	Undo Need
	// Balanced: the compensation happened exactly as often as the effect
	// (a timing-dependent unit of a compensated saga).
	Balanced bool
	// Attempts and UndoAttempts are the most attempts its script and its
	// compensation's script use (a unit whose retries are abandoned uses
	// fewer): an attempt beyond them was lost to a fault of the run, not
	// to the script (Config.ExactAttempts).
	Attempts, UndoAttempts int
}

// Expect is the known outcome of a saga.
type Expect struct {
	Status workflow.Status
	// Units by unit name ("flight", "reserve[2]").
	Units map[string]UnitExpect
	// Why, for reports: the failing unit and the exhausted compensation.
	Why string
}

// unit is one step or for_each item of a model.
type unit struct {
	name        string // "flight", "reserve[2]"
	compensable bool
	optional    bool // on_failure: continue
	maxAttempts int
	undoMax     int
	script      Script
	undo        Script
}

// expect computes the outcome of a saga whose stages run in order, the
// units of a stage in parallel (every unit of a stage needs every unit of
// the stage before it), with these engine semantics (docs/language.md):
// a unit that fails for good under compensate stops new work (its
// siblings still in flight finish, their retries are abandoned) and every
// unit that completed, or whose outcome is unknown, is compensated, later
// stages first; an exhausted compensation makes the saga
// compensation_failed and starts no new compensation.
//
// At most one unit of a saga may fail for good (the generator sees to
// it): which of two failing siblings fails first is timing.
func expect(stages [][]unit) Expect {
	e := Expect{Status: workflow.StatusCompleted, Units: map[string]UnitExpect{}}
	failed := -1 // the stage with the failing unit
	var failing *unit
	var failOut outcome
	for si, st := range stages {
		for i := range st {
			u := &st[i]
			o := play(u.script, u.maxAttempts)
			if !o.ok && !u.optional {
				failed, failing, failOut = si, u, o
			}
		}
		if failing != nil {
			break
		}
	}
	if failing == nil {
		for _, st := range stages {
			for _, u := range st {
				e.Units[u.name] = UnitExpect{Effect: effectOf(u), Undo: Never}
			}
		}
		return withAttempts(e, stages)
	}
	e.Status = workflow.StatusCompensated
	e.Why = failing.name + " fails"
	// exhausted: the stage of the first compensation (in compensation
	// order: later stages first) that is exhausted; the generator only
	// exhausts compensations of units that completed for sure, in stages
	// before the failing one.
	exhausted := -1
	for si := failed - 1; si >= 0 && exhausted < 0; si-- {
		for _, u := range stages[si] {
			if u.compensable && !play(u.undo, u.undoMax).ok {
				exhausted = si
				e.Status = workflow.StatusCompensationFailed
				e.Why += "; compensation of " + u.name + " exhausted"
				break
			}
		}
	}
	for si, st := range stages {
		for _, u := range st {
			ue := UnitExpect{Effect: Never, Undo: Never}
			switch {
			case si < failed:
				ue.Effect = effectOf(u)
				if u.compensable {
					switch {
					case exhausted < 0 || si > exhausted:
						ue.Undo = Once
					case si == exhausted:
						// Siblings of the exhausted one: in flight or not
						// when it was exhausted.
						ue.Undo = AtMostOnce
						if !play(u.undo, u.undoMax).ok {
							ue.Undo = Never
						}
					}
				}
			case si == failed && u.name == failing.name:
				if failOut.effect {
					ue.Effect = Once
					if u.compensable {
						ue.Undo = Once // an unknown outcome is compensated (same key)
					}
				}
			case si == failed:
				ue.Effect = AtMostOnce
				if u.compensable {
					ue.Undo, ue.Balanced = AtMostOnce, true
				}
			}
			e.Units[u.name] = ue
		}
	}
	return withAttempts(e, stages)
}

// withAttempts sets the attempts each unit's scripts use.
func withAttempts(e Expect, stages [][]unit) Expect {
	for _, st := range stages {
		for _, u := range st {
			ue := e.Units[u.name]
			ue.Attempts = play(u.script, u.maxAttempts).attempts
			if u.compensable {
				ue.UndoAttempts = play(u.undo, u.undoMax).attempts
			}
			e.Units[u.name] = ue
		}
	}
	return e
}

// effectOf is the effect of a unit that ran to its end: once when it
// completed, or when an attempt did the effect and was lost.
func effectOf(u unit) Need {
	if o := play(u.script, u.maxAttempts); o.ok || o.effect {
		return Once
	}
	return Never
}

// Saga is one saga of a run: its id, definition, input and known outcome.
type Saga struct {
	ID         string
	Definition string
	Input      json.RawMessage
	Expect     Expect
}

// Definitions of the kit (testdata/*.yaml).
const (
	DefTrip   = "chaos-trip"
	DefOrders = "chaos-orders"
)

// Mix chooses the sagas of a run.
type Mix struct {
	// TripShare is the share of chaos-trip sagas (the rest are
	// chaos-orders).
	TripShare float64
	// Clean is the share of sagas without any fault.
	Clean float64
	// Failing is the share of sagas with a unit that fails for good.
	Failing float64
	// ExhaustedUndo is the share of failing sagas with an exhausted
	// compensation (compensation_failed).
	ExhaustedUndo float64
	// Lost is the share of sagas whose scripts may hold lost attempts
	// (each costs an attempt timeout).
	Lost float64
	// Crash is the share of faulty scripts that crash the service
	// instance running them (each crash also charges a delivery to every
	// command the instance held).
	Crash float64
}

// DefaultMix is the mix of make chaos.
func DefaultMix() Mix {
	return Mix{TripShare: 0.6, Clean: 0.35, Failing: 0.3, ExhaustedUndo: 0.08, Lost: 0.15, Crash: 0.03}
}

// Generate makes saga i of a run with this seed: the same seed and index
// always give the same saga.
func Generate(seed uint64, i int, mix Mix) Saga {
	r := rand.New(rand.NewPCG(seed, uint64(i)))
	g := gen{r: r, mix: mix}
	if r.Float64() < mix.TripShare {
		return g.trip(fmt.Sprintf("trip-%05d", i), i)
	}
	return g.orders(fmt.Sprintf("order-%05d", i), i)
}

type gen struct {
	r   *rand.Rand
	mix Mix
	// lost allows Lost faults in this saga.
	lost bool
}

// recovering is a script that completes within maxAttempts.
func (g *gen) recovering(maxAttempts int) Script {
	if g.r.Float64() < g.mix.Crash {
		if g.r.IntN(2) == 0 {
			return Script{Crash}
		}
		return Script{Fail, Crash}
	}
	opts := []Script{{Fail}}
	if maxAttempts >= 3 {
		opts = append(opts, Script{Fail, Fail})
	}
	if g.lost {
		opts = append(opts, Script{Lost}, Script{Lost, Refuse}, Script{Fail, Lost})
	}
	return opts[g.r.IntN(len(opts))]
}

// failing is a script that fails for good within maxAttempts.
func (g *gen) failing(maxAttempts int) Script {
	exhausted := make(Script, maxAttempts)
	for i := range exhausted {
		exhausted[i] = Fail
	}
	opts := []Script{{Refuse}, {Fail, Refuse}, exhausted}
	if g.lost {
		lostLast := append(Script(nil), exhausted...)
		lostLast[len(lostLast)-1] = Lost
		opts = append(opts, lostLast)
	}
	return opts[g.r.IntN(len(opts))]
}

// undo is a compensation script that completes within maxAttempts.
func (g *gen) undo(maxAttempts int) Script {
	if g.r.IntN(2) == 0 {
		return nil
	}
	return g.recovering(maxAttempts)
}

func (g *gen) exhaustedUndo(maxAttempts int) Script {
	if g.r.IntN(2) == 0 {
		return Script{Refuse}
	}
	s := make(Script, maxAttempts)
	for i := range s {
		s[i] = Fail
	}
	return s
}

// shape fills the scripts of stages: clean, some recovering faults, or
// one failing unit (with recovering siblings and, sometimes, an exhausted
// compensation before it).
func (g *gen) shape(stages [][]unit) {
	g.lost = g.r.Float64() < g.mix.Lost
	x := g.r.Float64()
	all := func(f func(u *unit)) {
		for _, st := range stages {
			for i := range st {
				f(&st[i])
			}
		}
	}
	all(func(u *unit) {
		if u.compensable {
			u.undo = g.undo(u.undoMax)
		}
	})
	switch {
	case x < g.mix.Clean:
		all(func(u *unit) { u.undo = nil })
	case x < g.mix.Clean+g.mix.Failing:
		// Units that may fail: any non-optional one.
		var cands []*unit
		all(func(u *unit) {
			if !u.optional {
				cands = append(cands, u)
			}
		})
		f := cands[g.r.IntN(len(cands))]
		f.script = g.failing(f.maxAttempts)
		all(func(u *unit) {
			if u != f && g.r.IntN(3) == 0 {
				u.script = g.recovering(u.maxAttempts)
			}
		})
		if g.r.Float64() < g.mix.ExhaustedUndo {
			var before []*unit
			for _, st := range stages {
				if containsUnit(st, f) {
					break
				}
				for i := range st {
					if st[i].compensable {
						before = append(before, &st[i])
					}
				}
			}
			if len(before) > 0 {
				u := before[g.r.IntN(len(before))]
				u.undo = g.exhaustedUndo(u.undoMax)
			}
		}
	default:
		n := 1 + g.r.IntN(2)
		for range n {
			si := g.r.IntN(len(stages))
			if len(stages[si]) == 0 {
				continue
			}
			u := &stages[si][g.r.IntN(len(stages[si]))]
			if u.optional && g.r.IntN(2) == 0 {
				u.script = g.failing(u.maxAttempts) // optional: the saga still completes
				continue
			}
			u.script = g.recovering(u.maxAttempts)
		}
	}
}

func containsUnit(st []unit, u *unit) bool {
	for i := range st {
		if &st[i] == u {
			return true
		}
	}
	return false
}

// scriptOf returns the script of the unit named name.
func scriptOf(stages [][]unit, name string) (fwd, undo Script) {
	for _, st := range stages {
		for _, u := range st {
			if u.name == name {
				return nonNil(u.script), nonNil(u.undo)
			}
		}
	}
	return Script{}, Script{}
}

func nonNil(s Script) Script {
	if s == nil {
		return Script{}
	}
	return s
}

// tripStages is the model of testdata/chaos-trip.yaml.
func tripStages() [][]unit {
	return [][]unit{
		{{name: "payment", compensable: true, maxAttempts: 3, undoMax: 3}},
		{{name: "flight", compensable: true, maxAttempts: 5, undoMax: 3}, {name: "hotel", compensable: true, maxAttempts: 3, undoMax: 3}},
		{{name: "notify", maxAttempts: 3}},
	}
}

func (g *gen) trip(id string, i int) Saga {
	stages := tripStages()
	g.shape(stages)
	plan := map[string]Script{}
	for _, n := range []string{"payment", "flight", "hotel", "notify"} {
		fwd, undo := scriptOf(stages, n)
		plan[n] = fwd
		if n != "notify" {
			plan[n+"_undo"] = undo
		}
	}
	in, _ := json.Marshal(map[string]any{"customer": fmt.Sprintf("customer-%d", i%97), "amount": 10 + i%90, "plan": plan})
	return Saga{ID: id, Definition: DefTrip, Input: in, Expect: expect(stages)}
}

// ordersStages is the model of testdata/chaos-orders.yaml with n lines
// (the sleep step between charge and ship has no unit).
func ordersStages(n int) [][]unit {
	reserve := make([]unit, n)
	for i := range reserve {
		reserve[i] = unit{name: fmt.Sprintf("reserve[%d]", i), compensable: true, maxAttempts: 3, undoMax: 3}
	}
	return [][]unit{
		reserve,
		{{name: "charge", compensable: true, maxAttempts: 3, undoMax: 3}},
		{{name: "ship", compensable: true, maxAttempts: 3, undoMax: 3}},
		{{name: "email", optional: true, maxAttempts: 3}},
	}
}

func (g *gen) orders(id string, i int) Saga {
	n := 2 + g.r.IntN(3)
	stages := ordersStages(n)
	g.shape(stages)
	type line struct {
		SKU  string `json:"sku"`
		Qty  int    `json:"qty"`
		Plan Script `json:"plan"`
		Undo Script `json:"undo"`
	}
	lines := make([]line, n)
	for k := range lines {
		fwd, undo := scriptOf(stages, fmt.Sprintf("reserve[%d]", k))
		lines[k] = line{SKU: fmt.Sprintf("sku-%d", (i+k)%13), Qty: 1 + k, Plan: fwd, Undo: undo}
	}
	plan := map[string]Script{}
	for _, n := range []string{"charge", "ship", "email"} {
		fwd, undo := scriptOf(stages, n)
		plan[n] = fwd
		if n != "email" {
			plan[n+"_undo"] = undo
		}
	}
	in, _ := json.Marshal(map[string]any{"order_id": id, "customer": fmt.Sprintf("customer-%d", i%97), "lines": lines, "plan": plan})
	return Saga{ID: id, Definition: DefOrders, Input: in, Expect: expect(stages)}
}
