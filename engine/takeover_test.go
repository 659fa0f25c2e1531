package engine_test

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus/memory"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/protocol"
)

// logCounter counts the log lines holding each of its phrases.
type logCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

func (w *logCounter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for phrase := range w.counts {
		if bytes.Contains(p, []byte(phrase)) {
			w.counts[phrase]++
		}
	}
	return len(p), nil
}

func (w *logCounter) count(phrase string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.counts[phrase]
}

// TestLostPartitionKeepsTheSubscription: an orchestrator whose batches fail
// because a second instance comes and goes (the broker hands it half of the
// partitions, then gives them back) resets only the partitions of those
// batches and keeps its subscription — it never hands all its partitions
// over by re-subscribing — and every saga ends right.
func TestLostPartitionKeepsTheSubscription(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	broker := memory.NewBroker()
	topics := protocol.DefaultTopics()
	topics.Partitions = 4
	// Commits take a while: batches are on their way when partitions move.
	b1 := &opLimitBus{Bus: memory.New(memory.Options{Broker: broker}), maxOps: math.MaxInt, commitDelay: 20 * time.Millisecond}
	t.Cleanup(func() { _ = b1.Close() })
	r := newTripRig(ctx, t, b1, topics)
	const restarting, reset = "orchestrator restarting its subscription", "its partitions are reset"
	logs := &logCounter{counts: map[string]int{restarting: 0, reset: 0}}
	alog := zerolog.New(zerolog.MultiLevelWriter(logs, zerolog.NewTestWriter(t))).Level(zerolog.InfoLevel)
	a := engine.NewOrchestrator(b1, r.reg, engine.OrchestratorOptions{Name: "a", Topics: topics, OwnershipPoll: 20 * time.Millisecond}, alog)
	runComponent(ctx, t, "orchestrator a", a.Run)
	runWorkers(ctx, t, b1, r.log)

	var pids []string
	for round := range 8 {
		batch := make([]string, 25)
		for i := range batch {
			batch[i] = fmt.Sprintf("moved-%d-%02d", round, i)
		}
		r.start(ctx, t, batch)
		pids = append(pids, batch...)
		// A second instance takes partitions 1 and 3 (the broker gives
		// partition i to consumer i mod 2, by name) while a's batches of
		// them are on their way, and gives them back when it stops.
		b2 := memory.New(memory.Options{Broker: broker})
		reg2 := engine.NewRegistry(b2, topics.Definitions, nil)
		second := engine.NewOrchestrator(b2, reg2, engine.OrchestratorOptions{Name: "b", Topics: topics, OwnershipPoll: 20 * time.Millisecond}, r.log)
		stop := runComponent(ctx, t, "orchestrator b", second.Run)
		time.Sleep(300 * time.Millisecond)
		stop()
		_ = reg2.Close()
		_ = b2.Close()
		time.Sleep(100 * time.Millisecond)
	}
	r.waitRows(ctx, t, pids, "completed", completed)
	if n := logs.count(restarting); n > 0 {
		t.Errorf("orchestrator a restarted its subscription %d times", n)
	}
	t.Logf("batches failed by a partition moving, handled by a partial reset: %d", logs.count(reset))
	if logs.count(reset) == 0 {
		t.Errorf("no batch of a failed because a partition moved: the test did not exercise the reset")
	}
	if d := a.Drops()[engine.DropUnknownProcess]; d != 0 {
		t.Errorf("%d inputs dropped for unknown processes", d)
	}
}
