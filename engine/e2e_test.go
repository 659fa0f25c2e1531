package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/memory"
	"github.com/pulsaga/pulsaga/demo"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/internal/testlog"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/workflow"
)

func repoFile(t testing.TB, rel string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", rel)
}

// testLogger logs warnings (everything with PULSAGA_TEST_LOG=1) to the
// test's log while it runs and to stderr after it: clients log from their
// own goroutines while they close.
func testLogger(t testing.TB) zerolog.Logger { return testlog.New(t, zerolog.WarnLevel) }

// tripScenario is one trip saga run: its process id carries the directives
// the demo services obey (see package demo).
type tripScenario struct {
	name         string
	pid          string
	version      int // of trip-booking; 2 has 1s attempt timeouts
	want         workflow.Status
	commands     []string // the forward commands that must have succeeded
	compensation []string // the compensations that must have run, in any order
	refundLast   bool     // RefundPayment after every other compensation
	action       func(ctx context.Context, t *testing.T, s *engine.Stack, pid string)
}

func tripScenarios() []tripScenario {
	all := []string{"ProcessPayment", "BookFlight", "BookHotel", "NotifyCustomer"}
	return []tripScenario{
		{name: "all succeed", pid: "ok", want: workflow.StatusCompleted, commands: all},
		{name: "transient failure then success", pid: "flaky-BookFlight", want: workflow.StatusCompleted, commands: all},
		{name: "payment fails for good", pid: "fail-ProcessPayment", want: workflow.StatusCompensated},
		{name: "flight fails for good", pid: "fail-BookFlight", want: workflow.StatusCompensated,
			commands: []string{"ProcessPayment", "BookHotel"}, compensation: []string{"CancelHotel", "RefundPayment"}, refundLast: true},
		{name: "hotel fails for good", pid: "fail-BookHotel", want: workflow.StatusCompensated,
			commands: []string{"ProcessPayment", "BookFlight"}, compensation: []string{"CancelFlight", "RefundPayment"}, refundLast: true},
		{name: "notify fails for good", pid: "fail-NotifyCustomer", want: workflow.StatusCompensated,
			commands: []string{"ProcessPayment", "BookFlight", "BookHotel"}, compensation: []string{"CancelFlight", "CancelHotel", "RefundPayment"}, refundLast: true},
		// Every hotel attempt outlasts its 1s timeout: after 3 attempts the
		// step fails; the flight and the payment are compensated, the hotel
		// is not. The demo handler returns when the attempt's deadline passes
		// and the worker reports that as a failure ("Timeout: context
		// deadline exceeded"), right after the attempt's `started` report (if
		// any) and in order with it, so it is decided before the engine's own
		// start-to-close timer (armed when that report is decided, for 1s
		// later) can fire: every attempt's outcome is known (failed), there is
		// nothing of the hotel to undo. An attempt the engine times out first
		// has an unknown outcome and IS compensated (docs/language.md "Unknown
		// outcomes and late results"; testdata/histories/trip-hotel-timeout).
		{name: "hotel times out", pid: "slow-BookHotel", version: 2, want: workflow.StatusCompensated,
			commands: []string{"ProcessPayment", "BookFlight"}, compensation: []string{"CancelFlight", "RefundPayment"}, refundLast: true},
	}
}

