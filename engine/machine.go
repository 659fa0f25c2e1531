package engine

import (
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/tracing"
	"github.com/pulsaga/pulsaga/workflow"
)

// The orchestrator's event handling is a pure state machine over memory
// images: machine.accept takes an image, one decoded input and the batch's
// time and returns, in an effects value, the records to append to the
// process's stream and the messages to send (commands, physical timers,
// decision tasks). It does no I/O and reads no clock; the orchestrator
// turns effects into messages of one transaction (orchestrator_batch.go).
// Loading a partition and reading one process fold the same records with
// image.fold, the code the live path uses, so a replay ends where the live
// image was.

// Decider modes (OrchestratorOptions.Decider).
const (
	// DeciderInline decides inside the orchestrator's batch: the commands,
	// timers and new state of a decision leave in the transaction of the
	// batch that received its events. The default.
	DeciderInline = "inline"
	// DeciderRemote sends decision tasks to cmd/decider over the decisions
	// topic and applies the decision when its result comes back as an
	// event (isolation, costly expressions).
	DeciderRemote = "remote"
)

// image is a live process's memory image.
type image struct {
	pid       string
	def       *workflow.Definition
	partition int
	createdAt time.Time
	state     *workflow.State // nil until the first decision
	// stateZ is state's JSON zstd-compressed when that is known without
	// encoding it (nil otherwise): the bytes the remote decider's answer
	// carried it in, or the snapshot it was thawed or loaded from. A task
	// and a snapshot send these bytes instead of encoding state again
	// (protocol/decisions.go, "Split state"). Whatever sets state sets
	// stateZ: fold clears it, apply sets it from the answer.
	stateZ []byte
	seq    int64 // the last record's sequence number
	// pending are accepted events not yet folded into state.
	pending []PendingEvent
	// outstanding is the remote decision in flight.
	outstanding *Outstanding
	// seen are the envelope ids of recent signals and admin actions, which
	// nothing else deduplicates (results and timers are matched by id in
	// Decide, a second start is refused by the image's existence).
	seen []string
	// armed are the fire times of the process's physical timers still to
	// come, earliest first: at most one per process normally (a second
	// only when its earliest deadline came earlier than the pending one).
	armed []time.Time
	// historyIDs are the positions of the process's history entries on its
	// history partition (ReadProcess).
	historyIDs []bus.MessageID

	// Storage bookkeeping, the orchestrator's (not the state machine's):
	// covered is the last sequence number a snapshot holds; since is the
	// batch that wrote the first history entry a snapshot does not cover
	// yet (0: none); touched is when a batch last touched the image.
	covered int64
	since   uint64
	touched time.Time
	// lastSnap is the encoding of the image's last snapshot, kept from
	// the batch that wrote it once that batch committed, until a batch
	// touches the image again: freezing the image takes these bytes
	// instead of encoding it a second time (frozen.go).
	lastSnap []byte
	// beats: worker heartbeats, in memory (progress.go).
	beats beats
	// frozen: an idle image kept encoded (frozen.go); its decoded fields
	// above are nil until the loop thaws it.
	frozen *frozenImage
}

func (img *image) terminal() bool { return img.state != nil && img.state.Status.Terminal() }

// needsDecision: pending events, no decision outstanding, not finished
// (a completed process may be re-opened by a parent's compensate).
func (img *image) needsDecision() bool {
	return img.outstanding == nil && len(img.pending) > 0 &&
		(!img.terminal() || img.state.Status == workflow.StatusCompleted || img.pendingLate()) // a late success (progress.go)
}

func (img *image) wasSeen(id string) bool { return slices.Contains(img.seen, id) }

// taskOut is a decision task to send and the number of times it was
// issued (a re-issue is identical but for its envelope id).
type taskOut struct {
	task protocol.DecisionTask
	// stateZ: the task's state already encoded (image.stateZ), or nil.
	stateZ []byte
	issue  int
}

// drop is an input dropped, with the reason (counted by the orchestrator).
type drop struct{ reason, detail string }

