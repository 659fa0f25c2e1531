package bustest

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
)

var delayedTests = []test{
	{"Shared", func(t *testing.T, s *suite) { s.delayed(t, "Delayed/Shared", bus.Shared, s.o.DelayedMessages) }},
	{"KeyShared", func(t *testing.T, s *suite) { s.delayed(t, "Delayed/KeyShared", bus.KeyShared, 10) }},
	{"IgnoredOnFailoverAndExclusive", testDelayIgnored},
	{"InTransaction", testDelayInTx},
	{"DoesNotBlockShared", func(t *testing.T, s *suite) { s.delayNoBlock(t, bus.Shared) }},
	{"DoesNotBlockKeyShared", func(t *testing.T, s *suite) { s.delayNoBlock(t, bus.KeyShared) }},
}

// delayNoBlock: a message sent after a delayed one is not held behind it.
// The delayed one is due in an hour, so however slow the broker is, the
// order cannot be excused by the delay having passed.
func (s *suite) delayNoBlock(t *testing.T, typ bus.SubscriptionType) {
	topic := unique("noblock")
	b := s.bus(t)
	c := s.subscribe(t, b, bus.SubscribeOptions{Topic: topic, Subscription: unique("sub"), Type: typ})
	p := s.producer(t, b, topic)
	send(t, p, &bus.OutMessage{Key: "timer", Payload: []byte("in an hour"), DeliverAt: time.Now().Add(time.Hour)})
	send(t, p, &bus.OutMessage{Key: "command", Payload: []byte("now")})
	m := s.receive(t, c, "the message sent after a delayed one")
	if string(m.Payload) != "now" {
		t.Fatalf("got %q, want \"now\"", m.Payload)
	}
	ack(t, c, m)
	s.none(t, c, "the message due in an hour")
}

// testDelayInTx: a delayed message sent in a transaction (a retry the
// engine schedules with the batch that decided it) is delivered once the
// transaction commits and not before its time.
func testDelayInTx(t *testing.T, s *suite) {
	topic := unique("delaytx")
	b := s.bus(t)
	c := s.subscribe(t, b, bus.SubscribeOptions{Topic: topic, Subscription: unique("sub"), Type: bus.Shared})
	p := s.producer(t, b, topic)
	tx, err := b.BeginTx(s.ctx(t), time.Minute)
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	at := time.Now().Add(s.o.MaxDelay).Round(time.Millisecond)
	send(t, p, &bus.OutMessage{Key: "k", Payload: []byte("retry"), DeliverAt: at, Tx: tx})
	if err := tx.Commit(s.ctx(t)); err != nil {
		t.Fatalf("commit: %v", err)
	}
	m := s.receive(t, c, "the delayed message of a committed transaction")
	if got := time.Now(); got.Before(at) || string(m.Payload) != "retry" {
		t.Fatalf("got %q %s before its time", m.Payload, at.Sub(got))
	}
	ack(t, c, m)
}

// testDelayIgnored: as in Pulsar, Failover and Exclusive subscriptions
// deliver a delayed message at once.
func testDelayIgnored(t *testing.T, s *suite) {
	topic := unique("undelayed")
	b := s.bus(t)
	var cs []bus.Consumer
	for _, typ := range []bus.SubscriptionType{bus.Failover, bus.Exclusive} {
		cs = append(cs, s.subscribe(t, b, bus.SubscribeOptions{Topic: topic, Subscription: unique(typ.String()), Type: typ}))
	}
	p := s.producer(t, b, topic)
	send(t, p, &bus.OutMessage{Key: "k", Payload: []byte("in an hour"), DeliverAt: time.Now().Add(time.Hour)})
	for _, c := range cs {
		if m := s.receive(t, c, "a delayed message on a Failover or Exclusive subscription"); string(m.Payload) != "in an hour" {
			t.Fatalf("got %q", m.Payload)
		}
	}
}

