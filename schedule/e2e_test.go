package schedule_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/memory"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/internal/pulsartest"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/schedule"
	"github.com/pulsaga/pulsaga/workflow"
)

const waitGo = `name: wait-go
steps:
  - id: go
    wait: {signal: go}
`

const quick = `name: quick
steps:
  - id: nap
    sleep: 10ms
`

func testLogger(t testing.TB) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel).With().Timestamp().Logger()
}

// TestSchedulesMemory runs the scenario on the embedded bus.
func TestSchedulesMemory(t *testing.T) {
	t.Parallel()
	b := memory.New(memory.Options{})
	t.Cleanup(func() { _ = b.Close() })
	runSchedules(t, func(*testing.T) bus.Bus { return b })
}

// TestSchedulesPulsar runs it on a real broker, each scheduler on a
// connection of its own.
func TestSchedulesPulsar(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a Pulsar broker; run without -short (make test)")
	}
	t.Parallel()
	ns := pulsartest.Namespace("schedules")
	runSchedules(t, func(t *testing.T) bus.Bus { return pulsartest.Bus(t, ns, testLogger(t)) })
}

type harness struct {
	t      *testing.T
	ctx    context.Context
	stack  *engine.Stack
	table  *schedule.Table
	client *schedule.Client
	topics protocol.Topics
	newBus func(*testing.T) bus.Bus
}

// scheduler runs one scheduler on a bus of its own until the returned stop.
func (h *harness) scheduler(name string) (stop func()) {
	b := h.newBus(h.t)
	reg := engine.NewRegistry(b, h.topics.Definitions, nil)
	s := schedule.NewScheduler(b, schedule.Options{Name: name, Topics: h.topics, Registry: reg}, testLogger(h.t))
	ctx, cancel := context.WithCancel(h.ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			h.t.Errorf("scheduler %s: %v", name, err)
		}
		_ = reg.Close()
	}
}

func (h *harness) send(op, name string, spec *schedule.Spec) {
	h.t.Helper()
	if err := h.client.Send(h.ctx, schedule.Request{Op: op, Name: name, Spec: spec, Actor: "test"}, ""); err != nil {
		h.t.Fatal(err)
	}
}

// runs are the status rows of the processes a schedule started, by id.
func (h *harness) runs(name string) []engine.StatusRecord {
	h.t.Helper()
	if err := h.stack.Status.Refresh(h.ctx); err != nil {
		h.t.Fatal(err)
	}
	var out []engine.StatusRecord
	for _, r := range h.stack.Status.List() {
		if strings.HasPrefix(r.ProcessID, name+"-") {
			out = append(out, r)
		}
	}
	return out
}

func (h *harness) record(name string) *schedule.Record {
	h.t.Helper()
	if err := h.table.Refresh(h.ctx); err != nil {
		h.t.Fatal(err)
	}
	r, _ := h.table.Get(name)
	return r
}

func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	h.waitForWhy(what, cond, func() string { return "" })
}

