package admin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/workflow"
)

// Bulk actions: one action (retry, skip, cancel, terminate or signal) on
// every process a filter selects, run as a durable job.
//
// POST /api/v1/bulk with dry_run counts the processes the filter selects,
// how many the action applies to now, and shows a sample; without dry_run
// it makes a job of the processes it applies to. The job's request (its
// targets, in chunks, and its spec) goes to the topic BulkTopic in one
// transaction; the BulkRunner of one orchestrator instance at a time (a
// Failover subscription) runs it at the job's rate, checks each process
// again just before acting, sends the action with the operator's name and
// reason (and the job's id) so it is recorded on the process, and keeps
// the job's progress on the compacted topic BulkJobsTopic. It acknowledges
// the job's messages only when the job has ended, so a job survives the
// runner's instance: the next active runner reads the last recorded
// progress and goes on from there. An action sent again after a restart
// carries the same envelope id (admin:bulk:<job>:<process>) and is dropped
// by the orchestrator as a duplicate.
const (
	// BulkTopic carries job requests (bulk.targets, bulk.job) and
	// cancellations (bulk.cancel), keyed by job id.
	BulkTopic = "bulk"
	// BulkJobsTopic is the compacted table of jobs: one BulkJob per job id.
	BulkJobsTopic = "bulk-jobs"
	// BulkSubscription is the runners' Failover subscription on BulkTopic.
	BulkSubscription = "bulk-runner"
	// MaxBulkTargets bounds the processes of one job.
	MaxBulkTargets = 100_000
	// DefaultBulkRate is the actions per second of a job that names none.
	DefaultBulkRate = 20.0
	// MaxBulkRate bounds a job's rate.
	MaxBulkRate = 1000.0

	bulkChunk  = 5_000 // targets per bulk.targets message
	bulkSample = 20    // processes shown by a dry run
	bulkErrors = 50    // failures and skips a job record keeps

	typeBulkTargets = "bulk.targets"
	typeBulkJob     = "bulk.job"
	typeBulkCancel  = "bulk.cancel"
	typeBulkState   = "bulk.state" // a BulkJob on BulkJobsTopic
)

// Job states.
const (
	BulkQueued    = "queued"
	BulkRunning   = "running"
	BulkCompleted = "completed"
	BulkCancelled = "cancelled"
)

var bulkActions = []string{"retry", "skip", "cancel", "terminate", "signal"}

// BulkFilter selects processes, as the list's query parameters do
// (docs/api.md); ProcessIDs narrows to those ids.
type BulkFilter struct {
	Status        []workflow.Status `json:"status,omitempty"`
	Definition    string            `json:"definition,omitempty"`
	Version       int               `json:"version,omitempty"`
	Stuck         bool              `json:"stuck,omitempty"`
	StuckAfter    string            `json:"stuck_after,omitempty"`
	Step          string            `json:"step,omitempty"`
	StepStatus    string            `json:"step_status,omitempty"`
	ErrorType     string            `json:"error_type,omitempty"`
	StartedAfter  time.Time         `json:"started_after,omitzero"`
	StartedBefore time.Time         `json:"started_before,omitzero"`
	UpdatedAfter  time.Time         `json:"updated_after,omitzero"`
	UpdatedBefore time.Time         `json:"updated_before,omitzero"`
	Query         string            `json:"q,omitempty"`
	ProcessIDs    []string          `json:"process_ids,omitempty"`
}

// Values is the filter as list query parameters.
func (f BulkFilter) Values() url.Values {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	if len(f.Status) > 0 {
		ss := make([]string, len(f.Status))
		for i, s := range f.Status {
			ss[i] = string(s)
		}
		q.Set("status", strings.Join(ss, ","))
	}
	set("definition", f.Definition)
	if f.Version > 0 {
		q.Set("version", strconv.Itoa(f.Version))
	}
	if f.Stuck {
		q.Set("stuck", "true")
	}
	set("stuck_after", f.StuckAfter)
	set("step", f.Step)
	set("step_status", f.StepStatus)
	set("error_type", f.ErrorType)
	for k, t := range map[string]time.Time{"started_after": f.StartedAfter, "started_before": f.StartedBefore, "updated_after": f.UpdatedAfter, "updated_before": f.UpdatedBefore} {
		if !t.IsZero() {
			q.Set(k, t.UTC().Format(time.RFC3339Nano))
		}
	}
	set("q", f.Query)
	return q
}

