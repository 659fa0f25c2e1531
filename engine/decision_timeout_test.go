package engine_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/memory"
	"github.com/pulsaga/pulsaga/demo"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/timers"
	"github.com/pulsaga/pulsaga/workflow"
)

// A decision task that never comes back (its decider swallowed it) is
// issued again after the decision timeout, identically, and the process
// goes on.
func TestLostDecisionIsReissued(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := memory.New(memory.Options{})
	defer b.Close()
	log := testLogger(t)
	topics := protocol.DefaultTopics()
	if err := engine.EnsureTopics(ctx, b, topics); err != nil {
		t.Fatal(err)
	}
	reg := engine.NewRegistry(b, topics.Definitions, nil)
	if _, err := reg.RegisterPath(ctx, repoFile(t, "testdata/trip-booking.yaml")); err != nil {
		t.Fatal(err)
	}
	run := func(f func(context.Context) error) {
		go func() { _ = f(ctx) }()
	}
	orch := engine.NewOrchestrator(b, reg, engine.OrchestratorOptions{Topics: topics, Decider: engine.DeciderRemote, DecisionTimeout: time.Second}, log)
	run(orch.Run)
	run(timers.NewRelay(b, timers.RelayOptions{}, log).Run)
	// A "decider" that takes the first task and never answers.
	black, err := b.Subscribe(ctx, bus.SubscribeOptions{Topic: topics.Decisions, Subscription: "deciders", Type: bus.Shared, ConsumerName: "black-hole"})
	if err != nil {
		t.Fatal(err)
	}
	client := engine.NewClient(b, topics)
	if err := client.Start(ctx, protocol.StartRequest{ProcessID: "lost", Definition: "trip-booking", Input: json.RawMessage(`{"customer":"c","amount":1}`)}); err != nil {
		t.Fatal(err)
	}
	first, err := black.Receive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = black.Ack(ctx, first) // swallowed: no result will ever come for it
	_ = black.Close()
	// Now a real decider and the workers.
	run(engine.NewDecider(b, engine.NewRegistry(b, topics.Definitions, nil), engine.DeciderOptions{Topics: topics}, log).Run)
	s, err := engine.StartStack(ctx, b, engine.StackOptions{Topics: topics, Decider: engine.DeciderRemote, Services: demo.Trip(demo.Faults{}, nil), Name: "workers-only"}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	row := waitTerminal(ctx, t, s, "lost")
	if row.Status != workflow.StatusCompleted {
		t.Fatalf("%+v", row)
	}
	env, err := bus.DecodeEnvelope(first.Payload)
	if err != nil || env.Type != protocol.TypeDecisionTask {
		t.Fatalf("swallowed message: %v %v", env, err)
	}
	var task protocol.DecisionTask
	if err := env.DecodePayload(&task); err != nil {
		t.Fatal(err)
	}
	// The first decision in the stream answers the swallowed task's id: it
	// was issued again, identically, and decided by the real decider.
	view, err := engine.ReadProcess(ctx, b, topics, reg, row)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range view.Records {
		if r.Kind == engine.RecordDecision {
			if r.TaskID != task.TaskID || r.Now.Before(task.Now) {
				t.Fatalf("first decision %s at %s, the swallowed task was %s at %s", r.TaskID, r.Now, task.TaskID, task.Now)
			}
			return
		}
	}
	t.Fatal("no decision in the stream")
}
