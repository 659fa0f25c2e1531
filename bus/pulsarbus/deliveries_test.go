package pulsarbus_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/pulsarbus"
)

// records reads every message written so far on the delivery-record topic
// of topic's subscription sub: "key=value" ("key=" for a tombstone). It
// reads until nothing comes for a second (HasNext is not trusted on a
// topic other consumers write at the same time).
func records(t *testing.T, b bus.Bus, topic, sub string) []string {
	t.Helper()
	r, err := b.Reader(ctxFor(t, time.Minute), bus.ReaderOptions{Topic: topic + "-" + sub + "-deliveries"})
	if err != nil {
		t.Fatalf("reader of the delivery records: %v", err)
	}
	defer r.Close()
	var got []string
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		m, err := r.Next(ctx)
		cancel()
		if err != nil {
			return got
		}
		got = append(got, m.Key+"="+string(m.Payload))
	}
}

// worker is one consumer process: a bus of its own that "dies" (closes)
// holding what it received.
func workerBus(t *testing.T, o bus.SubscribeOptions) (*pulsarbus.Bus, bus.Consumer) {
	t.Helper()
	b := newBus(t)
	c, err := b.Subscribe(ctxFor(t, time.Minute), o)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	return b, c
}

// TestLazyDeliveryRecords: with LazyDeliveryRecords a consumer past its
// warm-up writes no delivery record for a message on its first delivery
// (the clean path costs nothing), where an eager one writes a record and a
// tombstone; and a message that kills every consumer taking it is still
// dead-lettered, with the count as the reason: the consumers it kills
// uncounted come back in their warm-up, which records every delivery.
func TestLazyDeliveryRecords(t *testing.T) {
	t.Parallel()
	t.Run("CleanPath", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			name string
			lazy bool
			want int // records written for 3 messages received and acknowledged
		}{{"Eager", false, 6}, {"Lazy", true, 0}} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				b := newBus(t)
				topic := topicName(t)
				c := mustSubscribe(t, b, bus.SubscribeOptions{Topic: topic, Subscription: "s", Type: bus.Shared, MaxDeliveries: 3,
					CountDeliveriesDurably: true, LazyDeliveryRecords: tc.lazy, DeliveryRecordWarmUp: -1, CrashWindow: time.Second})
				p := mustProducer(t, b, bus.ProducerOptions{Topic: topic})
				for i := range 3 {
					if _, err := p.Send(ctxFor(t, time.Minute), &bus.OutMessage{Key: "k", Payload: fmt.Appendf(nil, "m%d", i)}); err != nil {
						t.Fatal(err)
					}
				}
				for i := range 3 {
					m := receive(t, c, fmt.Sprint("message ", i))
					if m.RedeliveryCount != 0 {
						t.Fatalf("message %d: RedeliveryCount %d", i, m.RedeliveryCount)
					}
					if err := c.Ack(ctxFor(t, time.Minute), m); err != nil {
						t.Fatal(err)
					}
				}
				if got := records(t, b, topic, "s"); len(got) != tc.want {
					t.Fatalf("%d delivery records %q, want %d", len(got), got, tc.want)
				}
			})
		}
	})
	t.Run("PoisonDeadLettered", func(t *testing.T) {
		t.Parallel()
		const max = 3
		b := newBus(t)
		topic := topicName(t)
		dlq := mustSubscribe(t, b, bus.SubscribeOptions{Topic: topic + "-s-DLQ", Subscription: "d", Type: bus.Exclusive})
		o := bus.SubscribeOptions{Topic: topic, Subscription: "s", Type: bus.Shared, MaxDeliveries: max,
			CountDeliveriesDurably: true, LazyDeliveryRecords: true, CrashWindow: 5 * time.Second}
		// The first worker has run for long (no warm-up): the poison's
		// first delivery is not recorded and its death goes uncounted.
		old := o
		old.DeliveryRecordWarmUp = -1
		wb, wc := workerBus(t, old)
		p := mustProducer(t, b, bus.ProducerOptions{Topic: topic})
		id, err := p.Send(ctxFor(t, time.Minute), &bus.OutMessage{Key: "poison", Payload: []byte("kills its worker")})
		if err != nil {
			t.Fatal(err)
		}
		m := receive(t, wc, "the first delivery, to a worker past its warm-up")
		if !bytes.Equal(m.ID, id) || m.RedeliveryCount != 0 {
			t.Fatalf("first delivery: %q, RedeliveryCount %d", m.Payload, m.RedeliveryCount)
		}
		_ = wb.Close() // dies holding it
		if got := records(t, b, topic, "s"); len(got) != 0 {
			t.Fatalf("the first delivery was recorded: %q", got)
		}
		// Restarted workers are in their warm-up: each delivery recorded.
		for i := range max {
			wb, wc := workerBus(t, o)
			m := receive(t, wc, fmt.Sprint("delivery to restarted worker ", i+1))
			if !bytes.Equal(m.ID, id) || m.RedeliveryCount != i {
				_ = wb.Close()
				t.Fatalf("delivery to restarted worker %d: %q, RedeliveryCount %d, want %d", i+1, m.Payload, m.RedeliveryCount, i)
			}
			_ = wb.Close()
		}
		// The next worker — even one past its warm-up: the message has a
		// record — dead-letters it instead of running it.
		_, wc = workerBus(t, old)
		quiet(t, wc, "a message whose consumers died MaxDeliveries times")
		d := receive(t, dlq, "the dead letter")
		if r := d.Properties[bus.PropDLQReason]; r != fmt.Sprintf("not acknowledged after %d deliveries", max) {
			t.Fatalf("dead letter reason %q", r)
		}
	})
}

