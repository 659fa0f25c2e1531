package workflow

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

// A history is a replay test, Temporal-style: a definition, a sequence of
// decisions (the time and the events folded in) and what each decision must
// produce, and the final status of the process and of every step.
type history struct {
	Description string            `json:"description"`
	Definition  string            `json:"definition"` // relative to testdata/
	Decisions   []historyDecision `json:"decisions"`
	Final       struct {
		Status Status                `json:"status"`
		Steps  map[string]StepStatus `json:"steps"`
		Output json.RawMessage       `json:"output"`
	} `json:"final"`
}

type historyDecision struct {
	Now    time.Time `json:"now"`
	Events []Event   `json:"events"`
	Expect struct {
		Status       Status          `json:"status"`
		Commands     []expectCommand `json:"commands"`
		Timers       []expectTimer   `json:"timers"`
		CancelTimers []string        `json:"cancel_timers"`
		Ignored      []expectIgnored `json:"ignored"`
	} `json:"expect"`
}

type expectCommand struct {
	ID           string          `json:"id"`
	Service      string          `json:"service"`
	Command      string          `json:"command"`
	Input        json.RawMessage `json:"input"`
	Compensation bool            `json:"compensation"`
	Item         *int            `json:"item"`
	NotBefore    *time.Time      `json:"not_before"`
	// NotBeforeMin and NotBeforeMax bound a jittered retry time.
	NotBeforeMin *time.Time `json:"not_before_min"`
	NotBeforeMax *time.Time `json:"not_before_max"`
	Deadline     *time.Time `json:"deadline"`
	// IdempotencyKey, Compensates and OutcomeUnknown are checked when given
	// (every command's key is checked against its id anyway).
	IdempotencyKey string `json:"idempotency_key"`
	Compensates    string `json:"compensates"`
	OutcomeUnknown *bool  `json:"outcome_unknown"`
}

type expectTimer struct {
	ID     string    `json:"id"`
	FireAt time.Time `json:"fire_at"`
	// FireAtMin and FireAtMax bound the timeout of a jittered retry.
	FireAtMin time.Time `json:"fire_at_min"`
	FireAtMax time.Time `json:"fire_at_max"`
}

type expectIgnored struct {
	Index  int          `json:"index"`
	Reason IgnoreReason `json:"reason"`
}

func TestReplayHistories(t *testing.T) {
	files, err := filepath.Glob("../testdata/histories/*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 10 {
		t.Fatalf("want at least 10 histories, found %d", len(files))
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".json"), func(t *testing.T) {
			replay(t, f)
		})
	}
}

func replay(t *testing.T, file string) {
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var h history
	if err := dec.Decode(&h); err != nil {
		t.Fatalf("history: %v", err)
	}
	def, err := LoadFile(filepath.Join("../testdata", h.Definition))
	if err != nil {
		t.Fatalf("definition: %v", err)
	}
	var st *State
	for i, hd := range h.Decisions {
		d, err := Decide(def, st, hd.Events, hd.Now)
		if err != nil {
			t.Fatalf("decision %d: %v", i, err)
		}
		checkDecision(t, i, hd, d)
		if st != nil {
			checkInvariants(t, fmt.Sprintf("decision %d", i), def, st, d, hd.Events)
		}
		// Every state goes through JSON, as a snapshot would.
		st = roundTrip(t, d.State)
	}
	if st == nil {
		t.Fatal("no decisions")
	}
	if st.Status != h.Final.Status {
		t.Errorf("final status %s, want %s", st.Status, h.Final.Status)
	}
	got := map[string]StepStatus{}
	for _, ss := range st.Steps {
		got[ss.ID] = ss.Status
	}
	if !reflect.DeepEqual(got, h.Final.Steps) {
		t.Errorf("final step statuses\n got %v\nwant %v", got, h.Final.Steps)
	}
	if len(h.Final.Output) > 0 && !jsonEqual(st.Output, h.Final.Output) {
		t.Errorf("final output %s, want %s", st.Output, h.Final.Output)
	}
}

func roundTrip(t testing.TB, s *State) *State {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatalf("marshal state: %v", err)
	}
	var out State
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("unmarshal state: %v", err)
	}
	return &out
}

