// Package schedule starts processes on a clock: on a cron expression or at
// a fixed interval, with an overlap policy (what to do when the previous
// run is still going), a catch-up policy (what to do with the ticks missed
// while nothing ran), pause and resume.
//
// A schedule is a record on the compacted "schedules" topic (its spec and
// its state), written only by the Scheduler that is the active consumer of
// the "schedule-events" topic (a Failover subscription: one active
// scheduler across the orchestrators, the others hot standbys). That topic
// carries the control requests (put, pause, resume, delete) and the ticks:
// each tick is a delayed message on the engine's timers topic, relayed to
// schedule-events when due — there is no other timer service. Handling a
// message writes the new record, the start requests, the cancel requests
// and the next tick in one transaction with its acknowledgement.
//
// Each tick starts at most one process, whose id is derived from the
// schedule's name and the tick's time ("<name>-20261203T150000Z"): a tick
// handled twice (after a crash, or by two schedulers during a hand-over)
// starts the same id twice, and the engine ignores the second start.
//
// The decision logic (Put, Pause, Resume, Tick) is pure and table-tested
// without a bus; scheduler.go carries its effects out.
package schedule

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	_ "time/tzdata" // timezones on machines without a zoneinfo database

	"github.com/robfig/cron/v3"

	"github.com/pulsaga/pulsaga/workflow"
)

// Overlap says what a tick does while runs it started before are not
// finished.
type Overlap string

// Overlap policies.
const (
	// OverlapSkip starts nothing while a previous run is live (default).
	OverlapSkip Overlap = "skip"
	// OverlapAllow starts the new run anyway.
	OverlapAllow Overlap = "allow"
	// OverlapCancelPrevious cancels the live runs (they compensate) and
	// starts the new one.
	OverlapCancelPrevious Overlap = "cancel_previous"
	// OverlapTerminatePrevious terminates the live runs (no compensation)
	// and starts the new one.
	OverlapTerminatePrevious Overlap = "terminate_previous"
)

// CatchUp says which of the ticks missed while no scheduler ran (or the
// broker was away) start a run once the schedule is handled again.
type CatchUp string

// Catch-up policies.
const (
	// CatchUpLatest starts one run, for the most recent missed tick
	// (default).
	CatchUpLatest CatchUp = "latest"
	// CatchUpAll starts a run for every missed tick within the catch-up
	// window, oldest first.
	CatchUpAll CatchUp = "all"
	// CatchUpNone starts nothing for missed ticks: the schedule goes on
	// from the next tick.
	CatchUpNone CatchUp = "none"
)

// Limits and defaults.
const (
	// MissedAfter: a tick handled more than this after its time counts as
	// missed (the timer relay is normally late by milliseconds).
	MissedAfter = time.Minute
	// DefaultCatchUpWindow is how far back missed ticks are looked at.
	DefaultCatchUpWindow = 24 * time.Hour
	// MaxCatchUpPerTick bounds the runs one tick message starts under
	// catch_up: all; the rest follow at once in the next message.
	MaxCatchUpPerTick = 100
	// MinEvery is the shortest interval.
	MinEvery = time.Second
	// MaxTracked bounds the live runs a schedule remembers.
	MaxTracked = 100
)