// delayed sends n messages with delays between MinDelay and MaxDelay and
// checks that none arrives early; it reports the lateness.
func (s *suite) delayed(t *testing.T, name string, typ bus.SubscriptionType, n int) {
	topic := unique("delayed")
	b := s.bus(t)
	c := s.subscribe(t, b, bus.SubscribeOptions{Topic: topic, Subscription: unique("sub"), Type: typ})
	p := s.producer(t, b, topic)
	rng := rand.New(rand.NewPCG(uint64(n), 7))
	due := make(map[string]time.Time, n)
	span := s.o.MaxDelay - s.o.MinDelay
	for i := 0; i < n; i++ {
		// Milliseconds: Pulsar keeps delivery times in milliseconds.
		at := time.Now().Add(s.o.MinDelay + time.Duration(rng.Int64N(int64(span)+1))).Round(time.Millisecond)
		key := fmt.Sprintf("k%d", i%5)
		body := string(payload(key, i))
		due[body] = at
		send(t, p, &bus.OutMessage{Key: key, Payload: []byte(body), DeliverAt: at})
	}
	late := make([]time.Duration, 0, n)
	for len(late) < n {
		m := s.receive(t, c, fmt.Sprintf("delayed message %d of %d", len(late)+1, n))
		got := time.Now()
		ack(t, c, m)
		at, ok := due[string(m.Payload)]
		if !ok {
			t.Fatalf("unexpected or duplicate message %q", m.Payload)
		}
		delete(due, string(m.Payload))
		if got.Before(at) {
			t.Fatalf("message %q delivered %s early", m.Payload, at.Sub(got))
		}
		late = append(late, got.Sub(at))
	}
	slices.Sort(late)
	q := func(p float64) time.Duration { return late[int(p*float64(len(late)-1))] }
	t.Logf("%s: lateness of %d delayed messages: p50 %s, p99 %s, max %s", name, n, q(0.5), q(0.99), late[len(late)-1])
	if s.o.Lateness != nil {
		s.o.Lateness(name, late)
	}
}

var redeliveryTests = []test{
	{"Nack", testNack},
	{"ConsumerDies", testConsumerDies},
	{"ConsumerCloses", testConsumerCloses},
	{"AckTimeout", testAckTimeout},
}

func testNack(t *testing.T, s *suite) {
	topic := unique("nack")
	b := s.bus(t)
	c := s.subscribe(t, b, bus.SubscribeOptions{Topic: topic, Subscription: unique("sub"), Type: bus.Shared, NackDelay: s.o.NackDelay})
	p := s.producer(t, b, topic)
	id := send(t, p, &bus.OutMessage{Key: "k", Payload: []byte("again"), Properties: map[string]string{"h": "v"}})
	var nacked time.Time
	for i := 0; i < 3; i++ {
		m := s.receive(t, c, fmt.Sprintf("delivery %d", i+1))
		// Brokers' nack trackers may round the delay down a little.
		if el := time.Since(nacked); i > 0 && el < s.o.NackDelay/2 {
			t.Fatalf("redelivered %s after the nack, the nack delay is %s", el, s.o.NackDelay)
		}
		if !bytes.Equal(m.ID, id) || string(m.Payload) != "again" || m.Properties["h"] != "v" || m.Key != "k" {
			t.Fatalf("delivery %d: got %q (key %q, props %v), want the message sent", i+1, m.Payload, m.Key, m.Properties)
		}
		if m.RedeliveryCount != i {
			t.Fatalf("delivery %d: RedeliveryCount %d, want %d", i+1, m.RedeliveryCount, i)
		}
		if i < 2 {
			nacked = time.Now()
			c.Nack(m, fmt.Errorf("attempt %d failed", i+1))
		} else {
			ack(t, c, m)
		}
	}
	s.none(t, c, "after the ack")
}

// testConsumerDies: a consumer takes a message and its process dies
// (connection closed without ack); another consumer of the subscription
// gets it.
func testConsumerDies(t *testing.T, s *suite) {
	for _, typ := range []bus.SubscriptionType{bus.Shared, bus.KeyShared, bus.Failover} {
		t.Run(typ.String(), func(t *testing.T) {
			topic, sub := unique("dies"), unique("sub")
			b1, b2 := s.newBus(t), s.bus(t)
			defer b1.Close()
			o := bus.SubscribeOptions{Topic: topic, Subscription: sub, Type: typ, ConsumerName: "a"}
			c1, err := b1.Subscribe(s.ctx(t), o)
			if err != nil {
				t.Fatal(err)
			}
			p := s.producer(t, b2, topic)
			id := send(t, p, &bus.OutMessage{Key: "k", Payload: []byte("orphan")})
			m := s.receive(t, c1, "the message on the first consumer")
			o.ConsumerName = "b"
			c2 := s.subscribe(t, b2, o)
			if err := b1.Close(); err != nil {
				t.Fatalf("close the first connection: %v", err)
			}
			m2 := s.receive(t, c2, "the message after the first consumer died")
			if !bytes.Equal(m2.ID, m.ID) || !bytes.Equal(m2.ID, id) || string(m2.Payload) != "orphan" {
				t.Fatalf("second consumer got %q, want the orphaned message", m2.Payload)
			}
			ack(t, c2, m2)
			if _, err := c1.Receive(s.ctx(t)); !errors.Is(err, bus.ErrClosed) {
				t.Fatalf("receive on a closed connection: got %v, want bus.ErrClosed", err)
			}
			s.none(t, c2, "after the ack")
		})
	}
}

