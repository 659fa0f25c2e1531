package engine_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/memory"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/workflow"
)

const waitingYAML = `name: waits
version: 1
steps:
  - id: approval
    wait: {signal: go, timeout: 1h}
  - id: finish
    service: notifications
    command: NotifyCustomer
    needs: [approval]
`

// TestRestartFromSnapshotsAndTail: processes snapshotted by the idle sweep
// (and a checkpoint written with them) and processes whose records only the
// history holds are all back after a restart, and go on: the loader reads
// the snapshots, then replays the history from the checkpoint, which the
// sweep moved past the first processes' records. Batches write no snapshot
// of their own.
//
// The second orchestrator's readers of history and snapshots never say
// there is more (staleBus): the load must read to its term's marker, not
// to the end the broker reports. On the real broker too: the marker is
// dispatched behind everything the previous owner committed.
func TestRestartFromSnapshotsAndTail(t *testing.T) {
	broker := memory.NewBroker()
	restartFromSnapshotsAndTail(t, func(t *testing.T) bus.Bus {
		b := memory.New(memory.Options{Broker: broker})
		t.Cleanup(func() { _ = b.Close() })
		return b
	}, true)
}

func TestRestartFromSnapshotsAndTailPulsar(t *testing.T) {
	t.Parallel()
	// The real broker is slower than the idle sweep (200 ms): the batches'
	// own writes are checked on the memory bus only.
	restartFromSnapshotsAndTail(t, pulsarBuses(t), false)
}

