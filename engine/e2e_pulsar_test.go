package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/pulsarbus"
	"github.com/pulsaga/pulsaga/demo"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/internal/pulsartest"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/workflow"
)

// pulsarBuses connects to the test broker; every bus of one test shares a
// namespace of its own, so runs and tests never see each other's topics.
func pulsarBuses(t *testing.T) func(t *testing.T) bus.Bus {
	if testing.Short() {
		t.Skip("needs a Pulsar broker; run without -short (make test)")
	}
	svc, adm := pulsartest.URLs(t)
	ns := bus.Namespace{Tenant: "public", Namespace: fmt.Sprintf("e2e-%d", time.Now().UnixNano())}
	return func(t *testing.T) bus.Bus {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		b, err := pulsarbus.New(ctx, pulsarbus.Config{ServiceURL: svc, AdminURL: adm, Namespace: ns}, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return b
	}
}

func TestTripScenariosPulsar(t *testing.T) {
	t.Parallel()
	topics := protocol.DefaultTopics()
	topics.Partitions = 2
	inModes(t, topics, func(t *testing.T, cfg engineCfg) { runTripScenarios(t, pulsarBuses(t), cfg) })
}

// TestManyConcurrentSagasPulsar runs many trip sagas at once with random
// transient failures. Which attempts fail is a hash of their idempotency
// keys (demo.Faults.FailsRandomly), so the right final state of every saga
// is known in advance: completed unless some step failed on every attempt
// its retry policy allows, compensated otherwise, with exactly the
// completed steps compensated, once each.
func TestManyConcurrentSagasPulsar(t *testing.T) {
	t.Parallel()
	// 1,000 sagas at once, as the runtime issue asks (PULSAGA_MANY_SAGAS
	// changes the count). It was held at 300 while the batched decider's
	// sends were refused by broker deduplication: pulsar-client-go sent a
	// delayed message (a retry or a timer) ahead of the open batch with a
	// lower sequence id, fixed in the vendored client at 23a4c9f.
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("PULSAGA_MANY_SAGAS")); err == nil && v > 0 {
		n = v
	}
	inModes(t, protocol.DefaultTopics(), func(t *testing.T, cfg engineCfg) { manySagas(t, cfg.decider, n) })
}

func manySagas(t *testing.T, mode string, n int) {
	newBus := pulsarBuses(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	topics := protocol.DefaultTopics()
	topics.Partitions = 4
	faults := demo.Faults{Probability: 0.25, Seed: uint64(time.Now().UnixNano())}
	calls := demo.NewCalls()
	stack, err := engine.StartStack(ctx, newBus(t), engine.StackOptions{
		Topics: topics, Decider: mode, Services: demo.Trip(faults, calls), Deciders: 2, WorkerConcurrency: 32,
		// 1,000 sagas at once queue their first decisions for longer than the
		// default 30s decision timeout on a loaded 2-core machine; re-issuing
		// them all then only adds load (see "Overload" in docs/benchmarks.md).
		DecisionTimeout: 3 * time.Minute,
	}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := stack.Stop(); err != nil {
			t.Errorf("stack: %v", err)
		}
	}()
	src, err := os.ReadFile(repoFile(t, "testdata/trip-booking.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	def, err := stack.Registry.Register(ctx, "trip-booking.yaml", src)
	if err != nil {
		t.Fatal(err)
	}
	maxAttempts := map[string]int{}
	for _, s := range def.Steps {
		maxAttempts[s.ID] = s.Retry.MaxAttempts
	}
	// exhausted says whether a step fails on every allowed attempt.
	exhausted := func(pid, step string) bool {
		for a := 1; a <= maxAttempts[step]; a++ {
			if !faults.FailsRandomly(fmt.Sprintf("%s/%s/%d", pid, step, a)) {
				return false
			}
		}
		return true
	}
	run := fmt.Sprintf("%d", time.Now().UnixNano())
	pids := make([]string, n)
	t0 := time.Now()
	for i := range pids {
		pids[i] = fmt.Sprintf("many-%s-%d", run, i)
		if err := stack.Client.Start(ctx, protocol.StartRequest{ProcessID: pids[i], Definition: "trip-booking", Input: json.RawMessage(`{"customer":"c","amount":1}`)}); err != nil {
			t.Fatal(err)
		}
	}
	wantStatus := map[workflow.Status]int{}
	rows := waitAllTerminal(ctx, t, stack, pids)
	for _, pid := range pids {
		row := rows[pid]
		want := workflow.StatusCompleted
		if exhausted(pid, "payment") || exhausted(pid, "flight") || exhausted(pid, "hotel") || exhausted(pid, "notify") {
			want = workflow.StatusCompensated
		}
		wantStatus[want]++
		if row.Status != want {
			t.Errorf("%s: status %s, want %s (%v)", pid, row.Status, want, row.Steps)
			continue
		}
		// The services do each key's work once (a later attempt with the
		// same key answers as the first): count the work done.
		completed := map[string]string{}
		comps := map[string]int{}
		unknown := map[string]bool{}
		for _, c := range calls.Of(pid) {
			switch {
			case c.Failed || !c.Effect:
			case c.Compensation:
				comps[c.Step]++
				unknown[c.Step] = unknown[c.Step] || c.OutcomeUnknown
			default:
				if k, ok := completed[c.Step]; ok {
					t.Errorf("%s: step %s did its work twice (%s and %s)", pid, c.Step, k, c.CommandID)
				}
				completed[c.Step] = c.CommandID
			}
		}
		for step := range completed {
			wantComp := 0
			if want == workflow.StatusCompensated && step != "notify" {
				wantComp = 1
			}
			if comps[step] != wantComp {
				t.Errorf("%s: step %s compensated %d times, want %d", pid, step, comps[step], wantComp)
			}
		}
		for step, k := range comps {
			if _, ok := completed[step]; !ok && !unknown[step] {
				t.Errorf("%s: step %s compensated %d times but never completed (and not as an unknown outcome)", pid, step, k)
			}
		}
	}
	t.Logf("%d sagas finished in %s: %v; drops %v", n, time.Since(t0).Round(time.Millisecond), wantStatus, stack.Orchestrators[0].Drops())
	if wantStatus[workflow.StatusCompensated] == 0 || wantStatus[workflow.StatusCompleted] == 0 {
		t.Errorf("the fault plan should yield both outcomes: %v", wantStatus)
	}
}
