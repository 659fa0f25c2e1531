package bustest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
)

var producerTests = []test{
	{"KeyPartition", testKeyPartition},
	{"PartitionExplicit", func(t *testing.T, s *suite) { s.partitionExplicit(t, false) }},
	{"PartitionExplicitTx", func(t *testing.T, s *suite) { s.partitionExplicit(t, true) }},
	{"Exclusive", testExclusiveProducer},
	{"WaitForExclusive", testWaitForExclusive},
	{"ExclusiveWithFencing", func(t *testing.T, s *suite) { s.fencing(t, false) }},
	{"ExclusiveWithFencingPartition", func(t *testing.T, s *suite) { s.fencing(t, true) }},
}

// keyFor returns a key that bus.KeyPartition routes to partition p of n.
func keyFor(p, n int, prefix string) string {
	for i := 0; ; i++ {
		k := fmt.Sprintf("%s-%d", prefix, i)
		if bus.KeyPartition(k, n) == p {
			return k
		}
	}
}

// testKeyPartition: a keyed message sent through the topic lands on the
// partition bus.KeyPartition names.
func testKeyPartition(t *testing.T, s *suite) {
	n := s.o.Partitions
	topic := unique("keypart")
	b := s.bus(t)
	s.ensure(t, b, bus.TopicSpec{Name: topic, Partitions: n})
	c := s.subscribe(t, b, bus.SubscribeOptions{Topic: topic, Subscription: unique("s"), Type: bus.Exclusive})
	p := s.producer(t, b, topic)
	const keys = 20
	for i := range keys {
		k := fmt.Sprintf("process-%d", i)
		send(t, p, &bus.OutMessage{Key: k, Payload: []byte(k)})
	}
	for range keys {
		m := s.receive(t, c, "a keyed message")
		ack(t, c, m)
		if want := bus.KeyPartition(m.Key, n); m.Partition != want {
			t.Fatalf("key %s arrived on partition %d, KeyPartition says %d", m.Key, m.Partition, want)
		}
	}
}

// partitionExplicit: a producer opened on one partition's name puts every
// message on that partition whatever its key, and a subscription on the
// partitioned topic receives it from there (in a transaction too).
func (s *suite) partitionExplicit(t *testing.T, withTx bool) {
	n := s.o.Partitions
	topic := unique("partexp")
	b := s.bus(t)
	s.ensure(t, b, bus.TopicSpec{Name: topic, Partitions: n})
	c := s.subscribe(t, b, bus.SubscribeOptions{Topic: topic, Subscription: unique("s"), Type: bus.Exclusive})
	var tx bus.Tx
	if withTx {
		var err error
		if tx, err = b.BeginTx(s.ctx(t), time.Minute); err != nil {
			t.Fatalf("begin: %v", err)
		}
	}
	batch := bus.NewBatch(bus.BatchOptions{Tx: tx})
	for p := range n {
		prod := s.producer(t, b, b.Namespace().Partition(topic, p))
		// A key that routes elsewhere.
		k := keyFor((p+1)%n, n, fmt.Sprintf("to-%d", p))
		batch.Send(prod, &bus.OutMessage{Key: k, Payload: []byte(fmt.Sprint(p))}, nil)
	}
	if err := batch.Commit(s.ctx(t)); err != nil {
		t.Fatalf("commit: %v", err)
	}
	for range n {
		m := s.receive(t, c, "a message sent to a partition")
		ack(t, c, m)
		if fmt.Sprint(m.Partition) != string(m.Payload) || m.Topic != b.Namespace().Partition(topic, m.Partition) {
			t.Fatalf("message for partition %s arrived on partition %d (%s); its key %s routes to %d",
				m.Payload, m.Partition, m.Topic, m.Key, bus.KeyPartition(m.Key, n))
		}
	}
	s.none(t, c, "after one message per partition")
}

func (s *suite) open(t *testing.T, b bus.Bus, topic string, mode bus.AccessMode) (bus.Producer, error) {
	t.Helper()
	p, err := b.Producer(s.ctx(t), bus.ProducerOptions{Topic: topic, AccessMode: mode})
	if err == nil {
		t.Cleanup(func() { _ = p.Close() })
	}
	return p, err
}

func wantFenced(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, bus.ErrFenced) {
		t.Fatalf("%s: got %v, want an error wrapping bus.ErrFenced", what, err)
	}
	if bus.Retryable(err) {
		t.Fatalf("%s: %v is retryable; a fenced producer must not retry", what, err)
	}
}