// BulkFilterFromValues reads a filter from list query parameters (the
// dashboard and the CLI select with the list's parameters).
func BulkFilterFromValues(q url.Values) (BulkFilter, error) {
	f := BulkFilter{Definition: q.Get("definition"), StuckAfter: q.Get("stuck_after"), Step: q.Get("step"), StepStatus: q.Get("step_status"),
		ErrorType: q.Get("error_type"), Query: q.Get("q")}
	lf, err := ParseListFilter(q, time.Minute)
	if err != nil {
		return f, err
	}
	f.Status, f.Version, f.Stuck = lf.Statuses, lf.Version, lf.Stuck
	f.StartedAfter, f.StartedBefore, f.UpdatedAfter, f.UpdatedBefore = lf.StartedAfter, lf.StartedBefore, lf.UpdatedAfter, lf.UpdatedBefore
	return f, nil
}

func (f BulkFilter) empty() bool {
	return len(f.Values()) == 0 && len(f.ProcessIDs) == 0
}

// String describes the filter for people ("status=paused definition=repair").
func (f BulkFilter) String() string {
	q := f.Values()
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, 0, len(keys)+1)
	for _, k := range keys {
		parts = append(parts, k+"="+q.Get(k))
	}
	if len(f.ProcessIDs) > 0 {
		parts = append(parts, fmt.Sprintf("process_ids=%d", len(f.ProcessIDs)))
	}
	return strings.Join(parts, " ")
}

// BulkRequest is the body of POST /api/v1/bulk.
type BulkRequest struct {
	// Action is retry, skip, cancel, terminate or signal.
	Action string     `json:"action"`
	Filter BulkFilter `json:"filter"`
	// StepID: retry (empty: every failed step) and skip (required).
	StepID string `json:"step_id,omitempty"`
	// Output becomes each skipped step's output (skip).
	Output json.RawMessage `json:"output,omitempty"`
	// Signal and Data: the signal to deliver (signal).
	Signal string          `json:"signal,omitempty"`
	Data   json.RawMessage `json:"data,omitempty"`
	// Reason is recorded on each process with the caller's name and the
	// job's id; required unless DryRun.
	Reason string `json:"reason,omitempty"`
	// Rate is actions per second (default DefaultBulkRate, at most
	// MaxBulkRate).
	Rate float64 `json:"rate,omitempty"`
	// DryRun counts and samples, and starts nothing.
	DryRun bool `json:"dry_run,omitempty"`
}

// BulkProblem is a process the action was not applied to, and why.
type BulkProblem struct {
	ProcessID string    `json:"process_id"`
	Error     string    `json:"error"`
	At        time.Time `json:"at,omitzero"`
}

// BulkPreview answers a dry run.
type BulkPreview struct {
	Action string `json:"action"`
	// Matched is how many processes the filter selects; Applicable how many
	// of them the action applies to now (a job acts on those).
	Matched    int `json:"matched"`
	Applicable int `json:"applicable"`
	// Sample shows some of the applicable processes.
	Sample []ProcessSummary `json:"sample"`
	// NotApplicable shows some of the others, with the reason.
	NotApplicable []BulkProblem `json:"not_applicable,omitempty"`
	// TooMany is set when more than MaxBulkTargets would be acted on.
	TooMany bool `json:"too_many,omitempty"`
}