// effects is what handling one process in one batch produced.
type effects struct {
	// records to append to the process's stream, in order.
	records []Record
	// commands to send to the job queues.
	commands []workflow.Command
	// arm are physical timers to send (their fire times).
	arm []time.Time
	// tasks (remote mode): decision tasks to send. A task has no timer of
	// its own: a decider that dies before answering gives its tasks back
	// to the decisions subscription (the broker delivers them again), and
	// the orchestrator's once-a-second sweep re-issues the rare task still
	// unanswered after DecisionTimeout (orchestrator_remote.go).
	tasks []taskOut
	// issued and released: a remote decision slot was taken or given back.
	issued, released bool
	// finished: the process reached a terminal status in this batch.
	finished bool
	drops    []drop
}

func (fx *effects) drop(reason, detail string) { fx.drops = append(fx.drops, drop{reason, detail}) }

// machine holds what the state machine needs besides the image.
type machine struct {
	remote    bool
	seenLimit int
	// replyTo is the events topic: where decision results come back.
	replyTo string
	// maxMessage bounds an encoded command, record or image: a decision
	// that would exceed it fails its process instead (never a message the
	// broker refuses for ever).
	maxMessage int
	obs        Observer
	// tracer exports spans of the decisions (nil: off; tracer.go).
	tracer *tracing.Tracer
	// taskSalt and tasksIssued make each remote task id unique (issue):
	// the salt is drawn once per orchestrator, the count goes up per task.
	taskSalt    string
	tasksIssued uint64
}

// start creates the image of a new process from its start input.
func (m *machine) start(def *workflow.Definition, partition int, in input, now time.Time, fx *effects) *image {
	img := &image{pid: in.pid, def: def, partition: partition, createdAt: now}
	ev := workflow.Event{
		V: workflow.EventVersion, Type: workflow.EventStart, ProcessID: in.pid, Input: in.start.Input,
		Actor: in.start.Actor, Time: in.sent, Parent: in.start.Parent,
	}
	m.acceptEvent(img, in.envID, ev, now, fx)
	r := &fx.records[len(fx.records)-1]
	r.Definition, r.Version = def.Name, def.Version
	return img
}

// accept applies one input to an existing image.
func (m *machine) accept(img *image, in input, now time.Time, fx *effects) {
	switch in.kind {
	case inStart:
		fx.drop(DropAlreadyStarted, "a process with this id exists")
	case inRetention:
		fx.drop(DropStaleTimer, "retention timer of an earlier engine")
	case inDecision:
		m.applyResult(img, in, now, fx)
	case inDecisionTimeout:
		m.decisionTimeoutFired(img, in, now, fx)
	case inWake:
		m.wake(img, in, now, fx)
	case inHeartbeat:
		img.heartbeat(in.commandID, now) // kept in memory, no effect (progress.go)
	case inEvent:
		switch {
		case img.wasSeen(in.envID):
			fx.drop(DropDuplicate, in.envID)
		case img.terminal() && !(in.event.Type == workflow.EventCompensate && img.state.Status == workflow.StatusCompleted) &&
			!img.lateForFinished(&in.event):
			// (a parent compensates a completed child: call steps; a late
			// success is still decided: progress.go)
			fx.drop(DropTerminal, string(in.event.Type))
		default:
			m.acceptEvent(img, in.envID, in.event, now, fx)
			if img.outstanding != nil && (in.event.Type == workflow.EventTerminate || in.event.Type == workflow.EventCancel) {
				// Terminate and cancel act even while a remote decision is
				// outstanding: that task is abandoned (its answer will be
				// stale) and a new one folds every pending event, this one
				// included.
				img.outstanding = nil
				fx.released = true
			}
		}
	}
}

