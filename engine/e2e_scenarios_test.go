package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/worker"
	"github.com/pulsaga/pulsaga/workflow"
)

// run is one execution of a command by a handler of a scenario.
type run struct {
	command string
	input   json.RawMessage
	failed  bool
}

// runLog records every command a scenario's handlers ran, failed or not.
type runLog struct {
	mu   sync.Mutex
	runs []run
}

// handler runs fn (nil: succeed with out) and records the run.
func (l *runLog) handler(out any, fn func(j *worker.Job) error) worker.Handler {
	return func(ctx context.Context, j *worker.Job) (any, error) {
		var err error
		if fn != nil {
			err = fn(j)
		}
		l.mu.Lock()
		l.runs = append(l.runs, run{command: j.Command.Command, input: append(json.RawMessage(nil), j.Input...), failed: err != nil})
		l.mu.Unlock()
		if err != nil {
			return nil, err
		}
		return out, nil
	}
}

// succeeded lists the commands that succeeded; failed those that failed.
func (l *runLog) succeeded() []string { return l.names(false) }
func (l *runLog) failed() []string    { return l.names(true) }

func (l *runLog) names(failed bool) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.runs {
		if r.failed == failed {
			out = append(out, r.command)
		}
	}
	return out
}

func (l *runLog) inputsOf(command string) []json.RawMessage {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []json.RawMessage
	for _, r := range l.runs {
		if r.command == command && !r.failed {
			out = append(out, r.input)
		}
	}
	return out
}

func registerScenario(ctx context.Context, t *testing.T, s *engine.Stack, file string) {
	t.Helper()
	src, err := os.ReadFile(repoFile(t, "engine/testdata/"+file))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Registry.Register(ctx, file, src); err != nil {
		t.Fatal(err)
	}
}

func checkSteps(t *testing.T, row engine.StatusRecord, want map[string]workflow.StepStatus) {
	t.Helper()
	got := map[string]string{}
	for id, st := range row.Steps {
		got[id] = st
	}
	for id, st := range want {
		if got[id] != string(st) {
			t.Errorf("step %s is %q, want %q (all steps %v)", id, got[id], st, row.Steps)
		}
		delete(got, id)
	}
	if len(got) > 0 {
		t.Errorf("unexpected steps %v", got)
	}
}

func scenarioPID(name string) string {
	return fmt.Sprintf("%s-%d", name, time.Now().UnixNano())
}