// BulkJob is a bulk action's durable record: what it does and how far it
// got (BulkJobsTopic).
type BulkJob struct {
	ID     string     `json:"id"`
	Action string     `json:"action"`
	Filter BulkFilter `json:"filter"`
	StepID string     `json:"step_id,omitempty"`
	Signal string     `json:"signal,omitempty"`
	Reason string     `json:"reason"`
	Actor  string     `json:"actor"`
	Rate   float64    `json:"rate"`
	// State is queued, running, completed or cancelled.
	State string `json:"state"`
	// Total processes to act on; Done were acted on; Failed could not be
	// (the broker refused the action); Skipped no longer needed it when
	// their turn came (the process had moved on: finished, or retried by
	// hand meanwhile); Remaining are still to do.
	Total     int `json:"total"`
	Done      int `json:"done"`
	Failed    int `json:"failed"`
	Skipped   int `json:"skipped"`
	Remaining int `json:"remaining"`
	// Next is the position in the job's targets of the next process.
	Next int `json:"next"`
	// Problems are the latest failures and skips.
	Problems     []BulkProblem `json:"problems,omitempty"`
	Sample       []string      `json:"sample,omitempty"`
	CreatedAt    time.Time     `json:"created_at"`
	StartedAt    time.Time     `json:"started_at,omitzero"`
	UpdatedAt    time.Time     `json:"updated_at,omitzero"`
	FinishedAt   time.Time     `json:"finished_at,omitzero"`
	CancelledBy  string        `json:"cancelled_by,omitempty"`
	CancelReason string        `json:"cancel_reason,omitempty"`
	// Runner is the instance running (or that ran) the job.
	Runner string `json:"runner,omitempty"`
}

// Ended reports whether the job will do nothing more.
func (j *BulkJob) Ended() bool { return j.State == BulkCompleted || j.State == BulkCancelled }

func (j *BulkJob) count() { j.Remaining = max(j.Total-j.Done-j.Failed-j.Skipped, 0) }

func (j *BulkJob) problem(p BulkProblem) {
	j.Problems = append(j.Problems, p)
	if n := len(j.Problems) - bulkErrors; n > 0 {
		j.Problems = slices.Delete(j.Problems, 0, n)
	}
}

// recordedReason is what each process's event stream says about the job.
func (j *BulkJob) recordedReason() string {
	return fmt.Sprintf("%s [bulk %s]", j.Reason, j.ID)
}

// BulkJobList answers GET /api/v1/bulk.
type BulkJobList struct {
	Jobs []BulkJob `json:"jobs"`
}

// bulkJobMessage is a job as requested (bulk.job): the record, what each
// action carries, and how many bulk.targets chunks hold its targets.
type bulkJobMessage struct {
	Job    BulkJob         `json:"job"`
	Output json.RawMessage `json:"output,omitempty"`
	Data   json.RawMessage `json:"data,omitempty"`
	Chunks int             `json:"chunks"`
}

type bulkTargets struct {
	JobID string   `json:"job_id"`
	Chunk int      `json:"chunk"`
	IDs   []string `json:"ids"`
}

type bulkCancel struct {
	JobID  string `json:"job_id"`
	Actor  string `json:"actor"`
	Reason string `json:"reason,omitempty"`
}

// check validates a request before anything is selected.
func (req *BulkRequest) check() error {
	switch {
	case !slices.Contains(bulkActions, req.Action):
		return fmt.Errorf("%w: action %q is not one of %s", ErrBadRequest, req.Action, strings.Join(bulkActions, ", "))
	case req.Filter.empty():
		return fmt.Errorf("%w: the filter is empty and would select every process; give at least one criterion (status, definition, stuck, step, error_type, a time range, q or process_ids)", ErrBadRequest)
	case len(req.Output) > 0 && req.Action != "skip":
		return fmt.Errorf("%w: output is for skip only", ErrBadRequest)
	case req.Action == "skip" && req.StepID == "":
		return fmt.Errorf("%w: skip needs step_id", ErrBadRequest)
	case req.StepID != "" && req.Action != "retry" && req.Action != "skip":
		return fmt.Errorf("%w: %s applies to whole processes; remove step_id", ErrBadRequest, req.Action)
	case req.Action == "signal" && req.Signal == "":
		return fmt.Errorf("%w: signal needs the signal's name", ErrBadRequest)
	case req.Action != "signal" && (req.Signal != "" || len(req.Data) > 0):
		return fmt.Errorf("%w: signal and data are for the signal action only", ErrBadRequest)
	case len(req.Output) > 0 && !json.Valid(req.Output), len(req.Data) > 0 && !json.Valid(req.Data):
		return fmt.Errorf("%w: output and data must be JSON", ErrBadRequest)
	case req.Rate < 0 || req.Rate > MaxBulkRate:
		return fmt.Errorf("%w: rate %g must be between 0 (the default, %g per second) and %g actions per second", ErrBadRequest, req.Rate, DefaultBulkRate, MaxBulkRate)
	case !req.DryRun && strings.TrimSpace(req.Reason) == "":
		return fmt.Errorf("%w: a bulk action needs a reason (recorded on every process it acts on)", ErrBadRequest)
	}
	return nil
}

