package worker_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/memory"
	"github.com/pulsaga/pulsaga/bus/pulsarbus"
	"github.com/pulsaga/pulsaga/internal/pulsartest"
	"github.com/pulsaga/pulsaga/internal/testlog"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/worker"
)

// testLogger logs to t while the test runs and to stderr after it ended
// (goroutines may still log while they stop).
func testLogger(t testing.TB) zerolog.Logger { return testlog.New(t, zerolog.WarnLevel) }

// replyTopic is where the commands of these tests ask for their results.
const replyTopic = "replies"

// command builds a command for service svc.
func command(svc, id, name string) protocol.Command {
	return protocol.Command{
		CommandID: id, ProcessID: "p-" + id, Definition: "def", Version: 1, Step: "step-" + id, Attempt: 1,
		Service: svc, Command: name, IdempotencyKey: "key-" + id, ReplyTo: replyTopic,
	}
}

// send puts raw payloads on a topic.
func send(t *testing.T, b bus.Bus, topic string, payloads ...[]byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := b.Producer(ctx, bus.ProducerOptions{Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, pl := range payloads {
		if _, err := p.Send(ctx, &bus.OutMessage{Key: "k", Payload: pl}); err != nil {
			t.Fatal(err)
		}
	}
}

// envelope encodes a payload in an envelope.
func envelope(t *testing.T, typ, id string, payload any) []byte {
	t.Helper()
	env, err := bus.NewEnvelope(typ, id, "p-"+id, time.Now(), payload)
	if err != nil {
		t.Fatal(err)
	}
	b, err := env.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sendCommands puts commands on their service's job queue.
func sendCommands(t *testing.T, b bus.Bus, cmds ...protocol.Command) {
	t.Helper()
	for _, c := range cmds {
		send(t, b, protocol.JobTopic(c.Service), envelope(t, protocol.TypeCommand, c.CommandID, c))
	}
}

// subscribe opens an exclusive consumer on a topic from its start.
func subscribe(t *testing.T, b bus.Bus, topic string) bus.Consumer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.EnsureTopic(ctx, bus.TopicSpec{Name: topic}); err != nil {
		t.Fatal(err)
	}
	c, err := b.Subscribe(ctx, bus.SubscribeOptions{Topic: topic, Subscription: "test", Type: bus.Exclusive})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// result is a received result with its envelope.
type result struct {
	env *bus.Envelope
	key string
	res protocol.Result
}

// progress is a started or heartbeat report seen on a reply topic.
type progress struct {
	typ string
	env *bus.Envelope
	key string
	p   protocol.Progress
}

// reports keeps the progress reports the helpers skipped, per consumer.
var reports sync.Map // bus.Consumer → *[]progress (guarded by reportsMu)
var reportsMu sync.Mutex

func keepReport(c bus.Consumer, r progress) {
	reportsMu.Lock()
	defer reportsMu.Unlock()
	v, _ := reports.LoadOrStore(c, &[]progress{})
	l := v.(*[]progress)
	*l = append(*l, r)
}

// reportsOf returns the progress reports seen so far on c.
func reportsOf(c bus.Consumer) []progress {
	reportsMu.Lock()
	defer reportsMu.Unlock()
	v, ok := reports.Load(c)
	if !ok {
		return nil
	}
	return append([]progress(nil), *v.(*[]progress)...)
}

// nextEnvelope waits (up to wait) for the next message on c; progress
// reports are kept aside (reportsOf) unless withProgress.
func nextEnvelope(t *testing.T, c bus.Consumer, wait time.Duration, withProgress bool) (*bus.Envelope, *bus.Message, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for {
		m, err := c.Receive(ctx)
		if err != nil {
			return nil, nil, err
		}
		if err := c.Ack(ctx, m); err != nil {
			t.Fatal(err)
		}
		env, err := bus.DecodeEnvelope(m.Payload)
		if err != nil {
			t.Fatalf("reply is not an envelope: %v", err)
		}
		if !withProgress && (env.Type == protocol.TypeStarted || env.Type == protocol.TypeHeartbeat) {
			r := progress{typ: env.Type, env: env, key: m.Key}
			if err := env.DecodePayload(&r.p); err != nil {
				t.Fatalf("%s payload: %v", env.Type, err)
			}
			keepReport(c, r)
			continue
		}
		return env, m, nil
	}
}

// nextResult waits (up to wait) for the next result on c.
func nextResult(t *testing.T, c bus.Consumer, wait time.Duration) (*result, error) {
	t.Helper()
	env, m, err := nextEnvelope(t, c, wait, false)
	if err != nil {
		return nil, err
	}
	if env.Type != protocol.TypeResult {
		t.Fatalf("got a %q envelope, want a result: %s", env.Type, m.Payload)
	}
	r := &result{env: env, key: m.Key}
	if err := env.DecodePayload(&r.res); err != nil {
		t.Fatalf("result payload: %v", err)
	}
	return r, nil
}

// results collects n results by command id, failing the test if they do
// not all come within wait.
func results(t *testing.T, c bus.Consumer, n int, wait time.Duration) map[string]*result {
	t.Helper()
	out := map[string]*result{}
	deadline := time.Now().Add(wait)
	for len(out) < n {
		r, err := nextResult(t, c, time.Until(deadline))
		if err != nil {
			t.Fatalf("got %d of %d results: %v", len(out), n, err)
		}
		if prev, dup := out[r.res.CommandID]; dup {
			t.Fatalf("two results for %s: %+v and %+v", r.res.CommandID, prev.res, r.res)
		}
		out[r.res.CommandID] = r
	}
	return out
}

// noMore checks nothing else (but progress reports) arrives on c for a
// while.
func noMore(t *testing.T, c bus.Consumer, what string, wait time.Duration) {
	t.Helper()
	_, m, err := nextEnvelope(t, c, wait, false)
	if err == nil {
		t.Fatalf("unexpected %s: %s %v", what, m.Payload, m.Properties)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("receive %s: %v", what, err)
	}
}

// deadLetter is a dead-lettered message.
type deadLetter struct {
	payload string
	reason  string
	origin  string
}

// nextDeadLetter waits for the next message on a DLQ consumer.
func nextDeadLetter(t *testing.T, c bus.Consumer, wait time.Duration) deadLetter {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	m, err := c.Receive(ctx)
	if err != nil {
		t.Fatalf("no dead letter: %v", err)
	}
	if err := c.Ack(ctx, m); err != nil {
		t.Fatal(err)
	}
	return deadLetter{payload: string(m.Payload), reason: m.Properties[bus.PropDLQReason], origin: m.Properties[bus.PropDLQOriginTopic]}
}

// running is a worker running in the background.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

// start runs w until the test ends (or stop is called).
func start(t *testing.T, w *worker.Worker) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			t.Error("worker did not stop")
		}
	})
	return r
}

