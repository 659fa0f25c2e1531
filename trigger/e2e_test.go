package trigger_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/memory"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/internal/pulsartest"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/trigger"
	"github.com/pulsaga/pulsaga/workflow"
)

const orders = `name: orders
input:
  type: object
  required: [order_id, amount]
  properties:
    amount: {type: number}
triggers:
  - id: placed
    topic: orders
    process_id: "order-${{ message.data.order_id }}"
    input: {order_id: "${{ message.data.order_id }}", amount: "${{ message.data.amount }}"}
    when: "${{ message.data?.type == 'OrderPlaced' }}"
steps:
  - id: a
    sleep: 10ms
output: "${{ input.amount }}"
`

func testLogger(t testing.TB) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel).With().Timestamp().Logger()
}

func TestTriggersMemory(t *testing.T) {
	t.Parallel()
	b := memory.New(memory.Options{})
	t.Cleanup(func() { _ = b.Close() })
	runTriggers(t, func(*testing.T) bus.Bus { return b })
}

func TestTriggersPulsar(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a Pulsar broker; run without -short (make test)")
	}
	t.Parallel()
	ns := pulsartest.Namespace("triggers")
	runTriggers(t, func(t *testing.T) bus.Bus { return pulsartest.Bus(t, ns, testLogger(t)) })
}

func runTriggers(t *testing.T, newBus func(*testing.T) bus.Bus) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	topics := protocol.DefaultTopics()
	topics.Partitions = 2
	b := newBus(t)
	stack, err := engine.StartStack(ctx, b, engine.StackOptions{Topics: topics}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer stack.Stop()
	if _, err := stack.Registry.Register(ctx, "orders.yaml", []byte(orders)); err != nil {
		t.Fatal(err)
	}
	// two orchestrator binaries: two managers share each trigger's subscription
	var mgrs []*trigger.Manager
	for _, name := range []string{"a", "b"} {
		mb := newBus(t)
		reg := engine.NewRegistry(mb, topics.Definitions, nil)
		defer reg.Close()
		m := trigger.NewManager(mb, trigger.Options{Name: name, Topics: topics, Registry: reg, Every: 200 * time.Millisecond}, testLogger(t))
		mgrs = append(mgrs, m)
		mctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- m.Run(mctx) }()
		defer func() {
			stop()
			if err := <-done; err != nil {
				t.Errorf("trigger manager: %v", err)
			}
		}()
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(45 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitFor("both managers running the trigger", func() bool {
		return len(mgrs[0].Triggers()) == 1 && len(mgrs[1].Triggers()) == 1
	})
	// The subscription starts at the latest message: give the consumers a
	// moment to be attached before publishing.
	time.Sleep(time.Second)
	// Any producer: plain JSON (or not) on the topic, no envelope.
	p, err := b.Producer(ctx, bus.ProducerOptions{Topic: "orders"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	publish := func(payload string) {
		t.Helper()
		if _, err := p.Send(ctx, &bus.OutMessage{Payload: []byte(payload)}); err != nil {
			t.Fatal(err)
		}
	}
	publish(`{"type":"OrderPlaced","order_id":"A1","amount":5}`)
	publish(`{"type":"OrderPlaced","order_id":"A1","amount":5}`) // the producer retried: same order
	publish(`{"type":"OrderShipped","order_id":"A1"}`)           // not for this trigger
	publish(`not json at all`)                                   // ignored by when (data is null)
	publish(`{"type":"OrderPlaced","amount":7}`)                 // no order id: dead-lettered
	publish(`{"type":"OrderPlaced","order_id":"B2","amount":"x"}`)
	publish(`{"type":"OrderPlaced","order_id":"C3","amount":9}`)

	rows := func() map[string]engine.StatusRecord {
		if err := stack.Status.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		out := map[string]engine.StatusRecord{}
		for _, r := range stack.Status.List() {
			if strings.HasPrefix(r.ProcessID, "order-") {
				out[r.ProcessID] = r
			}
		}
		return out
	}
	waitFor("orders A1 and C3 completed", func() bool {
		r := rows()
		return r["order-A1"].Status == workflow.StatusCompleted && r["order-C3"].Status == workflow.StatusCompleted
	})
	sum := func(f func(trigger.Info) int64) (n int64) {
		for _, m := range mgrs {
			for _, i := range m.Triggers() {
				n += f(i)
			}
		}
		return n
	}
	waitFor("every message handled", func() bool {
		return sum(func(i trigger.Info) int64 { return i.Started + i.Ignored + i.DeadLettered }) == 7
	})
	if r := rows(); len(r) != 2 {
		t.Fatalf("processes %v, want order-A1 and order-C3 only", r)
	}
	if started, ignored, dead := sum(func(i trigger.Info) int64 { return i.Started }), sum(func(i trigger.Info) int64 { return i.Ignored }), sum(func(i trigger.Info) int64 { return i.DeadLettered }); started != 3 || ignored != 2 || dead != 2 {
		t.Fatalf("started %d ignored %d dead-lettered %d, want 3 2 2", started, ignored, dead)
	}
	// the second start of order-A1 started nothing new
	waitFor("the duplicate start dropped", func() bool {
		n := int64(0)
		for _, o := range stack.Orchestrators {
			d := o.Drops()
			n += d[engine.DropAlreadyStarted] + d[engine.DropDuplicate]
		}
		return n == 1
	})
	// the unusable messages are on the trigger's dead-letter topic with their reason
	dlq, err := b.Subscribe(ctx, bus.SubscribeOptions{Topic: bus.DeadLetterTopic("orders", trigger.Subscription("orders", "placed")), Subscription: "test", Type: bus.Exclusive})
	if err != nil {
		t.Fatal(err)
	}
	defer dlq.Close()
	var reasons []string
	for range 2 {
		rctx, c := context.WithTimeout(ctx, 30*time.Second)
		m, err := dlq.Receive(rctx)
		c()
		if err != nil {
			t.Fatalf("dead letters: %v (have %q)", err, reasons)
		}
		reasons = append(reasons, m.Properties[bus.PropDLQReason])
	}
	all := strings.Join(reasons, " | ")
	if !strings.Contains(all, `process_id: expression "message.data.order_id" yields null`) || !strings.Contains(all, "input does not match the schema") {
		t.Fatalf("dead-letter reasons %q", all)
	}
}
