package pulsarbus_test

import (
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
)

func TestSendReceive(t *testing.T) {
	b := newBus(t)
	ctx := ctxFor(t, time.Minute)
	topic := topicName(t)
	if err := b.EnsureTopic(ctx, bus.TopicSpec{Name: topic, Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	p, err := b.Producer(ctx, bus.ProducerOptions{Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	c, err := b.Subscribe(ctx, bus.SubscribeOptions{Topic: topic, Subscription: "s", Type: bus.Failover})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := p.Send(ctx, &bus.OutMessage{Key: "k", Payload: []byte{byte(i)}, Properties: map[string]string{"a": "b"}}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		m, err := c.Receive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if m.Payload[0] != byte(i) || m.Key != "k" || m.Properties["a"] != "b" {
			t.Fatalf("message %d: got %+v", i, m)
		}
		if err := c.Ack(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
}