// runTripScenarios runs every scenario at once on one stack over newBus.
func runTripScenarios(t *testing.T, newBus func(t *testing.T) bus.Bus, cfg engineCfg) {
	topics := cfg.topics
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b := newBus(t)
	calls := demo.NewCalls()
	stack, err := engine.StartStack(ctx, b, engine.StackOptions{Topics: topics, Decider: cfg.decider, Services: demo.Trip(demo.Faults{}, calls)}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	stackBuses.Store(stack, stackOf{b, topics.WithDefaults()}) // waitTerminal dumps a stuck process's records
	defer func() {
		if err := stack.Stop(); err != nil {
			t.Errorf("stack: %v", err)
		}
	}()
	for _, f := range []string{"testdata/trip-booking.yaml", "engine/testdata/trip-booking-v2-short-timeouts.yaml"} {
		src, err := os.ReadFile(repoFile(t, f))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stack.Registry.Register(ctx, filepath.Base(f), src); err != nil {
			t.Fatal(err)
		}
	}
	suffix := fmt.Sprintf("%d", time.Now().UnixNano())
	scenarios := tripScenarios()
	for i := range scenarios {
		scenarios[i].pid = fmt.Sprintf("trip-%s-%s", suffix, scenarios[i].pid)
		input, _ := json.Marshal(map[string]any{"customer": "ann", "amount": 120})
		if err := stack.Client.Start(ctx, protocol.StartRequest{ProcessID: scenarios[i].pid, Definition: "trip-booking", Version: max(scenarios[i].version, 1), Input: input}); err != nil {
			t.Fatal(err)
		}
	}
	// A second start with the same id changes nothing.
	if err := stack.Client.Start(ctx, protocol.StartRequest{ProcessID: scenarios[0].pid, Definition: "trip-booking", Input: json.RawMessage(`{"customer":"bob","amount":1}`)}); err != nil {
		t.Fatal(err)
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			row := waitTerminal(ctx, t, stack, sc.pid)
			if row.Status != sc.want {
				t.Fatalf("status %s, want %s (steps %v, last error %q)", row.Status, sc.want, row.Steps, row.LastError)
			}
			var forward, comps []string
			for _, c := range calls.Of(sc.pid) {
				if c.Failed || !c.Effect {
					continue // a failure, or a key whose work was done already
				}
				if c.Compensation {
					comps = append(comps, c.Command)
				} else {
					forward = append(forward, c.Command)
				}
			}
			if !sameSet(forward, sc.commands) {
				t.Errorf("succeeded commands %v, want %v", forward, sc.commands)
			}
			if !sameSet(comps, sc.compensation) {
				t.Errorf("compensations %v, want %v", comps, sc.compensation)
			}
			if sc.refundLast && len(comps) > 0 && comps[len(comps)-1] != "RefundPayment" {
				t.Errorf("the payment was refunded before its dependents were compensated: %v", comps)
			}
			// The event stream of this process alone, replayed, gives its state.
			view, err := engine.ReadProcess(ctx, b, topics, stack.Registry, row)
			if err != nil {
				t.Fatalf("read process: %v", err)
			}
			for i, r := range view.Records {
				if r.Seq != int64(i+1) || r.ProcessID != sc.pid {
					t.Fatalf("record %d: seq %d of %s, want a dense stream of %s", i, r.Seq, r.ProcessID, sc.pid)
				}
			}
			if len(view.Records) < 3 || view.Records[0].Kind != engine.RecordEvent || view.Records[0].Event.Type != workflow.EventStart {
				t.Fatalf("stream does not start with the start event: %+v", view.Records)
			}
			if view.State == nil || view.State.Status != row.Status {
				t.Fatalf("replayed status %v, the status table says %s", view.State, row.Status)
			}
			for _, st := range view.State.Steps {
				if row.Steps[st.ID] != string(st.Status) {
					t.Errorf("step %s: replayed %s, status table %s", st.ID, st.Status, row.Steps[st.ID])
				}
			}
		})
	}
	if err := stack.Err(); err != nil {
		t.Fatal(err)
	}
}

// sameSet compares as multisets, so a duplicate execution fails the test.
func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// settled: a process waits for nobody but an operator, or has finished.
func settled(row engine.StatusRecord) bool {
	return row.Status.Terminal() || row.Status == workflow.StatusPaused || row.Status == workflow.StatusCompensationFailed
}

