package chaos

import (
	"encoding/json"
	"io"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/workflow"
)

func TestPlay(t *testing.T) {
	tests := []struct {
		name   string
		script Script
		max    int
		want   outcome
	}{
		{"clean", nil, 3, outcome{ok: true, effect: true, attempts: 1}},
		{"one transient failure", Script{Fail}, 3, outcome{ok: true, effect: true, attempts: 2}},
		{"transient failures exhaust", Script{Fail, Fail, Fail}, 3, outcome{attempts: 3}},
		{"refused", Script{Fail, Refuse}, 3, outcome{attempts: 2}},
		{"crash is an effect", Script{Crash}, 3, outcome{ok: true, effect: true, attempts: 1}},
		{"lost then replayed", Script{Lost, Refuse}, 3, outcome{ok: true, effect: true, attempts: 2}},
		{"lost twice then replayed", Script{Lost, Lost}, 3, outcome{ok: true, effect: true, attempts: 3}},
		{"lost on the last attempt", Script{Fail, Fail, Lost}, 3, outcome{effect: true, attempts: 3}},
		{"past the script is ok", Script{Fail, Fail}, 5, outcome{ok: true, effect: true, attempts: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := play(tt.script, tt.max); got != tt.want {
				t.Errorf("play(%v, %d) = %+v, want %+v", tt.script, tt.max, got, tt.want)
			}
		})
	}
}

func TestExpect(t *testing.T) {
	trip := func(set func(st [][]unit)) [][]unit {
		st := tripStages()
		set(st)
		return st
	}
	tests := []struct {
		name   string
		stages [][]unit
		status workflow.Status
		units  map[string]UnitExpect
	}{
		{"clean trip", tripStages(), workflow.StatusCompleted, map[string]UnitExpect{
			"payment": {Effect: Once}, "flight": {Effect: Once}, "hotel": {Effect: Once}, "notify": {Effect: Once},
		}},
		{"payment refused", trip(func(st [][]unit) { st[0][0].script = Script{Refuse} }), workflow.StatusCompensated, map[string]UnitExpect{
			"payment": {}, "flight": {}, "hotel": {}, "notify": {},
		}},
		{"hotel refused: flight is timing", trip(func(st [][]unit) { st[1][1].script = Script{Refuse} }), workflow.StatusCompensated, map[string]UnitExpect{
			"payment": {Effect: Once, Undo: Once}, "flight": {Effect: AtMostOnce, Undo: AtMostOnce, Balanced: true}, "hotel": {}, "notify": {},
		}},
		{"notify exhausted: all compensated", trip(func(st [][]unit) { st[2][0].script = Script{Fail, Fail, Fail} }), workflow.StatusCompensated, map[string]UnitExpect{
			"payment": {Effect: Once, Undo: Once}, "flight": {Effect: Once, Undo: Once}, "hotel": {Effect: Once, Undo: Once}, "notify": {},
		}},
		{"flight lost on its last attempt: compensated", trip(func(st [][]unit) { st[1][0].script = Script{Fail, Fail, Fail, Fail, Lost} }), workflow.StatusCompensated, map[string]UnitExpect{
			"payment": {Effect: Once, Undo: Once}, "flight": {Effect: Once, Undo: Once}, "hotel": {Effect: AtMostOnce, Undo: AtMostOnce, Balanced: true}, "notify": {},
		}},
		{"payment refund exhausted", trip(func(st [][]unit) {
			st[1][1].script = Script{Refuse}
			st[0][0].undo = Script{Refuse}
		}), workflow.StatusCompensationFailed, map[string]UnitExpect{
			"payment": {Effect: Once, Undo: Never}, "flight": {Effect: AtMostOnce, Undo: AtMostOnce, Balanced: true}, "hotel": {}, "notify": {},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := expect(tt.stages)
			if e.Status != tt.status {
				t.Errorf("status %s, want %s", e.Status, tt.status)
			}
			for u, want := range tt.units {
				got := e.Units[u]
				got.Attempts, got.UndoAttempts = 0, 0 // TestExpectedAttempts
				if got != want {
					t.Errorf("%s: %+v, want %+v", u, got, want)
				}
			}
		})
	}
}

func TestExpectedAttempts(t *testing.T) {
	st := tripStages()
	st[0][0].script, st[0][0].undo = Script{Fail, Fail}, Script{Fail}
	st[1][0].script = Script{Lost, Refuse}
	e := expect(st)
	want := map[string][2]int{"payment": {3, 2}, "flight": {2, 1}, "hotel": {1, 1}, "notify": {1, 0}}
	for u, w := range want {
		if got := e.Units[u]; got.Attempts != w[0] || got.UndoAttempts != w[1] {
			t.Errorf("%s: %d attempts, %d of its compensation; want %d, %d", u, got.Attempts, got.UndoAttempts, w[0], w[1])
		}
	}
}

