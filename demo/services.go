// Package demo holds the services of the trip-booking example (payments,
// flights, hotels, notifications) with failure injection, used by
// `pulsaga dev`, `make demo`, cmd/worker and the end-to-end tests.
package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/pulsaga/pulsaga/worker"
)

// Faults inject failures into the demo services.
type Faults struct {
	// Probability is the chance that an attempt of a forward command fails
	// with a retryable error (0..1), before doing any work. Whether an
	// attempt fails is a hash of its command id (process, step, item,
	// attempt) and Seed, so a test can tell every outcome in advance
	// (FailsRandomly) and a redelivered attempt fails alike.
	Probability float64
	// Command, when set, fails every attempt of that command for good
	// (a non-retryable error).
	Command string
	// Latency is added to every attempt.
	Latency time.Duration
	// Seed makes the random failures repeatable.
	Seed uint64
	// Log, when set, receives one JSON line per attempt run (see Call).
	Log io.Writer
	// Store keeps the work done per idempotency key (default: a
	// MemoryStore of the services made by one Trip call). Workers in
	// several processes share a DirStore.
	Store Store
}

// FailsRandomly says whether the attempt with this command id
// ("<process>/<step>[<item>]/<attempt>") fails under the random failures of
// f.
func (f Faults) FailsRandomly(commandID string) bool {
	if f.Probability <= 0 {
		return false
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "%d/%s", f.Seed, commandID)
	// FNV leaves keys that differ in their last byte close together:
	// finish with splitmix64 so consecutive attempts fail independently.
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return float64(x>>11)/float64(1<<53) < f.Probability
}

// Directives in a process id steer one saga, for demos and tests:
// "…-fail-<Command>…" fails that command for good, "…-flaky-<Command>…"
// fails its first attempt with a retryable error, "…-slow-<Command>…" makes
// every attempt of it outlast its timeout.
func directive(pid, kind, command string) bool {
	return strings.Contains(pid, "-"+kind+"-"+command)
}

// Calls records every command a demo service ran, so tests can check what
// was executed, and that the work of each idempotency key was done once
// (Call.Effect).
type Calls struct {
	mu    sync.Mutex
	byKey map[string]int
	list  []Call
}

// Call is one command run.
type Call struct {
	ProcessID      string `json:"process_id"`
	Step           string `json:"step"`
	Command        string `json:"command"`
	CommandID      string `json:"command_id"`
	IdempotencyKey string `json:"idempotency_key"`
	Attempt        int    `json:"attempt"`
	Compensation   bool   `json:"compensation,omitempty"`
	Failed         bool   `json:"failed,omitempty"`
	// Effect is true on the call that did the work of its idempotency key;
	// a later successful call with the same key (another attempt, a
	// redelivery) answered with that work's output and did nothing.
	Effect bool `json:"effect,omitempty"`
	// Compensates and OutcomeUnknown are the compensation's fields.
	Compensates    string `json:"compensates,omitempty"`
	OutcomeUnknown bool   `json:"outcome_unknown,omitempty"`
}

// NewCalls creates an empty record.
func NewCalls() *Calls { return &Calls{byKey: map[string]int{}} }

func (c *Calls) add(call Call) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byKey[call.IdempotencyKey]++
	c.list = append(c.list, call)
}

// Of returns the calls of one process in order.
func (c *Calls) Of(pid string) []Call {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Call
	for _, call := range c.list {
		if call.ProcessID == pid {
			out = append(out, call)
		}
	}
	return out
}

// All returns every call.
func (c *Calls) All() []Call {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Call(nil), c.list...)
}

// Services maps service → command → handler.
type Services map[string]map[string]worker.Handler

// Trip returns the four services of the trip saga. calls may be nil. Each
// service does its work once per idempotency key (Faults.Store).
func Trip(f Faults, calls *Calls) Services {
	if f.Store == nil {
		f.Store = NewMemoryStore()
	}
	var mu sync.Mutex
	flaky := map[string]bool{}
	var logMu sync.Mutex
	record := func(call Call) {
		if calls != nil {
			calls.add(call)
		}
		if f.Log != nil {
			b, _ := json.Marshal(call)
			logMu.Lock()
			_, _ = f.Log.Write(append(b, '\n'))
			logMu.Unlock()
		}
	}
	h := func(command string, output func(j *worker.Job) any) worker.Handler {
		return func(ctx context.Context, j *worker.Job) (any, error) {
			call := Call{ProcessID: j.ProcessID, Step: j.Step, Command: command, CommandID: j.CommandID, IdempotencyKey: j.IdempotencyKey,
				Attempt: j.Attempt, Compensation: j.Compensation, Compensates: j.Compensates, OutcomeUnknown: j.OutcomeUnknown}
			fail := func(err error) (any, error) {
				call.Failed = true
				record(call)
				return nil, err
			}
			if f.Latency > 0 {
				select {
				case <-time.After(f.Latency):
				case <-ctx.Done():
					return fail(ctx.Err())
				}
			}
			if directive(j.ProcessID, "slow", command) {
				// Outlast the attempt's deadline: the engine times the attempt out.
				<-ctx.Done()
				return fail(ctx.Err())
			}
			if f.Command == command || directive(j.ProcessID, "fail", command) {
				return fail(worker.NonRetryable(refusal(command), fmt.Errorf("%s refused for %s", command, j.ProcessID)))
			}
			mu.Lock()
			firstFlaky := directive(j.ProcessID, "flaky", command) && !flaky[j.ProcessID+command]
			if firstFlaky {
				flaky[j.ProcessID+command] = true
			}
			mu.Unlock()
			random := !j.Compensation && f.FailsRandomly(j.CommandID)
			if firstFlaky || random {
				return fail(worker.Retryable("Unavailable", errors.New(command+": service temporarily unavailable")))
			}
			// The work, once per key: a second call answers as the first.
			out, err := json.Marshal(output(j))
			if err != nil {
				return fail(err)
			}
			stored, first, err := f.Store.Claim(j.IdempotencyKey, out)
			if err != nil {
				return fail(worker.Retryable("StoreUnavailable", err))
			}
			call.Effect = first
			record(call)
			return json.RawMessage(stored), nil
		}
	}
	ref := func(prefix string) func(j *worker.Job) any {
		return func(j *worker.Job) any {
			x := fnv.New32a()
			_, _ = x.Write([]byte(j.ProcessID))
			return map[string]any{prefix + "_id": fmt.Sprintf("%s-%08x", strings.ToUpper(prefix[:2]), x.Sum32())}
		}
	}
	ok := func(j *worker.Job) any { return map[string]any{"ok": true} }
	return Services{
		"payments": {
			"ProcessPayment": h("ProcessPayment", ref("payment")),
			"RefundPayment":  h("RefundPayment", ok),
		},
		"flights": {
			"BookFlight":   h("BookFlight", ref("booking")),
			"CancelFlight": h("CancelFlight", ok),
		},
		"hotels": {
			"BookHotel":   h("BookHotel", ref("reservation")),
			"CancelHotel": h("CancelHotel", ok),
		},
		"notifications": {
			"NotifyCustomer": h("NotifyCustomer", ok),
		},
	}
}

func refusal(command string) string {
	switch command {
	case "BookFlight":
		return "NoSeats"
	case "BookHotel":
		return "NoRooms"
	case "ProcessPayment":
		return "CardDeclined"
	}
	return "Refused"
}
