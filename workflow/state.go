package workflow

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// StateVersion is the schema version of State written by this code.
const StateVersion = 1

// Status is a process status.
type Status string

// Process statuses.
const (
	StatusNew                Status = "" // no start event yet
	StatusRunning            Status = "running"
	StatusCompleted          Status = "completed"
	StatusCompensating       Status = "compensating"
	StatusCompensated        Status = "compensated"
	StatusFailed             Status = "failed"
	StatusPaused             Status = "paused"
	StatusCompensationFailed Status = "compensation_failed"
	StatusTerminated         Status = "terminated"
)

// Terminal reports whether nothing can change the process any more.
func (s Status) Terminal() bool {
	switch s {
	case StatusCompleted, StatusCompensated, StatusFailed, StatusTerminated:
		return true
	}
	return false
}

// StepStatus is the status of a step.
type StepStatus string

// Step statuses.
const (
	StepPending            StepStatus = "pending"   // not started
	StepRunning            StepStatus = "running"   // commands in flight or retrying
	StepWaiting            StepStatus = "waiting"   // sleep, until or wait
	StepCompleted          StepStatus = "completed" // done
	StepSkipped            StepStatus = "skipped"   // when was false, or an admin skipped it
	StepFailed             StepStatus = "failed"    // failed for good
	StepCancelled          StepStatus = "cancelled" // a wait abandoned when the process stopped
	StepCompensating       StepStatus = "compensating"
	StepCompensated        StepStatus = "compensated"
	StepCompensationFailed StepStatus = "compensation_failed"
)

// RunStatus is the status of one command slot: a step, one for_each item,
// or a compensation.
type RunStatus string

// Run statuses.
const (
	RunPending   RunStatus = "pending"   // not sent yet
	RunRetrying  RunStatus = "retrying"  // a new attempt is due (at NextAt)
	RunRunning   RunStatus = "running"   // an attempt is in flight
	RunCompleted RunStatus = "completed" // succeeded
	RunFailed    RunStatus = "failed"    // failed for good
	RunSkipped   RunStatus = "skipped"   // an admin skipped it
	RunCancelled RunStatus = "cancelled" // never sent: the process stopped new work
)

// Attempt outcomes.
const (
	OutcomeInFlight  = ""
	OutcomeCompleted = "completed"
	OutcomeFailed    = "failed"
	OutcomeTimedOut  = "timed_out"
	OutcomeAbandoned = "abandoned" // the step stopped waiting for it (deadline, process ended, a late success)
)

// State is the state of one process. It is JSON-serialisable (snapshots)
// and is never modified by Decide: Decide returns a new one.
type State struct {
	V         int             `json:"v"`
	ProcessID string          `json:"process_id"`
	Workflow  string          `json:"workflow"`
	Version   int             `json:"version"`
	Status    Status          `json:"status"`
	Input     json.RawMessage `json:"input,omitempty"`
	Output    json.RawMessage `json:"output,omitempty"`
	StartedAt time.Time       `json:"started_at,omitzero"`
	UpdatedAt time.Time       `json:"updated_at,omitzero"`
	EndedAt   time.Time       `json:"ended_at,omitzero"`
	Steps     []*StepState    `json:"steps"`
	Timers    []Timer         `json:"timers,omitempty"` // pending timers
	// Failure is what made the process leave running (first failure).
	Failure *Failure `json:"failure,omitempty"`
	// Admin is the last admin action that changed the status.
	Admin *AdminAction `json:"admin,omitempty"`
	// Parent names the call step that started this process (call.go).
	Parent *ParentRef `json:"parent,omitempty"`
	// Signals are kept for wait steps not reached yet (signals.go).
	Signals []BufferedSignal `json:"signals,omitempty"`

	inputVal     any
	inputDecoded bool
}

// Failure records a step (or the workflow) failing for good.
type Failure struct {
	StepID string     `json:"step_id,omitempty"`
	Item   *int       `json:"item,omitempty"`
	Error  *ErrorInfo `json:"error"`
	At     time.Time  `json:"at"`
}

