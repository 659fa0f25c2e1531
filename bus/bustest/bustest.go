// Package bustest is the conformance suite every bus.Bus implementation
// passes: the in-process bus (bus/memory) and the Pulsar bus
// (bus/pulsarbus) run the same tests with Run.
//
// Every test uses its own topics and subscriptions (random suffix) and runs
// in parallel with the others. Waits are bounded by deadlines (Options.Wait)
// and no test asserts an upper bound on elapsed time; "never early" is the
// only timing assertion.
//
// The tests mostly wait, so run them with more parallelism than the
// default of GOMAXPROCS, e.g. `go test -parallel 16`. Against a real broker
// give Options.Quiet and Options.Settle room (say 2s and 1.5s): Quiet is how
// long "nothing more arrives" is watched, Settle lets the broker pick the
// active consumers of a Failover subscription before messages are sent.
// A test this bus cannot pass yet is listed in Options.Skip with the reason.
//
// Usage:
//
//	func TestConformance(t *testing.T) {
//		bustest.Run(t, func(t *testing.T) bus.Bus { return connect(t) }, bustest.Options{})
//	}
package bustest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
)

// Options tune the suite to a bus. The zero value suits the memory bus.
type Options struct {
	// Wait bounds every wait for a message that must arrive (default 15s).
	Wait time.Duration
	// Quiet is how long to wait before concluding that a message does not
	// arrive (default 300ms). A broker needs more (e.g. 2s).
	Quiet time.Duration
	// Settle is a pause after consumers join a Failover or KeyShared
	// subscription and before messages are sent, for brokers that switch
	// active consumers with a delay (Pulsar: 1s by default).
	Settle time.Duration
	// NackDelay is the NackDelay of subscriptions that nack (default 200ms).
	NackDelay time.Duration
	// AckTimeout is the AckTimeout of the ack-timeout test (default 1s,
	// Pulsar's minimum).
	AckTimeout time.Duration
	// TxTimeout is the timeout of the transaction that must time out
	// (default 2s); keep it above Quiet.
	TxTimeout time.Duration
	// DelayedMessages is how many delayed messages the lateness test sends
	// (default 50), with delays spread between MinDelay (default 200ms) and
	// MaxDelay (default 2s).
	DelayedMessages    int
	MinDelay, MaxDelay time.Duration
	// Lateness, when set, receives the lateness samples of each delayed
	// delivery test (receive time minus the requested delivery time, sorted
	// ascending), so a benchmark or report can use them.
	Lateness func(test string, samples []time.Duration)
	// Partitions is the partition count of partitioned test topics
	// (default 3).
	Partitions int
	// Skip names subtests (as in "Transactions/Abort") that this bus does
	// not run, with the reason, which is logged.
	Skip map[string]string
}

func (o Options) withDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.Wait, 15*time.Second)
	def(&o.Quiet, 300*time.Millisecond)
	def(&o.NackDelay, 200*time.Millisecond)
	def(&o.AckTimeout, time.Second)
	def(&o.TxTimeout, 2*time.Second)
	def(&o.MinDelay, 200*time.Millisecond)
	def(&o.MaxDelay, 2*time.Second)
	if o.DelayedMessages <= 0 {
		o.DelayedMessages = 50
	}
	if o.Partitions <= 1 {
		o.Partitions = 3
	}
	return o
}

// suite carries what every test needs.
type suite struct {
	newBus func(t *testing.T) bus.Bus
	o      Options
}

type test struct {
	name string
	fn   func(t *testing.T, s *suite)
}

// Run runs the conformance suite. newBus must return a new, independent
// connection each call: a second connection is how the suite simulates a
// second process, and closing one without acknowledging is how it
// simulates a process dying. The suite closes the connections it opens.
func Run(t *testing.T, newBus func(t *testing.T) bus.Bus, opts Options) {
	s := &suite{newBus: newBus, o: opts.withDefaults()}
	groups := []struct {
		name  string
		tests []test
	}{
		{"Options", optionTests},
		{"Order", orderTests},
		{"Delayed", delayedTests},
		{"Redelivery", redeliveryTests},
		{"DeadLetter", deadLetterTests},
		{"Failover", failoverTests},
		{"Transactions", txTests},
		{"Batch", batchTests},
		{"Producers", producerTests},
		{"Takeover", takeoverTests},
		{"Size", sizeTests},
		{"Reader", readerTests},
		{"Decode", decodeTests},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			for _, tc := range g.tests {
				t.Run(tc.name, func(t *testing.T) {
					if why, ok := s.o.Skip[g.name+"/"+tc.name]; ok {
						t.Skip(why)
					}
					t.Parallel()
					tc.fn(t, s)
				})
			}
		})
	}
}