// waitForWhy is waitFor that says what was still missing when it timed out.
func (h *harness) waitForWhy(what string, cond func() bool, why func() string) {
	h.t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s: %s", what, why())
		}
		if err := h.stack.Err(); err != nil {
			h.t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tickOf(t *testing.T, name, pid string) time.Time {
	t.Helper()
	at, err := time.Parse("20060102T150405Z", strings.TrimPrefix(pid, name+"-"))
	if err != nil {
		t.Fatalf("process id %q does not name its tick: %v", pid, err)
	}
	return at
}

func runSchedules(t *testing.T, newBus func(*testing.T) bus.Bus) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	topics := protocol.DefaultTopics()
	topics.Partitions = 2
	b := newBus(t)
	stack, err := engine.StartStack(ctx, b, engine.StackOptions{Topics: topics}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer stack.Stop()
	for _, src := range []string{waitGo, quick} {
		if _, err := stack.Registry.Register(ctx, "def.yaml", []byte(src)); err != nil {
			t.Fatal(err)
		}
	}
	h := &harness{t: t, ctx: ctx, stack: stack, table: schedule.NewTable(b), client: schedule.NewClient(b), topics: topics, newBus: newBus}
	defer h.table.Close()
	defer h.client.Close()
	stopA := h.scheduler("scheduler-a")
	stopped := false
	defer func() {
		if !stopped {
			stopA()
		}
	}()

	t.Run("overlap skip", func(t *testing.T) {
		h.send(schedule.OpPut, "", &schedule.Spec{Name: "skip", Definition: "wait-go", Every: schedule.Duration(2 * time.Second)})
		h.waitFor("a first run", func() bool { return len(h.runs("skip")) == 1 })
		first := h.runs("skip")[0].ProcessID
		h.waitFor("a skipped tick", func() bool { r := h.record("skip"); return r != nil && r.State.Skipped >= 1 })
		if n := len(h.runs("skip")); n != 1 {
			t.Fatalf("%d runs while the first waits (overlap: skip)", n)
		}
		if err := stack.Client.Signal(ctx, first, "go", "go-"+first, nil); err != nil {
			t.Fatal(err)
		}
		h.waitFor("a second run once the first completed", func() bool {
			rs := h.runs("skip")
			return len(rs) == 2 && rs[0].Status == workflow.StatusCompleted
		})
		h.send(schedule.OpDelete, "skip", nil)
		h.waitFor("the schedule deleted", func() bool { return h.record("skip") == nil })
	})

	t.Run("overlap cancel previous", func(t *testing.T) {
		h.send(schedule.OpPut, "", &schedule.Spec{Name: "cancel", Definition: "wait-go", Every: schedule.Duration(2 * time.Second), Overlap: schedule.OverlapCancelPrevious})
		h.waitFor("the first run cancelled by the second", func() bool {
			rs := h.runs("cancel")
			return len(rs) >= 2 && rs[0].Status == workflow.StatusCompensated
		})
		h.send(schedule.OpDelete, "cancel", nil)
		h.waitFor("the schedule deleted", func() bool { return h.record("cancel") == nil })
	})

	t.Run("every tick once across a scheduler restart, pause, resume, delete", func(t *testing.T) {
		h.send(schedule.OpPut, "", &schedule.Spec{Name: "each", Definition: "quick", Every: schedule.Duration(time.Second), Overlap: schedule.OverlapAllow, CatchUp: schedule.CatchUpAll})
		h.waitFor("three runs", func() bool { return len(h.runs("each")) >= 3 })
		// The active scheduler goes away; another takes over 3 s later and
		// catches up the ticks it missed.
		stopA()
		stopped = true
		down := time.Now()
		time.Sleep(3 * time.Second)
		stopB := h.scheduler("scheduler-b")
		defer stopB()
		h.waitFor("runs after the hand-over", func() bool {
			rs := h.runs("each")
			return len(rs) > 0 && tickOf(t, "each", rs[len(rs)-1].ProcessID).After(down.Add(5*time.Second))
		})
		h.send(schedule.OpPause, "each", nil)
		var paused *schedule.Record
		h.waitFor("paused", func() bool { paused = h.record("each"); return paused != nil && paused.Spec.Paused })
		pausedAt := time.Now()
		// The record written with the pause counts every run started before
		// it; wait until the engine shows them all (it may lag the scheduler).
		h.waitFor("the runs started before the pause", func() bool { return int64(len(h.runs("each"))) == paused.State.Started })
		rs := h.runs("each")
		ticks := make([]time.Time, len(rs))
		for i, r := range rs {
			ticks[i] = tickOf(t, "each", r.ProcessID)
		}
		sort.Slice(ticks, func(i, j int) bool { return ticks[i].Before(ticks[j]) })
		for i := 1; i < len(ticks); i++ {
			if ticks[i].Sub(ticks[i-1]) != time.Second {
				t.Fatalf("ticks %s then %s: a tick was missed or run twice across the restart", ticks[i-1], ticks[i])
			}
		}
		time.Sleep(2500 * time.Millisecond)
		if r := h.record("each"); r.State.Started != paused.State.Started || len(h.runs("each")) != len(rs) {
			t.Fatalf("%d runs started while paused", len(h.runs("each"))-len(rs))
		}
		h.send(schedule.OpResume, "each", nil)
		var resumed *schedule.Record
		h.waitFor("resumed", func() bool { resumed = h.record("each"); return resumed != nil && !resumed.Spec.Paused })
		h.waitFor("runs after resume", func() bool { return len(h.runs("each")) >= len(rs)+2 })
		for _, r := range h.runs("each") {
			// no tick between the last before the pause and the resume
			if at := tickOf(t, "each", r.ProcessID); at.After(ticks[len(ticks)-1]) && !at.After(resumed.State.UpdatedAt) {
				t.Fatalf("run %s of a tick while paused (resume does not catch up; paused %s, resumed %s)", r.ProcessID, pausedAt.Format(time.RFC3339Nano), resumed.State.UpdatedAt.Format(time.RFC3339Nano))
			}
		}
		h.send(schedule.OpDelete, "each", nil)
		h.waitFor("deleted", func() bool { return h.record("each") == nil })
		deletedAt := time.Now()
		time.Sleep(2500 * time.Millisecond)
		// A tick is handled in order with the delete (one key, one active
		// scheduler): none after it can start a run, whatever the engine's lag.
		for _, r := range h.runs("each") {
			if at := tickOf(t, "each", r.ProcessID); at.After(deletedAt) {
				t.Fatalf("run %s of a tick after the delete (%s)", r.ProcessID, deletedAt.Format(time.RFC3339Nano))
			}
		}
		var open []string
		h.waitForWhy("every run completed", func() bool {
			open = open[:0]
			for _, r := range h.runs("each") {
				if r.Status != workflow.StatusCompleted {
					open = append(open, fmt.Sprintf("%s %s (updated %s)", r.ProcessID, r.Status, r.UpdatedAt.Format(time.RFC3339Nano)))
				}
			}
			return len(open) == 0
		}, func() string { return strings.Join(open, "; ") })
	})
}
