package engine

import (
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/workflow"
)

// Worker progress (docs/protocol.md "Started and heartbeats"): `started`
// envelopes are recorded like results; `heartbeat` envelopes are not. The
// image keeps the newest heartbeat time of each command in memory, and it
// becomes one recorded event only when the command's heartbeat timeout comes
// due, so a long step costs one record per heartbeat period, not one per
// heartbeat. After a load, the load time counts as a heartbeat of every
// running attempt: heartbeats received by an earlier owner are not kept.

// WireCommand is the command a worker receives for a decided one.
func WireCommand(c *workflow.Command, definition string, version int, replyTo string) protocol.Command {
	return protocol.Command{
		CommandID: c.ID, ProcessID: c.ProcessID, Definition: definition, Version: version,
		Step: c.StepID, Item: c.Item, Attempt: c.Attempt, Service: c.Service, Command: c.Command,
		Compensation: c.Compensation, Input: c.Input, IdempotencyKey: c.IdempotencyKey,
		Compensates: c.Compensates, OutcomeUnknown: c.OutcomeUnknown,
		TimeoutMS: protocol.Millis(c.Timeout), ScheduleTimeoutMS: protocol.Millis(c.ScheduleTimeout),
		HeartbeatTimeoutMS: protocol.Millis(c.HeartbeatTimeout),
		Deadline:           c.Deadline, ReplyTo: replyTo,
	}
}

// progressEvent decodes a started or heartbeat envelope. A started one
// becomes an event to record; a heartbeat is kept on the image (ok and
// record false). A malformed report returns the reason to dead-letter it.
func progressEvent(env *bus.Envelope, img *image, now time.Time) (ev workflow.Event, record bool, bad string) {
	var p protocol.Progress
	if err := env.DecodePayload(&p); err != nil {
		return ev, false, err.Error()
	}
	if err := p.Validate(); err != nil {
		return ev, false, "invalid " + env.Type + ": " + err.Error()
	}
	if env.Type == protocol.TypeHeartbeat {
		if img.beats == nil {
			img.beats = map[string]time.Time{}
		}
		img.beats[p.CommandID] = now
		return ev, false, ""
	}
	ev = workflow.Event{
		V: workflow.EventVersion, Type: workflow.EventStarted, ProcessID: env.ProcessID, Time: env.Time,
		CommandID: p.CommandID, Attempt: p.Attempt, Item: p.Item, Compensation: p.Compensation,
	}
	return ev, true, ""
}

// foldBeats accepts, before a heartbeat timeout timer, a heartbeat event
// with the newest heartbeat of its command, if there is one newer than the
// last folded.
func (o *Orchestrator) foldBeats(b *batch, img *image, timerID string) {
	st := img.snap.State
	if st == nil {
		return
	}
	var cmd string
	for i := range st.Timers {
		if st.Timers[i].ID == timerID {
			cmd = st.Timers[i].CommandID()
			break
		}
	}
	if cmd == "" {
		return
	}
	beat := img.beats[cmd]
	if beat.Before(img.loadedAt) {
		beat = img.loadedAt
	}
	if beat.IsZero() || !beat.After(img.folded[cmd]) {
		return
	}
	if img.folded == nil {
		img.folded = map[string]time.Time{}
	}
	img.folded[cmd] = beat
	delete(img.beats, cmd)
	o.accept(b, img, "heartbeat:"+cmd+"@"+beat.Format(time.RFC3339Nano), workflow.Event{
		V: workflow.EventVersion, Type: workflow.EventHeartbeat, ProcessID: img.snap.ProcessID, CommandID: cmd, BeatAt: beat,
	})
}

// lateForFinished reports whether ev must reach Decide although the
// process has finished: a success for work it never saw succeed.
func lateForFinished(img *image, ev *workflow.Event) bool {
	return workflow.LateSuccess(img.snap.State, ev)
}

// pendingLate reports whether a finished process holds a late success not
// yet decided.
func pendingLate(img *image) bool {
	for i := range img.snap.Pending {
		if lateForFinished(img, &img.snap.Pending[i].Event) {
			return true
		}
	}
	return false
}
