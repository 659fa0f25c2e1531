package engine

import (
	"fmt"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/workflow"
)

// Worker progress (docs/protocol.md "Started and heartbeats"): `started`
// envelopes are recorded like results; `heartbeat` envelopes are not. The
// image keeps the newest heartbeat time of each command in memory, and it
// becomes one recorded event only when the command's heartbeat timeout
// comes due (wake), so a long step costs one record per heartbeat period,
// not one per heartbeat. After a load, the load time counts as a heartbeat
// of every running attempt: heartbeats received by an earlier owner are not
// kept. A finished process still takes the successes that arrive late for
// work it never saw succeed (workflow.LateSuccess): a compensated one goes
// back to compensating to undo it.

// beats is the heartbeat bookkeeping of an image (in memory only).
type beats struct {
	// last is the newest heartbeat received per command id; folded the
	// newest one recorded.
	last, folded map[string]time.Time
	// loadedAt is when the image was loaded from storage (zero for a
	// process started by this instance).
	loadedAt time.Time
}

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

// parseProgress decodes a started or heartbeat envelope into in: a started
// report is an event to record, a heartbeat an inHeartbeat.
func parseProgress(env *bus.Envelope, in *input, ev workflow.Event) error {
	var p protocol.Progress
	if err := env.DecodePayload(&p); err != nil {
		return err
	}
	if err := p.Validate(); err != nil {
		return fmt.Errorf("invalid %s: %w", env.Type, err)
	}
	if p.ProcessID != env.ProcessID {
		return fmt.Errorf("%s for process %q in an envelope of %q", env.Type, p.ProcessID, env.ProcessID)
	}
	if env.Type == protocol.TypeHeartbeat {
		in.kind, in.commandID = inHeartbeat, p.CommandID
		return nil
	}
	ev.Type, ev.CommandID, ev.Attempt, ev.Item, ev.Compensation = workflow.EventStarted, p.CommandID, p.Attempt, p.Item, p.Compensation
	in.kind, in.event = inEvent, ev
	return nil
}

// heartbeat keeps a heartbeat received now.
func (img *image) heartbeat(commandID string, now time.Time) {
	if img.terminal() {
		return
	}
	if img.beats.last == nil {
		img.beats.last = map[string]time.Time{}
	}
	img.beats.last[commandID] = now
}

// foldBeat accepts, before a due heartbeat timeout t, a heartbeat event
// with the newest heartbeat of its command, if one is newer than the last
// folded (the load time counts as one).
func (m *machine) foldBeat(img *image, t workflow.Timer, now time.Time, fx *effects) {
	cmd := t.CommandID()
	if cmd == "" {
		return
	}
	beat := img.beats.last[cmd]
	if beat.Before(img.beats.loadedAt) {
		beat = img.beats.loadedAt
	}
	if beat.IsZero() || !beat.After(img.beats.folded[cmd]) {
		return
	}
	if img.beats.folded == nil {
		img.beats.folded = map[string]time.Time{}
	}
	img.beats.folded[cmd] = beat
	delete(img.beats.last, cmd)
	m.acceptEvent(img, "heartbeat:"+cmd+"@"+beat.Format(time.RFC3339Nano), workflow.Event{
		V: workflow.EventVersion, Type: workflow.EventHeartbeat, ProcessID: img.pid, CommandID: cmd, BeatAt: beat,
	}, now, fx)
}

// lateForFinished reports whether an event must reach Decide although the
// process has finished: a success for work it never saw succeed.
func (img *image) lateForFinished(ev *workflow.Event) bool {
	return img.terminal() && workflow.LateSuccess(img.state, ev)
}

// pendingLate reports whether a finished process holds a late success not
// yet decided.
func (img *image) pendingLate() bool {
	for i := range img.pending {
		if img.lateForFinished(&img.pending[i].Event) {
			return true
		}
	}
	return false
}
