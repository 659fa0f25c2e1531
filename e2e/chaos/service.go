package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/pulsaga/pulsaga/worker"
)

// Services are the job queues the chaos service serves: those of
// testdata/chaos-trip.yaml and testdata/chaos-orders.yaml.
var Services = []string{"payments", "flights", "hotels", "notifications", "inventory", "shipping"}

// UnitName names a step or for_each item: "<step>" or "<step>[<item>]".
func UnitName(step string, item *int) string {
	if item == nil {
		return step
	}
	return fmt.Sprintf("%s[%d]", step, *item)
}

// Call is one delivery the chaos service handled, for diagnosis and for
// the report (how many duplicates its idempotency absorbed).
type Call struct {
	At        time.Time `json:"at"`
	Instance  string    `json:"instance"`
	ProcessID string    `json:"process_id"`
	Unit      string    `json:"unit"`
	Undo      bool      `json:"undo,omitempty"`
	Command   string    `json:"command"`
	CommandID string    `json:"command_id"`
	Key       string    `json:"key"`
	Attempt   int       `json:"attempt"`
	Delivery  int       `json:"delivery,omitempty"`
	Fault     Fault     `json:"fault"`
	// Result: "effect" (done now), "replay" (answered from the ledger),
	// "fail", "refuse", "lost" (effect done or found, answer held back),
	// "late" (a lost attempt's answer, sent once the engine moved on: not a
	// delivery), "crash" (effect done, instance killed), "error" (the
	// ledger failed).
	Result string `json:"result"`
}

// Service is the chaos service's behaviour, on the worker SDK: it plays
// each command's fault script (input.plan) attempt by attempt and keeps
// its effects in a Ledger by idempotency key, as a real idempotent
// service would.
type Service struct {
	Ledger   *Ledger
	Instance string
	// Calls receives one JSON line per delivery (nil: none).
	Calls *os.File
	// Latency is the most an attempt waits before acting (uniform from 0).
	Latency time.Duration
	// Marks is a folder shared by the instances where each delivery leaves
	// a mark (unit, attempt, compensation or not): a lost attempt answers
	// once the engine moved on from it (empty: it waits LostFor).
	Marks string
	// LostFor bounds how long a lost attempt holds its answer when the
	// engine does not move on (default 90s).
	LostFor time.Duration
	// Die kills the instance (default: SIGKILL to itself).
	Die func()

	callMu sync.Mutex
}