// AdminAction records who did what and why.
type AdminAction struct {
	Type   EventType `json:"type"`
	StepID string    `json:"step_id,omitempty"`
	Actor  string    `json:"actor,omitempty"`
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
}

// StepState is the state of one step.
type StepState struct {
	ID         string            `json:"id"`
	Status     StepStatus        `json:"status"`
	StartedAt  time.Time         `json:"started_at,omitzero"`
	EndedAt    time.Time         `json:"ended_at,omitzero"`
	DeadlineAt time.Time         `json:"deadline_at,omitzero"`
	Output     json.RawMessage   `json:"output,omitempty"`
	Error      *ErrorInfo        `json:"error,omitempty"`
	Items      []json.RawMessage `json:"items,omitempty"` // for_each items
	Runs       []*Run            `json:"runs,omitempty"`  // one, or one per item
	// Compensations of completed runs (same index as Runs; nil where none).
	Compensations []*Run `json:"compensations,omitempty"`

	outVal     any
	outDecoded bool
}

func (st *StepState) setOutput(b json.RawMessage) {
	st.Output = b
	st.outVal = nil
	st.outDecoded = false
}

// Run is one command slot with its attempts.
type Run struct {
	Status RunStatus `json:"status"`
	// Attempt is the number of the last attempt sent (0: none).
	Attempt int `json:"attempt"`
	// Budget is the attempt number after which the current retry budget
	// starts (an admin retry gives a fresh budget).
	Budget   int             `json:"budget,omitempty"`
	NextAt   time.Time       `json:"next_at,omitzero"`
	Output   json.RawMessage `json:"output,omitempty"`
	Error    *ErrorInfo      `json:"error,omitempty"`
	Attempts []Attempt       `json:"attempts,omitempty"`
	// Late is set when a success arrived after the run had settled
	// without one (failed or cancelled): the work was done after all.
	// Output then holds that success's output.
	Late bool `json:"late,omitempty"`
	// Done is the attempt whose late success the run keeps, when it is not
	// the last one (call steps compensate that attempt's child).
	Done int `json:"done,omitempty"`
}

// Attempt is one command sent.
type Attempt struct {
	N         int       `json:"n"`
	CommandID string    `json:"command_id"`
	SentAt    time.Time `json:"sent_at"`
	NotBefore time.Time `json:"not_before,omitzero"`
	// StartedAt is when the engine learned that a worker started the
	// attempt (the first started event), from which its start-to-close
	// timeout counts; Starts counts the started events (a redelivery to
	// another worker starts it again, without restarting that clock).
	StartedAt time.Time `json:"started_at,omitzero"`
	Starts    int       `json:"starts,omitempty"`
	// BeatAt is the newest heartbeat folded (the engine's receive time).
	BeatAt  time.Time  `json:"beat_at,omitzero"`
	EndedAt time.Time  `json:"ended_at,omitzero"`
	Outcome string     `json:"outcome,omitempty"`
	Error   *ErrorInfo `json:"error,omitempty"`
	// Late is the outcome a worker reported after the attempt had settled
	// (timed out, abandoned, failed): "completed" or "failed".
	Late   string    `json:"late,omitempty"`
	LateAt time.Time `json:"late_at,omitzero"`
	// Arms counts the timers armed for this attempt (each start, each
	// heartbeat, each grace after a late timer): it numbers their ids.
	Arms int `json:"arms,omitempty"`
	// Graces counts the late timers of this attempt that were re-armed
	// instead of acted on (at most MaxLateGraces).
	Graces int `json:"graces,omitempty"`
}

// TimerKind says what a timer is for.
type TimerKind string

// Timer kinds.
const (
	TimerAttemptTimeout   TimerKind = "attempt_timeout"  // start-to-close, armed at started
	TimerScheduleTimeout  TimerKind = "schedule_timeout" // sent (or not_before) to started
	TimerHeartbeatTimeout TimerKind = "heartbeat_timeout"
	TimerDeadline         TimerKind = "deadline"
	TimerSleep            TimerKind = "sleep"
	TimerUntil            TimerKind = "until"
	TimerSignalTimeout    TimerKind = "signal_timeout"
	TimerWorkflowTimeout  TimerKind = "workflow_timeout"
)