// bus opens a connection closed at the end of the test.
func (s *suite) bus(t *testing.T) bus.Bus {
	t.Helper()
	b := s.newBus(t)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// unique makes a topic or subscription name unique to this run.
func unique(prefix string) string {
	var b [5]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return prefix + "-" + hex.EncodeToString(b[:])
}

func (s *suite) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 4*s.o.Wait)
	t.Cleanup(cancel)
	return ctx
}

func (s *suite) producer(t *testing.T, b bus.Bus, topic string) bus.Producer {
	t.Helper()
	p, err := b.Producer(s.ctx(t), bus.ProducerOptions{Topic: topic})
	if err != nil {
		t.Fatalf("producer on %s: %v", topic, err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func (s *suite) subscribe(t *testing.T, b bus.Bus, o bus.SubscribeOptions) bus.Consumer {
	t.Helper()
	c, err := b.Subscribe(s.ctx(t), o)
	if err != nil {
		t.Fatalf("subscribe %s on %s (%s): %v", o.Subscription, o.Topic, o.Type, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func (s *suite) ensure(t *testing.T, b bus.Bus, spec bus.TopicSpec) {
	t.Helper()
	if err := b.EnsureTopic(s.ctx(t), spec); err != nil {
		t.Fatalf("ensure topic %+v: %v", spec, err)
	}
}

func send(t *testing.T, p bus.Producer, m *bus.OutMessage) bus.MessageID {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id, err := p.Send(ctx, m)
	if err != nil {
		t.Fatalf("send to %s: %v", p.Topic(), err)
	}
	return id
}

// receive waits up to Options.Wait for a message.
func (s *suite) receive(t *testing.T, c bus.Consumer, what string) *bus.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), s.o.Wait)
	defer cancel()
	m, err := c.Receive(ctx)
	if err != nil {
		t.Fatalf("receive %s: %v (waited up to %s)", what, err, s.o.Wait)
	}
	return m
}

// none checks that no message arrives during Options.Quiet.
func (s *suite) none(t *testing.T, c bus.Consumer, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), s.o.Quiet)
	defer cancel()
	m, err := c.Receive(ctx)
	if err == nil {
		t.Fatalf("%s: got an unexpected message %q (key %q, topic %s)", what, m.Payload, m.Key, m.Topic)
	}
	if ctx.Err() == nil {
		t.Fatalf("%s: receive failed: %v", what, err)
	}
}

func ack(t *testing.T, c bus.Consumer, m *bus.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Ack(ctx, m); err != nil {
		t.Fatalf("ack %q: %v", m.Payload, err)
	}
}

func (s *suite) settle() {
	if s.o.Settle > 0 {
		time.Sleep(s.o.Settle)
	}
}

// collector receives from a consumer in the background, like a process
// that handles messages, until the test ends or the consumer closes.
type collector struct {
	name string
	c    bus.Consumer
	ch   chan *bus.Message
	stop context.CancelFunc
	wg   sync.WaitGroup
}

func collect(t *testing.T, name string, c bus.Consumer) *collector {
	ctx, cancel := context.WithCancel(context.Background())
	k := &collector{name: name, c: c, ch: make(chan *bus.Message, 10000), stop: cancel}
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		for {
			m, err := c.Receive(ctx)
			if err != nil {
				return
			}
			k.ch <- m
		}
	}()
	t.Cleanup(func() {
		cancel()
		k.wg.Wait()
	})
	return k
}

// next waits for the next message of one of the collectors.
func (s *suite) next(t *testing.T, what string, ks ...*collector) (*bus.Message, *collector) {
	t.Helper()
	timer := time.NewTimer(s.o.Wait)
	defer timer.Stop()
	for {
		for _, k := range ks {
			select {
			case m := <-k.ch:
				return m, k
			default:
			}
		}
		select {
		case <-timer.C:
			t.Fatalf("%s: no message within %s", what, s.o.Wait)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// quiet checks that none of the collectors gets a message during Quiet.
func (s *suite) quiet(t *testing.T, what string, ks ...*collector) {
	t.Helper()
	deadline := time.After(s.o.Quiet)
	for {
		for _, k := range ks {
			select {
			case m := <-k.ch:
				t.Fatalf("%s: %s got an unexpected message %q (topic %s, redelivery %d)", what, k.name, m.Payload, m.Topic, m.RedeliveryCount)
			default:
			}
		}
		select {
		case <-deadline:
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func payload(key string, i int) []byte { return []byte(fmt.Sprintf("%s/%04d", key, i)) }
