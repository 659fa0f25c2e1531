package memory_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/memory"
)

// BenchmarkBacklog sends b.N messages, then receives and acknowledges them
// all: the cost per message must not grow with the backlog.
func BenchmarkBacklog(b *testing.B) {
	for _, typ := range []bus.SubscriptionType{bus.Failover, bus.Shared, bus.KeyShared} {
		b.Run(typ.String(), func(b *testing.B) {
			ctx := context.Background()
			x := memory.New(memory.Options{})
			defer x.Close()
			p, err := x.Producer(ctx, bus.ProducerOptions{Topic: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			c, err := x.Subscribe(ctx, bus.SubscribeOptions{Topic: "bench", Subscription: "s", Type: typ})
			if err != nil {
				b.Fatal(err)
			}
			payload := []byte(`{"v":1,"type":"step.completed","id":"x"}`)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := p.Send(ctx, &bus.OutMessage{Key: fmt.Sprint(i % 64), Payload: payload}); err != nil {
					b.Fatal(err)
				}
			}
			for i := 0; i < b.N; i++ {
				m, err := c.Receive(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if err := c.Ack(ctx, m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
