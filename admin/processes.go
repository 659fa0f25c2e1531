package admin

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/workflow"
)

// ProcessSummary is a process's row as the API shows it.
type ProcessSummary struct {
	ProcessID  string            `json:"process_id"`
	Definition string            `json:"definition"`
	Version    int               `json:"version"`
	Status     workflow.Status   `json:"status"`
	Steps      map[string]string `json:"steps,omitempty"`
	LastError  string            `json:"last_error,omitempty"`
	Seq        int64             `json:"seq"`
	StartedAt  time.Time         `json:"started_at,omitzero"`
	UpdatedAt  time.Time         `json:"updated_at,omitzero"`
	EndedAt    time.Time         `json:"ended_at,omitzero"`
	// Stuck says why the process needs an operator ("" when it does not).
	Stuck string `json:"stuck,omitempty"`
	// ErrorType is the type of the error that failed a step ("" when none),
	// such as NoSeats or Timeout.
	ErrorType string `json:"error_type,omitempty"`
}

// ProcessList is a page of processes.
type ProcessList struct {
	Processes []ProcessSummary `json:"processes"`
	// Total is how many processes match the filter (all pages).
	Total int `json:"total"`
	// NextCursor fetches the next page ("" on the last).
	NextCursor string `json:"next_cursor,omitempty"`
}

// ProcessDetail is one process: its row, full state, event stream and the
// shape of its definition (for the step graph).
type ProcessDetail struct {
	Process ProcessSummary  `json:"process"`
	State   *workflow.State `json:"state,omitempty"`
	Records []engine.Record `json:"records"`
	// Pending are accepted events not yet folded into State.
	Pending    []workflow.Event `json:"pending,omitempty"`
	Definition *DefinitionInfo  `json:"definition,omitempty"`
}

// ActionResult answers an accepted action. Actions are applied by the
// orchestrator in order with the process's other events; the outcome
// shows in the process's state and event stream.
type ActionResult struct {
	Accepted  bool   `json:"accepted"`
	ProcessID string `json:"process_id"`
	Action    string `json:"action"`
	StepID    string `json:"step_id,omitempty"`
	RequestID string `json:"request_id"`
	Actor     string `json:"actor"`
	// Created is false for a start of an id that exists already.
	Created *bool `json:"created,omitempty"`
	// Existing is the process that has the id already (Created false):
	// nothing was started.
	Existing *ProcessSummary `json:"existing,omitempty"`
}

// ListFilter selects processes.
type ListFilter struct {
	Statuses      []workflow.Status
	Definition    string
	Version       int
	StartedAfter  time.Time
	StartedBefore time.Time
	UpdatedAfter  time.Time
	UpdatedBefore time.Time
	// Stuck keeps paused and compensation_failed processes and live ones
	// without progress for longer than StuckAfter.
	Stuck      bool
	StuckAfter time.Duration
	// Step keeps processes in which that step has started (any status but
	// pending); StepStatus (with Step) keeps those where it has that status.
	Step       string
	StepStatus workflow.StepStatus
	// ErrorType keeps processes whose last step failure has that type.
	ErrorType string
	// Query keeps ids containing it.
	Query  string
	Limit  int
	Cursor string
}

var allStepStatuses = []workflow.StepStatus{
	workflow.StepPending, workflow.StepRunning, workflow.StepWaiting, workflow.StepCompleted, workflow.StepSkipped, workflow.StepFailed,
	workflow.StepCancelled, workflow.StepCompensating, workflow.StepCompensated, workflow.StepCompensationFailed,
}

var allStatuses = []workflow.Status{
	workflow.StatusRunning, workflow.StatusCompleted, workflow.StatusCompensating, workflow.StatusCompensated,
	workflow.StatusFailed, workflow.StatusPaused, workflow.StatusCompensationFailed, workflow.StatusTerminated,
}