// acceptEvent appends an event to the stream and the pending events.
func (m *machine) acceptEvent(img *image, envID string, ev workflow.Event, now time.Time, fx *effects) {
	switch ev.Type {
	case workflow.EventStart, workflow.EventResult, workflow.EventTimer:
	default:
		img.seen = append(img.seen, envID)
		if n := len(img.seen) - m.seenLimit; n > 0 {
			img.seen = append([]string(nil), img.seen[n:]...)
		}
	}
	rec := m.record(img, Record{Kind: RecordEvent, Event: &ev, EnvelopeID: envID}, now, fx)
	img.pending = append(img.pending, PendingEvent{Seq: rec.Seq, Event: ev})
}

// record numbers r as the process's next record and adds it to fx.
func (m *machine) record(img *image, r Record, now time.Time, fx *effects) Record {
	img.seq++
	r.ProcessID, r.Seq, r.At = img.pid, img.seq, now
	fx.records = append(fx.records, r)
	return r
}

// wake handles the process's physical timer: the logical timers due by
// then become timer events (recorded, then decided); when none is due the
// wake leaves no record, and a timer is armed for the earliest deadline if
// none is pending for it.
func (m *machine) wake(img *image, in input, now time.Time, fx *effects) {
	img.disarm(in.fireAt)
	if img.state == nil || img.terminal() {
		fx.drop(DropStaleTimer, in.timerID)
		return
	}
	at := now
	if in.fireAt.After(at) {
		at = in.fireAt // the relay's clock reached it: it is due
	}
	due := img.dueTimers(at)
	if len(due) == 0 {
		m.rearm(img, fx)
		fx.drop(DropStaleTimer, "nothing due at "+in.fireAt.UTC().Format(time.RFC3339Nano))
		return
	}
	for _, t := range due {
		if t.Kind == workflow.TimerHeartbeatTimeout {
			m.foldBeat(img, t, now, fx) // the newest heartbeat first (progress.go)
		}
		// FiredAt: a worker-progress timer handed over late is re-armed.
		ev := workflow.Event{V: workflow.EventVersion, Type: workflow.EventTimer, ProcessID: img.pid, TimerID: t.ID, Time: t.FireAt, FiredAt: in.firedAt}
		m.acceptEvent(img, "timer:"+t.ID, ev, now, fx)
	}
}

// dueTimers are the logical timers due at at that are not pending as
// events already, by fire time.
func (img *image) dueTimers(at time.Time) []workflow.Timer {
	var due []workflow.Timer
	for _, t := range img.state.Timers {
		if !t.FireAt.After(at) && !img.timerPending(t.ID) {
			due = append(due, t)
		}
	}
	slices.SortStableFunc(due, func(a, b workflow.Timer) int { return a.FireAt.Compare(b.FireAt) })
	return due
}

func (img *image) timerPending(id string) bool {
	for _, p := range img.pending {
		if p.Event.Type == workflow.EventTimer && p.Event.TimerID == id {
			return true
		}
	}
	return false
}

// disarm forgets the physical timer firing at t (once).
func (img *image) disarm(t time.Time) {
	for i, a := range img.armed {
		if a.Equal(t) {
			img.armed = slices.Delete(img.armed, i, i+1)
			return
		}
	}
}

// nextDeadline is the earliest logical deadline not pending as an event
// already (zero when there is none).
func (img *image) nextDeadline() time.Time {
	var d time.Time
	if img.state == nil || img.terminal() {
		return d
	}
	for _, t := range img.state.Timers {
		if (d.IsZero() || t.FireAt.Before(d)) && !img.timerPending(t.ID) {
			d = t.FireAt
		}
	}
	return d
}

// rearm keeps the rule "a physical timer is pending at or before the
// earliest logical deadline": it arms one for that deadline when every
// pending one fires later (or none is pending).
func (m *machine) rearm(img *image, fx *effects) {
	d := img.nextDeadline()
	if d.IsZero() {
		return
	}
	for _, a := range img.armed {
		if !a.After(d) {
			return
		}
	}
	i, _ := slices.BinarySearchFunc(img.armed, d, time.Time.Compare)
	img.armed = slices.Insert(img.armed, i, d)
	fx.arm = append(fx.arm, d)
}

