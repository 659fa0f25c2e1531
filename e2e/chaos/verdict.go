package chaos

import (
	"fmt"
	"sort"
	"strings"

	"github.com/pulsaga/pulsaga/workflow"
)

// Effects are one saga's effects at the service, by unit name.
type Effects struct {
	// Forward are the keys with a forward effect, by unit.
	Forward map[string][]string
	// Undo are the keys with a compensation that undid an effect, by unit.
	Undo map[string][]string
	// Noop are the keys of compensations of units without an effect (an
	// unknown outcome that had not happened): nothing was undone.
	Noop map[string][]string
	// Dup are keys recorded more than once in the ledger (a broken
	// ledger: never expected).
	Dup []string
}

// EffectsOf groups ledger entries by saga (process id).
func EffectsOf(entries []Entry) map[string]*Effects {
	out := map[string]*Effects{}
	seen := map[string]bool{}
	for _, e := range entries {
		fx := out[e.ProcessID]
		if fx == nil {
			fx = &Effects{Forward: map[string][]string{}, Undo: map[string][]string{}, Noop: map[string][]string{}}
			out[e.ProcessID] = fx
		}
		if seen[e.Key] {
			fx.Dup = append(fx.Dup, e.Key)
			continue
		}
		seen[e.Key] = true
		u := UnitName(e.Step, e.Item)
		switch {
		case !e.Undo:
			fx.Forward[u] = append(fx.Forward[u], e.Key)
		case e.Noop:
			fx.Noop[u] = append(fx.Noop[u], e.Key)
		default:
			fx.Undo[u] = append(fx.Undo[u], e.Key)
		}
	}
	return out
}

// Verdict is the check of one saga.
type Verdict struct {
	// Status: right, wrong or unfinished.
	Status string
	// Problems with its effects (any makes the saga wrong).
	Problems []string
}

// Verdict values.
const (
	Right      = "right"
	Wrong      = "wrong"
	Unfinished = "unfinished"
)

// Settled says whether a status ends a saga for the kit: terminal, or
// compensation_failed (which waits for an operator).
func Settled(s workflow.Status) bool {
	return s.Terminal() || s == workflow.StatusCompensationFailed
}

// Judge checks one saga: its final status against the expected one, and
// each unit's effects and compensations at the service against what must
// be true of it.
func Judge(s Saga, status workflow.Status, fx *Effects) Verdict {
	if fx == nil {
		fx = &Effects{}
	}
	var p []string
	if !Settled(status) {
		return Verdict{Status: Unfinished, Problems: []string{fmt.Sprintf("status %q, want %s", status, s.Expect.Status)}}
	}
	if status != s.Expect.Status {
		p = append(p, fmt.Sprintf("status %s, want %s (%s)", status, s.Expect.Status, orNone(s.Expect.Why)))
	}
	for _, k := range fx.Dup {
		p = append(p, "key "+k+" recorded twice in the ledger")
	}
	units := make([]string, 0, len(s.Expect.Units))
	for u := range s.Expect.Units {
		units = append(units, u)
	}
	sort.Strings(units)
	for _, u := range units {
		ue := s.Expect.Units[u]
		fwd, undo, noop := fx.Forward[u], fx.Undo[u], fx.Noop[u]
		if !ue.Effect.allows(len(fwd)) {
			p = append(p, fmt.Sprintf("%s: effect %d times, want %s %s", u, len(fwd), ue.Effect, keysOf(fwd)))
		}
		if !ue.Undo.allows(len(undo)) {
			p = append(p, fmt.Sprintf("%s: compensated %d times, want %s %s", u, len(undo), ue.Undo, keysOf(undo)))
		}
		if ue.Balanced && len(undo) != len(fwd) {
			p = append(p, fmt.Sprintf("%s: effect %d times but compensated %d times %s", u, len(fwd), len(undo), keysOf(append(fwd, undo...))))
		}
		if n := len(undo) + len(noop); n > 1 {
			p = append(p, fmt.Sprintf("%s: %d compensations %s", u, n, keysOf(append(undo, noop...))))
		}
		if len(noop) > 0 && ue.Undo == Never && !ue.Balanced && status == workflow.StatusCompleted {
			p = append(p, fmt.Sprintf("%s: compensated in a completed saga %s", u, keysOf(noop)))
		}
	}
	for u := range fx.Forward {
		if _, ok := s.Expect.Units[u]; !ok {
			p = append(p, fmt.Sprintf("%s: an effect of a unit the saga does not have %s", u, keysOf(fx.Forward[u])))
		}
	}
	if len(p) > 0 {
		return Verdict{Status: Wrong, Problems: p}
	}
	return Verdict{Status: Right}
}

func keysOf(keys []string) string {
	if len(keys) == 0 {
		return ""
	}
	return "[" + strings.Join(keys, " ") + "]"
}

func orNone(s string) string {
	if s == "" {
		return "no fault"
	}
	return s
}