func TestGenerateIsRepeatable(t *testing.T) {
	for i := range 50 {
		a, b := Generate(7, i, DefaultMix()), Generate(7, i, DefaultMix())
		if a.ID != b.ID || string(a.Input) != string(b.Input) || a.Expect.Status != b.Expect.Status {
			t.Fatalf("saga %d differs between two generations", i)
		}
	}
}

// TestExpectMatchesDecide runs generated sagas through workflow.Decide
// with a simulated chaos service (the same respond table as the real one,
// an in-memory ledger by idempotency key) on a simulated clock, and checks
// each against its expectation with Judge: the kit's model of the
// semantics is the engine's.
func TestExpectMatchesDecide(t *testing.T) {
	defs := map[string]*workflow.Definition{}
	for _, name := range []string{DefTrip, DefOrders} {
		d, err := workflow.LoadFile("testdata/" + name + ".yaml")
		if err != nil {
			t.Fatal(err)
		}
		defs[name] = d
	}
	// Lost attempts (the work done, the answer never seen) need the stable
	// idempotency keys of issue 11 item 1: the retry is answered from the
	// key, and a saga that compensates undoes the possibly-done work.
	mix := DefaultMix()
	// Every saga may lose attempts (never answered): the hardest mix.
	mix.Lost = 1
	statuses := map[workflow.Status]int{}
	for i := range 600 {
		s := Generate(42, i, mix)
		status, fx := simulate(t, defs[s.Definition], s)
		statuses[status]++
		if v := Judge(s, status, fx); v.Status != Right {
			t.Errorf("%s (%s): %s %v\ninput %s", s.ID, s.Expect.Why, v.Status, v.Problems, s.Input)
		}
	}
	t.Logf("statuses: %v", statuses)
	for _, st := range []workflow.Status{workflow.StatusCompleted, workflow.StatusCompensated, workflow.StatusCompensationFailed} {
		if statuses[st] == 0 {
			t.Errorf("no saga ended %s: the mix must cover it", st)
		}
	}
}

