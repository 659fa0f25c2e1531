package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/demo"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/timers"
	"github.com/pulsaga/pulsaga/worker"
	"github.com/pulsaga/pulsaga/workflow"
)

func TestDeciderBatchMemory(t *testing.T) { deciderBatch(t, memoryBuses(t)) }

func TestDeciderBatchPulsar(t *testing.T) {
	t.Parallel()
	deciderBatch(t, pulsarBuses(t))
}

func TestDeciderFailedAnswersMemory(t *testing.T) {
	deciderFaultyAnswers(t, memoryBuses(t), 5, 0)
}

func TestDeciderFailedAnswersPulsar(t *testing.T) {
	t.Parallel()
	deciderFaultyAnswers(t, pulsarBuses(t), 5, 0)
}

func TestDeciderDoubleAnswersMemory(t *testing.T) {
	deciderFaultyAnswers(t, memoryBuses(t), 0, 1000)
}

func TestDeciderDoubleAnswersPulsar(t *testing.T) {
	t.Parallel()
	deciderFaultyAnswers(t, pulsarBuses(t), 0, 1000)
}

// registerTrip registers testdata/trip-booking.yaml in a new registry.
func registerTrip(ctx context.Context, t *testing.T, b bus.Bus, topics protocol.Topics) *engine.Registry {
	t.Helper()
	if err := engine.EnsureTopics(ctx, b, topics); err != nil {
		t.Fatal(err)
	}
	reg := engine.NewRegistry(b, topics.Definitions, nil)
	t.Cleanup(func() { _ = reg.Close() })
	src, err := os.ReadFile(repoFile(t, "testdata/trip-booking.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Register(ctx, "trip-booking.yaml", src); err != nil {
		t.Fatal(err)
	}
	return reg
}

// runDecider runs d until the function it returns is called, which stops
// it and reports an error it returned.
func runDecider(ctx context.Context, t *testing.T, d *engine.Decider) (stop func()) {
	dctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Run(dctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("decider: %v", err)
		}
	}
}