// ParseListFilter reads a filter from query parameters (see docs/api.md).
func ParseListFilter(q url.Values, defaultStuck time.Duration) (ListFilter, error) {
	f := ListFilter{Definition: q.Get("definition"), Query: q.Get("q"), Cursor: q.Get("cursor"), Limit: 100, StuckAfter: defaultStuck,
		Step: q.Get("step"), StepStatus: workflow.StepStatus(q.Get("step_status")), ErrorType: q.Get("error_type")}
	known := map[string]bool{"status": true, "definition": true, "version": true, "started_after": true, "started_before": true,
		"updated_after": true, "updated_before": true, "stuck": true, "stuck_after": true, "step": true, "step_status": true,
		"error_type": true, "q": true, "limit": true, "cursor": true}
	for k := range q {
		if !known[k] {
			return f, fmt.Errorf("%w: unknown query parameter %q (have status, definition, version, started_after, started_before, updated_after, updated_before, stuck, stuck_after, step, step_status, error_type, q, limit, cursor)", ErrBadRequest, k)
		}
	}
	if f.StepStatus != "" {
		if f.Step == "" {
			return f, fmt.Errorf("%w: step_status needs step", ErrBadRequest)
		}
		if !slices.Contains(allStepStatuses, f.StepStatus) {
			return f, fmt.Errorf("%w: step_status %q is not one of %v", ErrBadRequest, f.StepStatus, allStepStatuses)
		}
	}
	for _, v := range q["status"] {
		for _, s := range strings.Split(v, ",") {
			st := workflow.Status(strings.TrimSpace(s))
			if !slices.Contains(allStatuses, st) {
				return f, fmt.Errorf("%w: status %q is not one of %v", ErrBadRequest, s, allStatuses)
			}
			f.Statuses = append(f.Statuses, st)
		}
	}
	var err error
	if v := q.Get("version"); v != "" {
		if f.Version, err = strconv.Atoi(v); err != nil || f.Version < 1 {
			return f, fmt.Errorf("%w: version %q is not a positive integer", ErrBadRequest, v)
		}
		if f.Definition == "" {
			return f, fmt.Errorf("%w: version needs definition", ErrBadRequest)
		}
	}
	for _, tf := range []struct {
		key string
		dst *time.Time
	}{{"started_after", &f.StartedAfter}, {"started_before", &f.StartedBefore}, {"updated_after", &f.UpdatedAfter}, {"updated_before", &f.UpdatedBefore}} {
		if v := q.Get(tf.key); v != "" {
			if *tf.dst, err = time.Parse(time.RFC3339, v); err != nil {
				return f, fmt.Errorf("%w: %s %q is not an RFC 3339 time such as 2026-11-25T10:00:00Z", ErrBadRequest, tf.key, v)
			}
		}
	}
	if v := q.Get("stuck"); v != "" {
		if f.Stuck, err = strconv.ParseBool(v); err != nil {
			return f, fmt.Errorf("%w: stuck %q is not true or false", ErrBadRequest, v)
		}
	}
	if v := q.Get("stuck_after"); v != "" {
		if f.StuckAfter, err = time.ParseDuration(v); err != nil || f.StuckAfter <= 0 {
			return f, fmt.Errorf("%w: stuck_after %q is not a positive duration such as 10m", ErrBadRequest, v)
		}
	}
	if v := q.Get("limit"); v != "" {
		if f.Limit, err = strconv.Atoi(v); err != nil || f.Limit < 1 || f.Limit > 1000 {
			return f, fmt.Errorf("%w: limit %q must be between 1 and 1000", ErrBadRequest, v)
		}
	}
	if f.Cursor != "" {
		if _, _, err := decodeCursor(f.Cursor); err != nil {
			return f, err
		}
	}
	return f, nil
}

// stuckReason says why a process needs an operator, or "".
func stuckReason(r engine.StatusRecord, now time.Time, after time.Duration) string {
	switch {
	case r.Status == workflow.StatusPaused:
		return "paused: waiting for an operator to retry, skip or cancel"
	case r.Status == workflow.StatusCompensationFailed:
		return "compensation failed: waiting for an operator to retry or skip the compensation"
	case !r.Status.Terminal() && !r.UpdatedAt.IsZero() && now.Sub(r.UpdatedAt) > after:
		return fmt.Sprintf("no progress for %s", now.Sub(r.UpdatedAt).Truncate(time.Second))
	}
	return ""
}

func summarize(r engine.StatusRecord, now time.Time, after time.Duration) ProcessSummary {
	return ProcessSummary{
		ProcessID: r.ProcessID, Definition: r.Definition, Version: r.Version, Status: r.Status, Steps: r.Steps,
		LastError: r.LastError, Seq: r.Seq, StartedAt: r.StartedAt, UpdatedAt: r.UpdatedAt, EndedAt: r.EndedAt,
		Stuck: stuckReason(r, now, after), ErrorType: errorType(r),
	}
}

// errorType is the type of a process's last step failure: the status row's
// last error reads "<step>: <type>: <message>".
func errorType(r engine.StatusRecord) string {
	_, rest, ok := strings.Cut(r.LastError, ": ")
	if !ok {
		return ""
	}
	typ, _, _ := strings.Cut(rest, ": ")
	return typ
}

