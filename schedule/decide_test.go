package schedule

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/workflow"
)

var t0 = time.Date(2026, 12, 3, 15, 0, 0, 0, time.UTC)

func mustPut(t *testing.T, spec Spec, now time.Time) *Record {
	t.Helper()
	eff, err := Put(nil, spec, "test", now)
	if err != nil {
		t.Fatal(err)
	}
	return eff.Record
}

func TestNormalize(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
		want string // substring of the error; "" = valid
	}{
		{"cron", Spec{Name: "nightly", Definition: "d", Cron: "0 2 * * *"}, ""},
		{"descriptor", Spec{Name: "n", Definition: "d", Cron: "@hourly"}, ""},
		{"every", Spec{Name: "n", Definition: "d", Every: Duration(time.Minute)}, ""},
		{"timezone", Spec{Name: "n", Definition: "d", Cron: "0 9 * * 1-5", Timezone: "Europe/Paris"}, ""},
		{"no clock", Spec{Name: "n", Definition: "d"}, "give cron"},
		{"both", Spec{Name: "n", Definition: "d", Cron: "@daily", Every: Duration(time.Hour)}, "not both"},
		{"bad cron", Spec{Name: "n", Definition: "d", Cron: "61 * * * *"}, "cron \"61 * * * *\""},
		{"@every", Spec{Name: "n", Definition: "d", Cron: "@every 5m"}, "write every:"},
		{"tz prefix", Spec{Name: "n", Definition: "d", Cron: "CRON_TZ=UTC 0 * * * *"}, "timezone:"},
		{"short every", Spec{Name: "n", Definition: "d", Every: Duration(time.Millisecond)}, "shortest interval"},
		{"bad zone", Spec{Name: "n", Definition: "d", Cron: "@daily", Timezone: "Mars/Olympus"}, "timezone \"Mars/Olympus\""},
		{"zone with every", Spec{Name: "n", Definition: "d", Every: Duration(time.Hour), Timezone: "UTC"}, "cron only"},
		{"bad name", Spec{Name: "a b", Definition: "d", Cron: "@daily"}, "name \"a b\""},
		{"no definition", Spec{Name: "n", Cron: "@daily"}, "definition"},
		{"bad overlap", Spec{Name: "n", Definition: "d", Cron: "@daily", Overlap: "queue"}, "overlap \"queue\""},
		{"bad catch_up", Spec{Name: "n", Definition: "d", Cron: "@daily", CatchUp: "some"}, "catch_up \"some\""},
		{"bad input", Spec{Name: "n", Definition: "d", Cron: "@daily", Input: json.RawMessage(`{"d":"${{ input.x }}"}`)}, "input"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.spec
			err := s.Normalize()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if s.Overlap != OverlapSkip || s.CatchUp != CatchUpLatest || time.Duration(s.CatchUpWindow) != DefaultCatchUpWindow {
					t.Fatalf("defaults not filled: %+v", s)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestNext(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
		from time.Time
		want time.Time
	}{
		{"every aligns on the epoch", Spec{Every: Duration(time.Hour)}, t0.Add(17 * time.Minute), t0.Add(time.Hour)},
		{"every strictly after", Spec{Every: Duration(time.Hour)}, t0, t0.Add(time.Hour)},
		{"cron utc", Spec{Cron: "0 2 * * *"}, t0, time.Date(2026, 12, 4, 2, 0, 0, 0, time.UTC)},
		{"cron in a zone", Spec{Cron: "0 9 * * *", Timezone: "Europe/Paris"}, t0, time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC)},
		{"cron weekday", Spec{Cron: "30 8 * * 1"}, t0, time.Date(2026, 12, 7, 8, 30, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.spec.Next(tt.from); !got.Equal(tt.want) {
				t.Fatalf("Next(%s) = %s, want %s", tt.from, got, tt.want)
			}
		})
	}
}

func TestPutPauseResumeDelete(t *testing.T) {
	spec := Spec{Name: "s", Definition: "d", Every: Duration(time.Minute)}
	eff, err := Put(nil, spec, "ann", t0.Add(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	r := eff.Record
	if r.State.Revision != 1 || eff.Arm == nil || !eff.Arm.At.Equal(t0.Add(time.Minute)) || r.State.ArmedID != eff.Arm.ID {
		t.Fatalf("create: %+v %+v", r.State, eff.Arm)
	}
	// the same spec again changes nothing
	if again, err := Put(r, spec, "ann", t0.Add(20*time.Second)); err != nil || again.Record != nil || again.Arm != nil || again.Ignored == "" {
		t.Fatalf("identical put: %+v %v", again, err)
	}
	// a new spec bumps the revision and re-arms
	spec2 := spec
	spec2.Every = Duration(5 * time.Minute)
	upd, err := Put(r, spec2, "bob", t0.Add(30*time.Second))
	if err != nil || upd.Record.State.Revision != 2 || !upd.Arm.At.Equal(t0.Add(5*time.Minute)) || upd.Record.State.Actor != "bob" {
		t.Fatalf("update: %+v %v", upd, err)
	}
	// the tick armed under revision 1 is stale now
	if e := Tick(upd.Record, r.State.ArmedID, t0.Add(time.Minute), t0.Add(time.Minute), Observed{}); e.Ignored == "" || e.Record != nil {
		t.Fatalf("stale tick handled: %+v", e)
	}
	p := Pause(upd.Record, "ops", t0.Add(time.Minute))
	if !p.Record.Spec.Paused || p.Record.State.ArmedID != "" || p.Arm != nil || p.Record.State.Revision != 3 {
		t.Fatalf("pause: %+v", p)
	}
	if e := Pause(p.Record, "ops", t0); e.Record != nil {
		t.Fatal("pausing a paused schedule changed it")
	}
	if e := Tick(p.Record, upd.Record.State.ArmedID, t0.Add(5*time.Minute), t0.Add(5*time.Minute), Observed{}); e.Ignored == "" {
		t.Fatal("a paused schedule ticked")
	}
	// resume ticks from now: the 5-minute ticks during the pause are not run
	res := Resume(p.Record, "ops", t0.Add(17*time.Minute))
	if res.Record.Spec.Paused || res.Arm == nil || !res.Arm.At.Equal(t0.Add(20*time.Minute)) || len(res.Starts) != 0 {
		t.Fatalf("resume: %+v", res)
	}
	if e := Resume(res.Record, "ops", t0); e.Record != nil {
		t.Fatal("resuming a running schedule changed it")
	}
	if e := Delete(res.Record); !e.Delete {
		t.Fatal("delete")
	}
	if e := Delete(nil); e.Ignored == "" {
		t.Fatal("delete of nothing")
	}
	if e := Tick(nil, "x", t0, t0, Observed{}); e.Ignored == "" {
		t.Fatal("tick of a deleted schedule")
	}
	if _, err := Put(nil, Spec{Name: "x"}, "", t0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("invalid put: %v", err)
	}
}

// statuses is a status table for tests.
type statuses map[string]workflow.Status

func (m statuses) get(pid string) (workflow.Status, bool) { s, ok := m[pid]; return s, ok }

func TestTickOnTime(t *testing.T) {
	r := mustPut(t, Spec{Name: "s", Definition: "d", Every: Duration(time.Minute),
		Input: json.RawMessage(`{"day":"${{ schedule.time }}","by":"${{ schedule.name }}","n":1}`)}, t0)
	at := r.State.ArmedAt
	eff := Tick(r, r.State.ArmedID, at, at.Add(20*time.Millisecond), Observed{Status: statuses{}.get})
	if len(eff.Starts) != 1 || eff.Starts[0].ProcessID != "s-20261203T150100Z" {
		t.Fatalf("starts: %+v", eff.Starts)
	}
	var in map[string]any
	if err := json.Unmarshal(eff.Starts[0].Input, &in); err != nil || in["day"] != "2026-12-03T15:01:00Z" || in["by"] != "s" || in["n"] != 1.0 {
		t.Fatalf("input %s (%v)", eff.Starts[0].Input, err)
	}
	if eff.Arm == nil || !eff.Arm.At.Equal(at.Add(time.Minute)) || eff.Record.State.Started != 1 || eff.Record.State.LastProcessID != "s-20261203T150100Z" {
		t.Fatalf("after the tick: %+v %+v", eff.Arm, eff.Record.State)
	}
	// the same tick again (redelivered after the record was written) is stale
	if again := Tick(eff.Record, r.State.ArmedID, at, at.Add(time.Second), Observed{}); again.Ignored == "" || len(again.Starts) != 0 {
		t.Fatalf("a tick handled twice started %+v", again.Starts)
	}
}

func TestTickOverlap(t *testing.T) {
	const prev = "s-20261203T150100Z"
	tests := []struct {
		name      string
		overlap   Overlap
		status    statuses
		starts    int
		stops     []Stop
		skipped   int64
		runningAt []string
	}{
		{"skip while the previous runs", OverlapSkip, statuses{prev: workflow.StatusRunning}, 0, nil, 1, []string{prev}},
		{"skip while the previous is not in the table yet", OverlapSkip, statuses{}, 0, nil, 1, []string{prev}},
		{"skip: previous finished", OverlapSkip, statuses{prev: workflow.StatusCompleted}, 1, nil, 0, []string{"s-20261203T150200Z"}},
		{"skip: previous paused counts as live", OverlapSkip, statuses{prev: workflow.StatusPaused}, 0, nil, 1, []string{prev}},
		{"allow", OverlapAllow, statuses{prev: workflow.StatusRunning}, 1, nil, 0, nil},
		{"cancel previous", OverlapCancelPrevious, statuses{prev: workflow.StatusRunning}, 1, []Stop{{ProcessID: prev, Action: "cancel"}}, 0, []string{"s-20261203T150200Z"}},
		{"terminate previous", OverlapTerminatePrevious, statuses{prev: workflow.StatusRunning}, 1, []Stop{{ProcessID: prev, Action: "terminate"}}, 0, []string{"s-20261203T150200Z"}},
		{"cancel: nothing live", OverlapCancelPrevious, statuses{prev: workflow.StatusCompensated}, 1, nil, 0, []string{"s-20261203T150200Z"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustPut(t, Spec{Name: "s", Definition: "d", Every: Duration(time.Minute), Overlap: tt.overlap}, t0)
			first := Tick(r, r.State.ArmedID, r.State.ArmedAt, r.State.ArmedAt, Observed{Status: statuses{}.get})
			if len(first.Starts) != 1 || first.Starts[0].ProcessID != prev {
				t.Fatalf("first tick: %+v", first.Starts)
			}
			r = first.Record
			eff := Tick(r, r.State.ArmedID, r.State.ArmedAt, r.State.ArmedAt.Add(time.Second), Observed{Status: tt.status.get})
			if len(eff.Starts) != tt.starts || eff.Record.State.Skipped != tt.skipped {
				t.Fatalf("starts %+v, skipped %d (%s)", eff.Starts, eff.Record.State.Skipped, eff.Record.State.LastSkip)
			}
			if len(eff.Stops) != len(tt.stops) {
				t.Fatalf("stops %+v, want %+v", eff.Stops, tt.stops)
			}
			for i := range tt.stops {
				if eff.Stops[i].ProcessID != tt.stops[i].ProcessID || eff.Stops[i].Action != tt.stops[i].Action {
					t.Fatalf("stops %+v, want %+v", eff.Stops, tt.stops)
				}
			}
			var running []string
			for _, p := range eff.Record.State.Running {
				running = append(running, p.ProcessID)
			}
			if strings.Join(running, ",") != strings.Join(tt.runningAt, ",") {
				t.Fatalf("running %v, want %v", running, tt.runningAt)
			}
			if eff.Arm == nil {
				t.Fatal("not re-armed")
			}
		})
	}
}

func TestTickSeenThenExpired(t *testing.T) {
	r := mustPut(t, Spec{Name: "s", Definition: "d", Every: Duration(time.Minute)}, t0)
	r = Tick(r, r.State.ArmedID, r.State.ArmedAt, r.State.ArmedAt, Observed{Status: statuses{}.get}).Record
	pid := r.State.Running[0].ProcessID
	// seen running: skipped, and remembered as seen
	r = Tick(r, r.State.ArmedID, r.State.ArmedAt, r.State.ArmedAt, Observed{Status: statuses{pid: workflow.StatusRunning}.get}).Record
	if !r.State.Running[0].Seen || r.State.Skipped != 1 {
		t.Fatalf("%+v", r.State)
	}
	// gone from the table after being seen: it finished and expired
	eff := Tick(r, r.State.ArmedID, r.State.ArmedAt, r.State.ArmedAt, Observed{Status: statuses{}.get})
	if len(eff.Starts) != 1 {
		t.Fatalf("an expired previous run still blocks: %+v", eff.Record.State)
	}
}

func TestTickCatchUp(t *testing.T) {
	// armed for 15:01, handled at 15:10:30 after downtime: ticks 15:01 … 15:10 are due
	tests := []struct {
		name    string
		catchUp CatchUp
		window  time.Duration
		starts  []string
		skipped int64
	}{
		{"latest", CatchUpLatest, 0, []string{"s-20261203T151000Z"}, 9},
		{"all", CatchUpAll, 0, []string{"s-20261203T150100Z", "s-20261203T150200Z", "s-20261203T150300Z", "s-20261203T150400Z", "s-20261203T150500Z",
			"s-20261203T150600Z", "s-20261203T150700Z", "s-20261203T150800Z", "s-20261203T150900Z", "s-20261203T151000Z"}, 0},
		{"all within a window", CatchUpAll, 3 * time.Minute, []string{"s-20261203T150800Z", "s-20261203T150900Z", "s-20261203T151000Z"}, 7},
		{"none", CatchUpNone, 0, []string{"s-20261203T151000Z"}, 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustPut(t, Spec{Name: "s", Definition: "d", Every: Duration(time.Minute), CatchUp: tt.catchUp, Overlap: OverlapAllow, CatchUpWindow: Duration(tt.window)}, t0)
			now := t0.Add(10*time.Minute + 30*time.Second)
			eff := Tick(r, r.State.ArmedID, r.State.ArmedAt, now, Observed{Status: statuses{}.get})
			var got []string
			for _, s := range eff.Starts {
				got = append(got, s.ProcessID)
			}
			if strings.Join(got, " ") != strings.Join(tt.starts, " ") || eff.Record.State.Skipped != tt.skipped {
				t.Fatalf("starts %v skipped %d, want %v skipped %d", got, eff.Record.State.Skipped, tt.starts, tt.skipped)
			}
			if !eff.Arm.At.Equal(t0.Add(11 * time.Minute)) {
				t.Fatalf("next tick %s", eff.Arm.At)
			}
		})
	}
	// none, handled more than MissedAfter late: nothing starts
	r := mustPut(t, Spec{Name: "s", Definition: "d", Every: Duration(time.Hour), CatchUp: CatchUpNone}, t0)
	eff := Tick(r, r.State.ArmedID, r.State.ArmedAt, r.State.ArmedAt.Add(2*time.Minute), Observed{})
	if len(eff.Starts) != 0 || eff.Record.State.Skipped != 1 {
		t.Fatalf("none started a missed tick: %+v", eff)
	}
}

func TestTickCatchUpAllInSeveralMessages(t *testing.T) {
	r := mustPut(t, Spec{Name: "s", Definition: "d", Every: Duration(time.Second), CatchUp: CatchUpAll, Overlap: OverlapAllow}, t0)
	now := t0.Add(250*time.Second + 500*time.Millisecond) // 250 ticks due
	seen := map[string]bool{}
	for i := 0; i < 5 && r.State.ArmedAt.Before(now); i++ {
		eff := Tick(r, r.State.ArmedID, r.State.ArmedAt, now, Observed{})
		for _, s := range eff.Starts {
			if seen[s.ProcessID] {
				t.Fatalf("%s started twice", s.ProcessID)
			}
			seen[s.ProcessID] = true
		}
		r = eff.Record
	}
	if len(seen) != 250 || !r.State.ArmedAt.Equal(t0.Add(251*time.Second)) {
		t.Fatalf("%d runs, armed at %s", len(seen), r.State.ArmedAt)
	}
}

func TestTickUnknownDefinition(t *testing.T) {
	r := mustPut(t, Spec{Name: "s", Definition: "d", Every: Duration(time.Minute)}, t0)
	eff := Tick(r, r.State.ArmedID, r.State.ArmedAt, r.State.ArmedAt, Observed{DefinitionErr: errors.New("unknown definition \"d\"")})
	if len(eff.Starts) != 0 || eff.Record.State.Skipped != 1 || !strings.Contains(eff.Record.State.LastSkip, "unknown definition") || eff.Arm == nil {
		t.Fatalf("%+v", eff)
	}
}

func TestTickCronDST(t *testing.T) {
	// 02:30 in Paris does not exist on 2027-03-28 (clocks spring forward):
	// that day has no tick, as documented; the next days tick at 02:30 CEST
	r := mustPut(t, Spec{Name: "s", Definition: "d", Cron: "30 2 * * *", Timezone: "Europe/Paris"}, time.Date(2027, 3, 27, 12, 0, 0, 0, time.UTC))
	var ticks []time.Time
	for range 3 {
		ticks = append(ticks, r.State.ArmedAt)
		r = Tick(r, r.State.ArmedID, r.State.ArmedAt, r.State.ArmedAt, Observed{}).Record
	}
	if !ticks[0].Equal(time.Date(2027, 3, 29, 0, 30, 0, 0, time.UTC)) || !ticks[1].Equal(time.Date(2027, 3, 30, 0, 30, 0, 0, time.UTC)) {
		t.Fatalf("ticks %v", ticks)
	}
}

func TestTickCronFallBack(t *testing.T) {
	// 02:30 happens twice in Paris on 2027-10-31 (clocks fall back at
	// 03:00 CEST): one tick that day, as documented
	r := mustPut(t, Spec{Name: "s", Definition: "d", Cron: "30 2 * * *", Timezone: "Europe/Paris"}, time.Date(2027, 10, 30, 12, 0, 0, 0, time.UTC))
	var ticks []time.Time
	for range 3 {
		ticks = append(ticks, r.State.ArmedAt)
		r = Tick(r, r.State.ArmedID, r.State.ArmedAt, r.State.ArmedAt, Observed{}).Record
	}
	if !ticks[0].Equal(time.Date(2027, 10, 31, 0, 30, 0, 0, time.UTC)) || !ticks[1].Equal(time.Date(2027, 11, 1, 1, 30, 0, 0, time.UTC)) {
		t.Fatalf("ticks %v", ticks)
	}
}
