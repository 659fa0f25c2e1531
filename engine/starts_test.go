package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/protocol"
)

func TestStartRelayMemory(t *testing.T) { startRelay(t, memoryBuses(t)) }
func TestStartRelayPulsar(t *testing.T) {
	t.Parallel()
	startRelay(t, pulsarBuses(t))
}

// startRelay sends many valid start requests and bad ones to the starts
// topic: every valid one reaches the events topic once, keyed by its
// process id with the envelope id start:<pid>; every bad one is on the
// relay's dead-letter topic with its reason.
func startRelay(t *testing.T, newBus func(t *testing.T) bus.Bus) {
	const valid = 300
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b := newBus(t)
	topics := protocol.DefaultTopics()
	topics.Partitions = 2
	for _, s := range topics.Specs() {
		if err := b.EnsureTopic(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	events, err := b.Subscribe(ctx, bus.SubscribeOptions{Topic: topics.Events, Subscription: "test", Type: bus.Exclusive, ReceiveQueueSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	dlq, err := b.Subscribe(ctx, bus.SubscribeOptions{Topic: protocol.DeadLetterTopic(topics.Starts, protocol.StartRelaySubscription), Subscription: "test", Type: bus.Exclusive})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- engine.NewStartRelay(b, topics, "relay", testLogger(t)).Run(rctx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("relay: %v", err)
		}
	}()
	p, err := b.Producer(ctx, bus.ProducerOptions{Topic: topics.Starts})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	env := func(typ, id, pid string, payload any) []byte {
		e, err := bus.NewEnvelope(typ, id, pid, time.Now(), payload)
		if err != nil {
			t.Fatal(err)
		}
		out, err := e.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	bad := []struct {
		name    string
		payload []byte
		reason  string
	}{
		{"garbage", []byte("not json"), "not a JSON envelope"},
		{"wrong type", env(protocol.TypeSignal, "s1", "p", protocol.Signal{ProcessID: "p", Name: "x"}), `unexpected message type "signal" on the starts topic`},
		{"no definition", env(protocol.TypeStart, "s2", "p", protocol.StartRequest{ProcessID: "p"}), "needs a definition"},
		{"no process id", env(protocol.TypeStart, "s3", "", protocol.StartRequest{Definition: "d"}), "needs a process_id"},
		{"negative version", env(protocol.TypeStart, "s4", "p", protocol.StartRequest{ProcessID: "p", Definition: "d", Version: -1}), "has version -1"},
		{"payload of another shape", []byte(`{"v":1,"type":"start","id":"s5","time":"2026-01-01T00:00:00Z","payload":["p","d"]}`), "start payload: json: cannot unmarshal array"},
	}
	sent := 0
	for i := range valid {
		pid := fmt.Sprintf("p-%03d", i)
		// Half name the process in the payload, half only in the envelope.
		req := protocol.StartRequest{Definition: "trip", Input: json.RawMessage(`{"n":1}`)}
		if i%2 == 0 {
			req.ProcessID = pid
		}
		p.SendAsync(ctx, &bus.OutMessage{Key: pid, Payload: env(protocol.TypeStart, "ext-"+pid, pid, req)}, func(_ bus.MessageID, err error) {
			if err != nil {
				t.Errorf("send: %v", err)
			}
		})
		if i%100 == 50 && sent < len(bad) {
			p.SendAsync(ctx, &bus.OutMessage{Key: "bad", Payload: bad[sent].payload}, nil)
			sent++
		}
	}
	for ; sent < len(bad); sent++ {
		p.SendAsync(ctx, &bus.OutMessage{Key: "bad", Payload: bad[sent].payload}, nil)
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for len(seen) < valid {
		rctx, c := context.WithTimeout(ctx, 30*time.Second)
		m, err := events.Receive(rctx)
		c()
		if err != nil {
			t.Fatalf("after %d of %d starts: %v", len(seen), valid, err)
		}
		e, err := bus.DecodeEnvelope(m.Payload)
		if err != nil {
			t.Fatal(err)
		}
		var req protocol.StartRequest
		if err := e.DecodePayload(&req); err != nil {
			t.Fatal(err)
		}
		if e.Type != protocol.TypeStart || e.ID != protocol.StartEnvelopeID(req.ProcessID) || m.Key != req.ProcessID || req.Definition != "trip" {
			t.Fatalf("relayed %s %s key %s: %+v", e.Type, e.ID, m.Key, req)
		}
		if seen[req.ProcessID] {
			t.Fatalf("%s relayed twice", req.ProcessID)
		}
		seen[req.ProcessID] = true
		_ = events.Ack(ctx, m)
	}
	reasons := map[string]bool{}
	for range bad {
		rctx, c := context.WithTimeout(ctx, 30*time.Second)
		m, err := dlq.Receive(rctx)
		c()
		if err != nil {
			t.Fatalf("dead letters: got %d of %d: %v", len(reasons), len(bad), err)
		}
		reasons[m.Properties[bus.PropDLQReason]] = true
		_ = dlq.Ack(ctx, m)
	}
	for _, tc := range bad {
		found := false
		for r := range reasons {
			found = found || strings.Contains(r, tc.reason)
		}
		if !found {
			t.Errorf("%s: no dead letter with a reason containing %q (reasons: %v)", tc.name, tc.reason, reasons)
		}
	}
}

func TestClientStartMany(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := memoryBuses(t)(t)
	topics := protocol.DefaultTopics()
	for _, s := range topics.Specs() {
		if err := b.EnsureTopic(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	events, err := b.Subscribe(ctx, bus.SubscribeOptions{Topic: topics.Events, Subscription: "test", Type: bus.Exclusive})
	if err != nil {
		t.Fatal(err)
	}
	c := engine.NewClient(b, topics)
	defer c.Close()
	reqs := []protocol.StartRequest{
		{ProcessID: "a", Definition: "d"},
		{ProcessID: "b"}, // no definition
		{ProcessID: "c", Definition: "d", Input: json.RawMessage(`{"x":1}`)},
		{Definition: "d"}, // no process id
		{ProcessID: "e", Definition: "d", Input: json.RawMessage(`{"x":`)}, // input not JSON
	}
	err = c.StartMany(ctx, reqs)
	var se *engine.StartErrors
	if !errors.As(err, &se) || se.Failed != 3 || !errors.Is(err, bus.ErrBadOptions) {
		t.Fatalf("StartMany: %v", err)
	}
	for i, wantFail := range []bool{false, true, false, true, true} {
		if (se.Errs[i] != nil) != wantFail {
			t.Errorf("request %d: error %v, want failed=%v", i, se.Errs[i], wantFail)
		}
	}
	for _, want := range []string{"a", "c"} {
		rctx, c := context.WithTimeout(ctx, 10*time.Second)
		m, err := events.Receive(rctx)
		c()
		if err != nil || m.Key != want {
			t.Fatalf("events: %v %v, want the start of %s", m, err, want)
		}
	}
	if err := c.StartMany(ctx, reqs[:1]); err != nil {
		t.Fatalf("StartMany of one valid request: %v", err)
	}
}
