package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/schedule"
	"github.com/pulsaga/pulsaga/trigger"
)

// Schedules is what the schedule routes need: the table to read and the
// client to send requests to the active scheduler.
type Schedules struct {
	Table  *schedule.Table
	Client *schedule.Client
}

// scheduleApplyTimeout is how long a schedule request waits for the
// scheduler to apply it before answering 202 Accepted.
const scheduleApplyTimeout = 10 * time.Second

// ScheduleAnswer answers a schedule request.
type ScheduleAnswer struct {
	// Applied is false when the scheduler had not applied the request
	// within 10s (no orchestrator running?); it will when one runs.
	Applied  bool             `json:"applied"`
	Schedule *schedule.Record `json:"schedule,omitempty"`
}

func (s *Server) listSchedules(w http.ResponseWriter, r *http.Request) {
	t := s.sched.Table
	if err := t.Refresh(r.Context()); err != nil {
		s.fail(w, r, fmt.Errorf("%w: %v", ErrUnavailable, err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"schedules": t.List()})
}

func (s *Server) getSchedule(w http.ResponseWriter, r *http.Request) {
	t := s.sched.Table
	if err := t.Refresh(r.Context()); err != nil {
		s.fail(w, r, fmt.Errorf("%w: %v", ErrUnavailable, err))
		return
	}
	rec, ok := t.Get(r.PathValue("name"))
	if !ok {
		s.fail(w, r, fmt.Errorf("%w: no schedule %q", ErrNotFound, r.PathValue("name")))
		return
	}
	writeJSON(w, http.StatusOK, rec)
}

// putSchedule creates or replaces a schedule (POST /api/v1/schedules).
func (s *Server) putSchedule(w http.ResponseWriter, r *http.Request) {
	var spec schedule.Spec
	if err := decodeBody(w, r, &spec); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := spec.Normalize(); err != nil {
		s.fail(w, r, fmt.Errorf("%w: %v", ErrBadRequest, err))
		return
	}
	if _, err := s.opts.Registry.Get(r.Context(), spec.Definition, spec.Version); err != nil {
		if errors.Is(err, engine.ErrUnknownDefinition) {
			s.fail(w, r, fmt.Errorf("%w: schedule %s: %v (register it first)", ErrBadRequest, spec.Name, err))
		} else {
			s.fail(w, r, fmt.Errorf("%w: %v", ErrUnavailable, err))
		}
		return
	}
	want, _ := json.Marshal(spec)
	s.scheduleRequest(w, r, schedule.Request{Op: schedule.OpPut, Name: spec.Name, Spec: &spec}, http.StatusCreated, func(rec *schedule.Record) bool {
		if rec == nil {
			return false
		}
		got, _ := json.Marshal(rec.Spec)
		return string(got) == string(want)
	})
}

func (s *Server) scheduleAction(op string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		t := s.sched.Table
		if err := t.Refresh(r.Context()); err != nil {
			s.fail(w, r, fmt.Errorf("%w: %v", ErrUnavailable, err))
			return
		}
		if _, ok := t.Get(name); !ok {
			s.fail(w, r, fmt.Errorf("%w: no schedule %q", ErrNotFound, name))
			return
		}
		done := func(rec *schedule.Record) bool {
			switch op {
			case schedule.OpPause:
				return rec != nil && rec.Spec.Paused
			case schedule.OpResume:
				return rec != nil && !rec.Spec.Paused
			}
			return rec == nil
		}
		s.scheduleRequest(w, r, schedule.Request{Op: op, Name: name}, http.StatusOK, done)
	}
}

// scheduleRequest sends req and waits until the table shows it applied.
func (s *Server) scheduleRequest(w http.ResponseWriter, r *http.Request, req schedule.Request, code int, applied func(*schedule.Record) bool) {
	req.Actor = PrincipalFrom(r.Context()).Name
	id, _ := r.Context().Value(requestIDKey{}).(string)
	if err := s.sched.Client.Send(r.Context(), req, id); err != nil {
		if errors.Is(err, schedule.ErrInvalid) {
			s.fail(w, r, fmt.Errorf("%w: %v", ErrBadRequest, err))
		} else {
			s.fail(w, r, fmt.Errorf("%w: %v", ErrUnavailable, err))
		}
		return
	}
	s.log.Info().Str("schedule", req.Name).Str("op", req.Op).Str("actor", req.Actor).Msg("schedule request sent")
	ctx, cancel := context.WithTimeout(r.Context(), scheduleApplyTimeout)
	defer cancel()
	t := s.sched.Table
	for {
		if err := t.Refresh(ctx); err == nil {
			rec, ok := t.Get(req.Name)
			if !ok {
				rec = nil
			}
			if applied(rec) {
				writeJSON(w, code, ScheduleAnswer{Applied: true, Schedule: rec})
				return
			}
		}
		select {
		case <-ctx.Done():
			writeJSON(w, http.StatusAccepted, ScheduleAnswer{Applied: false})
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// listTriggers lists the triggers of the latest version of each
// definition (GET /api/v1/triggers).
func (s *Server) listTriggers(w http.ResponseWriter, r *http.Request) {
	defs, err := trigger.Desired(r.Context(), s.opts.Registry)
	if err != nil {
		s.fail(w, r, fmt.Errorf("%w: %v", ErrUnavailable, err))
		return
	}
	counts := map[string]trigger.Info{}
	if s.opts.Triggers != nil {
		for _, i := range s.opts.Triggers() {
			counts[i.Definition+"/"+i.ID] = i
		}
	}
	out := []trigger.Info{}
	for _, def := range defs {
		for _, tr := range def.Triggers {
			sub := trigger.Subscription(def.Name, tr.ID)
			i := trigger.Info{Definition: def.Name, Version: def.Version, ID: tr.ID, Topic: tr.Topic, Subscription: sub}
			if c, ok := counts[def.Name+"/"+tr.ID]; ok && c.Version == def.Version {
				i = c
			}
			i.DeadLetterTopic = bus.DeadLetterTopic(tr.Topic, sub)
			out = append(out, i)
		}
	}
	sortTriggers(out)
	writeJSON(w, http.StatusOK, map[string]any{"triggers": out})
}

func sortTriggers(out []trigger.Info) {
	sort.Slice(out, func(i, j int) bool {
		if out[i].Definition != out[j].Definition {
			return out[i].Definition < out[j].Definition
		}
		return out[i].ID < out[j].ID
	})
}

// scheduleRoutes adds the routes of schedules and triggers (docs/api.md).
func (s *Server) scheduleRoutes(m *http.ServeMux) {
	rd, op := RoleRead, RoleOperator
	m.HandleFunc("GET /api/v1/schedules", s.require(rd, s.listSchedules))
	m.HandleFunc("POST /api/v1/schedules", s.require(op, s.idempotent(s.putSchedule)))
	m.HandleFunc("GET /api/v1/schedules/{name}", s.require(rd, s.getSchedule))
	m.HandleFunc("POST /api/v1/schedules/{name}/pause", s.require(op, s.idempotent(s.scheduleAction(schedule.OpPause))))
	m.HandleFunc("POST /api/v1/schedules/{name}/resume", s.require(op, s.idempotent(s.scheduleAction(schedule.OpResume))))
	m.HandleFunc("DELETE /api/v1/schedules/{name}", s.require(op, s.idempotent(s.scheduleAction(schedule.OpDelete))))
	m.HandleFunc("GET /api/v1/triggers", s.require(rd, s.listTriggers))
}