// simulate runs one saga to its end through workflow.Decide.
func simulate(t *testing.T, def *workflow.Definition, s Saga) (workflow.Status, *Effects) {
	t.Helper()
	type due struct {
		at time.Time
		ev workflow.Event
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	queue := []due{{now, workflow.Event{V: workflow.EventVersion, Type: workflow.EventStart, ProcessID: s.ID, Input: s.Input}}}
	timers := map[string]bool{}
	var ledger []Entry
	known := map[string]bool{}
	forward := map[string]bool{}
	var st *workflow.State
	for step := 0; len(queue) > 0; step++ {
		if step > 10000 {
			t.Fatalf("%s: no end after 10000 decisions", s.ID)
		}
		sort.SliceStable(queue, func(i, j int) bool { return queue[i].at.Before(queue[j].at) })
		next := queue[0]
		queue = queue[1:]
		if next.ev.Type == workflow.EventTimer && !timers[next.ev.TimerID] {
			continue
		}
		delete(timers, next.ev.TimerID)
		now = next.at
		d, err := workflow.Decide(def, st, []workflow.Event{next.ev}, now)
		if err != nil {
			t.Fatalf("%s: %v", s.ID, err)
		}
		st = d.State
		for _, id := range d.CancelTimers {
			delete(timers, id)
		}
		for _, tm := range d.Timers {
			timers[tm.ID] = true
			queue = append(queue, due{tm.FireAt, workflow.Event{V: workflow.EventVersion, Type: workflow.EventTimer, ProcessID: s.ID, TimerID: tm.ID}})
		}
		for _, c := range d.Commands {
			at := now
			if c.NotBefore.After(at) {
				at = c.NotBefore
			}
			at = at.Add(time.Millisecond)
			var in struct {
				Plan Script `json:"plan"`
			}
			if err := json.Unmarshal(c.Input, &in); err != nil {
				t.Fatalf("%s: command input %s: %v", s.ID, c.Input, err)
			}
			f := in.Plan.At(c.Attempt)
			unit := s.ID + "/" + UnitName(c.StepID, c.Item)
			had := known[c.IdempotencyKey]
			if (f == OK || f == Crash || f == Lost) && !had {
				known[c.IdempotencyKey] = true
				e := Entry{Key: c.IdempotencyKey, Unit: unit, Undo: c.Compensation, ProcessID: s.ID, Step: c.StepID, Item: c.Item, Attempt: c.Attempt}
				e.Noop = c.Compensation && !forward[unit]
				if !c.Compensation {
					forward[unit] = true
				}
				ledger = append(ledger, e)
			}
			// The worker reports the start (the attempt's timeout counts from
			// it), also for an attempt whose answer is then lost.
			queue = append(queue, due{at, workflow.Event{V: workflow.EventVersion, Type: workflow.EventStarted, ProcessID: s.ID, CommandID: c.ID, Attempt: c.Attempt, Item: c.Item, Compensation: c.Compensation}})
			res := workflow.Event{V: workflow.EventVersion, Type: workflow.EventResult, ProcessID: s.ID, CommandID: c.ID, Attempt: c.Attempt, Item: c.Item, Compensation: c.Compensation}
			switch respond(f, had) {
			case replyOK, replyDie: // a crashed delivery comes again and is answered from the ledger
				res.Output = json.RawMessage(`{"ref":"x"}`)
			case replyFail:
				res.Error = &workflow.ErrorInfo{Type: "Unavailable", Retryable: ptrTo(true)}
			case replyRefuse:
				res.Error = &workflow.ErrorInfo{Type: "Refused", Retryable: ptrTo(false)}
			case replyNone:
				continue
			}
			queue = append(queue, due{at, res})
		}
		if d.State.Status.Terminal() {
			break
		}
	}
	if st == nil {
		return "", nil
	}
	return st.Status, EffectsOf(ledger)[s.ID]
}

func ptrTo[T any](v T) *T { return &v }

func TestJudge(t *testing.T) {
	s := Saga{ID: "p", Expect: Expect{Status: workflow.StatusCompensated, Units: map[string]UnitExpect{
		"a": {Effect: Once, Undo: Once}, "b": {Effect: AtMostOnce, Undo: AtMostOnce, Balanced: true}, "c": {},
	}}}
	fx := func(fwd, undo, noop map[string][]string) *Effects {
		return &Effects{Forward: fwd, Undo: undo, Noop: noop}
	}
	tests := []struct {
		name   string
		status workflow.Status
		fx     *Effects
		want   string
		n      int
	}{
		{"right", workflow.StatusCompensated, fx(map[string][]string{"a": {"p/a"}}, map[string][]string{"a": {"p/a/c"}}, nil), Right, 0},
		{"timing unit done and undone", workflow.StatusCompensated, fx(map[string][]string{"a": {"p/a"}, "b": {"p/b"}}, map[string][]string{"a": {"p/a/c"}, "b": {"p/b/c"}}, nil), Right, 0},
		{"unfinished", workflow.StatusCompensating, nil, Unfinished, 1},
		{"wrong status", workflow.StatusCompleted, fx(map[string][]string{"a": {"p/a"}}, map[string][]string{"a": {"p/a/c"}}, nil), Wrong, 1},
		{"effect twice under two keys", workflow.StatusCompensated, fx(map[string][]string{"a": {"p/a/1", "p/a/2"}}, map[string][]string{"a": {"p/a/c"}}, nil), Wrong, 1},
		{"effect never undone", workflow.StatusCompensated, fx(map[string][]string{"a": {"p/a"}, "b": {"p/b"}}, map[string][]string{"a": {"p/a/c"}}, nil), Wrong, 1},
		{"compensated twice", workflow.StatusCompensated, fx(map[string][]string{"a": {"p/a"}}, map[string][]string{"a": {"p/a/c1"}}, map[string][]string{"a": {"p/a/c2"}}), Wrong, 1},
		{"an effect that must not be", workflow.StatusCompensated, fx(map[string][]string{"a": {"p/a"}, "c": {"p/c"}}, map[string][]string{"a": {"p/a/c"}}, nil), Wrong, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := Judge(s, tt.status, tt.fx)
			if v.Status != tt.want || len(v.Problems) != tt.n {
				t.Errorf("Judge = %s %v, want %s with %d problems", v.Status, v.Problems, tt.want, tt.n)
			}
		})
	}
}

func TestAttemptTimeoutOfTheDefinitions(t *testing.T) {
	for _, d := range []time.Duration{0, 7 * time.Second, 90 * time.Second} {
		t.Run(d.String(), func(t *testing.T) {
			r := &run{cfg: Config{Dir: t.TempDir(), AttemptTimeout: d, Progress: io.Discard}}
			dir, err := r.definitions()
			if err != nil {
				t.Fatal(err)
			}
			files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
			if len(files) != 2 {
				t.Fatalf("definitions in %s: %v, want the trip and the orders", dir, files)
			}
			for _, f := range files {
				def, err := workflow.LoadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				want := map[string]time.Duration{"chaos-trip": 30 * time.Second, "chaos-orders": 20 * time.Second}[def.Name]
				if d > 0 {
					want = d
				}
				if def.Timeout != want {
					t.Errorf("%s: attempt timeout %s, want %s", def.Name, def.Timeout, want)
				}
			}
		})
	}
}