// WakeTimerID is the id of a process's physical timer firing at t.
func WakeTimerID(pid string, t time.Time) string {
	return pid + "/wake/" + strconv.FormatInt(t.UnixNano(), 10)
}

// decide makes the process's decision now, inside the batch (inline mode):
// Decide folds every pending event.
func (m *machine) decide(img *image, now time.Time, fx *effects) {
	if !img.needsDecision() {
		return
	}
	upto := img.pending[len(img.pending)-1].Seq
	evs := make([]workflow.Event, len(img.pending))
	for i, p := range img.pending {
		evs[i] = p.Event
	}
	res := protocol.DecisionResult{TaskID: taskID(img.pid, upto), ProcessID: img.pid, Now: now}
	d, err := workflow.Decide(img.def, img.state, evs, now)
	if err != nil {
		res.Error = err.Error()
	} else {
		res.Decision = &d
	}
	m.apply(img, upto, now, now, &res, "", now, fx)
}

func taskID(pid string, upto int64) string { return pid + "/" + strconv.FormatInt(upto, 10) }

// issue sends the pending events to a remote decider (remote mode; the
// orchestrator checks a decision slot is free).
//
// The task id is unique (taskID plus a salt and a count): a task goes out
// before the batch that issues it commits (orchestrator_batch.go), so after
// that batch fails the same pid and upto may name other events, and an
// answer to the lost task must not match the task issued again.
func (m *machine) issue(img *image, now time.Time, fx *effects) {
	last := img.pending[len(img.pending)-1].Seq
	m.tasksIssued++
	id := taskID(img.pid, last) + "." + m.taskSalt + strconv.FormatUint(m.tasksIssued, 36)
	img.outstanding = &Outstanding{TaskID: id, Upto: last, Now: now, Issued: 1, IssuedAt: now}
	fx.issued = true
	m.sendTask(img, now, fx)
}

func (m *machine) sendTask(img *image, now time.Time, fx *effects) {
	out := img.outstanding
	evs := make([]workflow.Event, 0, len(img.pending))
	for _, p := range img.pending {
		if p.Seq <= out.Upto {
			evs = append(evs, p.Event)
		}
	}
	fx.tasks = append(fx.tasks, taskOut{protocol.DecisionTask{
		TaskID: out.TaskID, ProcessID: img.pid, Definition: img.def.Name, Version: img.def.Version,
		State: img.state, Events: evs, Now: out.Now, ReplyTo: m.replyTo, AcceptZstd: true, SplitState: true, StateApart: true,
	}, img.stateZ, out.Issued})
}

// reissue issues the outstanding task again, identically (the sweep found
// it unanswered for too long; orchestrator_remote.go). The slot is kept.
func (m *machine) reissue(img *image, now time.Time, fx *effects) {
	if img.outstanding == nil {
		return
	}
	img.outstanding.Issued++
	m.sendTask(img, now, fx)
}

// reissueAt is when the outstanding task out is issued again if no answer
// came: timeout after its first issue, then after twice as long, four
// times as long..., so that a decider that is only slow (a long queue of
// tasks) is not flooded with copies.
func reissueAt(out *Outstanding, timeout time.Duration) time.Time {
	k := min(max(out.Issued, 1), 16)
	return out.IssuedAt.Add(timeout * time.Duration(1<<k-1))
}

// decisionTimerID is the id of the decision-timeout timer an engine before
// the sweep set for each task.
func decisionTimerID(out *Outstanding) string {
	return fmt.Sprintf("decision:%s#%d", out.TaskID, out.Issued)
}

// decisionTimeoutFired handles a decision-timeout timer of an earlier
// engine (one timer per task): the outstanding task it names is issued
// again, identically; any other is stale.
func (m *machine) decisionTimeoutFired(img *image, in input, now time.Time, fx *effects) {
	out := img.outstanding
	if out == nil || decisionTimerID(out) != in.timerID {
		fx.drop(DropStaleTimer, in.timerID)
		return
	}
	m.reissue(img, now, fx)
}

