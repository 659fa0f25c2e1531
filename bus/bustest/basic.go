package bustest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
)

var optionTests = []test{
	{"BadOptions", testBadOptions},
	{"ExclusiveRefusesSecondConsumer", testExclusive},
	{"InitialPositionLatest", testInitialLatest},
	{"ClosedBus", testClosedBus},
	{"EnsureTopicConcurrently", testEnsureTopicConcurrently},
}

// testEnsureTopicConcurrently: processes starting at once (orchestrators
// of one deployment) each ensure the same partitioned topic: every one of
// them succeeds, and the topic has the partitions asked for.
func testEnsureTopicConcurrently(t *testing.T, s *suite) {
	topic := unique("ensure")
	ctx := s.ctx(t)
	const n = 6
	buses := make([]bus.Bus, n)
	for i := range buses {
		buses[i] = s.bus(t)
	}
	errs := make(chan error, n)
	start := make(chan struct{})
	for _, b := range buses {
		go func() {
			<-start
			errs <- b.EnsureTopic(ctx, bus.TopicSpec{Name: topic, Partitions: 4})
		}()
	}
	close(start)
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("EnsureTopic while others ensure it too: %v", err)
		}
	}
	// Asking again with the same count is fine; with another, it is not
	// what exists (an error, not a silent success).
	if err := buses[0].EnsureTopic(ctx, bus.TopicSpec{Name: topic, Partitions: 4}); err != nil {
		t.Errorf("EnsureTopic again: %v", err)
	}
	if err := buses[0].EnsureTopic(ctx, bus.TopicSpec{Name: topic, Partitions: 2}); !errors.Is(err, bus.ErrBadOptions) {
		t.Errorf("EnsureTopic with fewer partitions than exist: %v, want bus.ErrBadOptions", err)
	}
}