// stop cancels the worker and waits for Run to return (at most wait).
func (r *running) stop(t *testing.T, wait time.Duration) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(wait):
		t.Fatalf("Run did not return within %s of its context ending", wait)
		return nil
	}
}

// newWorker makes a worker on a fresh connection to broker.
func newWorker(t *testing.T, broker *memory.Broker, opts worker.Options, handlers map[string]worker.Handler) *worker.Worker {
	t.Helper()
	b := memory.New(memory.Options{Broker: broker})
	t.Cleanup(func() { _ = b.Close() })
	return newWorkerOn(t, b, opts, handlers)
}

// newWorkerOn makes a worker on a bus connection.
func newWorkerOn(t *testing.T, b bus.Bus, opts worker.Options, handlers map[string]worker.Handler) *worker.Worker {
	t.Helper()
	w, err := worker.New(b, opts, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	for name, h := range handlers {
		w.Handle(name, h)
	}
	return w
}

// waitFor polls cond until it holds, failing after wait.
func waitFor(t *testing.T, what string, wait time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// buses makes connections to one broker: the embedded one, or the test
// Pulsar broker in a namespace of the test's own.
type buses struct {
	name string
	conn func(t *testing.T) bus.Bus
}

func memoryBuses() buses {
	broker := memory.NewBroker()
	return buses{"memory", func(t *testing.T) bus.Bus {
		b := memory.New(memory.Options{Broker: broker})
		t.Cleanup(func() { _ = b.Close() })
		return b
	}}
}

func pulsarBuses() buses {
	ns := bus.Namespace{Tenant: "public", Namespace: fmt.Sprintf("worker-%d", time.Now().UnixNano())}
	return buses{"pulsar", func(t *testing.T) bus.Bus {
		t.Helper()
		if testing.Short() {
			t.Skip("needs a Pulsar broker; run without -short (make test)")
		}
		svc, adm := pulsartest.URLs(t)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		b, err := pulsarbus.New(ctx, pulsarbus.Config{ServiceURL: svc, AdminURL: adm, Namespace: ns}, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return b
	}}
}