func restartFromSnapshotsAndTail(t *testing.T, newBus func(t *testing.T) bus.Bus, fast bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b1 := newBus(t)
	topics := protocol.DefaultTopics()
	topics.Partitions = 2
	r := newTripRig(ctx, t, b1, topics)
	if _, err := r.reg.Register(ctx, "waits.yaml", []byte(waitingYAML)); err != nil {
		t.Fatal(err)
	}
	first := engine.NewOrchestrator(b1, r.reg, engine.OrchestratorOptions{Topics: topics, SnapshotAfter: 200 * time.Millisecond}, r.log)
	stopFirst := runComponent(ctx, t, "first orchestrator", first.Run)
	start := func(pids []string) {
		for _, pid := range pids {
			if err := r.client.Start(ctx, protocol.StartRequest{ProcessID: pid, Definition: "waits"}); err != nil {
				t.Fatal(err)
			}
		}
		r.waitRows(ctx, t, pids, "waiting", func(row engine.StatusRecord) bool { return row.Steps["approval"] == string(workflow.StepWaiting) })
	}
	early, late := pidsOf("early", 10), pidsOf("late", 10)
	start(early)
	if n := countSnapshots(ctx, t, b1, topics); fast && n != 0 {
		t.Fatalf("%d snapshots written by the batches, want none", n)
	}
	// The sweep snapshots the idle early processes and writes checkpoints.
	deadline := time.Now().Add(30 * time.Second)
	for countSnapshots(ctx, t, b1, topics) < len(early) || countCheckpoints(ctx, t, b1, topics) < topics.Partitions {
		if time.Now().After(deadline) {
			t.Fatalf("%d snapshots and %d checkpoints, want %d and %d", countSnapshots(ctx, t, b1, topics), countCheckpoints(ctx, t, b1, topics), len(early), topics.Partitions)
		}
		time.Sleep(50 * time.Millisecond)
	}
	start(late) // stopped before the sweep comes to most: only the history holds those
	stopFirst()
	// The sweep may reach a few late processes before the stop when the
	// machine is slow (waitRows takes longer than SnapshotAfter); the test
	// needs the early ones snapshotted and some late ones left to the tail.
	switch n := countSnapshots(ctx, t, b1, topics); {
	case n < len(early):
		t.Fatalf("%d snapshots, want at least the %d early processes'", n, len(early))
	case n >= len(early)+len(late):
		t.Fatalf("%d snapshots: every late process was snapshotted too, none is left to load from the history's tail", n)
	case n > len(early):
		t.Logf("%d snapshots: the sweep reached %d late processes before the stop", n, n-len(early))
	}

	// The second orchestrator's readers of history and snapshots never say
	// there is more (HasNext false): a broker whose last message id is
	// stale, as Pulsar's can be after a transaction commit. The load reads
	// to its term's marker, not to that end, so it loads everything.
	b2 := &staleBus{Bus: newBus(t)}
	second := engine.NewOrchestrator(b2, r.reg, engine.OrchestratorOptions{Topics: topics}, r.log)
	runComponent(ctx, t, "second orchestrator", second.Run)
	runWorkers(ctx, t, b2, r.log)
	client := engine.NewClient(b2, topics)
	defer client.Close()
	// The snapshotted processes wait, their timers armed: they are loaded
	// encoded (frozen.go), the replayed ones decoded.
	for c := second.Images(); c.Images < len(early)+len(late); c = second.Images() {
		if ctx.Err() != nil {
			t.Fatalf("images after the load: %+v", c)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if c := second.Images(); c.Frozen < len(early) {
		t.Errorf("images after the load: %+v, want the %d snapshotted ones frozen", c, len(early))
	}
	all := append(append([]string(nil), early...), late...)
	for _, pid := range all {
		if err := client.Signal(ctx, pid, "go", "go-"+pid, nil); err != nil {
			t.Fatal(err)
		}
	}
	r.waitRows(ctx, t, all, "completed", completed)
	for _, reason := range []string{engine.DropUnknownProcess, engine.DropDuplicate} {
		if d := second.Drops()[reason]; d != 0 {
			t.Errorf("%d inputs dropped as %s", d, reason)
		}
	}
}

func pidsOf(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%02d", prefix, i)
	}
	return out
}

// countSnapshots counts the process snapshots (not checkpoints) on every
// partition of the snapshots topic.
func countSnapshots(ctx context.Context, t *testing.T, b bus.Bus, topics protocol.Topics) int {
	n, _ := scanSnapshots(ctx, t, b, topics)
	return n
}

func countCheckpoints(ctx context.Context, t *testing.T, b bus.Bus, topics protocol.Topics) int {
	_, n := scanSnapshots(ctx, t, b, topics)
	return n
}

func scanSnapshots(ctx context.Context, t *testing.T, b bus.Bus, topics protocol.Topics) (snaps, checkpoints int) {
	t.Helper()
	keys, cps := map[string]bool{}, map[int]bool{}
	for p := range topics.Partitions {
		rd, err := b.Reader(ctx, bus.ReaderOptions{Topic: b.Namespace().Partition(topics.Snapshots, p), Compacted: true})
		if err != nil {
			t.Fatal(err)
		}
		for {
			more, err := rd.HasNext(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !more {
				break
			}
			m, err := rd.Next(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if m.Key == engine.CheckpointKey {
				cps[p] = true
			} else if len(m.Payload) > 0 && m.Key != engine.FenceKey { // not a load marker
				keys[m.Key] = true
			}
		}
		_ = rd.Close()
	}
	return len(keys), len(cps)
}

// Idle waiting processes are kept encoded (frozen) and thawed by their next
// input; finished processes leave memory when their retention ends, without
// a retention timer each.
func TestIdleImagesFrozenAndFinishedExpire(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b := memory.New(memory.Options{})
	t.Cleanup(func() { _ = b.Close() })
	topics := protocol.DefaultTopics()
	topics.Partitions = 2
	r := newTripRig(ctx, t, b, topics)
	if _, err := r.reg.Register(ctx, "waits.yaml", []byte(waitingYAML)); err != nil {
		t.Fatal(err)
	}
	o := engine.NewOrchestrator(b, r.reg, engine.OrchestratorOptions{Topics: topics, SnapshotAfter: 200 * time.Millisecond, Retention: 2 * time.Second}, r.log)
	runComponent(ctx, t, "orchestrator", o.Run)
	runWorkers(ctx, t, b, r.log)
	pids := pidsOf("frozen", 20)
	for _, pid := range pids {
		if err := r.client.Start(ctx, protocol.StartRequest{ProcessID: pid, Definition: "waits"}); err != nil {
			t.Fatal(err)
		}
	}
	r.waitRows(ctx, t, pids, "waiting", func(row engine.StatusRecord) bool { return row.Steps["approval"] == string(workflow.StepWaiting) })
	waitImages := func(what string, ok func(engine.ImageCounts) bool) {
		t.Helper()
		for !ok(o.Images()) {
			if ctx.Err() != nil {
				t.Fatalf("%s: images %+v", what, o.Images())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitImages("every waiting process frozen", func(c engine.ImageCounts) bool { return c.Images == len(pids) && c.Frozen == len(pids) })
	// A second start of a frozen process is refused as before.
	if err := r.client.Start(ctx, protocol.StartRequest{ProcessID: pids[0], Definition: "waits"}); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if err := r.client.Signal(ctx, pid, "go", "go-"+pid, nil); err != nil {
			t.Fatal(err)
		}
	}
	r.waitRows(ctx, t, pids, "completed", completed)
	if d := o.Drops()[engine.DropAlreadyStarted]; d != 1 {
		t.Errorf("%d starts dropped as already started, want 1", d)
	}
	// Finished: frozen again, then gone when the retention ends (a bucket
	// of a second late at most), with their rows and snapshots.
	waitImages("finished processes expired", func(c engine.ImageCounts) bool { return c.Images == 0 && c.Finished == 0 })
	if n := countSnapshots(ctx, t, b, topics); n != 0 {
		t.Errorf("%d snapshots left after the retention", n)
	}
	if err := r.status.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if _, ok := r.status.Get(pid); ok {
			t.Errorf("%s: status row left after the retention", pid)
		}
	}
	for _, reason := range []string{engine.DropUnknownProcess, engine.DropDuplicate, engine.DropDeadLettered} {
		if d := o.Drops()[reason]; d != 0 {
			t.Errorf("%d inputs dropped as %s", d, reason)
		}
	}
}

// staleBus is a bus whose readers of the history and snapshots topics say
// they have reached the end at once (HasNext false), whatever the topic
// holds: the stale last message id Pulsar can report after a transaction
// commit, at its worst. Next still returns what the topic holds.
type staleBus struct {
	bus.Bus
}

func (b *staleBus) Reader(ctx context.Context, opts bus.ReaderOptions) (bus.Reader, error) {
	rd, err := b.Bus.Reader(ctx, opts)
	if err != nil || !(strings.Contains(opts.Topic, protocol.HistoryTopic) || strings.Contains(opts.Topic, protocol.SnapshotsTopic)) {
		return rd, err
	}
	return staleReader{rd}, nil
}

func (b *staleBus) EndTransactions(ctx context.Context, scope bus.TxScope) (bus.TxEnded, error) {
	return b.Bus.(bus.TxEnder).EndTransactions(ctx, scope)
}

type staleReader struct{ bus.Reader }

func (staleReader) HasNext(context.Context) (bool, error) { return false, nil }
