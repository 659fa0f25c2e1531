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

func TestDeciderFailedTransactionMemory(t *testing.T) {
	deciderFailedTransaction(t, memoryBuses(t))
}

func TestDeciderFailedTransactionPulsar(t *testing.T) {
	t.Parallel()
	deciderFailedTransaction(t, pulsarBuses(t))
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

// One batch mixing valid tasks, garbage and a task of an unknown
// definition: the garbage is dead-lettered with its reason, the unknown
// definition answered with an error, every valid task decided (at
// max(task.Now, clock)) with its commands sent — all the answers in one
// transaction.
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
	}
	var valids []valid
	for i := range 6 {
		v := valid{pid: fmt.Sprintf("batch-%s-%d", run, i), taskNow: clock.Add(-time.Hour), wantNow: clock}
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
		send(v.pid, taskPayload(t, task(v.pid, "trip-booking", v.taskNow)))
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

	// Everything is queued before the decider starts, and one batch can
	// hold it all: it must be one transaction.
	d := engine.NewDecider(b, engine.NewRegistry(b, topics.Definitions, nil), engine.DeciderOptions{
		Topics: topics, Concurrency: 1, MaxBatch: total, BatchWait: 10 * time.Second, Clock: func() time.Time { return clock },
	}, log)
	dctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Run(dctx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("decider: %v", err)
		}
	}()

	got := map[string]protocol.DecisionResult{}
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
		got[res.ProcessID] = res
		_ = results.Ack(ctx, m)
	}
	for _, v := range valids {
		res := got[v.pid]
		if res.Error != "" || res.Decision == nil {
			t.Errorf("%s: no decision: %+v", v.pid, res)
			continue
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
	commands := map[string]bool{}
	for len(commands) < len(valids) {
		m, err := jobs.Receive(ctx)
		if err != nil {
			t.Fatalf("commands: got %d of %d: %v", len(commands), len(valids), err)
		}
		commands[m.Key] = true
		_ = jobs.Ack(ctx, m)
	}
	for _, v := range valids {
		if !commands[v.pid] {
			t.Errorf("no command for %s", v.pid)
		}
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
	// The counters move once Commit has returned, which can be just after
	// the answers are visible.
	for d.Stats().Tasks < int64(len(valids)+1) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	st := d.Stats()
	want := engine.DeciderStats{Transactions: 1, Tasks: int64(len(valids) + 1), Decided: int64(len(valids)), Errors: 1, DeadLettered: int64(len(garbage))}
	if st != want {
		t.Errorf("stats %+v, want %+v", st, want)
	}
}

// txFailBus makes the transactions it begins fail at commit (the
// transaction is aborted) while fail is above zero, and counts the
// acknowledgements each failed transaction carried. Everything else goes
// to the bus it wraps.
type txFailBus struct {
	bus.Bus
	mu     sync.Mutex
	fail   int
	failed []*failingTx
}

type failingTx struct {
	bus.Tx
	mu   sync.Mutex
	acks int
}

var errInjected = errors.New("injected commit failure")

func (t *failingTx) Commit(ctx context.Context) error {
	if err := t.Tx.Abort(ctx); err != nil {
		return err
	}
	return fmt.Errorf("%w: %w", bus.ErrTxFailed, errInjected)
}

func unwrapTx(tx bus.Tx) bus.Tx {
	if f, ok := tx.(*failingTx); ok {
		return f.Tx
	}
	return tx
}

func (f *txFailBus) BeginTx(ctx context.Context, timeout time.Duration) (bus.Tx, error) {
	tx, err := f.Bus.BeginTx(ctx, timeout)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail <= 0 {
		return tx, nil
	}
	f.fail--
	ft := &failingTx{Tx: tx}
	f.failed = append(f.failed, ft)
	return ft, nil
}

func (f *txFailBus) Producer(ctx context.Context, opts bus.ProducerOptions) (bus.Producer, error) {
	p, err := f.Bus.Producer(ctx, opts)
	if err != nil {
		return nil, err
	}
	return unwrappingProducer{p}, nil
}

func (f *txFailBus) Subscribe(ctx context.Context, opts bus.SubscribeOptions) (bus.Consumer, error) {
	c, err := f.Bus.Subscribe(ctx, opts)
	if err != nil {
		return nil, err
	}
	return unwrappingConsumer{c}, nil
}

type unwrappingProducer struct{ bus.Producer }

func (p unwrappingProducer) Send(ctx context.Context, msg *bus.OutMessage) (bus.MessageID, error) {
	m := *msg
	m.Tx = unwrapTx(msg.Tx)
	return p.Producer.Send(ctx, &m)
}

func (p unwrappingProducer) SendAsync(ctx context.Context, msg *bus.OutMessage, done func(bus.MessageID, error)) {
	m := *msg
	m.Tx = unwrapTx(msg.Tx)
	p.Producer.SendAsync(ctx, &m, done)
}

type unwrappingConsumer struct{ bus.Consumer }

func (c unwrappingConsumer) AckTx(ctx context.Context, msg *bus.Message, tx bus.Tx) error {
	if f, ok := tx.(*failingTx); ok {
		f.mu.Lock()
		f.acks++
		f.mu.Unlock()
	}
	return c.Consumer.AckTx(ctx, msg, unwrapTx(tx))
}

// The first transaction of the decider fails at commit: every task of its
// batch comes again and is decided again, and in effect each task is
// decided once: the orchestrator accepts one result per task (no stale
// result to drop, one decision record per task) and every command runs
// once.
func deciderFailedTransaction(t *testing.T, newBus func(t *testing.T) bus.Bus) {
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
	// No decision is re-issued during the test: every result comes from
	// the batches under test.
	orch := engine.NewOrchestrator(b, reg, engine.OrchestratorOptions{Topics: topics, DecisionTimeout: 10 * time.Minute}, log)
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

	// The first tasks of every process wait in the queue before the
	// decider starts, so its first batch holds them all.
	const n = 5
	pids := make([]string, n)
	for i := range pids {
		pids[i] = fmt.Sprintf("txfail-%d-%d", time.Now().UnixNano(), i)
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
	for len(rows()) < n {
		if ctx.Err() != nil {
			t.Fatalf("processes not started: %v", rows())
		}
		time.Sleep(20 * time.Millisecond)
	}
	fb := &txFailBus{Bus: b, fail: 1}
	d := engine.NewDecider(fb, engine.NewRegistry(b, topics.Definitions, nil), engine.DeciderOptions{
		Topics: topics, Concurrency: 1, MaxBatch: n, BatchWait: 3 * time.Second,
	}, log)
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
	failed := fb.failed
	fb.mu.Unlock()
	if len(failed) != 1 || failed[0].acks != n {
		acks := -1
		if len(failed) > 0 {
			acks = failed[0].acks
		}
		t.Fatalf("%d failed transactions (first with %d tasks), want 1 with all %d first tasks", len(failed), acks, n)
	}
	if st := d.Stats(); st.FailedTransactions != 1 {
		t.Errorf("stats %+v, want 1 failed transaction", st)
	}
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
	}
	if drops := orch.Drops(); drops[engine.DropStaleDecision] != 0 {
		t.Errorf("the orchestrator dropped %d stale decision results, want none: %v", drops[engine.DropStaleDecision], drops)
	}
}