// Cursors are (started_at, process id) of the last row of a page: the list
// is ordered by start time, newest first, then by id.
func encodeCursor(r engine.StatusRecord) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(r.StartedAt.UnixNano(), 10) + "|" + r.ProcessID))
}

func decodeCursor(c string) (int64, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err == nil {
		if ts, id, ok := strings.Cut(string(b), "|"); ok {
			if n, err := strconv.ParseInt(ts, 10, 64); err == nil {
				return n, id, nil
			}
		}
	}
	return 0, "", fmt.Errorf("%w: cursor %q is not one this server gave", ErrBadRequest, c)
}

func before(a, b engine.StatusRecord) bool {
	if !a.StartedAt.Equal(b.StartedAt) {
		return a.StartedAt.After(b.StartedAt)
	}
	return a.ProcessID < b.ProcessID
}

// Filter applies f to rows (already in list order) at now.
func Filter(rows []engine.StatusRecord, f ListFilter, now time.Time) ProcessList {
	slices.SortFunc(rows, func(a, b engine.StatusRecord) int {
		if before(a, b) {
			return -1
		}
		if before(b, a) {
			return 1
		}
		return 0
	})
	var curTS int64
	var curID string
	if f.Cursor != "" {
		curTS, curID, _ = decodeCursor(f.Cursor)
	}
	out := ProcessList{Processes: []ProcessSummary{}}
	var last engine.StatusRecord
	for _, r := range rows {
		if !match(r, f, now) {
			continue
		}
		out.Total++
		if f.Cursor != "" && !before(engine.StatusRecord{StartedAt: time.Unix(0, curTS), ProcessID: curID}, r) {
			continue
		}
		if len(out.Processes) == f.Limit {
			out.NextCursor = encodeCursor(last)
			continue
		}
		out.Processes = append(out.Processes, summarize(r, now, f.StuckAfter))
		last = r
	}
	return out
}

func match(r engine.StatusRecord, f ListFilter, now time.Time) bool {
	switch {
	case len(f.Statuses) > 0 && !slices.Contains(f.Statuses, r.Status),
		f.Definition != "" && r.Definition != f.Definition,
		f.Version > 0 && r.Version != f.Version,
		!f.StartedAfter.IsZero() && r.StartedAt.Before(f.StartedAfter),
		!f.StartedBefore.IsZero() && !r.StartedAt.Before(f.StartedBefore),
		!f.UpdatedAfter.IsZero() && r.UpdatedAt.Before(f.UpdatedAfter),
		!f.UpdatedBefore.IsZero() && !r.UpdatedAt.Before(f.UpdatedBefore),
		f.Query != "" && !strings.Contains(r.ProcessID, f.Query),
		f.ErrorType != "" && errorType(r) != f.ErrorType,
		f.Stuck && stuckReason(r, now, f.StuckAfter) == "":
		return false
	}
	if f.Step != "" {
		st, ok := r.Steps[f.Step]
		if !ok || workflow.StepStatus(st) == workflow.StepPending || (f.StepStatus != "" && workflow.StepStatus(st) != f.StepStatus) {
			return false
		}
	}
	return true
}

func (s *Server) listProcesses(w http.ResponseWriter, r *http.Request) {
	f, err := ParseListFilter(r.URL.Query(), s.opts.StuckAfter)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.refresh(r.Context()); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, Filter(s.status.List(), f, s.opts.Clock()))
}

// processID is the {id} of a request's path, checked against the rule of
// process ids (a bad one can name no process).
func processID(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if err := workflow.CheckProcessID(id); err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	return id, nil
}

// checkPayload answers 413 for data over max_payload_bytes.
func checkPayload(what string, data json.RawMessage) error {
	if err := workflow.CheckPayload(what, data); err != nil {
		return fmt.Errorf("%w: %w", ErrTooLarge, err)
	}
	return nil
}

