package protocol

import (
	"fmt"
	"strconv"
	"time"
)

// Progress is a worker's report on a command it is running, sent to the
// command's reply_to keyed by the process id, as an envelope of type
// TypeStarted (the worker started the attempt: its start-to-close timeout
// counts from now) or TypeHeartbeat (the attempt is still running). It
// echoes the command's identifying fields like a Result.
//
// Started: the engine counts an attempt's timeout from the first started
// it receives; a redelivery to another worker reports started again, which
// restarts only the heartbeat timeout, not that clock (an attempt whose
// workers keep dying faster than its timeout still times out). A
// result proves the start too, so a worker may skip started for work that
// ends quickly (the Go SDK reports it only when the handler still runs
// after Options.StartedAfter, and at once when the command has a schedule
// timeout or comes again after a crash).
//
// Heartbeat: only for commands with heartbeat_timeout_ms; send one at
// least every third of it. The engine does not record each heartbeat: it
// keeps the newest and folds it when the heartbeat timeout comes due.
type Progress struct {
	CommandID    string `json:"command_id"`
	ProcessID    string `json:"process_id"`
	Step         string `json:"step"`
	Item         *int   `json:"item,omitempty"`
	Attempt      int    `json:"attempt"`
	Compensation bool   `json:"compensation,omitempty"`
	// Worker names the worker instance, for operators.
	Worker string `json:"worker,omitempty"`
	// Delivery counts the earlier deliveries of this command to the
	// service, when known (started only).
	Delivery int `json:"delivery,omitempty"`
	// At is the worker's clock (informational; the engine uses its own).
	At time.Time `json:"at,omitzero"`
}

// ProgressFor starts a Progress report on c.
func ProgressFor(c *Command, worker string, at time.Time) *Progress {
	return &Progress{
		CommandID: c.CommandID, ProcessID: c.ProcessID, Step: c.Step, Item: c.Item,
		Attempt: c.Attempt, Compensation: c.Compensation, Worker: worker, At: at.UTC(),
	}
}

// Validate checks a progress report is well formed.
func (p *Progress) Validate() error {
	switch {
	case p.CommandID == "" || p.ProcessID == "" || p.Step == "":
		return fmt.Errorf("progress report needs command_id, process_id and step")
	case p.Attempt < 1:
		return fmt.Errorf("progress report %s has attempt %d, attempts count from 1", p.CommandID, p.Attempt)
	}
	return nil
}

// StartedID is the envelope id of a started report: one per start of an
// attempt by a worker (token tells the starts of one worker apart, e.g. a
// counter), so that a resent report is recognised and a new start is not.
func StartedID(commandID, worker string, token uint64) string {
	return "started:" + commandID + "@" + worker + "#" + strconv.FormatUint(token, 10)
}

// HeartbeatID is the envelope id of the seq-th heartbeat of one start.
func HeartbeatID(commandID, worker string, token uint64, seq int) string {
	return "heartbeat:" + commandID + "@" + worker + "#" + strconv.FormatUint(token, 10) + "." + strconv.Itoa(seq)
}

// Timeout returns the command's start-to-close timeout (0: none).
func (c *Command) Timeout() time.Duration { return time.Duration(c.TimeoutMS) * time.Millisecond }

// ScheduleTimeout returns the command's schedule timeout (0: none).
func (c *Command) ScheduleTimeout() time.Duration {
	return time.Duration(c.ScheduleTimeoutMS) * time.Millisecond
}

// HeartbeatTimeout returns the command's heartbeat timeout (0: none).
func (c *Command) HeartbeatTimeout() time.Duration {
	return time.Duration(c.HeartbeatTimeoutMS) * time.Millisecond
}

// Millis converts a duration for a command's *_ms fields, rounding up so
// that a positive duration never becomes 0 (none).
func Millis(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}