// testConsumerCloses: a consumer closes with messages unacknowledged; the
// other consumer of a Shared subscription gets them.
func testConsumerCloses(t *testing.T, s *suite) {
	topic, sub := unique("closes"), unique("sub")
	b1, b2 := s.bus(t), s.bus(t)
	o := bus.SubscribeOptions{Topic: topic, Subscription: sub, Type: bus.Shared}
	c1, err := b1.Subscribe(s.ctx(t), o)
	if err != nil {
		t.Fatal(err)
	}
	p := s.producer(t, b1, topic)
	for i := 0; i < 3; i++ {
		send(t, p, &bus.OutMessage{Key: "k", Payload: payload("k", i)})
	}
	got := map[string]bool{}
	for i := 0; i < 3; i++ {
		got[string(s.receive(t, c1, "before close").Payload)] = true
	}
	c2 := s.subscribe(t, b2, o)
	if err := c1.Close(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		m := s.receive(t, c2, "after the first consumer closed")
		if !got[string(m.Payload)] {
			t.Fatalf("unexpected or duplicate %q", m.Payload)
		}
		delete(got, string(m.Payload))
		ack(t, c2, m)
	}
	if _, err := c1.Receive(s.ctx(t)); !errors.Is(err, bus.ErrClosed) {
		t.Fatalf("receive on a closed consumer: got %v, want bus.ErrClosed", err)
	}
}

func testAckTimeout(t *testing.T, s *suite) {
	topic := unique("acktimeout")
	b := s.bus(t)
	c := s.subscribe(t, b, bus.SubscribeOptions{Topic: topic, Subscription: unique("sub"), Type: bus.Shared, AckTimeout: s.o.AckTimeout})
	p := s.producer(t, b, topic)
	send(t, p, &bus.OutMessage{Key: "k", Payload: []byte("forgotten")})
	m := s.receive(t, c, "first delivery")
	start := time.Now()
	m2 := s.receive(t, c, "redelivery after the ack timeout")
	if !bytes.Equal(m.ID, m2.ID) {
		t.Fatalf("got %q, want the unacknowledged message again", m2.Payload)
	}
	if el := time.Since(start); el < s.o.AckTimeout-50*time.Millisecond {
		t.Fatalf("redelivered after %s, before the ack timeout of %s", el, s.o.AckTimeout)
	}
	if m2.RedeliveryCount < 1 {
		t.Errorf("redelivery has RedeliveryCount %d", m2.RedeliveryCount)
	}
	ack(t, c, m2)
}

var deadLetterTests = []test{
	{"AfterMaxDeliveries", testDLQMax},
	{"AfterMaxDeliveriesToDyingConsumers", testDLQConsumersDie},
	{"AfterMaxDeliveriesWithoutCause", testDLQNoCause},
	{"Explicit", testDLQExplicit},
	{"CustomTopic", testDLQCustomTopic},
}

// dlqConsumer subscribes to the default dead-letter topic of sub.
func (s *suite) dlqConsumer(t *testing.T, b bus.Bus, topic, sub string) bus.Consumer {
	dlq := b.Namespace().Topic(topic) + "-" + sub + "-DLQ"
	return s.subscribe(t, b, bus.SubscribeOptions{Topic: dlq, Subscription: unique("dlq"), Type: bus.Exclusive})
}

