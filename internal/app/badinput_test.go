package app_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/pulsarbus"
	"github.com/pulsaga/pulsaga/config"
	"github.com/pulsaga/pulsaga/internal/app"
	"github.com/pulsaga/pulsaga/internal/pulsartest"
	"github.com/pulsaga/pulsaga/internal/testlog"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/timers"
)

const wait = time.Minute // how long anything that must happen may take

// testLogger logs to t while the test runs and to stderr after it ended.
func testLogger(t testing.TB) zerolog.Logger {
	return testlog.New(t, zerolog.ErrorLevel) // bad input is logged at warn, on purpose
}

// pulsarConfig is the broker section for a namespace of the test's own.
func pulsarConfig(t *testing.T) config.Pulsar {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a Pulsar broker; run without -short (make test)")
	}
	svc, adm := pulsartest.URLs(t)
	p := config.DefaultPulsar()
	p.URL, p.AdminURL = svc, adm
	p.Namespace = fmt.Sprintf("badinput-%d", time.Now().UnixNano())
	return p
}

func connect(t *testing.T, p config.Pulsar) *pulsarbus.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	b, err := app.Connect(ctx, p, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// background runs f until the test ends.
func background(t *testing.T, what string, f func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: %v", what, err)
			}
		case <-time.After(wait):
			t.Errorf("%s did not stop", what)
		}
	})
}

func subscribe(t *testing.T, b bus.Bus, topic string) bus.Consumer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, err := b.Subscribe(ctx, bus.SubscribeOptions{Topic: topic, Subscription: "test", Type: bus.Exclusive})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func encode(t *testing.T, typ, id, pid string, payload any) []byte {
	t.Helper()
	env, err := bus.NewEnvelope(typ, id, pid, time.Now(), payload)
	if err != nil {
		t.Fatal(err)
	}
	b, err := env.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// receiveAll takes n messages from c (failing after wait) and returns them.
func receiveAll(t *testing.T, c bus.Consumer, n int, what string) []*bus.Message {
	t.Helper()
	var out []*bus.Message
	deadline := time.Now().Add(wait)
	for len(out) < n {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		m, err := c.Receive(ctx)
		if err == nil {
			err = c.Ack(ctx, m)
		}
		cancel()
		if err != nil {
			t.Fatalf("got %d of %d %s: %v", len(out), n, what, err)
		}
		out = append(out, m)
	}
	return out
}

// nothingMore checks no other message arrives on c for a while.
func nothingMore(t *testing.T, c bus.Consumer, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if m, err := c.Receive(ctx); err == nil {
		t.Errorf("unexpected %s: %q %v", what, m.Payload, m.Properties)
	} else if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("receive %s: %v", what, err)
	}
}

// badMessages are what a job queue or the timers topic may receive besides
// valid messages, with the reason each must be dead-lettered with.
func badMessages(t *testing.T, validType string) []struct {
	payload []byte
	reason  string
} {
	wrongType := protocol.TypeSignal
	return []struct {
		payload []byte
		reason  string
	}{
		{[]byte("\x89PNG garbage"), "not a JSON envelope"},
		{[]byte(`{"v":7,"type":"` + validType + `","id":"future-1","payload":{"x":1}}`), "envelope version 7 is newer"},
		{[]byte(""), "empty payload"},
		{encode(t, wrongType, "signal-1", "p-x", map[string]string{"process_id": "p-x", "name": "go"}), `unexpected message type "signal"`},
		{[]byte(`{"v":1,"type":"` + validType + `","id":"trailing"} {}`), "trailing data"},
		{[]byte(`{"v":-1,"type":"` + validType + `","id":"neg"}`), `invalid envelope version "v"`},
	}
}

