package bench_test

import (
	"context"
	"flag"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bench"
	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/timers"
)

var flagBurst = flag.Int("burst", 500, "timers due at the same instant in BenchmarkTimerLatenessBurst")

// BenchmarkTimerLatenessBurst is the timer relay alone under a burst:
// -burst timers, armed ahead, all due at the same instant, relayed by one
// timers.Relay (its defaults, as the engine runs it) to a target topic. It
// reports the lateness of each as the target's consumer received it
// (due → received), and how many timers per second the relay moved from
// the instant they were due until the last one arrived.
func BenchmarkTimerLatenessBurst(b *testing.B) {
	var p50, p99, maxs, rate []float64
	for range b.N {
		b.StopTimer()
		e := newEnv(b, "burst")
		bb := e.bus(b)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		const target = "fired"
		if err := bb.EnsureTopic(ctx, bus.TopicSpec{Name: target}); err != nil {
			b.Fatal(err)
		}
		cons, err := bb.Subscribe(ctx, bus.SubscribeOptions{Topic: target, Subscription: "bench", Type: bus.Exclusive})
		if err != nil {
			b.Fatal(err)
		}
		rctx, stopRelay := context.WithCancel(ctx)
		relayDone := make(chan error, 1)
		go func() {
			relayDone <- timers.NewRelay(bb, timers.RelayOptions{Name: "bench-relay"}, zerolog.Nop()).Run(rctx)
		}()
		prod, err := bb.Producer(ctx, bus.ProducerOptions{Topic: protocol.TimersTopic})
		if err != nil {
			b.Fatal(err)
		}
		// Warm-up: the relay is subscribed and its producer to the target open.
		arm(ctx, b, prod, []protocol.Timer{{TimerID: "warm", ProcessID: "p-warm", Kind: "warm-up", FireAt: time.Now(), Target: target}})
		if got := receiveFired(ctx, b, cons, 1); got["warm"].IsZero() {
			b.Fatal("warm-up timer not relayed")
		}

		n := *flagBurst
		due := time.Now().Add(3 * time.Second)
		ts := make([]protocol.Timer, n)
		for i := range ts {
			ts[i] = protocol.Timer{TimerID: fmt.Sprintf("t-%d", i), ProcessID: fmt.Sprintf("p-%d", i), Kind: "sleep", FireAt: due, Target: target}
		}
		arm(ctx, b, prod, ts)
		if armed := time.Now(); armed.After(due) {
			b.Fatalf("arming %d timers took until %v after they were due; give them more time", n, armed.Sub(due))
		}
		b.StartTimer()
		got := receiveFired(ctx, b, cons, n)
		b.StopTimer()
		var late []time.Duration
		var last time.Time
		for _, tm := range ts {
			at, ok := got[tm.TimerID]
			if !ok {
				b.Fatalf("timer %s not relayed", tm.TimerID)
			}
			late = append(late, at.Sub(due))
			if at.After(last) {
				last = at
			}
		}
		stopRelay()
		if err := <-relayDone; err != nil {
			b.Errorf("relay: %v", err)
		}
		_ = prod.Close()
		_ = cons.Close()
		cancel()
		p50 = append(p50, bench.Quantile(late, 0.5))
		p99 = append(p99, bench.Quantile(late, 0.99))
		maxs = append(maxs, bench.Quantile(late, 1))
		rate = append(rate, float64(n)/last.Sub(due).Seconds())
		b.Logf("%d timers due at once: lateness on the target p50 %.1fms p99 %.1fms max %.1fms; %.0f timers/s",
			n, p50[len(p50)-1], p99[len(p99)-1], maxs[len(maxs)-1], rate[len(rate)-1])
	}
	b.ReportMetric(median(p50), "late-p50-ms")
	b.ReportMetric(median(p99), "late-p99-ms")
	b.ReportMetric(median(maxs), "late-max-ms")
	b.ReportMetric(median(rate), "timers/s")
}

// arm sends timers to the timers topic, pipelined.
func arm(ctx context.Context, b *testing.B, p bus.Producer, ts []protocol.Timer) {
	b.Helper()
	var mu sync.Mutex
	var sendErr error
	now := time.Now()
	for _, tm := range ts {
		m, err := timers.Message(tm, now, 0)
		if err != nil {
			b.Fatal(err)
		}
		p.SendAsync(ctx, m, func(_ bus.MessageID, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil && sendErr == nil {
				sendErr = err
			}
		})
	}
	if err := p.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if sendErr != nil {
		b.Fatal(sendErr)
	}
}

// receiveFired reads fired timers from c until n distinct ones have come
// and returns when each first arrived, by timer id.
func receiveFired(ctx context.Context, b *testing.B, c bus.Consumer, n int) map[string]time.Time {
	b.Helper()
	got := make(map[string]time.Time, n)
	for len(got) < n {
		m, err := c.Receive(ctx)
		if err != nil {
			b.Fatalf("%d of %d timers relayed: %v", len(got), n, err)
		}
		at := time.Now()
		if err := c.Ack(ctx, m); err != nil {
			b.Fatal(err)
		}
		env, err := bus.DecodeEnvelope(m.Payload)
		if err != nil {
			b.Fatal(err)
		}
		var f protocol.TimerFired
		if err := env.DecodePayload(&f); err != nil {
			b.Fatal(err)
		}
		if _, dup := got[f.TimerID]; !dup {
			got[f.TimerID] = at
		}
	}
	return got
}
