package engine_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus/memory"
	"github.com/pulsaga/pulsaga/demo"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/workflow"
)

type countingObserver struct {
	mu        sync.Mutex
	decisions int
	e2c       int
	completed map[string]int // step → completions
	processes map[workflow.Status]int
	retries   int
	firsts    int
	drops     map[string]int
	// batches committed, the inputs they took, and any phase not positive
	batches, inputs, badPhases int
}

func (c *countingObserver) BatchCommitted(inputs int, first, second, commit time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.batches++
	c.inputs += inputs
	if first <= 0 || second <= 0 || commit <= 0 {
		c.badPhases++
	}
}

func (c *countingObserver) DecisionApplied(_ string, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d >= 0 {
		c.decisions++
	}
}
func (c *countingObserver) EventToCommand(_ string, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d >= 0 {
		c.e2c++
	}
}
func (c *countingObserver) StepChanged(_, step string, _, to workflow.StepStatus) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if to == workflow.StepCompleted {
		c.completed[step]++
	}
}
func (c *countingObserver) CommandSent(_, _ string, attempt int, comp bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if attempt > 1 {
		c.retries++
	} else if !comp {
		c.firsts++
	}
}
func (c *countingObserver) ProcessChanged(_ string, _, to workflow.Status) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.processes[to]++
}
func (c *countingObserver) Dropped(reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.drops[reason]++
}

func TestObserverSeesWhatHappens(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	obs := &countingObserver{completed: map[string]int{}, processes: map[workflow.Status]int{}, drops: map[string]int{}}
	b := memory.New(memory.Options{})
	defer b.Close()
	s, err := engine.StartStack(ctx, b, engine.StackOptions{Services: demo.Trip(demo.Faults{}, nil), Observer: obs}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if _, err := s.Registry.RegisterPath(ctx, repoFile(t, "testdata/trip-booking.yaml")); err != nil {
		t.Fatal(err)
	}
	for _, pid := range []string{"obs-ok", "obs-flaky-BookFlight"} {
		if err := s.Client.Start(ctx, protocol.StartRequest{ProcessID: pid, Definition: "trip-booking", Input: json.RawMessage(`{"customer":"c","amount":1}`)}); err != nil {
			t.Fatal(err)
		}
	}
	_ = s.Client.Start(ctx, protocol.StartRequest{ProcessID: "obs-ok", Definition: "trip-booking"}) // a duplicate start
	for _, pid := range []string{"obs-ok", "obs-flaky-BookFlight"} {
		if row := waitTerminal(ctx, t, s, pid); row.Status != workflow.StatusCompleted {
			t.Fatalf("%s: %+v", pid, row)
		}
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.processes[workflow.StatusRunning] != 2 || obs.processes[workflow.StatusCompleted] != 2 {
		t.Errorf("process transitions %v, want 2 running and 2 completed", obs.processes)
	}
	for _, step := range []string{"payment", "flight", "hotel", "notify"} {
		if obs.completed[step] != 2 {
			t.Errorf("step %s completed %d times, want 2", step, obs.completed[step])
		}
	}
	if obs.firsts != 8 || obs.retries != 1 {
		t.Errorf("commands: %d first attempts and %d retries, want 8 and 1", obs.firsts, obs.retries)
	}
	if obs.decisions < 8 || obs.e2c < 4 {
		t.Errorf("decisions observed %d, event-to-command %d", obs.decisions, obs.e2c)
	}
	// The second start is refused by the process's existence (starts are
	// not kept among the seen envelope ids).
	if obs.drops[engine.DropAlreadyStarted] != 1 {
		t.Errorf("drops %v, want one already_started", obs.drops)
	}
	// Every input was taken by a committed batch: 3 starts and each step's
	// result (9 with the flaky flight's failed attempt), at least.
	if obs.batches == 0 || obs.inputs < 12 || obs.badPhases != 0 {
		t.Errorf("batches committed %d with %d inputs, %d with a phase not positive; want some, >= 12 inputs, none",
			obs.batches, obs.inputs, obs.badPhases)
	}
}