func (s *Server) row(ctx context.Context, pid string) (engine.StatusRecord, error) {
	if err := workflow.CheckProcessID(pid); err != nil {
		return engine.StatusRecord{}, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if err := s.refresh(ctx); err != nil {
		return engine.StatusRecord{}, err
	}
	row, ok := s.status.Get(pid)
	if !ok {
		return row, fmt.Errorf("%w: no process %s", ErrNotFound, pid)
	}
	return row, nil
}

func (s *Server) getProcess(w http.ResponseWriter, r *http.Request) {
	row, err := s.row(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	d := ProcessDetail{Process: summarize(row, s.opts.Clock(), s.opts.StuckAfter), Records: []engine.Record{}}
	v, err := s.opts.ReadProcess(r.Context(), row)
	if err != nil {
		s.fail(w, r, fmt.Errorf("%w: read process %s: %v", ErrUnavailable, row.ProcessID, err))
		return
	}
	d.State, d.Pending = v.State, v.Pending
	if v.Records != nil {
		d.Records = v.Records
	}
	if def, err := s.opts.Registry.Get(r.Context(), row.Definition, row.Version); err == nil {
		info := describe(def)
		d.Definition = &info
	}
	writeJSON(w, http.StatusOK, d)
}

// ActionRequest is the body of retry, skip, cancel and terminate.
type ActionRequest struct {
	// StepID: retry (empty: every failed step) and skip (required).
	StepID string `json:"step_id,omitempty"`
	// Output becomes the skipped step's output.
	Output json.RawMessage `json:"output,omitempty"`
	// Reason is recorded with the action.
	Reason string `json:"reason,omitempty"`
}

func (s *Server) action(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req ActionRequest
		if r.ContentLength != 0 {
			if err := decodeBody(w, r, &req); err != nil {
				s.fail(w, r, err)
				return
			}
		}
		if len(req.Output) > 0 && name != "skip" {
			s.fail(w, r, fmt.Errorf("%w: output is for skip only", ErrBadRequest))
			return
		}
		if req.StepID != "" && (name == "cancel" || name == "terminate") {
			s.fail(w, r, fmt.Errorf("%w: %s applies to the whole process; remove step_id", ErrBadRequest, name))
			return
		}
		if name == "skip" && req.StepID == "" {
			s.fail(w, r, fmt.Errorf("%w: skip needs step_id", ErrBadRequest))
			return
		}
		if err := checkPayload("the output", req.Output); err != nil {
			s.fail(w, r, err)
			return
		}
		row, err := s.row(r.Context(), r.PathValue("id"))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if err := s.allowed(r.Context(), row, name, req.StepID); err != nil {
			s.fail(w, r, err)
			return
		}
		p := PrincipalFrom(r.Context())
		rid := name + ":" + requestID(r)
		if err := s.acts.Admin(r.Context(), protocol.AdminRequest{
			ProcessID: row.ProcessID, Action: name, StepID: req.StepID, Output: req.Output, Actor: p.Name, Reason: req.Reason,
		}, rid); err != nil {
			s.fail(w, r, fmt.Errorf("%w: send %s: %v", ErrUnavailable, name, err))
			return
		}
		s.log.Info().Str("process_id", row.ProcessID).Str("action", name).Str("step", req.StepID).Str("actor", p.Name).Str("reason", req.Reason).Msg("admin action sent")
		writeJSON(w, http.StatusAccepted, ActionResult{Accepted: true, ProcessID: row.ProcessID, Action: name, StepID: req.StepID, RequestID: rid, Actor: p.Name})
	}
}

// allowed checks, against the process's latest status row, that an action
// can apply, so the caller hears why not instead of an action the decider
// ignores. (The decider checks again: the row may be a moment old.)
func (s *Server) allowed(ctx context.Context, row engine.StatusRecord, action, step string) error {
	return actionApplies(ctx, s.opts.Registry, row, action, step)
}

// actionApplies checks that an action (retry, skip, cancel, terminate or
// signal) can apply to a process as its status row shows it.
func actionApplies(ctx context.Context, reg *engine.Registry, row engine.StatusRecord, action, step string) error {
	pid, st := row.ProcessID, row.Status
	if action == "signal" && st.Terminal() {
		return fmt.Errorf("%w: process %s is %s; it takes no signals", ErrConflict, pid, st)
	}
	if st.Terminal() {
		return fmt.Errorf("%w: process %s is %s; nothing can change it any more", ErrConflict, pid, st)
	}
	stepStatus := workflow.StepStatus(row.Steps[step])
	if step != "" {
		if _, ok := row.Steps[step]; !ok {
			def, err := reg.Get(ctx, row.Definition, row.Version)
			if err != nil || !slices.ContainsFunc(def.Steps, func(x *workflow.Step) bool { return x.ID == step }) {
				return fmt.Errorf("%w: process %s (%s v%d) has no step %q", ErrNotFound, pid, row.Definition, row.Version, step)
			}
			stepStatus = workflow.StepPending
		}
	}
	hasStep := func(want workflow.StepStatus) bool {
		for _, v := range row.Steps {
			if workflow.StepStatus(v) == want {
				return true
			}
		}
		return false
	}
	switch action {
	case "retry":
		switch {
		case st == workflow.StatusPaused && step == "" && hasStep(workflow.StepFailed),
			st == workflow.StatusPaused && stepStatus == workflow.StepFailed,
			(st == workflow.StatusCompensationFailed || st == workflow.StatusCompensating) && step == "" && hasStep(workflow.StepCompensationFailed),
			(st == workflow.StatusCompensationFailed || st == workflow.StatusCompensating) && stepStatus == workflow.StepCompensationFailed:
			return nil
		case step != "":
			return fmt.Errorf("%w: cannot retry step %s of process %s: the step is %s and the process %s (retry applies to a failed step of a paused process or a failed compensation)", ErrConflict, step, pid, stepStatus, st)
		}
		return fmt.Errorf("%w: nothing to retry in process %s: it is %s with no failed step or compensation", ErrConflict, pid, st)
	case "skip":
		switch {
		case st == workflow.StatusCompensationFailed && stepStatus == workflow.StepCompensationFailed,
			st == workflow.StatusPaused && stepStatus == workflow.StepFailed,
			(st == workflow.StatusRunning || st == workflow.StatusPaused) && stepStatus == workflow.StepWaiting:
			return nil
		}
		return fmt.Errorf("%w: cannot skip step %s of process %s: the step is %s and the process %s (skip applies to a failed step of a paused process, a waiting step, or a failed compensation)", ErrConflict, step, pid, stepStatus, st)
	case "cancel":
		if st != workflow.StatusRunning && st != workflow.StatusPaused {
			return fmt.Errorf("%w: cannot cancel process %s: it is %s (cancel applies to running and paused processes; terminate stops it at once)", ErrConflict, pid, st)
		}
	}
	return nil
}

// StartBody is the body of a start.
type StartBody struct {
	ProcessID  string          `json:"process_id,omitempty"`
	Definition string          `json:"definition"`
	Version    int             `json:"version,omitempty"`
	Input      json.RawMessage `json:"input,omitempty"`
}

func (s *Server) startProcess(w http.ResponseWriter, r *http.Request) {
	var body StartBody
	if err := decodeBody(w, r, &body); err != nil {
		s.fail(w, r, err)
		return
	}
	req, def, err := s.startRequest(r.Context(), body)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.refresh(r.Context()); err != nil {
		s.fail(w, r, err)
		return
	}
	p := PrincipalFrom(r.Context())
	req.Actor = p.Name
	res := ActionResult{Accepted: true, ProcessID: req.ProcessID, Action: "start", RequestID: protocol.StartEnvelopeID(req.ProcessID), Actor: p.Name}
	if row, exists := s.status.Get(req.ProcessID); exists {
		// Starting an existing id changes nothing: say so, and whether
		// this start asks for something else than the process has.
		created := false
		res.Created = &created
		sum := summarize(row, s.opts.Clock(), s.opts.StuckAfter)
		res.Existing = &sum
		if err := ExistingStart(r.Context(), row, def, req.Input, s.opts.ReadProcess); err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, res)
		return
	}
	if err := s.acts.Start(r.Context(), req); err != nil {
		s.fail(w, r, fmt.Errorf("%w: send start: %v", ErrUnavailable, err))
		return
	}
	created := true
	res.Created = &created
	writeJSON(w, http.StatusAccepted, res)
}