// Timer is a timer to set (a delayed message that comes back as an
// EventTimer with the same ID).
type Timer struct {
	ID           string    `json:"id"`
	ProcessID    string    `json:"process_id"`
	Kind         TimerKind `json:"kind"`
	StepID       string    `json:"step_id,omitempty"`
	Item         *int      `json:"item,omitempty"`
	Attempt      int       `json:"attempt,omitempty"`
	Compensation bool      `json:"compensation,omitempty"`
	FireAt       time.Time `json:"fire_at"`
}

// CommandID is the id of the attempt that an attempt timer (schedule,
// start-to-close or heartbeat timeout) belongs to; "" for other timers.
func (t *Timer) CommandID() string {
	if !t.progressTimer() || t.Attempt < 1 {
		return ""
	}
	return commandID(t.ProcessID, t.StepID, timerItem(t), t.Compensation, t.Attempt)
}

// progressTimer reports whether a timer measures a worker's progress
// (schedule, start-to-close, heartbeat): such a timer that fires late is
// re-armed rather than acted on (see lateTimer).
func (t *Timer) progressTimer() bool {
	switch t.Kind {
	case TimerAttemptTimeout, TimerScheduleTimeout, TimerHeartbeatTimeout:
		return true
	}
	return false
}

// Command is a job for a service.
type Command struct {
	ID        string          `json:"id"`
	ProcessID string          `json:"process_id"`
	StepID    string          `json:"step_id"`
	Attempt   int             `json:"attempt"`
	Item      *int            `json:"item,omitempty"`
	Service   string          `json:"service"`
	Command   string          `json:"command"`
	Input     json.RawMessage `json:"input"`
	// IdempotencyKey is stable for a step (and for_each item) across its
	// attempts: <process>/<step>[<item>], with /compensate appended for
	// its compensation. A service that saw the key before must not do the
	// work again (and answers as it did the first time).
	IdempotencyKey string `json:"idempotency_key"`
	Compensation   bool   `json:"compensation,omitempty"`
	// Compensates is, on a compensation, the idempotency key of the work
	// it undoes; OutcomeUnknown says the engine never saw that work's
	// result (an attempt timed out or was abandoned): it may not have
	// happened, and the compensation must then do nothing.
	Compensates    string `json:"compensates,omitempty"`
	OutcomeUnknown bool   `json:"outcome_unknown,omitempty"`
	// Timeout is the start-to-close timeout of the attempt (0: none): it
	// counts from the worker's start. ScheduleTimeout bounds the wait for
	// a start (0: none); HeartbeatTimeout the time between heartbeats of
	// a started attempt (0: no heartbeats expected). Deadline is the
	// step's deadline (zero if none): the engine stops waiting then, and
	// workers may refuse work past it.
	Timeout          time.Duration `json:"timeout,omitempty"`
	ScheduleTimeout  time.Duration `json:"schedule_timeout,omitempty"`
	HeartbeatTimeout time.Duration `json:"heartbeat_timeout,omitempty"`
	Deadline         time.Time     `json:"deadline,omitzero"`
	// NotBefore delays a retry: send the command as a delayed message.
	NotBefore time.Time `json:"not_before,omitzero"`
}

// StepByID returns the state of a step.
func (s *State) StepByID(id string) *StepState {
	for _, st := range s.Steps {
		if st.ID == id {
			return st
		}
	}
	return nil
}

// clone copies a state deeply enough that Decide never changes its input:
// slices and structs are copied, byte slices (never modified in place) are
// shared.
func (s *State) clone() *State {
	c := *s
	c.Steps = make([]*StepState, len(s.Steps))
	for i, st := range s.Steps {
		c.Steps[i] = st.clone()
	}
	c.Timers = append([]Timer(nil), s.Timers...)
	c.Signals = append([]BufferedSignal(nil), s.Signals...)
	if len(c.Signals) == 0 {
		c.Signals = nil
	}
	return &c
}