// waitAllTerminal waits until every process of pids has settled and
// returns their rows: one status table refresh per round for all of them
// (waitTerminal for each would refresh at least once per process).
func waitAllTerminal(ctx context.Context, t *testing.T, s *engine.Stack, pids []string) map[string]engine.StatusRecord {
	t.Helper()
	rows := make(map[string]engine.StatusRecord, len(pids))
	left := slices.Clone(pids)
	for len(left) > 0 && ctx.Err() == nil {
		if err := s.Status.Refresh(ctx); err != nil {
			if ctx.Err() != nil {
				break
			}
			t.Fatal(err)
		}
		rest := left[:0]
		for _, pid := range left {
			if row, ok := s.Status.Get(pid); ok && settled(row) {
				rows[pid] = row
			} else {
				rest = append(rest, pid)
			}
		}
		left = rest
		if len(left) > 0 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if len(left) > 0 {
		last, _ := s.Status.Get(left[0])
		dumpProcess(t, s, left[0])
		t.Fatalf("%d processes did not finish, the first %s: last status row %+v", len(left), left[0], last)
	}
	return rows
}

func waitTerminal(ctx context.Context, t *testing.T, s *engine.Stack, pid string) engine.StatusRecord {
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
			if settled(row) {
				return row
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	dumpProcess(t, s, pid)
	t.Fatalf("%s did not finish: last status row %+v", pid, last)
	return last
}

func TestTripScenariosMemory(t *testing.T) {
	inModes(t, protocol.DefaultTopics(), func(t *testing.T, cfg engineCfg) {
		broker := memory.NewBroker()
		runTripScenarios(t, func(t *testing.T) bus.Bus {
			b := memory.New(memory.Options{Broker: broker})
			t.Cleanup(func() { _ = b.Close() })
			return b
		}, cfg)
	})
}

func TestGarbageOnEventsIsDeadLettered(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := memory.New(memory.Options{})
	defer b.Close()
	stack, err := engine.StartStack(ctx, b, engine.StackOptions{}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer stack.Stop()
	p, err := b.Producer(ctx, bus.ProducerOptions{Topic: "events"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	bad := map[string]string{
		"not json":                 "garbage{",
		"newer envelope":           `{"v":99,"type":"result","id":"x","process_id":"p"}`,
		"unknown type":             `{"v":1,"type":"frobnicate","id":"y","process_id":"p","time":"2026-01-01T00:00:00Z"}`,
		"start unknown definition": `{"v":1,"type":"start","id":"z","process_id":"p","time":"2026-01-01T00:00:00Z","payload":{"process_id":"p","definition":"nope"}}`,
		"decision without task":    `{"v":1,"type":"decision.result","id":"d1","process_id":"p","time":"2026-01-01T00:00:00Z","payload":{"process_id":"p"}}`,
		// (base64 of "garbage": not zstd)
		"undecodable decision": `{"v":1,"type":"decision.result","id":"d2","process_id":"p","time":"2026-01-01T00:00:00Z","payload":{"task_id":"p/1","process_id":"p","decision_zstd":"Z2FyYmFnZQ=="}}`,
	}
	for name, payload := range bad {
		if _, err := p.Send(ctx, &bus.OutMessage{Key: "p", Payload: []byte(payload)}); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	dlq, err := b.Subscribe(ctx, bus.SubscribeOptions{Topic: "events-orchestrator-DLQ", Subscription: "test", Type: bus.Exclusive})
	if err != nil {
		t.Fatal(err)
	}
	defer dlq.Close()
	seen := map[string]bool{}
	for len(seen) < len(bad) {
		m, err := dlq.Receive(ctx)
		if err != nil {
			t.Fatalf("dead letters: got %d of %d: %v", len(seen), len(bad), err)
		}
		reason := m.Properties[bus.PropDLQReason]
		if reason == "" {
			t.Errorf("dead letter without a reason: %q", m.Payload)
		}
		for name, payload := range bad {
			if string(m.Payload) == payload {
				seen[name] = true
				t.Logf("%s → %s", name, reason)
			}
		}
		_ = dlq.Ack(ctx, m)
	}
	// An event for a process that does not exist is dropped and counted.
	res := `{"v":1,"type":"result","id":"r1","process_id":"ghost","time":"2026-01-01T00:00:00Z","payload":{"command_id":"ghost/payment/1","process_id":"ghost","step":"payment","attempt":1,"status":"completed"}}`
	if _, err := p.Send(ctx, &bus.OutMessage{Key: "ghost", Payload: []byte(res)}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for stack.Orchestrators[0].Drops()[engine.DropUnknownProcess] == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("result for an unknown process not counted: %v", stack.Orchestrators[0].Drops())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := stack.Err(); err != nil {
		t.Fatal(err)
	}
}