// startRequest checks a start body (process id usable, input within the
// payload limit, definition registered, input valid against its schema)
// and makes the request to send, with its definition; a missing process id
// is generated. The actor is the caller's to set.
func (s *Server) startRequest(ctx context.Context, body StartBody) (protocol.StartRequest, *workflow.Definition, error) {
	if body.Definition == "" {
		return protocol.StartRequest{}, nil, fmt.Errorf("%w: definition is required", ErrBadRequest)
	}
	if body.Version < 0 {
		return protocol.StartRequest{}, nil, fmt.Errorf("%w: version must be positive (or absent for the latest)", ErrBadRequest)
	}
	if body.ProcessID != "" {
		if err := workflow.CheckProcessID(body.ProcessID); err != nil {
			return protocol.StartRequest{}, nil, fmt.Errorf("%w: process_id: %w", ErrBadRequest, err)
		}
	}
	if err := checkPayload("the input", body.Input); err != nil {
		return protocol.StartRequest{}, nil, err
	}
	def, err := s.opts.Registry.Get(ctx, body.Definition, body.Version)
	if err != nil {
		return protocol.StartRequest{}, nil, err
	}
	if err := checkInput(def, body.Input); err != nil {
		return protocol.StartRequest{}, nil, err
	}
	if body.ProcessID == "" {
		var b [6]byte
		_, _ = rand.Read(b[:])
		body.ProcessID = def.Name + "-" + hex.EncodeToString(b[:])
	}
	return protocol.StartRequest{ProcessID: body.ProcessID, Definition: def.Name, Version: def.Version, Input: body.Input}, def, nil
}