// selectTargets applies the filter to the status table now: the processes
// the action applies to (in list order, newest first) and the others.
func (s *Server) selectTargets(ctx context.Context, req *BulkRequest) (BulkPreview, []string, error) {
	f, err := ParseListFilter(req.Filter.Values(), s.opts.StuckAfter)
	if err != nil {
		return BulkPreview{}, nil, err
	}
	if err := s.refresh(ctx); err != nil {
		return BulkPreview{}, nil, err
	}
	f.Limit, f.Cursor = MaxBulkTargets+1, ""
	rows := s.status.List()
	if len(req.Filter.ProcessIDs) > 0 {
		ids := map[string]bool{}
		for _, id := range req.Filter.ProcessIDs {
			ids[id] = true
		}
		rows = slices.DeleteFunc(rows, func(r engine.StatusRecord) bool { return !ids[r.ProcessID] })
	}
	now := s.opts.Clock()
	byID := map[string]engine.StatusRecord{}
	for _, r := range rows {
		byID[r.ProcessID] = r
	}
	list := Filter(rows, f, now)
	out := BulkPreview{Action: req.Action, Matched: list.Total, Sample: []ProcessSummary{}}
	var targets []string
	for _, p := range list.Processes {
		err := actionApplies(ctx, s.opts.Registry, byID[p.ProcessID], req.Action, req.StepID)
		if err != nil {
			if len(out.NotApplicable) < bulkSample {
				out.NotApplicable = append(out.NotApplicable, BulkProblem{ProcessID: p.ProcessID, Error: trimClass(err.Error())})
			}
			continue
		}
		out.Applicable++
		if len(targets) < MaxBulkTargets {
			targets = append(targets, p.ProcessID)
		} else {
			out.TooMany = true
		}
		if len(out.Sample) < bulkSample {
			out.Sample = append(out.Sample, p)
		}
	}
	if list.Total > MaxBulkTargets {
		out.TooMany = true
	}
	return out, targets, nil
}

// trimClass drops the error class prefix ("conflict: ") of a message.
func trimClass(msg string) string {
	for _, p := range []string{"conflict: ", "not found: ", "bad request: "} {
		msg = strings.TrimPrefix(msg, p)
	}
	return msg
}