// TestCrashWindow: a consumer that dies holding a message it received more
// than CrashWindow before does not bring the message nearer MaxDeliveries
// (it was killed for another reason during long work: chaos finding (C));
// such deaths still count towards 10 × MaxDeliveries.
func TestCrashWindow(t *testing.T) {
	t.Parallel()
	const window = 200 * time.Millisecond
	const max = 1
	b := newBus(t)
	topic := topicName(t)
	dlq := mustSubscribe(t, b, bus.SubscribeOptions{Topic: topic + "-s-DLQ", Subscription: "d", Type: bus.Exclusive})
	o := bus.SubscribeOptions{Topic: topic, Subscription: "s", Type: bus.Shared, MaxDeliveries: max,
		CountDeliveriesDurably: true, LazyDeliveryRecords: true, CrashWindow: window}
	p := mustProducer(t, b, bus.ProducerOptions{Topic: topic})
	id, err := p.Send(ctxFor(t, time.Minute), &bus.OutMessage{Key: "k", Payload: []byte("long work")})
	if err != nil {
		t.Fatal(err)
	}
	// MaxDeliveries 1: without the window the first death would
	// dead-letter it. Each holder dies after the window.
	for i := range 10 * max {
		wb, wc := workerBus(t, o)
		m := receive(t, wc, fmt.Sprint("delivery ", i+1))
		if !bytes.Equal(m.ID, id) || m.RedeliveryCount != i {
			_ = wb.Close()
			t.Fatalf("delivery %d: %q, RedeliveryCount %d, want %d", i+1, m.Payload, m.RedeliveryCount, i)
		}
		time.Sleep(3 * window) // long work, past the window (the survived record is sent then)
		_ = wb.Close()
	}
	_, wc := workerBus(t, o)
	quiet(t, wc, "a message whose consumers died 10 × MaxDeliveries times")
	d := receive(t, dlq, "the dead letter")
	if r := d.Properties[bus.PropDLQReason]; !strings.HasPrefix(r, "not acknowledged after 10 deliveries (10 of them not charged: ended by their consumer's death more than 200ms after") {
		t.Fatalf("dead letter reason %q", r)
	}
}
