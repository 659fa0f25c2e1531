package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/workflow"
)

// Split state (protocol/decisions.go): an answer to a SplitState task
// carries its new state apart; a next task that sends those bytes back is
// decided from the state the decider kept, without decoding it, and a task
// with other bytes (here the state before) is decoded and decided as
// before, to the same decision a fresh decider makes.
func TestDeciderReusesTheStateItAnswered(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := memoryBuses(t)(t)
	topics := protocol.DefaultTopics()
	registerTrip(ctx, t, b, topics)
	answers, err := b.Subscribe(ctx, bus.SubscribeOptions{Topic: topics.Events, Subscription: "test", Type: bus.Exclusive})
	if err != nil {
		t.Fatal(err)
	}
	defer answers.Close()
	tasks, err := b.Producer(ctx, bus.ProducerOptions{Topic: topics.Decisions})
	if err != nil {
		t.Fatal(err)
	}
	defer tasks.Close()

	clock := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	d := engine.NewDecider(b, engine.NewRegistry(b, topics.Definitions, nil), engine.DeciderOptions{
		Topics: topics, Clock: func() time.Time { return clock },
	}, testLogger(t))
	defer runDecider(ctx, t, d)()

	pid := fmt.Sprintf("split-%d", time.Now().UnixNano())
	n := 0
	// ask sends a task (its state: z, or none) and returns the answer as
	// the orchestrator reads it (expanded) and as it came (compressed
	// state apart or not).
	ask := func(z []byte, events ...workflow.Event) protocol.DecisionResult {
		t.Helper()
		n++
		task := protocol.DecisionTask{TaskID: fmt.Sprintf("%s/%d", pid, n), ProcessID: pid, Definition: "trip-booking", Now: clock,
			Events: events, ReplyTo: topics.Events, AcceptZstd: true, SplitState: true}
		if z != nil {
			task.UseState(z)
		}
		if _, err := tasks.Send(ctx, &bus.OutMessage{Key: pid, Payload: taskPayload(t, task)}); err != nil {
			t.Fatal(err)
		}
		m, err := answers.Receive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_ = answers.Ack(ctx, m)
		env, err := bus.DecodeEnvelope(m.Payload)
		if err != nil {
			t.Fatal(err)
		}
		var res protocol.DecisionResult
		if err := env.DecodePayload(&res); err != nil {
			t.Fatal(err)
		}
		if err := res.Expand(); err != nil {
			t.Fatal(err)
		}
		if res.Error != "" || res.Decision == nil || res.Decision.State == nil {
			t.Fatalf("task %d: answer %+v, want a decision", n, res)
		}
		return res
	}

	first := ask(nil, workflow.Event{V: workflow.EventVersion, Type: workflow.EventStart, ProcessID: pid, Input: json.RawMessage(`{"customer":"c","amount":1}`)})
	if len(first.StateZstd) == 0 {
		t.Fatalf("the answer to a SplitState task carries no state apart: %+v", first)
	}
	if len(first.Decision.Commands) != 1 {
		t.Fatalf("first decision: commands %+v, want the payment", first.Decision.Commands)
	}
	paid := workflow.Event{V: workflow.EventVersion, Type: workflow.EventResult, ProcessID: pid, Time: clock,
		CommandID: first.Decision.Commands[0].ID, Attempt: 1, Output: json.RawMessage(`{"payment_id":"pay-1"}`)}

	second := ask(first.StateZstd, paid)
	if got := d.Stats().StatesReused; got != 1 {
		t.Fatalf("StatesReused = %d after a task with the answer's own bytes, want 1", got)
	}
	// The state before, again: other bytes than the decider kept (it
	// answered with a newer state since), decoded.
	again := ask(first.StateZstd, paid)
	if got := d.Stats().StatesReused; got != 1 {
		t.Fatalf("StatesReused = %d after a task with other bytes, want still 1", got)
	}
	for _, r := range []*protocol.DecisionResult{&second, &again} {
		r.TaskID, r.StateZstd = "", nil
	}
	if !reflect.DeepEqual(second, again) {
		t.Fatalf("decided from the kept state:\n%+v\nfrom the decoded one:\n%+v", second.Decision, again.Decision)
	}
	if len(second.Decision.Commands) != 2 {
		t.Fatalf("after the payment: commands %+v, want the flight and the hotel", second.Decision.Commands)
	}
}