func checkDecision(t *testing.T, i int, hd historyDecision, d Decision) {
	t.Helper()
	want := hd.Expect
	if want.Status != "" && d.Status != want.Status {
		t.Errorf("decision %d: status %s, want %s", i, d.Status, want.Status)
	}
	// commands: the same ids, and the fields the history gives
	var gotIDs, wantIDs []string
	byID := map[string]Command{}
	for _, c := range d.Commands {
		gotIDs = append(gotIDs, c.ID)
		byID[c.ID] = c
	}
	for _, c := range want.Commands {
		wantIDs = append(wantIDs, c.ID)
	}
	sort.Strings(gotIDs)
	sort.Strings(wantIDs)
	if !reflect.DeepEqual(gotIDs, wantIDs) {
		t.Errorf("decision %d: commands\n got %v\nwant %v", i, gotIDs, wantIDs)
	}
	for _, w := range want.Commands {
		g, ok := byID[w.ID]
		if !ok {
			continue
		}
		if g.IdempotencyKey == "" || g.ProcessID == "" {
			t.Errorf("decision %d: command %s lacks its idempotency key or process id", i, w.ID)
		}
		// the key is the command id without its attempt: stable across
		// attempts (the engine's fire-and-forget child commands are not
		// attempts)
		childOnly := g.Service == EngineService && g.Command != CmdStartChild && g.Command != CmdCompensateChild
		if want := fmt.Sprintf("%s/%d", g.IdempotencyKey, g.Attempt); g.ID != want && !childOnly {
			t.Errorf("decision %d: %s has idempotency key %q, not its id without the attempt", i, w.ID, g.IdempotencyKey)
		}
		if w.IdempotencyKey != "" && g.IdempotencyKey != w.IdempotencyKey {
			t.Errorf("decision %d: %s idempotency key %q, want %q", i, w.ID, g.IdempotencyKey, w.IdempotencyKey)
		}
		if w.Compensates != "" && g.Compensates != w.Compensates {
			t.Errorf("decision %d: %s compensates %q, want %q", i, w.ID, g.Compensates, w.Compensates)
		}
		if w.OutcomeUnknown != nil && g.OutcomeUnknown != *w.OutcomeUnknown {
			t.Errorf("decision %d: %s outcome_unknown %v, want %v", i, w.ID, g.OutcomeUnknown, *w.OutcomeUnknown)
		}
		if w.Service != "" && g.Service != w.Service {
			t.Errorf("decision %d: %s service %q, want %q", i, w.ID, g.Service, w.Service)
		}
		if w.Command != "" && g.Command != w.Command {
			t.Errorf("decision %d: %s command %q, want %q", i, w.ID, g.Command, w.Command)
		}
		if len(w.Input) > 0 && !jsonEqual(g.Input, w.Input) {
			t.Errorf("decision %d: %s input %s, want %s", i, w.ID, g.Input, w.Input)
		}
		if g.Compensation != w.Compensation {
			t.Errorf("decision %d: %s compensation %v, want %v", i, w.ID, g.Compensation, w.Compensation)
		}
		if w.Item != nil && (g.Item == nil || *g.Item != *w.Item) {
			t.Errorf("decision %d: %s item %v, want %d", i, w.ID, g.Item, *w.Item)
		}
		if w.NotBefore != nil && !g.NotBefore.Equal(*w.NotBefore) {
			t.Errorf("decision %d: %s not_before %s, want %s", i, w.ID, g.NotBefore, *w.NotBefore)
		}
		if w.NotBefore == nil && w.NotBeforeMin == nil && !g.NotBefore.IsZero() {
			t.Errorf("decision %d: %s has not_before %s, want none", i, w.ID, g.NotBefore)
		}
		if w.NotBeforeMin != nil && (g.NotBefore.Before(*w.NotBeforeMin) || g.NotBefore.After(*w.NotBeforeMax)) {
			t.Errorf("decision %d: %s not_before %s, want within [%s, %s]", i, w.ID, g.NotBefore, *w.NotBeforeMin, *w.NotBeforeMax)
		}
		if w.Deadline != nil && !g.Deadline.Equal(*w.Deadline) {
			t.Errorf("decision %d: %s deadline %s, want %s", i, w.ID, g.Deadline, *w.Deadline)
		}
	}
	// timers: exactly these ids, at these times
	gotT := map[string]time.Time{}
	for _, tm := range d.Timers {
		gotT[tm.ID] = tm.FireAt
	}
	if len(gotT) != len(want.Timers) {
		t.Errorf("decision %d: timers\n got %v\nwant %+v", i, gotT, want.Timers)
	}
	for _, w := range want.Timers {
		g, ok := gotT[w.ID]
		switch {
		case !ok:
			t.Errorf("decision %d: no timer %s (got %v)", i, w.ID, gotT)
		case !w.FireAtMin.IsZero():
			if g.Before(w.FireAtMin) || g.After(w.FireAtMax) {
				t.Errorf("decision %d: timer %s at %s, want within [%s, %s]", i, w.ID, g, w.FireAtMin, w.FireAtMax)
			}
		case !g.Equal(w.FireAt):
			t.Errorf("decision %d: timer %s at %s, want %s", i, w.ID, g, w.FireAt)
		}
	}
	gotC := append([]string(nil), d.CancelTimers...)
	wantC := append([]string(nil), want.CancelTimers...)
	sort.Strings(gotC)
	sort.Strings(wantC)
	if len(gotC)+len(wantC) > 0 && !reflect.DeepEqual(gotC, wantC) {
		t.Errorf("decision %d: cancelled timers\n got %v\nwant %v", i, gotC, wantC)
	}
	var gotI, wantI []string
	for _, ig := range d.Ignored {
		gotI = append(gotI, ignoredKey(ig.Reason, ig.Index))
	}
	for _, ig := range want.Ignored {
		wantI = append(wantI, ignoredKey(ig.Reason, ig.Index))
	}
	if !reflect.DeepEqual(gotI, wantI) {
		t.Errorf("decision %d: ignored\n got %v\nwant %v (%+v)", i, gotI, wantI, d.Ignored)
	}
}

func ignoredKey(r IgnoreReason, i int) string { return fmt.Sprintf("%s#%d", r, i) }

func jsonEqual(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}
