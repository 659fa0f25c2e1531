package bustest

import (
	"fmt"
	"testing"

	"github.com/pulsaga/pulsaga/bus"
)

var failoverTests = []test{
	{"OwnerCloses", func(t *testing.T, s *suite) { s.failoverTakeover(t, false) }},
	{"OwnerDies", func(t *testing.T, s *suite) { s.failoverTakeover(t, true) }},
	{"PartitionOwners", testFailoverPartitions},
	{"PartitionOwnerDies", testFailoverPartitionOwnerDies},
}

// testFailoverPartitionOwnerDies: two owners share the partitions; one dies
// with everything it received unacknowledged; the other takes over its
// partitions and gets exactly those messages, and none of its own again.
func testFailoverPartitionOwnerDies(t *testing.T, s *suite) {
	const n = 40
	parts := s.o.Partitions + 1
	topic, sub := unique("failpartdies"), unique("sub")
	b1, b2 := s.newBus(t), s.bus(t)
	t.Cleanup(func() { _ = b1.Close() })
	s.ensure(t, b2, bus.TopicSpec{Name: topic, Partitions: parts})
	o := bus.SubscribeOptions{Topic: topic, Subscription: sub, Type: bus.Failover}
	o.ConsumerName = "a"
	k1 := collect(t, "a", s.subscribe(t, b1, o))
	o.ConsumerName = "b"
	k2 := collect(t, "b", s.subscribe(t, b2, o))
	s.settle()
	p := s.producer(t, b2, topic)
	for i := 0; i < n; i++ {
		key := fmt.Sprintf("proc-%d", i)
		send(t, p, &bus.OutMessage{Key: key, Payload: payload(key, i)})
	}
	orphans := map[string]bool{}
	acked := map[string]bool{}
	for i := 0; i < n; i++ {
		m, k := s.next(t, fmt.Sprintf("message %d of %d", i+1, n), k1, k2)
		if k == k2 {
			ack(t, k2.c, m)
			acked[string(m.Payload)] = true
		} else {
			orphans[string(m.Payload)] = true
		}
	}
	if len(orphans) == 0 || len(acked) == 0 {
		t.Fatalf("consumer a got %d messages and b %d: want both to own partitions", len(orphans), len(acked))
	}
	if err := b1.Close(); err != nil {
		t.Fatalf("close a's connection: %v", err)
	}
	for len(orphans) > 0 {
		m, _ := s.next(t, fmt.Sprintf("takeover: %d messages of the dead owner left", len(orphans)), k2)
		if !orphans[string(m.Payload)] {
			t.Fatalf("survivor got %q again (acked %v)", m.Payload, acked[string(m.Payload)])
		}
		delete(orphans, string(m.Payload))
		ack(t, k2.c, m)
	}
	s.quiet(t, "after the takeover", k2)
}

// failoverTakeover: two consumers on two connections, only the owner
// receives; the owner acknowledges half and then closes (or its
// connection dies); the standby gets exactly the rest.
func (s *suite) failoverTakeover(t *testing.T, crash bool) {
	const n = 20
	topic, sub := unique("failover"), unique("sub")
	b1, b2 := s.newBus(t), s.newBus(t)
	t.Cleanup(func() { _ = b1.Close(); _ = b2.Close() })
	o := bus.SubscribeOptions{Topic: topic, Subscription: sub, Type: bus.Failover}
	o.ConsumerName = "a"
	c1 := s.subscribe(t, b1, o)
	o.ConsumerName = "b"
	c2 := s.subscribe(t, b2, o)
	k1, k2 := collect(t, "a", c1), collect(t, "b", c2)
	s.settle()
	p := s.producer(t, s.bus(t), topic)
	sent := map[string]bool{}
	for i := 0; i < n; i++ {
		key := fmt.Sprintf("p%d", i%4)
		body := string(payload(key, i))
		send(t, p, &bus.OutMessage{Key: key, Payload: []byte(body)})
		sent[body] = true
	}
	m, owner := s.next(t, "the first message", k1, k2)
	standby, ownerBus := k2, b1
	if owner == k2 {
		standby, ownerBus = k1, b2
	}
	got := []*bus.Message{m}
	for len(got) < n {
		m, k := s.next(t, fmt.Sprintf("message %d of %d", len(got)+1, n), k1, k2)
		if k != owner {
			t.Fatalf("standby %s received %q while %s owns the topic", k.name, m.Payload, owner.name)
		}
		got = append(got, m)
	}
	unacked := map[string]bool{}
	for i, m := range got {
		if !sent[string(m.Payload)] {
			t.Fatalf("owner got unexpected or duplicate %q", m.Payload)
		}
		delete(sent, string(m.Payload))
		if i < n/2 {
			ack(t, owner.c, m)
		} else {
			unacked[string(m.Payload)] = true
		}
	}
	s.quiet(t, "before the owner leaves", k1, k2)
	if crash {
		if err := ownerBus.Close(); err != nil {
			t.Fatalf("close the owner's connection: %v", err)
		}
	} else if err := owner.c.Close(); err != nil {
		t.Fatalf("close the owner: %v", err)
	}
	for len(unacked) > 0 {
		m, k := s.next(t, fmt.Sprintf("takeover: %d unacknowledged messages left", len(unacked)), standby)
		if k != standby {
			t.Fatalf("closed owner received %q", m.Payload)
		}
		if !unacked[string(m.Payload)] {
			t.Fatalf("standby got %q, which was acknowledged or is a duplicate", m.Payload)
		}
		delete(unacked, string(m.Payload))
		ack(t, standby.c, m)
	}
	s.quiet(t, "after the takeover", standby)
}

// testFailoverPartitions: on a partitioned topic each partition has exactly
// one owner and both consumers own some.
func testFailoverPartitions(t *testing.T, s *suite) {
	parts := s.o.Partitions + 1
	topic, sub := unique("failparts"), unique("sub")
	b1, b2 := s.bus(t), s.bus(t)
	s.ensure(t, b1, bus.TopicSpec{Name: topic, Partitions: parts})
	o := bus.SubscribeOptions{Topic: topic, Subscription: sub, Type: bus.Failover}
	o.ConsumerName = "a"
	k1 := collect(t, "a", s.subscribe(t, b1, o))
	o.ConsumerName = "b"
	k2 := collect(t, "b", s.subscribe(t, b2, o))
	s.settle()
	p := s.producer(t, b1, topic)
	const n = 60
	for i := 0; i < n; i++ {
		key := fmt.Sprintf("proc-%d", i)
		send(t, p, &bus.OutMessage{Key: key, Payload: payload(key, i)})
	}
	owner := map[int]string{}
	perConsumer := map[string]int{}
	for i := 0; i < n; i++ {
		m, k := s.next(t, fmt.Sprintf("message %d of %d", i+1, n), k1, k2)
		ack(t, k.c, m)
		if prev, ok := owner[m.Partition]; ok && prev != k.name {
			t.Fatalf("partition %d delivered to %s and to %s", m.Partition, prev, k.name)
		}
		if m.Partition < 0 || m.Partition >= parts || m.Topic != b1.Namespace().Partition(topic, m.Partition) {
			t.Fatalf("message from %s, partition %d, want one of the %d partitions of %s", m.Topic, m.Partition, parts, topic)
		}
		if _, ok := owner[m.Partition]; !ok {
			perConsumer[k.name]++
		}
		owner[m.Partition] = k.name
	}
	if len(perConsumer) != 2 {
		t.Fatalf("partition owners %v: want both consumers to own partitions", owner)
	}
	s.quiet(t, "after all messages", k1, k2)
}