// applyResult applies a remote decider's answer to the outstanding task.
func (m *machine) applyResult(img *image, in input, now time.Time, fx *effects) {
	out := img.outstanding
	if out == nil || out.TaskID != in.result.TaskID {
		fx.drop(DropStaleDecision, in.result.TaskID)
		return
	}
	at := out.Now
	if in.result.Now.After(at) {
		// The decider decided later than the task was issued (it waited in
		// the queue); replay must decide at the same time.
		at = in.result.Now
	}
	img.outstanding = nil
	fx.released = true
	m.apply(img, out.Upto, at, out.IssuedAt, in.result, in.envID, now, fx)
}

// apply records a decision (or its failure) and takes its effects: the
// events up to upto are folded at decidedAt.
func (m *machine) apply(img *image, upto int64, decidedAt, issuedAt time.Time, res *protocol.DecisionResult, envID string, now time.Time, fx *effects) {
	rec := Record{Kind: RecordDecision, TaskID: res.TaskID, Upto: upto, Now: decidedAt, EnvelopeID: envID}
	d := res.Decision
	switch {
	case res.Error != "":
		rec.Kind, rec.Error, d = RecordRejected, res.Error, nil
	case d == nil || d.State == nil:
		rec.Kind, rec.Error, d = RecordRejected, "a decision without a state", nil
	default:
		if err := m.checkSize(img, d); err != nil {
			rec.Kind, rec.Error, d = RecordFailed, err.Error(), nil
		}
	}
	before := img.state
	traced := m.pendingUpto(img, upto)
	var oldest time.Time
	for _, p := range img.pending {
		if p.Seq <= upto && !p.Event.Time.IsZero() && (oldest.IsZero() || p.Event.Time.Before(oldest)) {
			oldest = p.Event.Time
		}
	}
	if d != nil {
		rec.Status, rec.Ignored = d.Status, d.Ignored
		for _, c := range d.Commands {
			rec.Commands = append(rec.Commands, c.ID)
		}
		for _, t := range d.Timers {
			rec.Timers = append(rec.Timers, t.ID)
		}
	}
	rec.ProcessID, rec.Seq, rec.At = img.pid, img.seq+1, now
	if err := img.fold(rec, d); err != nil {
		// fold fails only when it has to run Decide itself, which it does
		// not with d given: an error here is a bug.
		panic(fmt.Sprintf("engine: folding a live decision of %s: %v", img.pid, err))
	}
	if rec.Kind == RecordDecision && len(res.StateZstd) > 0 {
		img.stateZ = res.StateZstd // the answer's bytes of d.State
	}
	// The record carries the physical timers pending after it, so that a
	// replay knows them.
	m.rearm(img, fx)
	rec.Wake = slices.Clone(img.armed)
	fx.records = append(fx.records, rec)

	obs := m.obs
	switch rec.Kind {
	case RecordDecision:
		obs.DecisionApplied(img.def.Name, now.Sub(issuedAt))
		if !oldest.IsZero() && len(d.Commands) > 0 {
			obs.EventToCommand(img.def.Name, now.Sub(oldest))
		}
		observeDecision(obs, img.def.Name, before, img.state, d)
		m.traceDecision(img, res.TaskID, issuedAt, oldest, now, before, d, traced)
		for _, ig := range d.Ignored {
			fx.drop(string(ig.Reason), ig.Detail)
		}
		fx.commands = append(fx.commands, d.Commands...)
	case RecordFailed:
		obs.ProcessChanged(img.def.Name, statusOf(before), img.state.Status)
	}
	if img.terminal() {
		keep := img.pending[:0]
		for _, p := range img.pending {
			if img.lateForFinished(&p.Event) {
				keep = append(keep, p) // still decided (progress.go)
				continue
			}
			fx.drop(DropTerminal, string(p.Event.Type))
		}
		img.pending = keep
		fx.finished = true
	}
}

// timersToRecover says whether recoverTimers would arm a timer.
func (img *image) timersToRecover(now time.Time) bool {
	d := img.nextDeadline()
	if d.IsZero() {
		return false
	}
	for _, a := range img.armed {
		if a.After(now) && !a.After(d) {
			return false
		}
	}
	return true
}

