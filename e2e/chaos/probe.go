package chaos

import (
	"context"
	"sync"
	"time"

	"github.com/pulsaga/pulsaga/bus"
)

// ProbeSubscription is the timer probe's subscription on the timers topic.
const ProbeSubscription = "chaos-probe"

// timerProbe is a Shared subscription of the kit's own on the timers
// topic: it receives every timer when it comes due, as the engine's relay
// does on its subscription, and acknowledges it at once. It tells whether
// the broker delivered acknowledged delayed messages again after its
// restart (apache/pulsar#20638: the acknowledgements beyond a cursor's
// mark-delete position, held back by a timer not yet due, are kept in
// memory and lost by a crash), and it keeps a copy of every timer that
// fired before the restart, which the kit sends again once the broker is
// back (Config.ReplayTimers): whatever this broker does, the engine meets
// acknowledged timers a second time, and the check then says whether they
// were harmless (every saga right, every effect once, streams intact).
type timerProbe struct {
	mu       sync.Mutex
	acked    map[string]bool // message ids acknowledged
	before   []*bus.Message  // timers acknowledged before the broker's kill
	killed   bool            // the broker was killed
	again    int             // acknowledged timers delivered again
	replayed int             // timers the kit sent again
}

func newTimerProbe() *timerProbe {
	return &timerProbe{acked: map[string]bool{}}
}

// HoldFor is how far ahead the probe's hold message is due: never within
// a run.
const HoldFor = 24 * time.Hour

// run receives and acknowledges timers until ctx ends. First it sends a
// hold message due in HoldFor, as a saga waiting a day would: every
// subscription's mark-delete position stays before it, so that every
// timer acknowledged after it is an acknowledgement the broker keeps
// beside that position — what #20638 loses in a crash. (The hold is not a
// timer: the relay would dead-letter it, a day later.)
func (p *timerProbe) run(ctx context.Context, b bus.Bus, topic string) error {
	c, err := b.Subscribe(ctx, bus.SubscribeOptions{
		Topic: topic, Subscription: ProbeSubscription, Type: bus.Shared,
		ConsumerName: ProbeSubscription, InitialPosition: bus.Earliest,
	})
	if err != nil {
		return err
	}
	prod, err := b.Producer(ctx, bus.ProducerOptions{Topic: topic})
	if err != nil {
		_ = c.Close()
		return err
	}
	_, err = prod.Send(ctx, &bus.OutMessage{Key: "chaos-probe-hold", Payload: []byte("chaos probe: hold"), DeliverAt: time.Now().Add(HoldFor)})
	_ = prod.Close()
	if err != nil {
		_ = c.Close()
		return err
	}
	go func() {
		defer c.Close()
		for ctx.Err() == nil {
			m, err := c.Receive(ctx)
			if err != nil {
				time.Sleep(100 * time.Millisecond) // the broker is away
				continue
			}
			p.take(m)
			// A failed acknowledgement (the broker going away) is the
			// broker's case of #20638 too: the timer may come again.
			_ = c.Ack(ctx, m)
		}
	}()
	return nil
}

func (p *timerProbe) take(m *bus.Message) {
	p.mu.Lock()
	defer p.mu.Unlock()
	id := string(m.ID)
	if p.acked[id] {
		p.again++
		return
	}
	p.acked[id] = true
	if !p.killed {
		p.before = append(p.before, m)
	}
}

// brokerKilled marks the broker's kill: timers received from then on are
// not sent again.
func (p *timerProbe) brokerKilled() {
	p.mu.Lock()
	p.killed = true
	p.mu.Unlock()
}

// replay sends every timer acknowledged before the broker's kill to the
// timers topic again, due at once (each fired long ago).
func (p *timerProbe) replay(ctx context.Context, b bus.Bus, topic string) (int, error) {
	p.mu.Lock()
	msgs := p.before
	p.mu.Unlock()
	prod, err := b.Producer(ctx, bus.ProducerOptions{Topic: topic})
	if err != nil {
		return 0, err
	}
	defer prod.Close()
	var (
		mu      sync.Mutex
		n       int
		sendErr error
	)
	for _, m := range msgs {
		prod.SendAsync(ctx, &bus.OutMessage{Key: m.Key, Payload: m.Payload, Properties: m.Properties}, func(_ bus.MessageID, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				sendErr = err
				return
			}
			n++
		})
	}
	err = prod.Flush(ctx)
	mu.Lock()
	defer mu.Unlock()
	if err == nil {
		err = sendErr
	}
	p.mu.Lock()
	p.replayed += n
	p.mu.Unlock()
	return n, err
}

// counts are the probe's figures: timers acknowledged before the kill,
// acknowledged timers the broker delivered again, timers the kit sent
// again.
func (p *timerProbe) counts() (before, again, replayed int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.before), p.again, p.replayed
}