func taskPayload(t *testing.T, task protocol.DecisionTask) []byte {
	t.Helper()
	env, err := bus.NewEnvelope(protocol.TypeDecisionTask, "task:"+task.TaskID+"#1", task.ProcessID, task.Now, task)
	if err != nil {
		t.Fatal(err)
	}
	p, err := env.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Valid tasks mixed with garbage and a task of an unknown definition: the
// garbage is dead-lettered with its reason, the unknown definition answered
// with an error, every valid task answered with its decision (made at
// max(task.Now, clock)), and the decider itself sends nothing else: the
// commands are the orchestrator's to send when it applies the answer.
func deciderBatch(t *testing.T, newBus func(t *testing.T) bus.Bus) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b := newBus(t)
	log := testLogger(t)
	topics := protocol.DefaultTopics()
	registerTrip(ctx, t, b, topics)
	if err := b.EnsureTopic(ctx, protocol.JobTopicSpec("payments")); err != nil {
		t.Fatal(err)
	}
	jobs, err := b.Subscribe(ctx, bus.SubscribeOptions{Topic: protocol.JobTopic("payments"), Subscription: "test", Type: bus.Exclusive})
	if err != nil {
		t.Fatal(err)
	}
	defer jobs.Close()
	results, err := b.Subscribe(ctx, bus.SubscribeOptions{Topic: topics.Events, Subscription: "test", Type: bus.Exclusive})
	if err != nil {
		t.Fatal(err)
	}
	defer results.Close()
	dlq, err := b.Subscribe(ctx, bus.SubscribeOptions{Topic: topics.Decisions + "-deciders-DLQ", Subscription: "test", Type: bus.Exclusive})
	if err != nil {
		t.Fatal(err)
	}
	defer dlq.Close()

	clock := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	run := fmt.Sprintf("%d", time.Now().UnixNano())
	type valid struct {
		pid     string
		taskNow time.Time
		wantNow time.Time
		// compact: the task says its sender reads compressed answers (an
		// orchestrator of today); the others are plain (an older one).
		compact bool
	}
	var valids []valid
	for i := range 6 {
		v := valid{pid: fmt.Sprintf("batch-%s-%d", run, i), taskNow: clock.Add(-time.Hour), wantNow: clock, compact: i >= 3}
		if i%2 == 1 { // issued "later" than the decider's clock: decided at its own now
			v.taskNow, v.wantNow = clock.Add(time.Hour), clock.Add(time.Hour)
		}
		valids = append(valids, v)
	}
	unknownPID := "batch-" + run + "-unknown"
	garbage := map[string]string{ // payload → words of the dead-letter reason
		"garbage{": "not a JSON envelope",
		`{"v":1,"type":"result","id":"r-` + run + `","process_id":"p","time":"2026-01-01T00:00:00Z"}`:                                  "unexpected message type",
		`{"v":1,"type":"decision.task","id":"t-` + run + `","process_id":"p","time":"2026-01-01T00:00:00Z","payload":{"task_id":"x"}}`: "needs task_id, process_id and reply_to",
	}
	p, err := b.Producer(ctx, bus.ProducerOptions{Topic: topics.Decisions})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	send := func(key string, payload []byte) {
		t.Helper()
		if _, err := p.Send(ctx, &bus.OutMessage{Key: key, Payload: payload}); err != nil {
			t.Fatal(err)
		}
	}
	task := func(pid, def string, now time.Time) protocol.DecisionTask {
		return protocol.DecisionTask{
			TaskID: pid + "/1", ProcessID: pid, Definition: def, Now: now, ReplyTo: topics.Events,
			Events: []workflow.Event{{V: workflow.EventVersion, Type: workflow.EventStart, ProcessID: pid, Input: json.RawMessage(`{"customer":"c","amount":1}`)}},
		}
	}
	total := 0
	for i, v := range valids {
		tk := task(v.pid, "trip-booking", v.taskNow)
		tk.AcceptZstd = v.compact
		send(v.pid, taskPayload(t, tk))
		total++
		if i == 2 {
			for g := range garbage {
				send("p", []byte(g))
				total++
			}
			send(unknownPID, taskPayload(t, task(unknownPID, "no-such-definition", clock)))
			total++
		}
	}

	d := engine.NewDecider(b, engine.NewRegistry(b, topics.Definitions, nil), engine.DeciderOptions{
		Topics: topics, Concurrency: 2, MaxBatch: total, Clock: func() time.Time { return clock },
	}, log)
	defer runDecider(ctx, t, d)()

	got := map[string]protocol.DecisionResult{}
	compressed := map[string]bool{}
	for len(got) < len(valids)+1 {
		m, err := results.Receive(ctx)
		if err != nil {
			t.Fatalf("results: got %d of %d: %v", len(got), len(valids)+1, err)
		}
		env, err := bus.DecodeEnvelope(m.Payload)
		if err != nil || env.Type != protocol.TypeDecisionResult {
			t.Fatalf("unexpected message on events: %q (%v)", m.Payload, err)
		}
		var res protocol.DecisionResult
		if err := env.DecodePayload(&res); err != nil {
			t.Fatal(err)
		}
		if _, dup := got[res.ProcessID]; dup {
			t.Errorf("%s answered twice", res.ProcessID)
		}
		compressed[res.ProcessID] = len(res.DecisionZstd) > 0
		if err := res.Expand(); err != nil {
			t.Fatal(err)
		}
		got[res.ProcessID] = res
		_ = results.Ack(ctx, m)
	}
	for _, v := range valids {
		res := got[v.pid]
		if res.Error != "" || res.Decision == nil {
			t.Errorf("%s: no decision: %+v", v.pid, res)
			continue
		}
		if compressed[v.pid] != v.compact {
			t.Errorf("%s: answer compressed %v, want %v (the task's AcceptZstd)", v.pid, compressed[v.pid], v.compact)
		}
		if !res.Now.Equal(v.wantNow) {
			t.Errorf("%s: decided at %s, want %s (task now %s, clock %s)", v.pid, res.Now, v.wantNow, v.taskNow, clock)
		}
		if len(res.Decision.Commands) != 1 || res.Decision.Commands[0].Command != "ProcessPayment" {
			t.Errorf("%s: commands %+v, want one ProcessPayment", v.pid, res.Decision.Commands)
		}
	}
	if res := got[unknownPID]; res.Decision != nil || !strings.Contains(res.Error, "unknown definition") {
		t.Errorf("unknown definition answered %+v, want an unknown definition error", res)
	}
	reasons := map[string]string{}
	for len(reasons) < len(garbage) {
		m, err := dlq.Receive(ctx)
		if err != nil {
			t.Fatalf("dead letters: got %d of %d: %v", len(reasons), len(garbage), err)
		}
		reasons[string(m.Payload)] = m.Properties[bus.PropDLQReason]
		_ = dlq.Ack(ctx, m)
	}
	for payload, want := range garbage {
		if !strings.Contains(reasons[payload], want) {
			t.Errorf("dead letter %q: reason %q, want it to say %q", payload, reasons[payload], want)
		}
	}
	// The counters move once an answer is confirmed, which can be just
	// after it is visible.
	for d.Stats().Tasks < int64(len(valids)+1) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	st := d.Stats()
	want := engine.DeciderStats{Tasks: int64(len(valids) + 1), Decided: int64(len(valids)), Errors: 1, DeadLettered: int64(len(garbage))}
	if st != want {
		t.Errorf("stats %+v, want %+v", st, want)
	}
	// Nothing reached the job queue: the answers above were all it sent.
	rctx, rcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer rcancel()
	if m, err := jobs.Receive(rctx); err == nil {
		t.Errorf("the decider sent %q to the job queue", m.Payload)
	}
}