func (st *StepState) clone() *StepState {
	c := *st
	if st.Runs != nil {
		c.Runs = cloneRuns(st.Runs)
	}
	if st.Compensations != nil {
		c.Compensations = cloneRuns(st.Compensations)
	}
	return &c
}

func cloneRuns(runs []*Run) []*Run {
	out := make([]*Run, len(runs))
	for i, r := range runs {
		if r == nil {
			continue
		}
		c := *r
		c.Attempts = append([]Attempt(nil), r.Attempts...)
		out[i] = &c
	}
	return out
}

// cmdRef identifies a command slot.
type cmdRef struct {
	step    string
	item    int // -1: none
	comp    bool
	attempt int
}

// commandID formats the id of one attempt: its idempotency key, then
// /<attempt>.
func commandID(pid, step string, item int, comp bool, attempt int) string {
	return idempotencyKey(pid, step, item, comp) + "/" + strconv.Itoa(attempt)
}

// idempotencyKey formats the stable key of a command slot:
// <process>/<step>[<item>], with /compensate for a compensation.
func idempotencyKey(pid, step string, item int, comp bool) string {
	var b strings.Builder
	b.Grow(len(pid) + len(step) + 20)
	b.WriteString(pid)
	b.WriteByte('/')
	b.WriteString(step)
	if item >= 0 {
		b.WriteByte('[')
		b.WriteString(strconv.Itoa(item))
		b.WriteByte(']')
	}
	if comp {
		b.WriteString("/compensate")
	}
	return b.String()
}

// parseCommandID is the inverse of commandID for the given process.
func parseCommandID(pid, id string) (cmdRef, bool) {
	r := cmdRef{item: -1}
	if !strings.HasPrefix(id, pid+"/") {
		return r, false
	}
	rest := id[len(pid)+1:]
	slash := strings.LastIndexByte(rest, '/')
	if slash < 0 {
		return r, false
	}
	n, err := strconv.Atoi(rest[slash+1:])
	if err != nil || n < 1 {
		return r, false
	}
	r.attempt = n
	rest = rest[:slash]
	if s, ok := strings.CutSuffix(rest, "/compensate"); ok {
		r.comp = true
		rest = s
	}
	if strings.HasSuffix(rest, "]") {
		open := strings.LastIndexByte(rest, '[')
		if open < 0 {
			return r, false
		}
		i, err := strconv.Atoi(rest[open+1 : len(rest)-1])
		if err != nil || i < 0 {
			return r, false
		}
		r.item = i
		rest = rest[:open]
	}
	if rest == "" || strings.ContainsAny(rest, "/[]") {
		return r, false
	}
	r.step = rest
	return r, true
}

// timerID formats the stable id of a timer.
func timerID(pid string, kind TimerKind, step string, item int, comp bool, attempt int) string {
	var b strings.Builder
	b.WriteString(pid)
	b.WriteString("/timer/")
	b.WriteString(string(kind))
	if step != "" {
		b.WriteByte('/')
		b.WriteString(step)
		if item >= 0 {
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(item))
			b.WriteByte(']')
		}
		if comp {
			b.WriteString("/compensate")
		}
	}
	if attempt > 0 {
		b.WriteByte('/')
		b.WriteString(strconv.Itoa(attempt))
	}
	return b.String()
}

// attemptTimerID is the id of the arm-th timer of a kind armed for one
// attempt: the first has the plain timerID, later ones (a restart, a
// heartbeat, a grace) end in ~<arm>, so a re-armed timer never shares an
// id with the one it replaced.
func attemptTimerID(pid string, kind TimerKind, step string, item int, comp bool, attempt, arm int) string {
	id := timerID(pid, kind, step, item, comp, attempt)
	if arm > 1 {
		id += "~" + strconv.Itoa(arm)
	}
	return id
}