// testClosedBus: once a connection is closed, everything made with it and
// the connection itself fail with bus.ErrClosed.
func testClosedBus(t *testing.T, s *suite) {
	topic := unique("closed")
	b := s.newBus(t)
	ctx := s.ctx(t)
	p, err := b.Producer(ctx, bus.ProducerOptions{Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	c, err := b.Subscribe(ctx, bus.SubscribeOptions{Topic: topic, Subscription: unique("sub"), Type: bus.Shared})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	calls := []struct {
		name string
		call func() error
	}{
		{"Producer", func() error { _, err := b.Producer(ctx, bus.ProducerOptions{Topic: topic}); return err }},
		{"Subscribe", func() error {
			_, err := b.Subscribe(ctx, bus.SubscribeOptions{Topic: topic, Subscription: "s", Type: bus.Shared})
			return err
		}},
		{"Reader", func() error { _, err := b.Reader(ctx, bus.ReaderOptions{Topic: topic}); return err }},
		{"BeginTx", func() error { _, err := b.BeginTx(ctx, time.Minute); return err }},
		{"Send", func() error { _, err := p.Send(ctx, &bus.OutMessage{Key: "k", Payload: []byte("x")}); return err }},
		{"Receive", func() error { _, err := c.Receive(ctx); return err }},
	}
	for _, tc := range calls {
		if err := tc.call(); !errors.Is(err, bus.ErrClosed) {
			t.Errorf("%s after Close: got %v, want bus.ErrClosed", tc.name, err)
		}
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func testBadOptions(t *testing.T, s *suite) {
	b := s.bus(t)
	ctx := s.ctx(t)
	topic := unique("bad")
	cases := []struct {
		name string
		call func() error
	}{
		{"producer without topic", func() error { _, err := b.Producer(ctx, bus.ProducerOptions{}); return err }},
		{"subscribe without topic", func() error {
			_, err := b.Subscribe(ctx, bus.SubscribeOptions{Subscription: "s", Type: bus.Shared})
			return err
		}},
		{"subscribe without subscription", func() error {
			_, err := b.Subscribe(ctx, bus.SubscribeOptions{Topic: topic, Type: bus.Shared})
			return err
		}},
		{"subscribe with unknown type", func() error {
			_, err := b.Subscribe(ctx, bus.SubscribeOptions{Topic: topic, Subscription: "s", Type: bus.SubscriptionType(42)})
			return err
		}},
		{"subscribe with negative max deliveries", func() error {
			_, err := b.Subscribe(ctx, bus.SubscribeOptions{Topic: topic, Subscription: "s", Type: bus.Shared, MaxDeliveries: -1})
			return err
		}},
		{"reader without topic", func() error { _, err := b.Reader(ctx, bus.ReaderOptions{}); return err }},
		{"topic spec without name", func() error { return b.EnsureTopic(ctx, bus.TopicSpec{Partitions: 2}) }},
		{"transaction without timeout", func() error { _, err := b.BeginTx(ctx, 0); return err }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if !errors.Is(err, bus.ErrBadOptions) {
				t.Fatalf("got %v, want an error wrapping bus.ErrBadOptions", err)
			}
		})
	}
}

func testExclusive(t *testing.T, s *suite) {
	topic, sub := unique("excl"), unique("sub")
	b1, b2 := s.bus(t), s.bus(t)
	o := bus.SubscribeOptions{Topic: topic, Subscription: sub, Type: bus.Exclusive, ConsumerName: "first"}
	c1 := s.subscribe(t, b1, o)
	o.ConsumerName = "second"
	if c2, err := b2.Subscribe(s.ctx(t), o); err == nil {
		_ = c2.Close()
		t.Fatal("a second consumer on an exclusive subscription was accepted")
	}
	p := s.producer(t, b1, topic)
	send(t, p, &bus.OutMessage{Key: "k", Payload: []byte("one")})
	m := s.receive(t, c1, "message on the exclusive subscription")
	if string(m.Payload) != "one" {
		t.Fatalf("got %q, want \"one\"", m.Payload)
	}
	ack(t, c1, m)
	if err := c1.Close(); err != nil {
		t.Fatal(err)
	}
	c2 := s.subscribe(t, b2, o)
	send(t, p, &bus.OutMessage{Key: "k", Payload: []byte("two")})
	if m := s.receive(t, c2, "message after the first consumer left"); string(m.Payload) != "two" {
		t.Fatalf("got %q, want \"two\"", m.Payload)
	}
}

func testInitialLatest(t *testing.T, s *suite) {
	topic := unique("latest")
	b := s.bus(t)
	p := s.producer(t, b, topic)
	send(t, p, &bus.OutMessage{Key: "k", Payload: []byte("before")})
	latest := s.subscribe(t, b, bus.SubscribeOptions{Topic: topic, Subscription: unique("l"), Type: bus.Exclusive, InitialPosition: bus.Latest})
	earliest := s.subscribe(t, b, bus.SubscribeOptions{Topic: topic, Subscription: unique("e"), Type: bus.Exclusive})
	send(t, p, &bus.OutMessage{Key: "k", Payload: []byte("after")})
	if m := s.receive(t, latest, "from Latest"); string(m.Payload) != "after" {
		t.Fatalf("Latest subscription got %q first, want \"after\"", m.Payload)
	}
	if m := s.receive(t, earliest, "from Earliest"); string(m.Payload) != "before" {
		t.Fatalf("Earliest subscription got %q first, want \"before\"", m.Payload)
	}
}

var orderTests = []test{
	{"PlainFailover", func(t *testing.T, s *suite) { s.orderPerKey(t, 0, bus.Failover) }},
	{"PlainKeyShared", func(t *testing.T, s *suite) { s.orderPerKey(t, 0, bus.KeyShared) }},
	{"PartitionedFailover", func(t *testing.T, s *suite) { s.orderPerKey(t, s.o.Partitions, bus.Failover) }},
	{"PartitionedKeyShared", func(t *testing.T, s *suite) { s.orderPerKey(t, s.o.Partitions, bus.KeyShared) }},
	{"SendAsyncFlush", testSendAsyncOrder},
}

// orderPerKey sends interleaved keys and checks that two consumers (two
// connections) together receive each key's messages once and in order,
// each key by one consumer.
func (s *suite) orderPerKey(t *testing.T, partitions int, typ bus.SubscriptionType) {
	const keys, perKey = 6, 15
	topic, sub := unique("order"), unique("sub")
	b1, b2 := s.bus(t), s.bus(t)
	if partitions > 0 {
		s.ensure(t, b1, bus.TopicSpec{Name: topic, Partitions: partitions})
	}
	o := bus.SubscribeOptions{Topic: topic, Subscription: sub, Type: typ}
	o.ConsumerName = "a"
	k1 := collect(t, "a", s.subscribe(t, b1, o))
	o.ConsumerName = "b"
	k2 := collect(t, "b", s.subscribe(t, b2, o))
	s.settle()
	p := s.producer(t, b1, topic)
	for i := 0; i < perKey; i++ {
		for k := 0; k < keys; k++ {
			key := fmt.Sprintf("key-%d", k)
			send(t, p, &bus.OutMessage{Key: key, Payload: payload(key, i)})
		}
	}
	last := map[string]int{}
	by := map[string]string{}
	for n := 0; n < keys*perKey; n++ {
		m, k := s.next(t, fmt.Sprintf("message %d of %d", n+1, keys*perKey), k1, k2)
		ack(t, k.c, m)
		key, seq := parsePayload(t, m)
		if key != m.Key {
			t.Fatalf("message %q arrived with key %q", m.Payload, m.Key)
		}
		if want, ok := last[key]; ok && seq != want+1 || !ok && seq != 0 {
			t.Fatalf("key %s: got #%d after #%d (out of order or duplicated)", key, seq, last[key])
		}
		last[key] = seq
		if prev, ok := by[key]; ok && prev != k.name {
			t.Fatalf("key %s went to consumer %s and to %s", key, prev, k.name)
		}
		by[key] = k.name
	}
	s.quiet(t, "after every message was received", k1, k2)
}

func parsePayload(t *testing.T, m *bus.Message) (string, int) {
	t.Helper()
	key, num, ok := strings.Cut(string(m.Payload), "/")
	n, err := strconv.Atoi(num)
	if !ok || err != nil {
		t.Fatalf("unexpected payload %q", m.Payload)
	}
	return key, n
}

func testSendAsyncOrder(t *testing.T, s *suite) {
	const keys, perKey = 4, 50
	topic := unique("async")
	b := s.bus(t)
	c := s.subscribe(t, b, bus.SubscribeOptions{Topic: topic, Subscription: unique("sub"), Type: bus.Exclusive})
	p := s.producer(t, b, topic)
	ctx := s.ctx(t)
	type result struct {
		key string
		seq int
		err error
	}
	results := make(chan result, keys*perKey)
	for i := 0; i < perKey; i++ {
		for k := 0; k < keys; k++ {
			key := fmt.Sprintf("key-%d", k)
			p.SendAsync(ctx, &bus.OutMessage{Key: key, Payload: payload(key, i)}, func(id bus.MessageID, err error) {
				if err == nil && len(id) == 0 {
					err = errors.New("no message id")
				}
				results <- result{key, i, err}
			})
		}
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
	for n := 0; n < keys*perKey; n++ {
		select {
		case r := <-results:
			if r.err != nil {
				t.Fatalf("SendAsync %s #%d: %v", r.key, r.seq, r.err)
			}
		default:
			t.Fatalf("Flush returned with %d of %d callbacks not called", keys*perKey-n, keys*perKey)
		}
	}
	last := map[string]int{}
	for n := 0; n < keys*perKey; n++ {
		m := s.receive(t, c, fmt.Sprintf("message %d of %d", n+1, keys*perKey))
		ack(t, c, m)
		key, seq := parsePayload(t, m)
		if want, ok := last[key]; ok && seq != want+1 || !ok && seq != 0 {
			t.Fatalf("key %s: got #%d after #%d", key, seq, last[key])
		}
		last[key] = seq
	}
}

var sizeTests = []test{
	{"TooLarge", testTooLarge},
	{"JustUnderTheLimit", testUnderLimit},
}

func testTooLarge(t *testing.T, s *suite) {
	topic := unique("large")
	b := s.bus(t)
	p := s.producer(t, b, topic)
	for _, size := range []int{bus.MaxPayloadBytes + 1, 5 * 1024 * 1024, 6 * 1000 * 1000} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			msg := &bus.OutMessage{Payload: make([]byte, size)}
			_, err := p.Send(s.ctx(t), msg)
			checkTooLarge(t, err, size)
			done := make(chan error, 1)
			p.SendAsync(s.ctx(t), msg, func(_ bus.MessageID, err error) { done <- err })
			select {
			case err := <-done:
				checkTooLarge(t, err, size)
			case <-time.After(s.o.Wait):
				t.Fatal("SendAsync callback not called")
			}
		})
	}
}

func checkTooLarge(t *testing.T, err error, size int) {
	t.Helper()
	if !errors.Is(err, bus.ErrTooLarge) {
		t.Fatalf("send of %d bytes: got %v, want an error wrapping bus.ErrTooLarge", size, err)
	}
	if msg := err.Error(); !strings.Contains(msg, strconv.Itoa(bus.MaxPayloadBytes)) || !strings.Contains(msg, strconv.Itoa(size)) {
		t.Fatalf("error %q should give the size (%d) and the limit (%d)", msg, size, bus.MaxPayloadBytes)
	}
}

func testUnderLimit(t *testing.T, s *suite) {
	topic := unique("big")
	b := s.bus(t)
	c := s.subscribe(t, b, bus.SubscribeOptions{Topic: topic, Subscription: unique("sub"), Type: bus.Exclusive})
	p := s.producer(t, b, topic)
	body := make([]byte, bus.MaxPayloadBytes-1024)
	for i := range body {
		body[i] = byte(i * 7)
	}
	send(t, p, &bus.OutMessage{Key: "big", Payload: body, Properties: map[string]string{"p": "v"}})
	m := s.receive(t, c, "the large message")
	if len(m.Payload) != len(body) || string(m.Payload) != string(body) {
		t.Fatalf("payload of %d bytes came back as %d different bytes", len(body), len(m.Payload))
	}
	ack(t, c, m)
}

// waitCtx is a context bounded by Options.Wait.
func (s *suite) waitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), s.o.Wait)
	t.Cleanup(cancel)
	return ctx
}
