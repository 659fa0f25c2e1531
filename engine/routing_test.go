package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/memory"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/worker"
	"github.com/pulsaga/pulsaga/workflow"
)

// routedYAML: one command and one signal per process, so that a start, a
// result, a signal and (for some) an admin action all come in through
// the misrouting client.
const routedYAML = `
name: routed
version: 1
steps:
  - id: charge
    service: routed-payments
    command: Charge
  - id: approval
    needs: [charge]
    wait: {signal: approved}
`

// TestWrongPartitionInputsAreForwarded: the worker's results and the
// operator's signals and actions land on other partitions than the Go
// client's key hash chooses (clients whose hash differs, as Python's and
// C++'s Murmur3 does), and on different ones, while the starts come
// through the Go client. Two orchestrators share four partitions: each
// input reaches the owner of its process (it is forwarded in the batch
// transaction), so every process completes (or is terminated when asked),
// and nothing is dropped as an unknown process.
func TestWrongPartitionInputsAreForwarded(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	broker := memory.NewBroker()
	plain := memory.New(memory.Options{Broker: broker})
	t.Cleanup(func() { _ = plain.Close() })
	topics := protocol.DefaultTopics()
	topics.Partitions = 4
	log := testLogger(t)
	if err := engine.EnsureTopics(ctx, plain, topics); err != nil {
		t.Fatal(err)
	}
	reg := engine.NewRegistry(plain, topics.Definitions, nil)
	t.Cleanup(func() { _ = reg.Close() })
	if _, err := reg.Register(ctx, "routed.yaml", []byte(routedYAML)); err != nil {
		t.Fatal(err)
	}

	var orchs []*engine.Orchestrator
	for _, name := range []string{"a", "b"} {
		ob := memory.New(memory.Options{Broker: broker})
		t.Cleanup(func() { _ = ob.Close() })
		o := engine.NewOrchestrator(ob, reg, engine.OrchestratorOptions{Name: name, Topics: topics, OwnershipPoll: 20 * time.Millisecond}, log)
		runComponent(ctx, t, "orchestrator "+name, o.Run)
		orchs = append(orchs, o)
	}

	// The worker's results go one partition further than the Go client's
	// hash says, the operator's signals and actions three; starts come
	// through the Go client, so each process has inputs from senders that
	// disagree about its partition.
	results := &misroutingBus{Bus: memory.New(memory.Options{Broker: broker}), events: topics.Events, n: topics.Partitions, shift: 1}
	t.Cleanup(func() { _ = results.Close() })
	w, err := worker.New(results, worker.Options{Service: "routed-payments", Name: "test-routed"}, log)
	if err != nil {
		t.Fatal(err)
	}
	w.Handle("Charge", func(context.Context, *worker.Job) (any, error) { return map[string]any{"ok": true}, nil })
	runComponent(ctx, t, "worker", w.Run)
	starter := engine.NewClient(plain, topics)
	t.Cleanup(func() { _ = starter.Close() })
	operator := &misroutingBus{Bus: memory.New(memory.Options{Broker: broker}), events: topics.Events, n: topics.Partitions, shift: 3}
	t.Cleanup(func() { _ = operator.Close() })
	client := engine.NewClient(operator, topics)
	t.Cleanup(func() { _ = client.Close() })
	status := engine.NewStatusTable(plain, topics.Status)
	t.Cleanup(func() { _ = status.Close() })

	pids := pidsOf("routed", 24)
	for _, pid := range pids {
		if err := starter.Start(ctx, protocol.StartRequest{ProcessID: pid, Definition: "routed", Input: json.RawMessage(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	// Each process waits for its signal once charged; every fourth is
	// cancelled by an operator instead.
	want := map[string]workflow.Status{}
	pending := map[string]bool{}
	for i, pid := range pids {
		want[pid], pending[pid] = workflow.StatusCompleted, true
		if i%4 == 3 {
			want[pid] = workflow.StatusTerminated
		}
	}
	for len(pending) > 0 {
		if err := status.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		for pid := range pending {
			row, ok := status.Get(pid)
			if !ok || row.Steps["charge"] != string(workflow.StepCompleted) {
				continue
			}
			delete(pending, pid)
			if want[pid] == workflow.StatusTerminated {
				err = client.Admin(ctx, protocol.AdminRequest{ProcessID: pid, Action: protocol.ActionTerminate, Actor: "test", Reason: "test"}, "terminate-"+pid)
			} else {
				err = client.Signal(ctx, pid, "approved", "approved-"+pid, json.RawMessage(`{"by":"x"}`))
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("processes not charged: %v (drops a=%v b=%v)", pending, orchs[0].Drops(), orchs[1].Drops())
		case <-time.After(20 * time.Millisecond):
		}
	}
	for _, pid := range pids {
		for {
			if err := status.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
			if row, ok := status.Get(pid); ok && row.Status == want[pid] {
				break
			}
			select {
			case <-ctx.Done():
				row, _ := status.Get(pid)
				t.Fatalf("%s: %s, want %s (drops a=%v b=%v)", pid, row.Status, want[pid], orchs[0].Drops(), orchs[1].Drops())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	var forwarded int64
	for _, o := range orchs {
		forwarded += o.Forwarded()
		if n := o.Drops()[engine.DropUnknownProcess]; n > 0 {
			t.Errorf("%d inputs dropped as of an unknown process", n)
		}
	}
	// results and signals/actions, each misrouted once.
	sent := results.sent.Load() + operator.sent.Load()
	if sent < int64(2*len(pids)) {
		t.Errorf("only %d messages went through the misrouting clients", sent)
	}
	if forwarded != sent {
		t.Errorf("%d inputs forwarded, want the %d misrouted ones", forwarded, sent)
	}
}

// misroutingBus puts every keyed message for the events topic on the
// partition shift places after the one bus.KeyPartition gives its key.
type misroutingBus struct {
	bus.Bus
	events string
	n      int
	shift  int
	sent   atomic.Int64
}

func (b *misroutingBus) Producer(ctx context.Context, opts bus.ProducerOptions) (bus.Producer, error) {
	ns := b.Namespace()
	if ns.Topic(opts.Topic) != ns.Topic(b.events) {
		return b.Bus.Producer(ctx, opts)
	}
	p := &misroutingProducer{b: b, topic: ns.Topic(b.events)}
	for i := range b.n {
		o := opts
		o.Topic = ns.Partition(b.events, i)
		pp, err := b.Bus.Producer(ctx, o)
		if err != nil {
			_ = p.Close()
			return nil, err
		}
		p.parts = append(p.parts, pp)
	}
	return p, nil
}

type misroutingProducer struct {
	b     *misroutingBus
	topic string
	parts []bus.Producer
}

func (p *misroutingProducer) to(msg *bus.OutMessage) bus.Producer {
	p.b.sent.Add(1)
	return p.parts[(bus.KeyPartition(msg.Key, p.b.n)+p.b.shift)%p.b.n]
}

func (p *misroutingProducer) Send(ctx context.Context, msg *bus.OutMessage) (bus.MessageID, error) {
	return p.to(msg).Send(ctx, msg)
}

func (p *misroutingProducer) SendAsync(ctx context.Context, msg *bus.OutMessage, done func(bus.MessageID, error)) {
	p.to(msg).SendAsync(ctx, msg, done)
}

func (p *misroutingProducer) Flush(ctx context.Context) error {
	for _, pp := range p.parts {
		if err := pp.Flush(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (p *misroutingProducer) Topic() string { return p.topic }

func (p *misroutingProducer) Close() error {
	var first error
	for _, pp := range p.parts {
		if err := pp.Close(); err != nil && first == nil {
			first = fmt.Errorf("close: %w", err)
		}
	}
	return first
}