// Garbage and unknown-version envelopes on a job queue (served by
// cmd/worker's demo payments service, through app.RunWorker) and on the
// timers topic land on their dead-letter topics with reasons, while every
// valid command and timer sent around them is processed, once.
func TestBadInputOnPulsar(t *testing.T) {
	t.Parallel()
	pc := pulsarConfig(t)
	b := connect(t, pc)

	cfg := config.DefaultWorker()
	cfg.Pulsar, cfg.Name, cfg.Services, cfg.Concurrency = pc, "w", []string{"payments"}, 4
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for _, topic := range []string{"replies", "fired"} {
		if err := b.EnsureTopic(ctx, bus.TopicSpec{Name: topic}); err != nil {
			t.Fatal(err)
		}
	}
	replies := subscribe(t, b, "replies")
	fired := subscribe(t, b, "fired")
	jobsDLQ := subscribe(t, b, "jobs.payments-workers-DLQ")
	timersDLQ := subscribe(t, b, "timers-timer-relay-DLQ")
	background(t, "worker", func(ctx context.Context) error { return app.RunWorker(ctx, cfg, testLogger(t)) })
	relayBus := connect(t, pc)
	background(t, "relay", timers.NewRelay(relayBus, timers.RelayOptions{Name: "relay"}, testLogger(t)).Run)

	// Interleave valid and bad messages on both topics.
	jobs, err := b.Producer(ctx, bus.ProducerOptions{Topic: protocol.JobTopic("payments")})
	if err != nil {
		t.Fatal(err)
	}
	defer jobs.Close()
	tp, err := b.Producer(ctx, bus.ProducerOptions{Topic: protocol.TimersTopic})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	badJobs, badTimers := badMessages(t, protocol.TypeCommand), badMessages(t, protocol.TypeTimer)
	wantReason := map[string]string{} // dead-lettered payload → reason it needs
	unknown := protocol.Command{CommandID: "p-unknown/pay/1", ProcessID: "p-unknown", Step: "pay", Attempt: 1, Service: "payments",
		Command: "StealMoney", IdempotencyKey: "p-unknown/pay/1", ReplyTo: "replies"}
	unknownPayload := encode(t, protocol.TypeCommand, unknown.CommandID, unknown.ProcessID, unknown)
	wantReason[string(unknownPayload)] = `no handler for command "StealMoney"`
	const valid = 12
	for i := range valid {
		pid := fmt.Sprintf("p-%d", i)
		c := protocol.Command{CommandID: pid + "/payment/1", ProcessID: pid, Step: "payment", Attempt: 1, Service: "payments",
			Command: "ProcessPayment", IdempotencyKey: pid + "/payment/1", ReplyTo: "replies", Deadline: time.Now().Add(time.Hour)}
		if _, err := jobs.Send(ctx, &bus.OutMessage{Key: pid, Payload: encode(t, protocol.TypeCommand, c.CommandID, pid, c)}); err != nil {
			t.Fatal(err)
		}
		tm, err := timers.Message(protocol.Timer{TimerID: pid + "/sleep", ProcessID: pid, Kind: "sleep", FireAt: time.Now().Add(500 * time.Millisecond), Target: "fired"}, time.Now(), 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tp.Send(ctx, tm); err != nil {
			t.Fatal(err)
		}
		if i < len(badJobs) {
			if _, err := jobs.Send(ctx, &bus.OutMessage{Key: pid, Payload: badJobs[i].payload}); err != nil {
				t.Fatal(err)
			}
			wantReason[string(badJobs[i].payload)] = badJobs[i].reason
			if _, err := tp.Send(ctx, &bus.OutMessage{Key: pid, Payload: badTimers[i].payload}); err != nil {
				t.Fatal(err)
			}
		}
		if i == valid/2 {
			if _, err := jobs.Send(ctx, &bus.OutMessage{Key: unknown.ProcessID, Payload: unknownPayload}); err != nil {
				t.Fatal(err)
			}
		}
	}

	t.Run("job queue", func(t *testing.T) {
		got := map[string]protocol.Result{}
		for _, m := range receiveAll(t, replies, valid+1, "results") {
			env, err := bus.DecodeEnvelope(m.Payload)
			if err != nil {
				t.Fatal(err)
			}
			var r protocol.Result
			if err := env.DecodePayload(&r); err != nil {
				t.Fatal(err)
			}
			if _, dup := got[r.CommandID]; dup {
				t.Errorf("two results for %s", r.CommandID)
			}
			got[r.CommandID] = r
		}
		for i := range valid {
			id := fmt.Sprintf("p-%d/payment/1", i)
			r, ok := got[id]
			if !ok || r.Status != protocol.StatusCompleted || !strings.Contains(string(r.Output), "payment_id") {
				t.Errorf("valid command %s: result %+v", id, r)
			}
		}
		if r := got[unknown.CommandID]; r.Status != protocol.StatusFailed || r.Error == nil || r.Error.Type != "UnknownCommand" || r.Error.Retryable {
			t.Errorf("unknown command: result %+v", r)
		}
		for _, m := range receiveAll(t, jobsDLQ, len(badJobs)+1, "dead letters") {
			reason, ok := wantReason[string(m.Payload)]
			if !ok {
				t.Errorf("unexpected dead letter %q", m.Payload)
				continue
			}
			delete(wantReason, string(m.Payload))
			if got := m.Properties[bus.PropDLQReason]; !strings.Contains(got, reason) {
				t.Errorf("dead letter %q: reason %q does not contain %q", m.Payload, got, reason)
			}
			if !strings.HasSuffix(m.Properties[bus.PropDLQOriginTopic], "/jobs.payments") {
				t.Errorf("dead letter %q: origin %q", m.Payload, m.Properties[bus.PropDLQOriginTopic])
			}
		}
		nothingMore(t, replies, "result")
		nothingMore(t, jobsDLQ, "dead letter")
	})

	t.Run("timers topic", func(t *testing.T) {
		seen := map[string]bool{}
		for _, m := range receiveAll(t, fired, valid, "fired timers") {
			env, err := bus.DecodeEnvelope(m.Payload)
			if err != nil {
				t.Fatal(err)
			}
			var f protocol.TimerFired
			if err := env.DecodePayload(&f); err != nil {
				t.Fatal(err)
			}
			if seen[f.TimerID] {
				t.Errorf("timer %s fired twice", f.TimerID)
			}
			seen[f.TimerID] = true
			if f.FiredAt.Before(f.FireAt) {
				t.Errorf("timer %s fired early", f.TimerID)
			}
		}
		for i := range valid {
			if id := fmt.Sprintf("p-%d/sleep", i); !seen[id] {
				t.Errorf("timer %s never fired", id)
			}
		}
		want := map[string]string{}
		for _, x := range badTimers {
			want[string(x.payload)] = x.reason
		}
		for _, m := range receiveAll(t, timersDLQ, len(badTimers), "dead letters") {
			reason, ok := want[string(m.Payload)]
			if !ok {
				t.Errorf("unexpected dead letter %q", m.Payload)
				continue
			}
			delete(want, string(m.Payload))
			if got := m.Properties[bus.PropDLQReason]; !strings.Contains(got, reason) {
				t.Errorf("dead letter %q: reason %q does not contain %q", m.Payload, got, reason)
			}
		}
		nothingMore(t, fired, "fired timer")
		nothingMore(t, timersDLQ, "dead letter")
	})
}

// RunWorker refuses a demo service that does not exist, naming the key.
func TestRunWorkerUnknownService(t *testing.T) {
	t.Parallel()
	cfg := config.DefaultWorker()
	cfg.Pulsar = pulsarConfig(t)
	cfg.Services = []string{"payments", "trains"}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	err := app.RunWorker(ctx, cfg, testLogger(t))
	if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), "services") || !strings.Contains(err.Error(), `"trains"`) {
		t.Fatalf("want an invalid configuration naming services and trains, got %v", err)
	}
}
