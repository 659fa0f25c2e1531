package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/memory"
	"github.com/pulsaga/pulsaga/demo"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/worker"
	"github.com/pulsaga/pulsaga/workflow"
)

// runComponent runs f until the returned stop is called (or the test ends)
// and reports its error.
func runComponent(ctx context.Context, t *testing.T, name string, f func(context.Context) error) (stop func()) {
	t.Helper()
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- f(cctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("%s: %v", name, err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// runWorkers serves the trip saga's services (no faults) on b.
func runWorkers(ctx context.Context, t *testing.T, b bus.Bus, log zerolog.Logger) {
	t.Helper()
	for svc, handlers := range demo.Trip(demo.Faults{}, nil) {
		w, err := worker.New(b, worker.Options{Service: svc, Name: "test-" + svc, Concurrency: 8}, log)
		if err != nil {
			t.Fatal(err)
		}
		for cmd, h := range handlers {
			w.Handle(cmd, h)
		}
		runComponent(ctx, t, "worker "+svc, w.Run)
	}
}

// tripRig is an engine assembled piece by piece, so a test can run
// orchestrators, deciders and workers on their own.
type tripRig struct {
	topics protocol.Topics
	reg    *engine.Registry
	client *engine.Client
	status *engine.StatusTable
	log    zerolog.Logger
}

func newTripRig(ctx context.Context, t *testing.T, b bus.Bus, topics protocol.Topics) *tripRig {
	t.Helper()
	log := testLogger(t)
	if err := engine.EnsureTopics(ctx, b, topics); err != nil {
		t.Fatal(err)
	}
	reg := engine.NewRegistry(b, topics.Definitions, nil)
	if _, err := reg.RegisterPath(ctx, repoFile(t, "testdata/trip-booking.yaml")); err != nil {
		t.Fatal(err)
	}
	r := &tripRig{topics: topics, reg: reg, client: engine.NewClient(b, topics), status: engine.NewStatusTable(b, topics.Status), log: log}
	t.Cleanup(func() {
		_ = r.client.Close()
		_ = r.status.Close()
		_ = r.reg.Close()
	})
	return r
}

func (r *tripRig) start(ctx context.Context, t *testing.T, pids []string) {
	t.Helper()
	for _, pid := range pids {
		if err := r.client.Start(ctx, protocol.StartRequest{ProcessID: pid, Definition: "trip-booking", Input: json.RawMessage(`{"customer":"c","amount":1}`)}); err != nil {
			t.Fatal(err)
		}
	}
}

// waitRows waits until every pid has a status row satisfying ok.
func (r *tripRig) waitRows(ctx context.Context, t *testing.T, pids []string, what string, ok func(engine.StatusRecord) bool) {
	t.Helper()
	for {
		if err := r.status.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		missing := ""
		for _, pid := range pids {
			if row, found := r.status.Get(pid); !found || !ok(row) {
				missing = fmt.Sprintf("%s (%+v)", pid, row)
				break
			}
		}
		if missing == "" {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("not every process is %s: %s", what, missing)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func completed(r engine.StatusRecord) bool { return r.Status == workflow.StatusCompleted }
func anyRow(engine.StatusRecord) bool      { return true }

// decisionTasks reads the decisions topic from the start to its end and
// returns the distinct task ids in it.
func decisionTasks(ctx context.Context, t *testing.T, b bus.Bus, topic string) map[string]bool {
	t.Helper()
	rd, err := b.Reader(ctx, bus.ReaderOptions{Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	ids := map[string]bool{}
	for {
		more, err := rd.HasNext(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !more {
			return ids
		}
		m, err := rd.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ids[taskID(t, m)] = true
	}
}

func taskID(t *testing.T, m *bus.Message) string {
	t.Helper()
	env, err := bus.DecodeEnvelope(m.Payload)
	if err != nil || env.Type != protocol.TypeDecisionTask {
		t.Fatalf("not a decision task on the decisions topic: %v %v", env, err)
	}
	var task protocol.DecisionTask
	if err := env.DecodePayload(&task); err != nil {
		t.Fatal(err)
	}
	return task.TaskID
}

// waitQueue waits until the orchestrator reports these slot counts.
func waitQueue(ctx context.Context, t *testing.T, o *engine.Orchestrator, outstanding, queued int) {
	t.Helper()
	for {
		out, q := o.DecisionQueue()
		if out == outstanding && q == queued {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("decisions outstanding/queued %d/%d, want %d/%d", out, q, outstanding, queued)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// queueObserver records the largest counts the orchestrator reported.
type queueObserver struct {
	engine.NopObserver
	mu                   sync.Mutex
	maxOut, maxQueued, n int
}

func (q *queueObserver) DecisionQueue(outstanding, queued int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.maxOut, q.maxQueued, q.n = max(q.maxOut, outstanding), max(q.maxQueued, queued), q.n+1
}

// TestBackpressureBoundsDecisionsInFlight: with MaxOutstanding 2, twenty
// processes started at once get two decision tasks; the others wait in the
// orchestrator (not on the decisions topic), and every one completes with
// never more than two tasks unanswered.
//
// The test stands between the orchestrator and the decider: it takes the
// tasks off the decisions topic and hands them on one at a time to a
// decider that reads another topic. A task it holds is unanswered, so it
// must never hold three; it hands one on only after a quiet moment, which
// gives an orchestrator that issues too many the time to show it.
func TestBackpressureBoundsDecisionsInFlight(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b := memory.New(memory.Options{})
	t.Cleanup(func() { _ = b.Close() }) // after the components (cleanups run last in, first out)
	topics := protocol.DefaultTopics()
	r := newTripRig(ctx, t, b, topics)
	obs := &queueObserver{}
	orch := engine.NewOrchestrator(b, r.reg, engine.OrchestratorOptions{
		Topics: topics, Decider: engine.DeciderRemote, MaxOutstanding: 2, DecisionTimeout: time.Hour, Observer: obs,
	}, r.log)
	runComponent(ctx, t, "orchestrator", orch.Run)

	const n = 20
	pids := make([]string, n)
	for i := range pids {
		pids[i] = fmt.Sprintf("bp-%02d", i)
	}
	r.start(ctx, t, pids)
	// Every start is applied (its status row is written in the batch that
	// applied it, with the tasks that batch issued): exactly two tasks.
	r.waitRows(ctx, t, pids, "started", anyRow)
	if got := decisionTasks(ctx, t, b, topics.Decisions); len(got) != 2 {
		t.Fatalf("%d decision tasks issued for %d new processes with MaxOutstanding 2: %v", len(got), n, got)
	}
	waitQueue(ctx, t, orch, 2, n-2)

	gated := topics
	gated.Decisions = "decisions-gated"
	if err := b.EnsureTopic(ctx, bus.TopicSpec{Name: gated.Decisions}); err != nil {
		t.Fatal(err)
	}
	runComponent(ctx, t, "decider", engine.NewDecider(b, engine.NewRegistry(b, topics.Definitions, nil), engine.DeciderOptions{Topics: gated}, r.log).Run)
	runWorkers(ctx, t, b, r.log)
	gate, err := b.Subscribe(ctx, bus.SubscribeOptions{Topic: topics.Decisions, Subscription: "deciders", Type: bus.Shared, ConsumerName: "gate"})
	if err != nil {
		t.Fatal(err)
	}
	defer gate.Close()
	fwd, err := b.Producer(ctx, bus.ProducerOptions{Topic: gated.Decisions})
	if err != nil {
		t.Fatal(err)
	}
	defer fwd.Close()

	var held []*bus.Message
	seen := map[string]bool{}
	forwarded := 0
	done := func() bool {
		if err := r.status.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		for _, pid := range pids {
			if row, ok := r.status.Get(pid); !ok || !row.Status.Terminal() {
				return false
			}
		}
		return true
	}
	for !done() {
		rctx, rcancel := context.WithTimeout(ctx, 50*time.Millisecond)
		m, err := gate.Receive(rctx)
		rcancel()
		if err == nil {
			id := taskID(t, m)
			if seen[id] {
				t.Fatalf("task %s issued twice (the decision timeout is an hour)", id)
			}
			seen[id] = true
			held = append(held, m)
			if len(held) > 2 {
				t.Fatalf("%d decision tasks unanswered at once with MaxOutstanding 2", len(held))
			}
			continue
		}
		if ctx.Err() != nil {
			t.Fatalf("not finished: %d tasks forwarded, %d held", forwarded, len(held))
		}
		if len(held) == 0 {
			continue
		}
		m = held[0]
		held = held[1:]
		if _, err := fwd.Send(ctx, &bus.OutMessage{Key: m.Key, Payload: m.Payload}); err != nil {
			t.Fatal(err)
		}
		if err := gate.Ack(ctx, m); err != nil {
			t.Fatal(err)
		}
		forwarded++
	}
	for _, pid := range pids {
		row, _ := r.status.Get(pid)
		if row.Status != workflow.StatusCompleted {
			t.Errorf("%s: %s, want completed", pid, row.Status)
		}
	}
	// A trip saga takes several decisions: the slots were given back.
	if forwarded < 3*n {
		t.Errorf("%d tasks went through for %d trip sagas", forwarded, n)
	}
	waitQueue(ctx, t, orch, 0, 0)
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.maxOut != 2 || obs.maxQueued != n-2 {
		t.Errorf("observer saw at most %d outstanding and %d queued, want 2 and %d", obs.maxOut, obs.maxQueued, n-2)
	}
}

// TestRestartWithQueuedProcesses: the queue of processes waiting for a
// decision slot is not stored anywhere but in their snapshots (pending
// events, no outstanding decision); an orchestrator that loads them issues
// their tasks without any new event for them.
func TestRestartWithQueuedProcesses(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	broker := memory.NewBroker()
	b1 := memory.New(memory.Options{Broker: broker})
	t.Cleanup(func() { _ = b1.Close() })
	// One partition: the counts below are exact. With several, a partition
	// loaded early may issue queued tasks before another brings in the
	// decisions that were outstanding in it, which then count above the
	// bound until they are answered.
	topics := protocol.DefaultTopics()
	topics.Partitions = 1
	r := newTripRig(ctx, t, b1, topics)
	first := engine.NewOrchestrator(b1, r.reg, engine.OrchestratorOptions{Topics: topics, Decider: engine.DeciderRemote, MaxOutstanding: 2, DecisionTimeout: time.Hour}, r.log)
	stopFirst := runComponent(ctx, t, "first orchestrator", first.Run)
	const n = 10
	pids := make([]string, n)
	for i := range pids {
		pids[i] = fmt.Sprintf("queued-%02d", i)
	}
	r.start(ctx, t, pids)
	r.waitRows(ctx, t, pids, "started", anyRow)
	waitQueue(ctx, t, first, 2, n-2)
	stopFirst()
	before := decisionTasks(ctx, t, b1, topics.Decisions)
	if len(before) != 2 {
		t.Fatalf("%d decision tasks before the restart, want 2", len(before))
	}

	b2 := memory.New(memory.Options{Broker: broker})
	t.Cleanup(func() { _ = b2.Close() })
	reg2 := engine.NewRegistry(b2, topics.Definitions, nil)
	t.Cleanup(func() { _ = reg2.Close() })
	second := engine.NewOrchestrator(b2, reg2, engine.OrchestratorOptions{Topics: topics, Decider: engine.DeciderRemote, MaxOutstanding: 3, DecisionTimeout: time.Hour}, r.log)
	runComponent(ctx, t, "second orchestrator", second.Run)
	// With no event at all, the loaded queue takes the third slot.
	waitQueue(ctx, t, second, 3, n-3)
	// The two tasks outstanding before are issued again, under new ids
	// (machine.issue: an answer to a task of the first orchestrator is
	// stale), and one more: 3 tasks of the second orchestrator's own.
	got := decisionTasks(ctx, t, b2, topics.Decisions)
	for id := range before {
		delete(got, id)
	}
	if len(got) != 3 {
		t.Fatalf("%d decision tasks issued after the restart with MaxOutstanding 3, want 3", len(got))
	}
	runComponent(ctx, t, "decider", engine.NewDecider(b2, engine.NewRegistry(b2, topics.Definitions, nil), engine.DeciderOptions{Topics: topics}, r.log).Run)
	runWorkers(ctx, t, b2, r.log)
	r.waitRows(ctx, t, pids, "completed", completed)
	if d := second.Drops()[engine.DropUnknownProcess]; d != 0 {
		t.Errorf("%d inputs dropped for unknown processes", d)
	}
}

func TestConcurrentLoadMemory(t *testing.T) {
	broker := memory.NewBroker()
	testConcurrentLoad(t, func(t *testing.T) bus.Bus {
		b := memory.New(memory.Options{Broker: broker})
		t.Cleanup(func() { _ = b.Close() })
		return b
	})
}

func TestConcurrentLoadPulsar(t *testing.T) {
	t.Parallel()
	testConcurrentLoad(t, pulsarBuses(t))
}

// testConcurrentLoad: an orchestrator that starts on partitions full of
// live processes loads every partition it owns without waiting for an event
// of that partition (Ready says so), and has every image: processes whose
// decisions were outstanding when the previous orchestrator stopped
// complete once a decider answers.
func testConcurrentLoad(t *testing.T, newBus func(t *testing.T) bus.Bus) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	topics := protocol.DefaultTopics()
	topics.Partitions = 4
	b1 := newBus(t)
	r := newTripRig(ctx, t, b1, topics)
	first := engine.NewOrchestrator(b1, r.reg, engine.OrchestratorOptions{Topics: topics, Decider: engine.DeciderRemote, DecisionTimeout: time.Hour}, r.log)
	stopFirst := runComponent(ctx, t, "first orchestrator", first.Run)
	const n = 40
	pids := make([]string, n)
	for i := range pids {
		pids[i] = fmt.Sprintf("load-%02d", i)
	}
	r.start(ctx, t, pids)
	r.waitRows(ctx, t, pids, "started", anyRow)
	waitQueue(ctx, t, first, n, 0)
	stopFirst()

	b2 := newBus(t)
	reg2 := engine.NewRegistry(b2, topics.Definitions, nil)
	t.Cleanup(func() { _ = reg2.Close() })
	second := engine.NewOrchestrator(b2, reg2, engine.OrchestratorOptions{Topics: topics, Decider: engine.DeciderRemote, DecisionTimeout: time.Hour}, r.log)
	if err := second.Ready(); !errors.Is(err, engine.ErrNotReady) {
		t.Fatalf("Ready before Run: %v, want ErrNotReady", err)
	}
	runComponent(ctx, t, "second orchestrator", second.Run)
	// No event comes: every partition is loaded all the same.
	for {
		err := second.Ready()
		if err == nil {
			break
		}
		if !errors.Is(err, engine.ErrNotReady) {
			t.Fatalf("Ready: %v, want nil or ErrNotReady", err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("never ready: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	// The decisions outstanding before the restart are in flight again.
	waitQueue(ctx, t, second, n, 0)
	runComponent(ctx, t, "decider", engine.NewDecider(b2, engine.NewRegistry(b2, topics.Definitions, nil), engine.DeciderOptions{Topics: topics}, r.log).Run)
	runWorkers(ctx, t, b2, r.log)
	r.waitRows(ctx, t, pids, "completed", completed)
	if d := second.Drops()[engine.DropUnknownProcess]; d != 0 {
		t.Errorf("%d inputs dropped for unknown processes", d)
	}
	if err := second.Ready(); err != nil {
		t.Errorf("Ready after the run: %v", err)
	}
}