// faultyAnswers wraps the decider's bus: the first fail answers it sends
// fail (the broker refused them), and the first twice answers after those
// are sent twice (as when a decider dies between answering and
// acknowledging and the task comes again).
type faultyAnswers struct {
	bus.Bus
	mu          sync.Mutex
	fail, twice int
	failed      int
	doubled     int
}

var errInjected = errors.New("injected send failure")

func (f *faultyAnswers) Producer(ctx context.Context, opts bus.ProducerOptions) (bus.Producer, error) {
	p, err := f.Bus.Producer(ctx, opts)
	if err != nil {
		return nil, err
	}
	return &faultyProducer{Producer: p, f: f}, nil
}

type faultyProducer struct {
	bus.Producer
	f *faultyAnswers
}

func (p *faultyProducer) SendAsync(ctx context.Context, msg *bus.OutMessage, done func(bus.MessageID, error)) {
	f := p.f
	f.mu.Lock()
	fail, twice := f.failed < f.fail, !(f.failed < f.fail) && f.doubled < f.twice
	if fail {
		f.failed++
	}
	if twice {
		f.doubled++
	}
	f.mu.Unlock()
	switch {
	case fail:
		done(nil, fmt.Errorf("%w: %w", bus.ErrUnavailable, errInjected))
	case twice:
		if _, err := p.Producer.Send(ctx, msg); err != nil {
			done(nil, err)
			return
		}
		p.Producer.SendAsync(ctx, msg, done)
	default:
		p.Producer.SendAsync(ctx, msg, done)
	}
}