func (s *Server) createBulk(w http.ResponseWriter, r *http.Request) {
	var req BulkRequest
	if err := decodeBody(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := req.check(); err != nil {
		s.fail(w, r, err)
		return
	}
	preview, targets, err := s.selectTargets(r.Context(), &req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if req.DryRun {
		writeJSON(w, http.StatusOK, preview)
		return
	}
	switch {
	case preview.TooMany:
		s.fail(w, r, fmt.Errorf("%w: the filter selects more than %d processes the action applies to (%d); narrow it (a time range, a definition) and run several jobs", ErrBadRequest, MaxBulkTargets, preview.Applicable))
		return
	case len(targets) == 0:
		s.fail(w, r, fmt.Errorf("%w: %s applies to none of the %d processes the filter selects", ErrConflict, req.Action, preview.Matched))
		return
	}
	p := PrincipalFrom(r.Context())
	if req.Rate == 0 {
		req.Rate = DefaultBulkRate
	}
	now := s.opts.Clock().UTC()
	job := BulkJob{ID: bulkJobID(r, p.Name), Action: req.Action, Filter: req.Filter, StepID: req.StepID, Signal: req.Signal,
		Reason: strings.TrimSpace(req.Reason), Actor: p.Name, Rate: req.Rate, State: BulkQueued, Total: len(targets),
		CreatedAt: now, UpdatedAt: now}
	job.Sample = targets[:min(len(targets), bulkSample)]
	job.count()
	if existing, ok, err := s.bulk.job(r.Context(), job.ID); err == nil && ok {
		// The same request again (same Idempotency-Key): the same job.
		writeJSON(w, http.StatusOK, existing)
		return
	}
	if err := s.bulk.submit(r.Context(), job, req.Output, req.Data, targets); err != nil {
		s.fail(w, r, fmt.Errorf("%w: queue the bulk job: %v", ErrUnavailable, err))
		return
	}
	s.log.Info().Str("job", job.ID).Str("action", job.Action).Int("processes", job.Total).Str("filter", job.Filter.String()).
		Str("actor", job.Actor).Str("reason", job.Reason).Msg("bulk job queued")
	writeJSON(w, http.StatusAccepted, job)
}

// bulkJobID is the job's id: from the request's Idempotency-Key when it
// has one (a resent request makes the same job, whichever instance gets
// it), else random.
func bulkJobID(r *http.Request, actor string) string {
	if k, ok := r.Context().Value(requestIDKey{}).(string); ok && k != "" {
		sum := sha256.Sum256([]byte(actor + "\x00" + k))
		return "bulk-" + hex.EncodeToString(sum[:6])
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "bulk-" + hex.EncodeToString(b[:])
}

func (s *Server) listBulk(w http.ResponseWriter, r *http.Request) {
	jobs, err := s.bulk.jobs(r.Context())
	if err != nil {
		s.fail(w, r, fmt.Errorf("%w: %v", ErrUnavailable, err))
		return
	}
	writeJSON(w, http.StatusOK, BulkJobList{Jobs: jobs})
}

func (s *Server) getBulk(w http.ResponseWriter, r *http.Request) {
	j, ok, err := s.bulk.job(r.Context(), r.PathValue("id"))
	switch {
	case err != nil:
		s.fail(w, r, fmt.Errorf("%w: %v", ErrUnavailable, err))
	case !ok:
		s.fail(w, r, fmt.Errorf("%w: no bulk job %s", ErrNotFound, r.PathValue("id")))
	default:
		writeJSON(w, http.StatusOK, j)
	}
}

// BulkCancelRequest is the body of POST /api/v1/bulk/{id}/cancel.
type BulkCancelRequest struct {
	Reason string `json:"reason,omitempty"`
}

func (s *Server) cancelBulk(w http.ResponseWriter, r *http.Request) {
	var req BulkCancelRequest
	if r.ContentLength != 0 {
		if err := decodeBody(w, r, &req); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	id := r.PathValue("id")
	j, ok, err := s.bulk.job(r.Context(), id)
	switch {
	case err != nil:
		s.fail(w, r, fmt.Errorf("%w: %v", ErrUnavailable, err))
		return
	case !ok:
		s.fail(w, r, fmt.Errorf("%w: no bulk job %s", ErrNotFound, id))
		return
	case j.Ended():
		s.fail(w, r, fmt.Errorf("%w: bulk job %s is %s already", ErrConflict, id, j.State))
		return
	}
	p := PrincipalFrom(r.Context())
	if err := s.bulk.cancel(r.Context(), bulkCancel{JobID: id, Actor: p.Name, Reason: req.Reason}); err != nil {
		s.fail(w, r, fmt.Errorf("%w: send the cancellation: %v", ErrUnavailable, err))
		return
	}
	s.log.Info().Str("job", id).Str("actor", p.Name).Str("reason", req.Reason).Msg("bulk job cancellation sent")
	writeJSON(w, http.StatusAccepted, ActionResult{Accepted: true, Action: "cancel", RequestID: id, Actor: p.Name})
}

// bulkStore is the API side of bulk jobs: it queues requests on BulkTopic
// and reads the job table.
type bulkStore struct {
	bus   bus.Bus
	table *jobTable

	mu sync.Mutex
	p  bus.Producer // BulkTopic, opened on first use
	t  bus.Producer // BulkJobsTopic
}

func newBulkStore(b bus.Bus) *bulkStore {
	return &bulkStore{bus: b, table: newJobTable(b)}
}

func ensureBulkTopics(ctx context.Context, b bus.Bus) error {
	if err := b.EnsureTopic(ctx, bus.TopicSpec{Name: BulkTopic, RetentionTime: 7 * 24 * time.Hour, RetentionSizeMB: -1}); err != nil {
		return err
	}
	return b.EnsureTopic(ctx, bus.TopicSpec{Name: BulkJobsTopic, Compacted: true, RetentionTime: -1, RetentionSizeMB: -1})
}

func (st *bulkStore) producers(ctx context.Context) error {
	if st.p != nil {
		return nil
	}
	if err := ensureBulkTopics(ctx, st.bus); err != nil {
		return err
	}
	p, err := st.bus.Producer(ctx, bus.ProducerOptions{Topic: BulkTopic})
	if err != nil {
		return err
	}
	t, err := st.bus.Producer(ctx, bus.ProducerOptions{Topic: BulkJobsTopic})
	if err != nil {
		_ = p.Close()
		return err
	}
	st.p, st.t = p, t
	return nil
}

// submit queues a job: its targets in chunks, its spec and its first
// record, in one transaction, so a runner never sees half a job.
func (st *bulkStore) submit(ctx context.Context, job BulkJob, output, data json.RawMessage, targets []string) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := st.producers(ctx); err != nil {
		return err
	}
	tx, err := st.bus.BeginTx(ctx, time.Minute)
	if err != nil {
		return err
	}
	send := func(p bus.Producer, typ, id string, v any) error {
		env, err := bus.NewEnvelope(typ, id, "", job.CreatedAt, v)
		if err != nil {
			return err
		}
		b, err := env.Encode()
		if err != nil {
			return err
		}
		_, err = p.Send(ctx, &bus.OutMessage{Key: job.ID, Payload: b, Tx: tx})
		return err
	}
	chunks := 0
	for i := 0; i < len(targets); i += bulkChunk {
		ids := targets[i:min(i+bulkChunk, len(targets))]
		if err := send(st.p, typeBulkTargets, fmt.Sprintf("%s/targets/%d", job.ID, chunks), bulkTargets{JobID: job.ID, Chunk: chunks, IDs: ids}); err != nil {
			_ = tx.Abort(ctx)
			return err
		}
		chunks++
	}
	err = send(st.p, typeBulkJob, job.ID, bulkJobMessage{Job: job, Output: output, Data: data, Chunks: chunks})
	if err == nil {
		err = send(st.t, typeBulkState, job.ID+"/queued", job)
	}
	if err != nil {
		_ = tx.Abort(ctx)
		return err
	}
	return tx.Commit(ctx)
}

func (st *bulkStore) cancel(ctx context.Context, c bulkCancel) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := st.producers(ctx); err != nil {
		return err
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	env, err := bus.NewEnvelope(typeBulkCancel, c.JobID+"/cancel/"+hex.EncodeToString(b[:]), "", time.Now(), c)
	if err != nil {
		return err
	}
	payload, err := env.Encode()
	if err != nil {
		return err
	}
	_, err = st.p.Send(ctx, &bus.OutMessage{Key: c.JobID, Payload: payload})
	return err
}

func (st *bulkStore) job(ctx context.Context, id string) (BulkJob, bool, error) {
	if err := st.table.refresh(ctx); err != nil {
		return BulkJob{}, false, err
	}
	j, ok := st.table.get(id)
	return j, ok, nil
}

func (st *bulkStore) jobs(ctx context.Context) ([]BulkJob, error) {
	if err := st.table.refresh(ctx); err != nil {
		return nil, err
	}
	jobs := st.table.list()
	slices.SortFunc(jobs, func(a, b BulkJob) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return jobs, nil
}

func (st *bulkStore) Close() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, p := range []bus.Producer{st.p, st.t} {
		if p != nil {
			_ = p.Close()
		}
	}
	st.p, st.t = nil, nil
	return st.table.Close()
}