// ExistingStart checks a start of an id that exists already (row) against
// the process: a start of another definition, or with another input, is a
// conflict (the process keeps its own); the same start again is
// idempotent (nil). The CLI's direct mode uses it too.
func ExistingStart(ctx context.Context, row engine.StatusRecord, def *workflow.Definition, input json.RawMessage, read ProcessReader) error {
	pid := row.ProcessID
	if row.Definition != def.Name {
		return fmt.Errorf("%w: process %s exists already, of definition %s v%d (%s); a process id names one process: choose another id", ErrConflict, pid, row.Definition, row.Version, row.Status)
	}
	v, err := read(ctx, row)
	if err != nil || v.State == nil {
		return nil // cannot compare: the start stays idempotent
	}
	if !sameJSON(v.State.Input, input) {
		return fmt.Errorf("%w: process %s exists already (%s v%d, %s) with another input than this start's; it keeps its own (a start of an existing id with the same input changes nothing: choose another id to start another process)", ErrConflict, pid, row.Definition, row.Version, row.Status)
	}
	return nil
}

// sameJSON compares two JSON values (absent and null are the same).
func sameJSON(a, b json.RawMessage) bool {
	decode := func(m json.RawMessage) (any, bool) {
		if len(bytes.TrimSpace(m)) == 0 {
			return nil, true
		}
		d := json.NewDecoder(bytes.NewReader(m))
		d.UseNumber()
		var v any
		err := d.Decode(&v)
		return v, err == nil
	}
	va, oka := decode(a)
	vb, okb := decode(b)
	return oka && okb && reflect.DeepEqual(va, vb)
}

func checkInput(def *workflow.Definition, in json.RawMessage) error {
	if len(in) > 0 && !json.Valid(in) {
		return fmt.Errorf("%w: input is not JSON", ErrBadRequest)
	}
	if def.InputSchema == nil {
		return nil
	}
	if len(in) == 0 {
		in = json.RawMessage("null")
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(in))
	if err != nil {
		return fmt.Errorf("%w: input: %v", ErrBadRequest, err)
	}
	if err := def.InputSchema.Validate(v); err != nil {
		return fmt.Errorf("%w: input does not match the input schema of %s v%d: %v", ErrBadRequest, def.Name, def.Version, err)
	}
	return nil
}

// SignalBody is the body of a signal.
type SignalBody struct {
	Name string          `json:"name"`
	Data json.RawMessage `json:"data,omitempty"`
	// SignalID makes a resent signal count once (default: the
	// Idempotency-Key, or a fresh id).
	SignalID string `json:"signal_id,omitempty"`
	// Reason is recorded in the stream with the token's name as the actor.
	Reason string `json:"reason,omitempty"`
}

func (s *Server) signal(w http.ResponseWriter, r *http.Request) {
	var req SignalBody
	if err := decodeBody(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.Name == "" {
		s.fail(w, r, fmt.Errorf("%w: name is required", ErrBadRequest))
		return
	}
	if err := checkPayload("the data", req.Data); err != nil {
		s.fail(w, r, err)
		return
	}
	row, err := s.row(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	def, _ := s.opts.Registry.Get(r.Context(), row.Definition, row.Version)
	if err := CheckSignal(def, row, req.Name); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.SignalID == "" {
		req.SignalID = requestID(r)
	}
	p := PrincipalFrom(r.Context())
	if err := s.acts.SignalAs(r.Context(), row.ProcessID, req.Name, req.SignalID, req.Data, p.Name, req.Reason); err != nil {
		s.fail(w, r, fmt.Errorf("%w: send signal: %v", ErrUnavailable, err))
		return
	}
	writeJSON(w, http.StatusAccepted, ActionResult{Accepted: true, ProcessID: row.ProcessID, Action: "signal", RequestID: "signal:" + req.SignalID, Actor: p.Name})
}