// testExclusiveProducer: an exclusive producer keeps every other producer off the
// topic until it closes, and cannot open while another is connected.
func testExclusiveProducer(t *testing.T, s *suite) {
	topic := unique("excl")
	b1, b2 := s.bus(t), s.bus(t)
	s.ensure(t, b1, bus.TopicSpec{Name: topic})
	c := s.subscribe(t, b1, bus.SubscribeOptions{Topic: topic, Subscription: unique("s"), Type: bus.Exclusive})
	p1, err := s.open(t, b1, topic, bus.AccessExclusive)
	if err != nil {
		t.Fatalf("first exclusive producer: %v", err)
	}
	_, err = s.open(t, b2, topic, bus.AccessExclusive)
	wantFenced(t, "a second exclusive producer", err)
	_, err = s.open(t, b2, topic, bus.AccessShared)
	wantFenced(t, "a shared producer while an exclusive one holds the topic", err)
	send(t, p1, &bus.OutMessage{Key: "k", Payload: []byte("from p1")})
	if err := p1.Close(); err != nil {
		t.Fatal(err)
	}
	shared, err := s.open(t, b2, topic, bus.AccessShared)
	if err != nil {
		t.Fatalf("a shared producer once the exclusive one closed: %v", err)
	}
	_, err = s.open(t, b1, topic, bus.AccessExclusive)
	wantFenced(t, "an exclusive producer while a shared one is connected", err)
	send(t, shared, &bus.OutMessage{Key: "k", Payload: []byte("from shared")})
	for _, want := range []string{"from p1", "from shared"} {
		m := s.receive(t, c, want)
		ack(t, c, m)
		if string(m.Payload) != want {
			t.Fatalf("got %q, want %q", m.Payload, want)
		}
	}
}

// testWaitForExclusive: the producer opens once the exclusive one that
// holds the topic closes; until then it waits (and its context bounds the
// wait).
func testWaitForExclusive(t *testing.T, s *suite) {
	topic := unique("waitexcl")
	b1, b2 := s.bus(t), s.bus(t)
	s.ensure(t, b1, bus.TopicSpec{Name: topic})
	p1, err := s.open(t, b1, topic, bus.AccessExclusive)
	if err != nil {
		t.Fatalf("exclusive producer: %v", err)
	}
	short, cancel := context.WithTimeout(context.Background(), s.o.Quiet)
	defer cancel()
	if p, err := b2.Producer(short, bus.ProducerOptions{Topic: topic, AccessMode: bus.AccessWaitForExclusive}); err == nil {
		_ = p.Close()
		t.Fatal("a waiting producer opened while the exclusive one held the topic")
	}
	got := make(chan error, 1)
	var p2 bus.Producer
	go func() {
		var err error
		p2, err = b2.Producer(s.ctx(t), bus.ProducerOptions{Topic: topic, AccessMode: bus.AccessWaitForExclusive})
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("the waiting producer did not wait: %v", err)
	case <-time.After(s.o.Quiet):
	}
	if err := p1.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("waiting producer: %v", err)
		}
		t.Cleanup(func() { _ = p2.Close() })
	case <-time.After(s.o.Wait):
		t.Fatalf("the waiting producer did not open within %s of the exclusive one closing", s.o.Wait)
	}
	send(t, p2, &bus.OutMessage{Key: "k", Payload: []byte("mine now")})
	_, err = s.open(t, b1, topic, bus.AccessShared)
	wantFenced(t, "a shared producer while the waiting one holds the topic", err)
}

// fencing: a producer opened with AccessExclusiveWithFencing takes the
// topic (or one partition) from the producer that had it: the old one's
// sends fail with ErrFenced from then on and never arrive, its messages
// from before do.
func (s *suite) fencing(t *testing.T, partition bool) {
	topic := unique("fence")
	b1, b2 := s.bus(t), s.bus(t)
	target := topic
	if partition {
		s.ensure(t, b1, bus.TopicSpec{Name: topic, Partitions: s.o.Partitions})
		target = b1.Namespace().Partition(topic, 1)
	} else {
		s.ensure(t, b1, bus.TopicSpec{Name: topic})
	}
	c := s.subscribe(t, b1, bus.SubscribeOptions{Topic: topic, Subscription: unique("s"), Type: bus.Exclusive})
	old, err := s.open(t, b1, target, bus.AccessExclusive)
	if err != nil {
		t.Fatalf("first owner: %v", err)
	}
	send(t, old, &bus.OutMessage{Key: "k", Payload: []byte("old owner, before")})
	owner, err := s.open(t, b2, target, bus.AccessExclusiveWithFencing)
	if err != nil {
		t.Fatalf("fencing producer: %v", err)
	}
	send(t, owner, &bus.OutMessage{Key: "k", Payload: []byte("new owner")})
	// The deposed producer's sends fail, however often it tries.
	for i := range 3 {
		_, err := old.Send(s.ctx(t), &bus.OutMessage{Key: "k", Payload: []byte("old owner, after")})
		wantFenced(t, fmt.Sprintf("send %d of the deposed producer", i+1), err)
	}
	done := make(chan error, 1)
	old.SendAsync(s.ctx(t), &bus.OutMessage{Key: "k", Payload: []byte("old owner, async")}, func(_ bus.MessageID, err error) { done <- err })
	wantFenced(t, "SendAsync of the deposed producer", <-done)
	_, err = s.open(t, b1, target, bus.AccessShared)
	wantFenced(t, "a shared producer while the new owner holds it", err)
	for _, want := range []string{"old owner, before", "new owner"} {
		m := s.receive(t, c, want)
		ack(t, c, m)
		if string(m.Payload) != want {
			t.Fatalf("got %q, want %q", m.Payload, want)
		}
	}
	s.none(t, c, "sends of the deposed producer")
}