// recoverTimers restores the timer rule on an image loaded from storage. A
// physical timer re-armed by a wake with nothing due left no record, so the
// recorded ones may be past: those have fired (or their wake is still on its
// way, and finds nothing to disarm). Past ones are forgotten and a timer is
// armed for the earliest deadline unless one still to come covers it; a
// timer armed twice fires twice, the second time with nothing due.
func (m *machine) recoverTimers(img *image, now time.Time, fx *effects) {
	keep := img.armed[:0]
	for _, a := range img.armed {
		if a.After(now) {
			keep = append(keep, a)
		}
	}
	img.armed = keep
	m.rearm(img, fx)
}

func statusOf(st *workflow.State) workflow.Status {
	if st == nil {
		return workflow.StatusNew
	}
	return st.Status
}

// fold applies one record of the process's stream to the image: the code
// of both the live path (with the decision it made) and of a replay (d nil:
// a decision record runs Decide again with its recorded time).
func (img *image) fold(r Record, d *workflow.Decision) error {
	if r.Seq != img.seq+1 {
		return fmt.Errorf("record %d of %s follows record %d", r.Seq, img.pid, img.seq)
	}
	switch r.Kind {
	case RecordEvent:
		if r.Event == nil {
			return fmt.Errorf("event record %d of %s has no event", r.Seq, img.pid)
		}
		img.pending = append(img.pending, PendingEvent{Seq: r.Seq, Event: *r.Event})
	case RecordDecision, RecordRejected, RecordFailed:
		var evs []workflow.Event
		keep := img.pending[:0]
		for _, p := range img.pending {
			if p.Seq <= r.Upto {
				evs = append(evs, p.Event)
			} else {
				keep = append(keep, p)
			}
		}
		img.pending = keep
		if img.outstanding != nil && img.outstanding.Upto <= r.Upto {
			// A replay past a snapshot taken while a remote decision was
			// outstanding: this record is its answer (live, applyResult
			// has cleared it already).
			img.outstanding = nil
		}
		switch r.Kind {
		case RecordDecision:
			if d == nil { // a replay: decide again, take the timers recorded
				dec, err := workflow.Decide(img.def, img.state, evs, r.Now)
				if err != nil {
					return fmt.Errorf("decision %s of %s: %w", r.TaskID, img.pid, err)
				}
				d = &dec
				img.armed = slices.Clone(r.Wake)
			}
			img.state, img.stateZ = d.State, nil
		case RecordFailed:
			img.state, img.stateZ = failedState(img, evs, r.Error, r.Now), nil
			img.armed = nil
		}
	default:
		return fmt.Errorf("record %d of %s has unknown kind %q", r.Seq, img.pid, r.Kind)
	}
	img.seq = r.Seq
	return nil
}

// ErrTypeMessageTooLarge is the error type of a process that failed
// because a decision's command, record or state would exceed the broker's
// message size.
const ErrTypeMessageTooLarge = "MessageTooLarge"

// failedState is the state of a process failed by the engine (a RecordFailed):
// the state before, failed with the record's error, no timers left.
func failedState(img *image, evs []workflow.Event, msg string, at time.Time) *workflow.State {
	var s workflow.State
	if img.state != nil {
		s = *img.state
	} else {
		s = workflow.State{V: workflow.StateVersion, ProcessID: img.pid, Workflow: img.def.Name, Version: img.def.Version, StartedAt: at}
		for _, ev := range evs {
			if ev.Type == workflow.EventStart {
				s.Input = ev.Input
			}
		}
	}
	no := false
	s.Status = workflow.StatusFailed
	s.Failure = &workflow.Failure{Error: &workflow.ErrorInfo{Type: ErrTypeMessageTooLarge, Message: msg, Retryable: &no}, At: at}
	s.Timers = nil
	s.UpdatedAt, s.EndedAt = at, at
	return &s
}