func moreScenarios(t *testing.T, newBus func(t *testing.T) bus.Bus, cfg engineCfg) {
	t.Run("compensation fails for good then an admin retries it", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		log := &runLog{}
		var hotelFixed atomic.Bool
		s := startStack(ctx, t, newBus(t), cfg, map[string]map[string]worker.Handler{
			"payments": {"ProcessPayment": log.handler(map[string]any{"payment_id": "P1"}, nil), "RefundPayment": log.handler(nil, nil)},
			"flights":  {"BookFlight": log.handler(map[string]any{"booking": "F1"}, nil), "CancelFlight": log.handler(nil, nil)},
			"hotels": {"BookHotel": log.handler(map[string]any{"booking": "H1"}, nil), "CancelHotel": log.handler(nil, func(*worker.Job) error {
				if hotelFixed.Load() {
					return nil
				}
				return errors.New("hotel system down")
			})},
			"notifications": {"NotifyCustomer": log.handler(nil, func(*worker.Job) error {
				return worker.NonRetryable("Refused", errors.New("no address"))
			})},
		})
		registerScenario(ctx, t, s, "scenario-compensation-retry.yaml")
		pid := scenarioPID("comp-retry")
		if err := s.Client.Start(ctx, protocol.StartRequest{ProcessID: pid, Definition: "scenario-compensation-retry", Input: json.RawMessage(`{"customer":"ann"}`)}); err != nil {
			t.Fatal(err)
		}
		row := waitTerminal(ctx, t, s, pid)
		if row.Status != workflow.StatusCompensationFailed {
			t.Fatalf("status %s, want compensation_failed (steps %v, last error %q)", row.Status, row.Steps, row.LastError)
		}
		checkSteps(t, row, map[string]workflow.StepStatus{
			"payment": workflow.StepCompleted, // refunded only after the hotel is cancelled
			"flight":  workflow.StepCompensated,
			"hotel":   workflow.StepCompensationFailed,
			"notify":  workflow.StepFailed,
		})
		if got, want := log.failed(), []string{"NotifyCustomer", "CancelHotel", "CancelHotel"}; !sameSet(got, want) {
			t.Errorf("failed runs %v, want %v", got, want)
		}
		if got, want := log.succeeded(), []string{"ProcessPayment", "BookFlight", "BookHotel", "CancelFlight"}; !sameSet(got, want) {
			t.Errorf("succeeded runs before the admin retry %v, want %v", got, want)
		}
		hotelFixed.Store(true)
		if err := s.Client.Admin(ctx, protocol.AdminRequest{ProcessID: pid, Action: "retry", StepID: "hotel", Actor: "ops:alice", Reason: "hotel system back"}, ""); err != nil {
			t.Fatal(err)
		}
		row = waitFinal(ctx, t, s, pid)
		if row.Status != workflow.StatusCompensated {
			t.Fatalf("after the retry: status %s, want compensated (steps %v, last error %q)", row.Status, row.Steps, row.LastError)
		}
		checkSteps(t, row, map[string]workflow.StepStatus{
			"payment": workflow.StepCompensated,
			"flight":  workflow.StepCompensated,
			"hotel":   workflow.StepCompensated,
			"notify":  workflow.StepFailed,
		})
		got := log.succeeded()
		if want := []string{"ProcessPayment", "BookFlight", "BookHotel", "CancelFlight", "CancelHotel", "RefundPayment"}; !sameSet(got, want) {
			t.Errorf("succeeded runs %v, want %v (each completed step compensated once)", got, want)
		}
		if len(got) > 0 && got[len(got)-1] != "RefundPayment" {
			t.Errorf("the payment was refunded before the hotel was cancelled: %v", got)
		}
		if got, want := log.failed(), []string{"NotifyCustomer", "CancelHotel", "CancelHotel"}; !sameSet(got, want) {
			t.Errorf("failed runs %v, want %v", got, want)
		}
	})

	t.Run("pause then skip with an output", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		log := &runLog{}
		s := startStack(ctx, t, newBus(t), cfg, map[string]map[string]worker.Handler{
			"etl": {
				"Extract": log.handler(map[string]any{"rows": 3}, nil),
				"Transform": log.handler(nil, func(*worker.Job) error {
					return worker.NonRetryable("BadData", errors.New("column missing"))
				}),
				"Load": log.handler(map[string]any{"loaded": true}, nil),
			},
		})
		registerScenario(ctx, t, s, "scenario-pause-skip.yaml")
		pid := scenarioPID("pause-skip")
		if err := s.Client.Start(ctx, protocol.StartRequest{ProcessID: pid, Definition: "scenario-pause-skip", Input: json.RawMessage(`{}`)}); err != nil {
			t.Fatal(err)
		}
		row := waitTerminal(ctx, t, s, pid)
		if row.Status != workflow.StatusPaused {
			t.Fatalf("status %s, want paused (steps %v, last error %q)", row.Status, row.Steps, row.LastError)
		}
		checkSteps(t, row, map[string]workflow.StepStatus{"extract": workflow.StepCompleted, "transform": workflow.StepFailed, "load": workflow.StepPending})
		if got := log.failed(); !sameSet(got, []string{"Transform"}) {
			t.Errorf("failed runs %v, want one Transform (non-retryable)", got)
		}
		if got := log.succeeded(); !sameSet(got, []string{"Extract"}) {
			t.Errorf("succeeded runs while paused %v, want [Extract]", got)
		}
		if err := s.Client.Admin(ctx, protocol.AdminRequest{ProcessID: pid, Action: "skip", StepID: "transform", Output: json.RawMessage(`{"rows":7,"by":"hand"}`), Actor: "ops:bob", Reason: "fixed by hand"}, ""); err != nil {
			t.Fatal(err)
		}
		row = waitFinal(ctx, t, s, pid)
		if row.Status != workflow.StatusCompleted {
			t.Fatalf("after the skip: status %s, want completed (steps %v, last error %q)", row.Status, row.Steps, row.LastError)
		}
		checkSteps(t, row, map[string]workflow.StepStatus{"extract": workflow.StepCompleted, "transform": workflow.StepSkipped, "load": workflow.StepCompleted})
		if got := log.succeeded(); !sameSet(got, []string{"Extract", "Load"}) {
			t.Errorf("succeeded runs %v, want [Extract Load]", got)
		}
		inputs := log.inputsOf("Load")
		if len(inputs) != 1 {
			t.Fatalf("Load ran %d times", len(inputs))
		}
		var in struct {
			Data map[string]any `json:"data"`
		}
		if err := json.Unmarshal(inputs[0], &in); err != nil {
			t.Fatalf("Load input %s: %v", inputs[0], err)
		}
		if in.Data["rows"] != float64(7) || in.Data["by"] != "hand" || len(in.Data) != 2 {
			t.Errorf("Load input %s, want the skip output as data", inputs[0])
		}
	})

	t.Run("for_each with one item failing for good", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		log := &runLog{}
		var inFlight, maxInFlight atomic.Int32
		reserve := func(j *worker.Job) error {
			n := inFlight.Add(1)
			defer inFlight.Add(-1)
			for {
				m := maxInFlight.Load()
				if n <= m || maxInFlight.CompareAndSwap(m, n) {
					break
				}
			}
			time.Sleep(150 * time.Millisecond)
			var in struct{ SKU string }
			_ = json.Unmarshal(j.Input, &in)
			if in.SKU == "bad" {
				return worker.NonRetryable("OutOfStock", errors.New("none left"))
			}
			return nil
		}
		s := startStack(ctx, t, newBus(t), cfg, map[string]map[string]worker.Handler{
			"inventory": {
				"ReserveStock": func(ctx context.Context, j *worker.Job) (any, error) {
					var in struct{ SKU string }
					_ = json.Unmarshal(j.Input, &in)
					return log.handler(map[string]any{"reservation_id": "R-" + in.SKU}, reserve)(ctx, j)
				},
				"ReleaseStock": log.handler(nil, nil),
			},
			"payments": {"Charge": log.handler(map[string]any{"charge_id": "C1"}, nil)},
		})
		registerScenario(ctx, t, s, "scenario-for-each.yaml")
		pid := scenarioPID("for-each")
		// Two at a time: a and b first; c is sent when one of them completes,
		// bad when the other does, so c is always sent before bad fails.
		if err := s.Client.Start(ctx, protocol.StartRequest{ProcessID: pid, Definition: "scenario-for-each", Input: json.RawMessage(`{"lines":[{"sku":"a"},{"sku":"b"},{"sku":"c"},{"sku":"bad"}]}`)}); err != nil {
			t.Fatal(err)
		}
		row := waitFinal(ctx, t, s, pid)
		if row.Status != workflow.StatusCompensated {
			t.Fatalf("status %s, want compensated (steps %v, last error %q)", row.Status, row.Steps, row.LastError)
		}
		checkSteps(t, row, map[string]workflow.StepStatus{"reserve": workflow.StepCompensated, "charge": workflow.StepPending})
		if got, want := log.succeeded(), []string{"ReserveStock", "ReserveStock", "ReserveStock", "ReleaseStock", "ReleaseStock", "ReleaseStock"}; !sameSet(got, want) {
			t.Errorf("succeeded runs %v, want %v", got, want)
		}
		if got := log.failed(); !sameSet(got, []string{"ReserveStock"}) {
			t.Errorf("failed runs %v, want one ReserveStock (OutOfStock is not retried)", got)
		}
		skus := func(command string) []string {
			var out []string
			for _, in := range log.inputsOf(command) {
				var v struct {
					SKU           string `json:"sku"`
					ReservationID string `json:"reservation_id"`
				}
				_ = json.Unmarshal(in, &v)
				out = append(out, v.SKU+"/"+v.ReservationID)
			}
			return out
		}
		if got, want := skus("ReserveStock"), []string{"a/", "b/", "c/"}; !sameSet(got, want) {
			t.Errorf("items reserved %v, want %v", got, want)
		}
		if got, want := skus("ReleaseStock"), []string{"a/R-a", "b/R-b", "c/R-c"}; !sameSet(got, want) {
			t.Errorf("items released %v, want %v (each completed item once)", got, want)
		}
		if m := maxInFlight.Load(); m > 2 {
			t.Errorf("%d items in flight at once, max_parallel is 2", m)
		}
	})

	t.Run("signal wait times out", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		log := &runLog{}
		s := startStack(ctx, t, newBus(t), cfg, map[string]map[string]worker.Handler{
			"orders": {"Prepare": log.handler(map[string]any{"id": "O1"}, nil), "Unprepare": log.handler(nil, nil), "Finish": log.handler(nil, nil)},
		})
		registerScenario(ctx, t, s, "scenario-wait-timeout.yaml")
		pid := scenarioPID("wait-timeout")
		t0 := time.Now()
		if err := s.Client.Start(ctx, protocol.StartRequest{ProcessID: pid, Definition: "scenario-wait-timeout", Input: json.RawMessage(`{}`)}); err != nil {
			t.Fatal(err)
		}
		waitStep(ctx, t, s, pid, "approval", string(workflow.StepWaiting))
		row := waitFinal(ctx, t, s, pid)
		if row.Status != workflow.StatusCompensated {
			t.Fatalf("status %s, want compensated (steps %v, last error %q)", row.Status, row.Steps, row.LastError)
		}
		if el := time.Since(t0); el < time.Second {
			t.Errorf("the wait ended after %s, before its 1s timeout", el)
		}
		checkSteps(t, row, map[string]workflow.StepStatus{"prepare": workflow.StepCompensated, "approval": workflow.StepFailed, "finish": workflow.StepPending})
		if !strings.Contains(row.LastError, "SignalTimeout") {
			t.Errorf("last error %q, want a SignalTimeout", row.LastError)
		}
		if got := log.succeeded(); !sameSet(got, []string{"Prepare", "Unprepare"}) {
			t.Errorf("succeeded runs %v, want [Prepare Unprepare]", got)
		}
		if got := log.failed(); len(got) != 0 {
			t.Errorf("failed runs %v", got)
		}
	})
}

// waitFinal waits for a terminal status (waitTerminal also returns at
// paused and compensation_failed, which these scenarios pass through).
func waitFinal(ctx context.Context, t *testing.T, s *engine.Stack, pid string) engine.StatusRecord {
	t.Helper()
	var last engine.StatusRecord
	for ctx.Err() == nil {
		if err := s.Status.Refresh(ctx); err != nil {
			if ctx.Err() != nil {
				break // gave up waiting: show the process below
			}
			t.Fatal(err)
		}
		if row, ok := s.Status.Get(pid); ok {
			last = row
			if row.Status.Terminal() {
				return row
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	dumpProcess(t, s, pid)
	t.Fatalf("%s did not end: last status row %+v", pid, last)
	return last
}

func TestMoreScenariosMemory(t *testing.T) {
	inModes(t, protocol.DefaultTopics(), func(t *testing.T, cfg engineCfg) { moreScenarios(t, memoryBuses(t), cfg) })
}

func TestMoreScenariosPulsar(t *testing.T) {
	t.Parallel()
	topics := protocol.DefaultTopics()
	topics.Partitions = 2
	inModes(t, topics, func(t *testing.T, cfg engineCfg) { moreScenarios(t, pulsarBuses(t), cfg) })
}