func checkDLQ(t *testing.T, d *bus.Message, orig *bus.Message, sub, reason string, deliveries int) {
	t.Helper()
	if string(d.Payload) != string(orig.Payload) || d.Key != orig.Key {
		t.Fatalf("dead letter %q (key %q), want %q (key %q)", d.Payload, d.Key, orig.Payload, orig.Key)
	}
	want := map[string]string{
		bus.PropDLQOriginTopic:  orig.Topic,
		bus.PropDLQOriginID:     bus.FormatMessageID(orig.ID),
		bus.PropDLQSubscription: sub,
	}
	if deliveries > 0 {
		want[bus.PropDLQDeliveries] = strconv.Itoa(deliveries)
	}
	for k, v := range orig.Properties {
		want[k] = v
	}
	for k, v := range want {
		if d.Properties[k] != v {
			t.Errorf("dead letter property %s = %q, want %q", k, d.Properties[k], v)
		}
	}
	if got := d.Properties[bus.PropDLQReason]; !strings.Contains(got, reason) {
		t.Errorf("dead letter reason %q, want it to contain %q", got, reason)
	}
	if _, err := time.Parse(time.RFC3339Nano, d.Properties[bus.PropDLQDeadLetteredAt]); err != nil {
		t.Errorf("dead letter time %q: %v", d.Properties[bus.PropDLQDeadLetteredAt], err)
	}
}

func testDLQMax(t *testing.T, s *suite) {
	const max = 3
	topic, sub := unique("dlqmax"), unique("sub")
	b := s.bus(t)
	dlq := s.dlqConsumer(t, b, topic, sub)
	c := s.subscribe(t, b, bus.SubscribeOptions{Topic: topic, Subscription: sub, Type: bus.Shared, NackDelay: s.o.NackDelay, MaxDeliveries: max})
	k := collect(t, "worker", c)
	p := s.producer(t, b, topic)
	send(t, p, &bus.OutMessage{Key: "poison", Payload: []byte("poison"), Properties: map[string]string{"origin": "test"}})
	var first *bus.Message
	for i := 0; i < max; i++ {
		m, _ := s.next(t, fmt.Sprintf("delivery %d", i+1), k)
		if first == nil {
			first = m
		}
		if !bytes.Equal(m.ID, first.ID) {
			t.Fatalf("delivery %d is another message %q", i+1, m.Payload)
		}
		c.Nack(m, fmt.Errorf("handler failed on attempt %d", i+1))
	}
	d := s.receive(t, dlq, "the dead letter")
	ack(t, dlq, d)
	checkDLQ(t, d, first, sub, fmt.Sprintf("handler failed on attempt %d", max), max)
	s.quiet(t, "after dead-lettering", k)
}

func testDLQNoCause(t *testing.T, s *suite) {
	const max = 2
	topic, sub := unique("dlqnocause"), unique("sub")
	b := s.bus(t)
	dlq := s.dlqConsumer(t, b, topic, sub)
	c := s.subscribe(t, b, bus.SubscribeOptions{Topic: topic, Subscription: sub, Type: bus.Shared, NackDelay: s.o.NackDelay, MaxDeliveries: max})
	k := collect(t, "worker", c)
	p := s.producer(t, b, topic)
	send(t, p, &bus.OutMessage{Key: "k", Payload: []byte("ignored")})
	var first *bus.Message
	for i := 0; i < max; i++ {
		m, _ := s.next(t, fmt.Sprintf("delivery %d", i+1), k)
		if first == nil {
			first = m
		}
		c.Nack(m, nil)
	}
	d := s.receive(t, dlq, "the dead letter")
	checkDLQ(t, d, first, sub, fmt.Sprintf("not acknowledged after %d deliveries", max), max)
}

func testDLQExplicit(t *testing.T, s *suite) {
	topic, sub := unique("dlqexplicit"), unique("sub")
	b := s.bus(t)
	dlq := s.dlqConsumer(t, b, topic, sub)
	c := s.subscribe(t, b, bus.SubscribeOptions{Topic: topic, Subscription: sub, Type: bus.Shared, NackDelay: s.o.NackDelay})
	p := s.producer(t, b, topic)
	send(t, p, &bus.OutMessage{Key: "k", Payload: []byte("unwanted"), Properties: map[string]string{"a": "b"}})
	m := s.receive(t, c, "the message")
	if err := c.DeadLetter(s.ctx(t), m, "validation: amount is negative"); err != nil {
		t.Fatalf("dead letter: %v", err)
	}
	d := s.receive(t, dlq, "the dead letter")
	checkDLQ(t, d, m, sub, "validation: amount is negative", 0)
	s.none(t, c, "after an explicit dead letter")
	s.gone(t, b, c, bus.SubscribeOptions{Topic: topic, Subscription: sub, Type: bus.Shared}, "a dead-lettered message")
}

