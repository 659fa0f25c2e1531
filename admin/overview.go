package admin

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/workflow"
)

// Overview is the dashboard's front page (GET /api/v1/overview): what the
// installation holds now, what happened over a time window, and what needs
// an operator. Everything comes from the status table, so any instance
// answers and nothing is scanned but the table.
type Overview struct {
	// At is when the overview was computed.
	At time.Time `json:"at"`
	// Total is the number of processes in the status table (finished ones
	// stay there for the orchestrator's retention).
	Total int `json:"total"`
	// ByStatus counts processes by status.
	ByStatus map[workflow.Status]int `json:"by_status"`
	// ByDefinition counts processes by definition and status, most
	// processes first.
	ByDefinition []DefinitionCounts `json:"by_definition"`
	// Window is the span Buckets cover, ending at At.
	Window string `json:"window"`
	// Buckets are the starts and ends of processes over the window, oldest
	// first, each Step long.
	Step    string   `json:"step"`
	Buckets []Bucket `json:"buckets"`
	// Stuck counts processes that need an operator (paused,
	// compensation_failed, or no progress for StuckAfter); OldestStuck
	// are the ones waiting longest.
	Stuck       int              `json:"stuck"`
	StuckAfter  string           `json:"stuck_after"`
	OldestStuck []ProcessSummary `json:"oldest_stuck"`
	// ErrorTypes counts the live processes by the type of their last step
	// failure, most first (what is failing now).
	ErrorTypes []ErrorTypeCount `json:"error_types,omitempty"`
}

// DefinitionCounts counts one definition's processes by status.
type DefinitionCounts struct {
	Definition string                  `json:"definition"`
	Total      int                     `json:"total"`
	ByStatus   map[workflow.Status]int `json:"by_status"`
	Stuck      int                     `json:"stuck"`
}

// Bucket counts what happened in one step of the window: processes
// started, and processes that ended completed, or failed (failed,
// compensated or terminated: the saga did not do what it was started
// for).
type Bucket struct {
	Start     time.Time `json:"start"`
	Started   int       `json:"started"`
	Completed int       `json:"completed"`
	Failed    int       `json:"failed"`
}

// ErrorTypeCount is how many live processes last failed with a type.
type ErrorTypeCount struct {
	Type  string `json:"type"`
	Count int    `json:"count"`
}

// overviewWindows are the windows the overview offers, with their steps.
var overviewWindows = map[string]time.Duration{"15m": 15 * time.Second, "1h": time.Minute, "6h": 5 * time.Minute, "24h": 20 * time.Minute}

const oldestStuck = 10

// BuildOverview computes the overview of rows at now over window (a key
// of the offered windows, such as "1h"), optionally of one definition.
func BuildOverview(rows []engine.StatusRecord, now time.Time, window, definition string, stuckAfter time.Duration) (Overview, error) {
	step, ok := overviewWindows[window]
	if !ok {
		keys := []string{"15m", "1h", "6h", "24h"}
		return Overview{}, fmt.Errorf("%w: window %q is not one of %s", ErrBadRequest, window, strings.Join(keys, ", "))
	}
	span, _ := time.ParseDuration(window)
	o := Overview{At: now.UTC(), ByStatus: map[workflow.Status]int{}, ByDefinition: []DefinitionCounts{}, Window: window, Step: step.String(),
		StuckAfter: stuckAfter.String(), OldestStuck: []ProcessSummary{}}
	for _, s := range allStatuses {
		o.ByStatus[s] = 0
	}
	from := now.Add(-span).Truncate(step)
	n := int(now.Sub(from)/step) + 1
	o.Buckets = make([]Bucket, n)
	for i := range o.Buckets {
		o.Buckets[i].Start = from.Add(time.Duration(i) * step).UTC()
	}
	bucket := func(t time.Time) *Bucket {
		if t.IsZero() || t.Before(from) || t.After(now) {
			return nil
		}
		return &o.Buckets[int(t.Sub(from)/step)]
	}
	defs := map[string]*DefinitionCounts{}
	errs := map[string]int{}
	var stuck []engine.StatusRecord
	for _, r := range rows {
		if definition != "" && r.Definition != definition {
			continue
		}
		o.Total++
		o.ByStatus[r.Status]++
		d := defs[r.Definition]
		if d == nil {
			d = &DefinitionCounts{Definition: r.Definition, ByStatus: map[workflow.Status]int{}}
			defs[r.Definition] = d
		}
		d.Total++
		d.ByStatus[r.Status]++
		if b := bucket(r.StartedAt); b != nil {
			b.Started++
		}
		if r.Status.Terminal() {
			end := r.EndedAt
			if end.IsZero() {
				end = r.UpdatedAt
			}
			if b := bucket(end); b != nil {
				if r.Status == workflow.StatusCompleted {
					b.Completed++
				} else {
					b.Failed++
				}
			}
		} else if t := errorType(r); t != "" {
			errs[t]++
		}
		if stuckReason(r, now, stuckAfter) != "" {
			o.Stuck++
			d.Stuck++
			stuck = append(stuck, r)
		}
	}
	for _, d := range defs {
		o.ByDefinition = append(o.ByDefinition, *d)
	}
	slices.SortFunc(o.ByDefinition, func(a, b DefinitionCounts) int {
		if a.Total != b.Total {
			return b.Total - a.Total
		}
		return strings.Compare(a.Definition, b.Definition)
	})
	slices.SortFunc(stuck, func(a, b engine.StatusRecord) int {
		if c := a.UpdatedAt.Compare(b.UpdatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ProcessID, b.ProcessID)
	})
	for _, r := range stuck[:min(len(stuck), oldestStuck)] {
		o.OldestStuck = append(o.OldestStuck, summarize(r, now, stuckAfter))
	}
	for t, c := range errs {
		o.ErrorTypes = append(o.ErrorTypes, ErrorTypeCount{Type: t, Count: c})
	}
	slices.SortFunc(o.ErrorTypes, func(a, b ErrorTypeCount) int {
		if a.Count != b.Count {
			return b.Count - a.Count
		}
		return strings.Compare(a.Type, b.Type)
	})
	return o, nil
}

func (s *Server) overview(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for k := range q {
		if k != "window" && k != "definition" && k != "stuck_after" {
			s.fail(w, r, fmt.Errorf("%w: unknown query parameter %q (have window, definition, stuck_after)", ErrBadRequest, k))
			return
		}
	}
	window := q.Get("window")
	if window == "" {
		window = "1h"
	}
	after := s.opts.StuckAfter
	if v := q.Get("stuck_after"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			s.fail(w, r, fmt.Errorf("%w: stuck_after %q is not a positive duration such as 10m", ErrBadRequest, v))
			return
		}
		after = d
	}
	if err := s.refresh(r.Context()); err != nil {
		s.fail(w, r, err)
		return
	}
	o, err := BuildOverview(s.status.List(), s.opts.Clock(), window, q.Get("definition"), after)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, o)
}
