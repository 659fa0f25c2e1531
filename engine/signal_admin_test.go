package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/memory"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/worker"
	"github.com/pulsaga/pulsaga/workflow"
)

func memoryBuses(t *testing.T) func(t *testing.T) bus.Bus {
	broker := memory.NewBroker()
	return func(t *testing.T) bus.Bus {
		b := memory.New(memory.Options{Broker: broker})
		t.Cleanup(func() { _ = b.Close() })
		return b
	}
}

// recorder is a set of handlers that record the commands they ran.
type recorder struct {
	mu   sync.Mutex
	runs []string
}

func (r *recorder) handler(out any) worker.Handler {
	return func(ctx context.Context, j *worker.Job) (any, error) {
		r.mu.Lock()
		r.runs = append(r.runs, j.Command.Command)
		r.mu.Unlock()
		return out, nil
	}
}

func (r *recorder) ran() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.runs...)
}

// engineCfg is what the end-to-end tests vary: the topics and the decider
// mode (every end-to-end test runs in both).
type engineCfg struct {
	topics  protocol.Topics
	decider string
	// answerWait: OrchestratorOptions.AnswerWait (0: its default).
	answerWait time.Duration
}

// deciderModes are the decider modes the end-to-end tests run in.
var deciderModes = []string{engine.DeciderInline, engine.DeciderRemote}

// inModes runs f once per decider mode, as subtests.
func inModes(t *testing.T, topics protocol.Topics, f func(t *testing.T, cfg engineCfg)) {
	for _, mode := range deciderModes {
		t.Run(mode, func(t *testing.T) { f(t, engineCfg{topics: topics, decider: mode}) })
	}
}