// gone closes c and subscribes again: nothing may come back, i.e. every
// message the subscription delivered was acknowledged.
func (s *suite) gone(t *testing.T, b bus.Bus, c bus.Consumer, o bus.SubscribeOptions, what string) {
	t.Helper()
	if err := c.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	s.none(t, s.subscribe(t, b, o), what+" came back to a new consumer (not acknowledged)")
}

func testDLQCustomTopic(t *testing.T, s *suite) {
	topic, sub, dlqTopic := unique("dlqcustom"), unique("sub"), unique("custom-dlq")
	b := s.bus(t)
	dlq := s.subscribe(t, b, bus.SubscribeOptions{Topic: dlqTopic, Subscription: unique("dlq"), Type: bus.Exclusive})
	c := s.subscribe(t, b, bus.SubscribeOptions{Topic: topic, Subscription: sub, Type: bus.Failover, DeadLetterTopic: dlqTopic})
	p := s.producer(t, b, topic)
	send(t, p, &bus.OutMessage{Key: "k", Payload: []byte("x")})
	m := s.receive(t, c, "the message")
	if err := c.DeadLetter(s.ctx(t), m, "custom"); err != nil {
		t.Fatalf("dead letter: %v", err)
	}
	checkDLQ(t, s.receive(t, dlq, "the dead letter on the custom topic"), m, sub, "custom", 0)
}

// testDLQConsumersDie: a message whose consumer dies holding it, every
// time (a command that crashes its worker), counts those deliveries too:
// the next consumer sees RedeliveryCount 1, 2, ..., and after MaxDeliveries
// of them it is dead-lettered instead of delivered again. (Pulsar's own
// redelivery count stays 0 here: the broker gives a closed consumer's
// unacknowledged messages back without counting them; the count is the
// bus's, with CountDeliveriesDurably.)
func testDLQConsumersDie(t *testing.T, s *suite) {
	const max = 3
	for _, typ := range []bus.SubscriptionType{bus.Shared, bus.KeyShared, bus.Failover} {
		t.Run(typ.String(), func(t *testing.T) {
			topic, sub := unique("dlqdies"), unique("sub")
			b := s.bus(t)
			dlq := s.dlqConsumer(t, b, topic, sub)
			o := bus.SubscribeOptions{Topic: topic, Subscription: sub, Type: typ, MaxDeliveries: max, ConsumerName: "worker", CountDeliveriesDurably: true}
			p := s.producer(t, b, topic)
			id := send(t, p, &bus.OutMessage{Key: "poison", Payload: []byte("kills its worker")})
			var first *bus.Message
			for i := 0; i < max; i++ {
				worker := s.newBus(t) // a worker process
				c, err := worker.Subscribe(s.ctx(t), o)
				if err != nil {
					_ = worker.Close()
					t.Fatalf("worker %d: subscribe: %v", i+1, err)
				}
				m := s.receive(t, c, fmt.Sprintf("delivery %d", i+1))
				if first == nil {
					first = m
				}
				if !bytes.Equal(m.ID, id) {
					_ = worker.Close()
					t.Fatalf("delivery %d is another message %q", i+1, m.Payload)
				}
				if m.RedeliveryCount != i {
					_ = worker.Close()
					t.Fatalf("delivery %d: RedeliveryCount %d, want %d", i+1, m.RedeliveryCount, i)
				}
				if err := worker.Close(); err != nil { // the worker dies holding it
					t.Fatalf("worker %d: close: %v", i+1, err)
				}
			}
			c := s.subscribe(t, s.bus(t), o)
			s.none(t, c, "a message delivered MaxDeliveries times to consumers that died")
			d := s.receive(t, dlq, "the dead letter")
			ack(t, dlq, d)
			checkDLQ(t, d, first, sub, fmt.Sprintf("not acknowledged after %d deliveries", max), max)
		})
	}
}
