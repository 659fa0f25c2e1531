package memory_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/memory"
)

// Tests of memory-bus properties the conformance suite cannot require of
// every broker.

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func mustProducer(t *testing.T, b bus.Bus, topic string) bus.Producer {
	t.Helper()
	p, err := b.Producer(ctx(t), bus.ProducerOptions{Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustSend(t *testing.T, p bus.Producer, m *bus.OutMessage) bus.MessageID {
	t.Helper()
	id, err := p.Send(ctx(t), m)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func mustSubscribe(t *testing.T, b bus.Bus, o bus.SubscribeOptions) bus.Consumer {
	t.Helper()
	c, err := b.Subscribe(ctx(t), o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustReceive(t *testing.T, c bus.Consumer) *bus.Message {
	t.Helper()
	m, err := c.Receive(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMessageIDsSortInPublishOrder(t *testing.T) {
	b := memory.New(memory.Options{})
	defer b.Close()
	if err := b.EnsureTopic(ctx(t), bus.TopicSpec{Name: "ids", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	p := mustProducer(t, b, "ids")
	last := map[int]bus.MessageID{}
	c := mustSubscribe(t, b, bus.SubscribeOptions{Topic: "ids", Subscription: "s", Type: bus.Exclusive})
	for i := 0; i < 40; i++ {
		mustSend(t, p, &bus.OutMessage{Key: fmt.Sprint("k", i), Payload: []byte("x")})
	}
	for i := 0; i < 40; i++ {
		m := mustReceive(t, c)
		if prev, ok := last[m.Partition]; ok && bytes.Compare(prev, m.ID) >= 0 {
			t.Fatalf("partition %d: id %x after %x", m.Partition, []byte(m.ID), []byte(prev))
		}
		last[m.Partition] = m.ID
	}
	if len(last) != 2 {
		t.Fatalf("40 keys used %d of 2 partitions", len(last))
	}
}

// TestFailoverAssignment: partition i goes to consumer i mod n, consumers
// sorted by name, as in Pulsar.
func TestFailoverAssignment(t *testing.T) {
	broker := memory.NewBroker()
	b := memory.New(memory.Options{Broker: broker})
	defer b.Close()
	if err := b.EnsureTopic(ctx(t), bus.TopicSpec{Name: "fo", Partitions: 5}); err != nil {
		t.Fatal(err)
	}
	cs := map[string]bus.Consumer{}
	for _, name := range []string{"c", "a", "b"} {
		cs[name] = mustSubscribe(t, memory.New(memory.Options{Broker: broker}), bus.SubscribeOptions{Topic: "fo", Subscription: "s", Type: bus.Failover, ConsumerName: name})
	}
	p := mustProducer(t, b, "fo")
	for i := 0; i < 50; i++ {
		mustSend(t, p, &bus.OutMessage{Key: fmt.Sprint("key", i)})
	}
	sorted := []string{"a", "b", "c"}
	seen := map[int]bool{}
	deadline := time.Now().Add(10 * time.Second)
	for total := 0; total < 50; {
		if time.Now().After(deadline) {
			t.Fatalf("received %d of 50", total)
		}
		for name, c := range cs {
			cx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			m, err := c.Receive(cx)
			cancel()
			if err != nil {
				continue
			}
			total++
			if want := sorted[m.Partition%3]; want != name {
				t.Fatalf("partition %d delivered to %s, want %s", m.Partition, name, want)
			}
			seen[m.Partition] = true
		}
	}
	if len(seen) != 5 {
		t.Fatalf("received from partitions %v, want all 5", seen)
	}
}

func TestCompactedViewKeepsLatestPerKey(t *testing.T) {
	b := memory.New(memory.Options{})
	defer b.Close()
	p := mustProducer(t, b, "table")
	for _, w := range [][2]string{{"a", "a1"}, {"b", "b1"}, {"a", "a2"}, {"c", "c1"}, {"c", ""}, {"", "nokey1"}, {"b", "b2"}, {"a", "a3"}, {"", "nokey2"}} {
		mustSend(t, p, &bus.OutMessage{Key: w[0], Payload: []byte(w[1])})
	}
	r, err := b.Reader(ctx(t), bus.ReaderOptions{Topic: "table", Compacted: true})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		ok, err := r.HasNext(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		m, err := r.Next(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m.Key+"="+string(m.Payload))
	}
	if want := "[=nokey1 b=b2 a=a3 =nokey2]"; fmt.Sprint(got) != want {
		t.Fatalf("compacted view %v, want %s", got, want)
	}
}

// TestOpenTransactionHoldsBackItsPartition: like Pulsar's max read
// position, messages after an open transaction's are not dispatched until
// it ends, so a committed transaction's messages keep their place.
func TestOpenTransactionHoldsBackItsPartition(t *testing.T) {
	b := memory.New(memory.Options{})
	defer b.Close()
	p := mustProducer(t, b, "held")
	c := mustSubscribe(t, b, bus.SubscribeOptions{Topic: "held", Subscription: "s", Type: bus.Exclusive})
	tx, err := b.BeginTx(ctx(t), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	mustSend(t, p, &bus.OutMessage{Key: "k", Payload: []byte("in tx"), Tx: tx})
	mustSend(t, p, &bus.OutMessage{Key: "k", Payload: []byte("after")})
	cx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if m, err := c.Receive(cx); err == nil {
		t.Fatalf("got %q while the transaction before it is open", m.Payload)
	}
	if err := tx.Commit(ctx(t)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"in tx", "after"} {
		if m := mustReceive(t, c); string(m.Payload) != want {
			t.Fatalf("got %q, want %q", m.Payload, want)
		}
	}
}

func TestClosedBusFailsWithErrClosed(t *testing.T) {
	b := memory.New(memory.Options{})
	p := mustProducer(t, b, "t")
	c := mustSubscribe(t, b, bus.SubscribeOptions{Topic: "t", Subscription: "s", Type: bus.Shared})
	r, err := b.Reader(ctx(t), bus.ReaderOptions{Topic: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	calls := []struct {
		name string
		call func() error
	}{
		{"EnsureTopic", func() error { return b.EnsureTopic(ctx(t), bus.TopicSpec{Name: "x"}) }},
		{"Producer", func() error { _, err := b.Producer(ctx(t), bus.ProducerOptions{Topic: "t"}); return err }},
		{"Subscribe", func() error {
			_, err := b.Subscribe(ctx(t), bus.SubscribeOptions{Topic: "t", Subscription: "s", Type: bus.Shared})
			return err
		}},
		{"Reader", func() error { _, err := b.Reader(ctx(t), bus.ReaderOptions{Topic: "t"}); return err }},
		{"BeginTx", func() error { _, err := b.BeginTx(ctx(t), time.Second); return err }},
		{"Send", func() error { _, err := p.Send(ctx(t), &bus.OutMessage{}); return err }},
		{"SendAsync", func() error {
			ch := make(chan error, 1)
			p.SendAsync(ctx(t), &bus.OutMessage{}, func(_ bus.MessageID, err error) { ch <- err })
			return <-ch
		}},
		{"Flush", func() error { return p.Flush(ctx(t)) }},
		{"Receive", func() error { _, err := c.Receive(ctx(t)); return err }},
		{"Ack", func() error { return c.Ack(ctx(t), &bus.Message{}) }},
		{"Next", func() error { _, err := r.Next(ctx(t)); return err }},
		{"HasNext", func() error { _, err := r.HasNext(ctx(t)); return err }},
	}
	for _, tc := range calls {
		if err := tc.call(); !errors.Is(err, bus.ErrClosed) {
			t.Errorf("%s after Close: got %v, want bus.ErrClosed", tc.name, err)
		}
	}
}

// TestCloseLeavesNoGoroutines: blocked receivers and readers return and
// nothing of the bus keeps running after Close.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	b := memory.New(memory.Options{})
	p := mustProducer(t, b, "g")
	done := make(chan error, 3)
	c := mustSubscribe(t, b, bus.SubscribeOptions{Topic: "g", Subscription: "s", Type: bus.Shared, AckTimeout: time.Hour})
	r, err := b.Reader(ctx(t), bus.ReaderOptions{Topic: "other"})
	if err != nil {
		t.Fatal(err)
	}
	mustSend(t, p, &bus.OutMessage{Payload: []byte("delayed"), DeliverAt: time.Now().Add(time.Hour)})
	p2 := mustProducer(t, b, "g2")
	for i := 0; i < 100; i++ {
		p2.SendAsync(context.Background(), &bus.OutMessage{Key: "k", Payload: []byte("x")}, nil)
	}
	go func() { _, err := c.Receive(context.Background()); done <- err }()
	go func() { _, err := r.Next(context.Background()); done <- err }()
	tx, err := b.BeginTx(ctx(t), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_ = tx
	time.Sleep(20 * time.Millisecond)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		select {
		case err := <-done:
			if !errors.Is(err, bus.ErrClosed) {
				t.Fatalf("blocked call returned %v, want bus.ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a blocked Receive or Next did not return on Close")
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines after Close, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestEnsureTopic(t *testing.T) {
	b := memory.New(memory.Options{})
	defer b.Close()
	steps := []struct {
		spec bus.TopicSpec
		ok   bool
	}{
		{bus.TopicSpec{Name: "p", Partitions: 2}, true},
		{bus.TopicSpec{Name: "p", Partitions: 2}, true},  // idempotent
		{bus.TopicSpec{Name: "p", Partitions: 4}, true},  // grows, as Pulsar allows
		{bus.TopicSpec{Name: "p", Partitions: 3}, false}, // cannot shrink
		{bus.TopicSpec{Name: "p"}, false},                // cannot unpartition
		{bus.TopicSpec{Name: "plain"}, true},             //
		{bus.TopicSpec{Name: "plain", Partitions: 2}, false},
		{bus.TopicSpec{Name: "p-partition-1"}, false},
		{bus.TopicSpec{Name: "neg", Partitions: -1}, false},
	}
	for i, s := range steps {
		err := b.EnsureTopic(ctx(t), s.spec)
		if (err == nil) != s.ok || err != nil && !errors.Is(err, bus.ErrBadOptions) {
			t.Fatalf("step %d %+v: got %v, want ok=%v", i, s.spec, err, s.ok)
		}
	}
	// The grown topic spreads keys over its 4 partitions.
	c := mustSubscribe(t, b, bus.SubscribeOptions{Topic: "p", Subscription: "s", Type: bus.Shared})
	p := mustProducer(t, b, "p")
	for i := 0; i < 40; i++ {
		mustSend(t, p, &bus.OutMessage{Key: fmt.Sprint(i)})
	}
	parts := map[int]bool{}
	for i := 0; i < 40; i++ {
		parts[mustReceive(t, c).Partition] = true
	}
	if len(parts) != 4 {
		t.Fatalf("partitions used: %v", parts)
	}
}

func TestProducerNameIsUniquePerTopic(t *testing.T) {
	b := memory.New(memory.Options{})
	defer b.Close()
	p, err := b.Producer(ctx(t), bus.ProducerOptions{Topic: "t", Name: "orchestrator-1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Producer(ctx(t), bus.ProducerOptions{Topic: "t", Name: "orchestrator-1"}); err == nil {
		t.Fatal("a second producer with the same name was accepted")
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Producer(ctx(t), bus.ProducerOptions{Topic: "t", Name: "orchestrator-1"}); err != nil {
		t.Fatalf("name not released on Close: %v", err)
	}
}

// TestFailoverNewActiveGetsUnacked: when a consumer that sorts first joins
// a Failover subscription it becomes active, and what the previous active
// consumer had not acknowledged is delivered to it (Pulsar rewinds the
// cursor to the new active consumer).
func TestFailoverNewActiveGetsUnacked(t *testing.T) {
	broker := memory.NewBroker()
	b1, b2 := memory.New(memory.Options{Broker: broker}), memory.New(memory.Options{Broker: broker})
	defer b1.Close()
	defer b2.Close()
	o := bus.SubscribeOptions{Topic: "fo", Subscription: "s", Type: bus.Failover, ConsumerName: "b"}
	old := mustSubscribe(t, b1, o)
	p := mustProducer(t, b1, "fo")
	for i := 0; i < 4; i++ {
		mustSend(t, p, &bus.OutMessage{Key: "k", Payload: []byte(fmt.Sprint(i))})
	}
	for i := 0; i < 4; i++ {
		m := mustReceive(t, old)
		if i < 2 {
			if err := old.Ack(ctx(t), m); err != nil {
				t.Fatal(err)
			}
		}
	}
	o.ConsumerName = "a"
	active := mustSubscribe(t, b2, o)
	for _, want := range []string{"2", "3"} {
		if m := mustReceive(t, active); string(m.Payload) != want {
			t.Fatalf("new active consumer got %q, want %q", m.Payload, want)
		}
	}
	cx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if m, err := old.Receive(cx); err == nil {
		t.Fatalf("the previous active consumer still receives: %q", m.Payload)
	}
}

// TestSubscriptionType: a subscription keeps its type while it has
// consumers and may change it when it has none, as in Pulsar.
func TestSubscriptionType(t *testing.T) {
	b := memory.New(memory.Options{})
	defer b.Close()
	o := bus.SubscribeOptions{Topic: "t", Subscription: "s", Type: bus.Shared}
	c := mustSubscribe(t, b, o)
	o.Type = bus.Failover
	if _, err := b.Subscribe(ctx(t), o); !errors.Is(err, bus.ErrBadOptions) {
		t.Fatalf("another type on a subscription in use: got %v, want bus.ErrBadOptions", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	f := mustSubscribe(t, b, o)
	p := mustProducer(t, b, "t")
	mustSend(t, p, &bus.OutMessage{Payload: []byte("later"), DeliverAt: time.Now().Add(time.Hour)})
	if m := mustReceive(t, f); string(m.Payload) != "later" {
		t.Fatalf("got %q", m.Payload)
	}
}

// TestSharedRoundRobin: consumers waiting in Receive on a Shared
// subscription take its messages in turn (like Pulsar's consumers with a
// receive queue of zero: the memory bus does not prefetch). A consumer that
// comes back for more waits behind the one that was already waiting.
func TestSharedRoundRobin(t *testing.T) {
	broker := memory.NewBroker()
	b := memory.New(memory.Options{Broker: broker})
	defer b.Close()
	type worker struct {
		name string
		want chan struct{}
	}
	got := make(chan string)
	var ws []*worker
	for _, name := range []string{"x", "y"} {
		c := mustSubscribe(t, memory.New(memory.Options{Broker: broker}), bus.SubscribeOptions{Topic: "rr", Subscription: "s", Type: bus.Shared})
		w := &worker{name: name, want: make(chan struct{}, 1)}
		ws = append(ws, w)
		go func() {
			for range w.want {
				m, err := c.Receive(ctx(t))
				if err != nil {
					return
				}
				_ = c.Ack(context.Background(), m)
				got <- w.name
			}
		}()
	}
	defer func() {
		for _, w := range ws {
			close(w.want)
		}
	}()
	for _, w := range ws {
		w.want <- struct{}{}
	}
	time.Sleep(50 * time.Millisecond) // both wait in Receive
	p := mustProducer(t, b, "rr")
	last := ""
	for i := 0; i < 20; i++ {
		mustSend(t, p, &bus.OutMessage{Payload: []byte("x")})
		var who string
		select {
		case who = <-got:
		case <-time.After(10 * time.Second):
			t.Fatal("no consumer got the message")
		}
		if who == last {
			t.Fatalf("message %d went to %s again while the other consumer was waiting", i, who)
		}
		last = who
		for _, w := range ws {
			if w.name == who {
				w.want <- struct{}{} // back into Receive, behind the other
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
}