func startStack(ctx context.Context, t *testing.T, b bus.Bus, cfg engineCfg, services map[string]map[string]worker.Handler, files ...string) *engine.Stack {
	t.Helper()
	s, err := engine.StartStack(ctx, b, engine.StackOptions{Topics: cfg.topics, Decider: cfg.decider, AnswerWait: cfg.answerWait, Services: services}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	stackBuses.Store(s, stackOf{b, cfg.topics.WithDefaults()})
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stack: %v", err)
		}
	})
	for _, f := range files {
		src, err := os.ReadFile(repoFile(t, "testdata/"+f))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Registry.Register(ctx, f, src); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// stackBuses remembers each test stack's bus and topics, so a test that
// times out waiting for a process can show its stream (dumpProcess).
var stackBuses sync.Map // *engine.Stack -> stackOf

type stackOf struct {
	b      bus.Bus
	topics protocol.Topics
}

// dumpProcess logs a process's records and state as its stream holds them
// (for a test that gave up waiting on it).
func dumpProcess(t *testing.T, s *engine.Stack, pid string) {
	t.Helper()
	v, ok := stackBuses.Load(s)
	row, found := s.Status.Get(pid)
	if !ok || !found {
		return
	}
	so := v.(stackOf)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	view, err := engine.ReadProcess(ctx, so.b, so.topics, s.Registry, row)
	if err != nil {
		t.Logf("%s: cannot read its stream: %v", pid, err)
		return
	}
	for _, r := range view.Records {
		b, _ := json.Marshal(r)
		t.Logf("%s record: %s", pid, b)
	}
	st, _ := json.Marshal(view.State)
	t.Logf("%s state: %s", pid, st)
}

func waitStep(ctx context.Context, t *testing.T, s *engine.Stack, pid, step, status string) {
	t.Helper()
	for ctx.Err() == nil {
		if err := s.Status.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		if row, ok := s.Status.Get(pid); ok && row.Steps[step] == status {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	row, _ := s.Status.Get(pid)
	dumpProcess(t, s, pid)
	t.Fatalf("%s: step %s never %s: %+v", pid, step, status, row)
}

func signalAndAdmin(t *testing.T, newBus func(t *testing.T) bus.Bus, cfg engineCfg) {
	topics := cfg.topics
	t.Run("signal delivered to a waiting step", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		rec := &recorder{}
		b := newBus(t)
		s := startStack(ctx, t, b, cfg, map[string]map[string]worker.Handler{
			"credit":        {"ScoreApplicant": rec.handler(map[string]any{"score": 610})},
			"loans":         {"ApproveLoan": rec.handler(map[string]any{"loan_id": "L1"})},
			"notifications": {"SendLetter": rec.handler(nil)},
		}, "loan-approval.yaml")
		pid := "loan-" + time.Now().Format("150405.000000")
		if err := s.Client.Start(ctx, protocol.StartRequest{ProcessID: pid, Definition: "loan-approval", Input: json.RawMessage(`{"applicant":"ann","amount":25000}`)}); err != nil {
			t.Fatal(err)
		}
		waitStep(ctx, t, s, pid, "review", string(workflow.StepWaiting))
		// A signal nobody waits for is ignored; the awaited one completes the wait.
		if err := s.Client.Signal(ctx, pid, "unrelated", "", json.RawMessage(`{}`)); err != nil {
			t.Fatal(err)
		}
		if err := s.Client.SignalAs(ctx, pid, "loan_decision", "decision-1", json.RawMessage(`{"approved":true,"officer":"bob"}`), "ops:bob", "reviewed the file"); err != nil {
			t.Fatal(err)
		}
		row := waitTerminal(ctx, t, s, pid)
		view, err := engine.ReadProcess(ctx, b, topics, s.Registry, row)
		if err != nil {
			t.Fatal(err)
		}
		recorded := false
		for _, r := range view.Records {
			if r.Event != nil && r.Event.Type == workflow.EventSignal && r.Event.Signal == "loan_decision" {
				recorded = r.Event.Actor == "ops:bob" && r.Event.Reason == "reviewed the file"
			}
		}
		if !recorded {
			t.Errorf("the signal is not recorded in the stream with who sent it and why: %+v", view.Records)
		}
		if row.Status != workflow.StatusCompleted || row.Steps["approve"] != string(workflow.StepCompleted) || row.Steps["auto_approve"] != string(workflow.StepSkipped) {
			t.Fatalf("after the signal: %+v", row)
		}
		if got := rec.ran(); !sameSet(got, []string{"ScoreApplicant", "ApproveLoan", "SendLetter"}) {
			t.Fatalf("commands run: %v", got)
		}
	})
	t.Run("start through the start topic, idempotent by id", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		rec := &recorder{}
		b := newBus(t)
		s := startStack(ctx, t, b, cfg, map[string]map[string]worker.Handler{
			"credit":        {"ScoreApplicant": rec.handler(map[string]any{"score": 800})},
			"loans":         {"ApproveLoan": rec.handler(nil)},
			"notifications": {"SendLetter": rec.handler(nil)},
		}, "loan-approval.yaml")
		p, err := b.Producer(ctx, bus.ProducerOptions{Topic: protocol.StartsTopic})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		pid := "loan-start-" + time.Now().Format("150405.000000")
		for i := 0; i < 2; i++ { // sent twice: one process
			env, _ := bus.NewEnvelope("start", fmt.Sprintf("ext-%d", i), pid, time.Now(), protocol.StartRequest{ProcessID: pid, Definition: "loan-approval", Input: json.RawMessage(`{"applicant":"ann","amount":500}`)})
			payload, _ := env.Encode()
			if _, err := p.Send(ctx, &bus.OutMessage{Key: pid, Payload: payload}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := p.Send(ctx, &bus.OutMessage{Key: "x", Payload: []byte("not a start")}); err != nil {
			t.Fatal(err)
		}
		row := waitTerminal(ctx, t, s, pid)
		if row.Status != workflow.StatusCompleted {
			t.Fatalf("%+v", row)
		}
		if got := rec.ran(); !sameSet(got, []string{"ScoreApplicant", "ApproveLoan", "SendLetter"}) {
			t.Fatalf("commands run: %v (a duplicate start must not run anything twice)", got)
		}
	})
	t.Run("admin cancel during the parallel bookings", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		rec := &recorder{}
		release := make(chan struct{})
		slow := func(ctx context.Context, j *worker.Job) (any, error) {
			select {
			case <-release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return rec.handler(map[string]any{"ok": true})(ctx, j)
		}
		s := startStack(ctx, t, newBus(t), cfg, map[string]map[string]worker.Handler{
			"payments":      {"ProcessPayment": rec.handler(map[string]any{"payment_id": "P1"}), "RefundPayment": rec.handler(nil)},
			"flights":       {"BookFlight": rec.handler(map[string]any{"booking": "F1"}), "CancelFlight": rec.handler(nil)},
			"hotels":        {"BookHotel": slow, "CancelHotel": rec.handler(nil)},
			"notifications": {"NotifyCustomer": rec.handler(nil)},
		}, "trip-booking.yaml")
		pid := "trip-cancel-" + time.Now().Format("150405.000000")
		if err := s.Client.Start(ctx, protocol.StartRequest{ProcessID: pid, Definition: "trip-booking", Input: json.RawMessage(`{"customer":"ann","amount":10}`)}); err != nil {
			t.Fatal(err)
		}
		waitStep(ctx, t, s, pid, "flight", string(workflow.StepCompleted))
		if err := s.Client.Admin(ctx, protocol.AdminRequest{ProcessID: pid, Action: "cancel", Actor: "ops:alice", Reason: "customer asked"}, "req-1"); err != nil {
			t.Fatal(err)
		}
		// The same request resent must not apply twice.
		if err := s.Client.Admin(ctx, protocol.AdminRequest{ProcessID: pid, Action: "cancel", Actor: "ops:alice", Reason: "customer asked"}, "req-1"); err != nil {
			t.Fatal(err)
		}
		for ctx.Err() == nil { // cancelled while the hotel booking is in flight
			if err := s.Status.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
			if row, _ := s.Status.Get(pid); row.Status == workflow.StatusCompensating {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if got := rec.ran(); !sameSet(got, []string{"ProcessPayment", "BookFlight"}) {
			t.Fatalf("compensation started before the step in flight finished: %v", got)
		}
		close(release) // the hotel booking in flight finishes, then everything is compensated
		row := waitTerminal(ctx, t, s, pid)
		if row.Status != workflow.StatusCompensated {
			t.Fatalf("after cancel: %+v", row)
		}
		want := []string{"ProcessPayment", "BookFlight", "BookHotel", "CancelFlight", "CancelHotel", "RefundPayment"}
		got := rec.ran()
		if !sameSet(got, want) {
			t.Fatalf("commands run: %v, want %v", got, want)
		}
		if got[len(got)-1] != "RefundPayment" {
			t.Fatalf("the payment was refunded before the bookings were cancelled: %v", got)
		}
		if n := s.Orchestrators[0].Drops()[engine.DropDuplicate]; n < 1 {
			t.Errorf("the resent cancel was not dropped as a duplicate: %v", s.Orchestrators[0].Drops())
		}
	})
}

func TestSignalAndAdminMemory(t *testing.T) {
	inModes(t, protocol.DefaultTopics(), func(t *testing.T, cfg engineCfg) { signalAndAdmin(t, memoryBuses(t), cfg) })
}

func TestSignalAndAdminPulsar(t *testing.T) {
	t.Parallel()
	topics := protocol.DefaultTopics()
	topics.Partitions = 2
	inModes(t, topics, func(t *testing.T, cfg engineCfg) { signalAndAdmin(t, pulsarBuses(t), cfg) })
}