// Handle is the worker.Handler of every command.
func (s *Service) Handle(ctx context.Context, job *worker.Job) (any, error) {
	var in struct {
		Plan Script `json:"plan"`
	}
	if err := job.DecodeInput(&in); err != nil {
		return nil, err
	}
	fault := in.Plan.At(job.Attempt)
	unit := job.ProcessID + "/" + UnitName(job.Step, job.Item)
	call := Call{
		Instance: s.Instance, ProcessID: job.ProcessID, Unit: unit, Undo: job.Compensation, Command: job.Command.Command,
		CommandID: job.CommandID, Key: job.IdempotencyKey, Attempt: job.Attempt, Delivery: job.Delivery, Fault: fault,
	}
	s.mark(unit, job.Compensation, job.Attempt)
	if s.Latency > 0 {
		select {
		case <-time.After(rand.N(s.Latency)):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	entry := Entry{
		Key: job.IdempotencyKey, Unit: unit, Undo: job.Compensation, ProcessID: job.ProcessID, Step: job.Step, Item: job.Item,
		Command: job.Command.Command, CommandID: job.CommandID, Attempt: job.Attempt, Instance: s.Instance,
		Output: output(job),
	}
	answer := func(e Entry, result string) (any, error) {
		call.Result = result
		s.record(call)
		return e.Output, nil
	}
	failed := func(result string, err error) (any, error) {
		call.Result = result
		s.record(call)
		return nil, err
	}
	// Fail and Refuse do nothing: only look the key up. The others do the
	// effect unless the key has one (atomically, in the ledger).
	known := false
	e := entry
	if fault == Fail || fault == Refuse {
		var err error
		if e, known, err = s.Ledger.Get(entry.Key); err != nil {
			return failed("error", err)
		}
	} else {
		var fresh bool
		var err error
		if e, fresh, err = s.Ledger.Do(entry); err != nil {
			return failed("error", err)
		}
		known = !fresh
	}
	switch respond(fault, known) {
	case replyOK:
		if known {
			return answer(e, "replay")
		}
		return answer(e, "effect")
	case replyFail:
		return failed("fail", worker.Retryable("Unavailable", errors.New(job.Command.Command+": service temporarily unavailable")))
	case replyRefuse:
		return failed("refuse", worker.NonRetryable("Refused", fmt.Errorf("%s refused for %s", job.Command.Command, job.ProcessID)))
	case replyDie:
		call.Result = "crash"
		s.record(call)
		s.die()
		return nil, errors.New("crash: the instance should be dead")
	}
	// Lost: the effect is done (or was), and this attempt's answer is lost
	// for as long as the engine waits for it. The worker SDK answers
	// whatever a handler returns — a timeout error at the handler's
	// deadline would be a lie (the effect happened) that tells the engine
	// the work was not done. So the answer is held (the handler's deadline
	// ignored) until the engine has moved on from this attempt — the next
	// attempt or the unit's compensation delivered, which proves it timed
	// the attempt out — and then the truth comes, late: a success. What
	// the engine does with a late success is issue #11 item 1's: it
	// completes a step still open, and a step it compensates is
	// compensated once (same key).
	call.Result = "lost"
	s.record(call)
	s.awaitMovedOn(unit, job.Compensation, job.Attempt)
	call.Result = "late"
	s.record(call)
	return e.Output, nil
}

// mark leaves the delivery's mark for the lost attempts of other
// instances.
func (s *Service) mark(unit string, undo bool, attempt int) {
	if s.Marks == "" {
		return
	}
	_ = os.WriteFile(s.markPath(unit, undo, attempt), nil, 0o644)
}

func (s *Service) markPath(unit string, undo bool, attempt int) string {
	h := fnv.New64a()
	_, _ = h.Write([]byte(unit))
	kind := "do"
	if undo {
		kind = "undo"
	}
	return filepath.Join(s.Marks, fmt.Sprintf("%016x-%s-%d", h.Sum64(), kind, attempt))
}

// awaitMovedOn waits until attempt's successor (or, for a forward attempt,
// the unit's first compensation) has been delivered, at most LostFor.
func (s *Service) awaitMovedOn(unit string, undo bool, attempt int) {
	wait := s.LostFor
	if wait <= 0 {
		wait = 90 * time.Second
	}
	next := []string{}
	if s.Marks != "" {
		next = append(next, s.markPath(unit, undo, attempt+1))
		if !undo {
			next = append(next, s.markPath(unit, true, 1))
		}
	}
	end := time.Now().Add(wait)
	for time.Now().Before(end) {
		for _, p := range next {
			if _, err := os.Stat(p); err == nil {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// reply is how the service answers a delivery.
type reply int

const (
	replyOK     reply = iota // the effect's result (done now or before)
	replyFail                // a retryable error
	replyRefuse              // a non-retryable error
	replyNone                // no answer for this attempt (lost)
	replyDie                 // the instance dies before answering
)

// respond is the chaos service's behaviour: the answer to a delivery with
// this fault when its key has an effect already (known) or not. OK, Lost
// and Crash do the effect when the key has none; an idempotent service
// answers a known key with what it did, whatever else happens to the
// attempt — except a lost attempt, which never answers.
func respond(f Fault, known bool) reply {
	switch f {
	case Lost:
		return replyNone
	case Fail, Refuse, Crash:
		if known {
			return replyOK
		}
		switch f {
		case Fail:
			return replyFail
		case Refuse:
			return replyRefuse
		}
		return replyDie
	}
	return replyOK
}

func (s *Service) die() {
	if s.Die != nil {
		s.Die()
		return
	}
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // SIGKILL is not delivered synchronously
}

func (s *Service) record(c Call) {
	if s.Calls == nil {
		return
	}
	c.At = time.Now().UTC()
	b, _ := json.Marshal(c)
	s.callMu.Lock()
	defer s.callMu.Unlock()
	_, _ = s.Calls.Write(append(b, '\n')) // one write: O_APPEND keeps lines whole
}

// output is the answer of an effect: a reference derived from the key.
func output(job *worker.Job) json.RawMessage {
	h := fnv.New32a()
	_, _ = h.Write([]byte(job.IdempotencyKey))
	if job.Compensation {
		return json.RawMessage(fmt.Sprintf(`{"undone":%q}`, fmt.Sprintf("%08x", h.Sum32())))
	}
	return json.RawMessage(fmt.Sprintf(`{"ref":%q}`, fmt.Sprintf("%s-%08x", job.Command.Command, h.Sum32())))
}