var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$`)

// cronParser reads standard five-field cron expressions and the
// descriptors @yearly, @monthly, @weekly, @daily, @hourly.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Duration is a time.Duration written as a Go duration string in JSON
// ("90s", "1h30m").
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string (or a number of nanoseconds).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n int64
		if err2 := json.Unmarshal(b, &n); err2 != nil {
			return fmt.Errorf("a duration is a string such as \"90s\" or \"1h\"")
		}
		*d = Duration(n)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q (write 90s, 15m, 1h30m)", s)
	}
	*d = Duration(v)
	return nil
}

// Spec is what an operator says about a schedule.
type Spec struct {
	// Name identifies the schedule: letters, digits, '-', '_', '.', at most
	// 100 characters. It prefixes the ids of the processes it starts.
	Name string `json:"name"`
	// Definition and Version name what to start (version 0: the latest
	// registered at each tick).
	Definition string `json:"definition"`
	Version    int    `json:"version,omitempty"`
	// Cron is a five-field cron expression ("0 2 * * *") or a descriptor
	// (@hourly, @daily, ...), read in Timezone. Exactly one of Cron and
	// Every.
	Cron string `json:"cron,omitempty"`
	// Every is a fixed interval (at least 1s). Ticks fall on multiples of
	// it since the Unix epoch, so they do not depend on when the schedule
	// was created: every 1h ticks on the hour.
	Every Duration `json:"every,omitempty"`
	// Timezone is an IANA zone name for Cron (default UTC).
	Timezone string `json:"timezone,omitempty"`
	// Overlap: skip (default), allow, cancel_previous, terminate_previous.
	Overlap Overlap `json:"overlap,omitempty"`
	// CatchUp: latest (default), all, none.
	CatchUp CatchUp `json:"catch_up,omitempty"`
	// CatchUpWindow: missed ticks older than this are never started
	// (default 24h).
	CatchUpWindow Duration `json:"catch_up_window,omitempty"`
	// Input is the start input: JSON whose strings may hold expressions
	// over schedule.name, schedule.time (the tick, RFC 3339) and
	// schedule.fired_at (when it was handled).
	Input json.RawMessage `json:"input,omitempty"`
	// Paused creates the schedule paused.
	Paused bool `json:"paused,omitempty"`
	// Description is free text.
	Description string `json:"description,omitempty"`
}

// ErrInvalid: a spec or request is not valid.
var ErrInvalid = errors.New("invalid schedule")

// Normalize fills in the defaults and checks the spec. The error wraps
// ErrInvalid and lists every problem.
func (s *Spec) Normalize() error {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	if !namePattern.MatchString(s.Name) {
		bad("name %q: use letters, digits, '-', '_' and '.', starting with a letter or digit, at most 100 characters", s.Name)
	}
	if s.Definition == "" {
		bad("definition: name the workflow to start")
	}
	if s.Version < 0 {
		bad("version must be 0 (the latest) or more")
	}
	switch {
	case s.Cron == "" && s.Every == 0:
		bad("give cron (such as \"0 2 * * *\") or every (such as \"15m\")")
	case s.Cron != "" && s.Every != 0:
		bad("give cron or every, not both")
	case s.Cron != "":
		if strings.HasPrefix(s.Cron, "@every") {
			bad("cron %q: write every: instead of @every", s.Cron)
		} else if strings.HasPrefix(s.Cron, "TZ=") || strings.HasPrefix(s.Cron, "CRON_TZ=") {
			bad("cron %q: write the zone in timezone:, not in the expression", s.Cron)
		} else if _, err := cronParser.Parse(s.Cron); err != nil {
			bad("cron %q: %v (five fields: minute hour day-of-month month day-of-week, or @hourly, @daily, @weekly, @monthly, @yearly)", s.Cron, err)
		}
	case time.Duration(s.Every) < MinEvery:
		bad("every %s: the shortest interval is %s", time.Duration(s.Every), MinEvery)
	}
	if s.Timezone != "" {
		if s.Every != 0 {
			bad("timezone applies to cron only; every counts from the Unix epoch")
		} else if _, err := time.LoadLocation(s.Timezone); err != nil {
			bad("timezone %q: %v (an IANA name such as Europe/Paris)", s.Timezone, err)
		}
	}
	switch s.Overlap {
	case "":
		s.Overlap = OverlapSkip
	case OverlapSkip, OverlapAllow, OverlapCancelPrevious, OverlapTerminatePrevious:
	default:
		bad("overlap %q: use skip, allow, cancel_previous or terminate_previous", s.Overlap)
	}
	switch s.CatchUp {
	case "":
		s.CatchUp = CatchUpLatest
	case CatchUpLatest, CatchUpAll, CatchUpNone:
	default:
		bad("catch_up %q: use latest, all or none", s.CatchUp)
	}
	if s.CatchUpWindow < 0 {
		bad("catch_up_window must be positive")
	} else if s.CatchUpWindow == 0 {
		s.CatchUpWindow = Duration(DefaultCatchUpWindow)
	}
	if len(s.Input) > 0 {
		if _, err := workflow.CompileJSONTemplate(s.Input, "schedule"); err != nil {
			bad("input: %v", err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w %q: %s", ErrInvalid, s.Name, strings.Join(errs, "; "))
	}
	return nil
}

// Next is the first tick strictly after t.
func (s *Spec) Next(t time.Time) time.Time {
	if s.Every > 0 {
		every := time.Duration(s.Every)
		n := t.UnixNano()/int64(every) + 1
		if t.UnixNano() < 0 {
			n = 0
		}
		return time.Unix(0, n*int64(every)).UTC()
	}
	sched, err := cronParser.Parse(s.Cron)
	if err != nil {
		return time.Time{}
	}
	loc := time.UTC
	if s.Timezone != "" {
		if l, err := time.LoadLocation(s.Timezone); err == nil {
			loc = l
		}
	}
	local := t.In(loc)
	n := sched.Next(local)
	// When clocks fall back a wall-clock time happens twice: tick once.
	if !n.IsZero() && n.Format("2006-01-02 15:04") == local.Format("2006-01-02 15:04") {
		n = sched.Next(n)
	}
	return n.UTC()
}

// ProcessID is the id of the process started by the tick at t.
func ProcessID(name string, t time.Time) string {
	return name + "-" + t.UTC().Format("20060102T150405Z")
}