// The remote mode under faulty answers: answers that fail to send give
// their tasks back (they come again and are answered), answers that arrive
// twice are applied once (the second is stale). Either way each task is
// decided once in effect: one decision record per task, every command run
// once, each trip completed.
func deciderFaultyAnswers(t *testing.T, newBus func(t *testing.T) bus.Bus, fail, twice int) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b := newBus(t)
	log := testLogger(t)
	topics := protocol.DefaultTopics()
	reg := registerTrip(ctx, t, b, topics)
	var wg sync.WaitGroup
	rctx, stop := context.WithCancel(ctx)
	defer func() {
		stop()
		wg.Wait()
	}()
	run := func(f func(context.Context) error) {
		wg.Go(func() { _ = f(rctx) })
	}
	// No decision is re-issued during the test: every answer comes from
	// the faults under test.
	orch := engine.NewOrchestrator(b, reg, engine.OrchestratorOptions{Topics: topics, Decider: engine.DeciderRemote, DecisionTimeout: 10 * time.Minute}, log)
	run(orch.Run)
	run(timers.NewRelay(b, timers.RelayOptions{}, log).Run)
	calls := demo.NewCalls()
	for svc, handlers := range demo.Trip(demo.Faults{}, calls) {
		w, err := worker.New(b, worker.Options{Service: svc, Name: "test-" + svc, Concurrency: 4}, log)
		if err != nil {
			t.Fatal(err)
		}
		for cmd, h := range handlers {
			w.Handle(cmd, h)
		}
		run(w.Run)
	}
	client := engine.NewClient(b, topics)
	defer client.Close()
	status := engine.NewStatusTable(b, topics.Status)
	defer status.Close()

	const n = 5
	pids := make([]string, n)
	for i := range pids {
		pids[i] = fmt.Sprintf("faulty-%d-%d", time.Now().UnixNano(), i)
		if err := client.Start(ctx, protocol.StartRequest{ProcessID: pids[i], Definition: "trip-booking", Input: json.RawMessage(`{"customer":"c","amount":1}`)}); err != nil {
			t.Fatal(err)
		}
	}
	rows := func() map[string]engine.StatusRecord {
		t.Helper()
		if err := status.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		out := map[string]engine.StatusRecord{}
		for _, pid := range pids {
			if r, ok := status.Get(pid); ok {
				out[pid] = r
			}
		}
		return out
	}
	fb := &faultyAnswers{Bus: b, fail: fail, twice: twice}
	d := engine.NewDecider(fb, engine.NewRegistry(b, topics.Definitions, nil), engine.DeciderOptions{Topics: topics, Concurrency: 2}, log)
	run(d.Run)

	for {
		all := rows()
		finished := 0
		for _, r := range all {
			if r.Status.Terminal() {
				finished++
			}
		}
		if finished == n {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("processes did not finish: %v", all)
		}
		time.Sleep(50 * time.Millisecond)
	}
	fb.mu.Lock()
	failed, doubled := fb.failed, fb.doubled
	fb.mu.Unlock()
	if failed != fail {
		t.Fatalf("%d answers failed, want %d", failed, fail)
	}
	if st := d.Stats(); st.Nacked < int64(fail) {
		t.Errorf("stats %+v, want at least %d tasks given back", st, fail)
	}
	decided := 0
	for pid, r := range rows() {
		if r.Status != workflow.StatusCompleted {
			t.Errorf("%s: %s, want completed", pid, r.Status)
			continue
		}
		perKey := map[string]int{}
		for _, c := range calls.Of(pid) {
			perKey[c.IdempotencyKey]++
		}
		if len(perKey) != 4 {
			t.Errorf("%s: commands run %v, want the 4 of the trip", pid, perKey)
		}
		for k, c := range perKey {
			if c != 1 {
				t.Errorf("%s: %s run %d times", pid, k, c)
			}
		}
		view, err := engine.ReadProcess(ctx, b, topics, reg, r)
		if err != nil {
			t.Fatal(err)
		}
		decisions := map[string]int{}
		for _, rec := range view.Records {
			if rec.Kind == engine.RecordDecision {
				decisions[rec.TaskID]++
			}
		}
		for task, c := range decisions {
			if c != 1 {
				t.Errorf("%s: task %s recorded %d times", pid, task, c)
			}
		}
		if len(decisions) == 0 {
			t.Errorf("%s: no decision recorded", pid)
		}
		decided += len(decisions)
	}
	// Every answer sent twice is applied once: the copy is stale. The copy
	// of a process's last answer may reach the orchestrator after the row
	// that shows the process finished: wait for it (bounded).
	for wait := time.Now().Add(30 * time.Second); orch.Drops()[engine.DropStaleDecision] < int64(doubled) && time.Now().Before(wait); {
		time.Sleep(20 * time.Millisecond)
	}
	if drops := orch.Drops(); drops[engine.DropStaleDecision] != int64(doubled) {
		t.Errorf("the orchestrator dropped %d stale decision results, want %d (answers sent twice): %v", drops[engine.DropStaleDecision], doubled, drops)
	}
	if twice > 0 && doubled != decided {
		t.Errorf("%d answers sent twice, want all %d", doubled, decided)
	}
}
