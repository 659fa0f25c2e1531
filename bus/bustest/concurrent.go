package bustest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
)

// txConcurrentSenders sends from many goroutines at once on one producer,
// for several transactions at the same time, as the engine's decider and
// orchestrator do, mixing immediate and delayed messages (the decider's
// first attempts and retries on one job queue), then commits every
// transaction: each message must arrive exactly once, in order per key.
// (On Pulsar with broker deduplication on, a client that hands its sends to
// the broker out of sequence-id order gets messages refused or silently
// dropped as "duplicates".) The subscription is Exclusive, which does not
// hold delayed messages back, so the test needs no waiting.
func (s *suite) txConcurrentSenders(t *testing.T) {
	const (
		txs     = 4
		senders = 8
		each    = 25
	)
	out := unique("txconc")
	b := s.bus(t)
	s.ensure(t, b, bus.TopicSpec{Name: out, Partitions: s.o.Partitions})
	outC := s.subscribe(t, b, bus.SubscribeOptions{Topic: out, Subscription: unique("out"), Type: bus.Exclusive, ReceiveQueueSize: 1000})
	p := s.producer(t, b, out)
	var wg sync.WaitGroup
	errs := make(chan error, txs*senders*each+txs)
	for x := 0; x < txs; x++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tx, err := b.BeginTx(s.ctx(t), time.Minute)
			if err != nil {
				errs <- fmt.Errorf("begin: %w", err)
				return
			}
			var sw sync.WaitGroup
			for g := 0; g < senders; g++ {
				sw.Add(1)
				go func() {
					defer sw.Done()
					key := fmt.Sprintf("tx%d-g%d", x, g)
					var done sync.WaitGroup
					for i := 0; i < each; i++ {
						done.Add(1)
						m := &bus.OutMessage{Key: key, Payload: payload(key, i), Tx: tx}
						if i%3 == 2 {
							m.DeliverAt = time.Now().Add(50 * time.Millisecond)
						}
						p.SendAsync(s.ctx(t), m, func(_ bus.MessageID, err error) {
							if err != nil {
								errs <- fmt.Errorf("send %s/%d: %w", key, i, err)
							}
							done.Done()
						})
					}
					done.Wait()
				}()
			}
			sw.Wait()
			if err := tx.Commit(s.ctx(t)); err != nil {
				errs <- fmt.Errorf("commit: %w", err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	last := map[string]string{}
	for n := 0; n < txs*senders*each; n++ {
		m := s.receive(t, outC, fmt.Sprintf("committed message %d of %d (%d distinct so far)", n+1, txs*senders*each, len(seen)))
		ack(t, outC, m)
		if seen[string(m.Payload)] {
			t.Fatalf("duplicate %q", m.Payload)
		}
		seen[string(m.Payload)] = true
		if prev := last[m.Key]; prev != "" && prev > string(m.Payload) {
			t.Fatalf("key %s out of order: %q after %q", m.Key, m.Payload, prev)
		}
		last[m.Key] = string(m.Payload)
	}
	s.none(t, outC, "after all committed messages")
}

// txInterleavedKeys settles the rule for one producer carrying several
// keys, which the engine's senders once disagreed on (group each key's
// messages together, or send keys from goroutines of their own): through a
// Batch, keys interleaved message by message, from one lane and from
// several at once, batched and delayed (unbatched) messages mixed, with and
// without a transaction, and the producer reopened under the same name in
// between (broker deduplication keeps the last sequence id per producer
// name). Every message must arrive exactly once, in order per key.
func (s *suite) txInterleavedKeys(t *testing.T) {
	const keys, each, rounds = 8, 12, 2
	for _, lanes := range []int{1, 4} {
		for _, withTx := range []bool{false, true} {
			t.Run(fmt.Sprintf("lanes=%d,tx=%v", lanes, withTx), func(t *testing.T) {
				out, name := unique("interleave"), unique("producer")
				b := s.bus(t)
				s.ensure(t, b, bus.TopicSpec{Name: out, Partitions: s.o.Partitions})
				outC := s.subscribe(t, b, bus.SubscribeOptions{Topic: out, Subscription: unique("out"), Type: bus.Exclusive, ReceiveQueueSize: 1000})
				for r := range rounds {
					p, err := b.Producer(s.ctx(t), bus.ProducerOptions{Topic: out, Name: name})
					if err != nil {
						t.Fatalf("producer %s, round %d: %v", name, r, err)
					}
					var tx bus.Tx
					if withTx {
						if tx, err = b.BeginTx(s.ctx(t), time.Minute); err != nil {
							t.Fatalf("begin: %v", err)
						}
					}
					batch := bus.NewBatch(bus.BatchOptions{Tx: tx, Lanes: lanes})
					for i := range each {
						for k := range keys {
							key := fmt.Sprintf("k%d", k)
							m := &bus.OutMessage{Key: key, Payload: payload(key, r*each+i)}
							if (i+k)%3 == 2 {
								m.DeliverAt = time.Now().Add(50 * time.Millisecond)
							}
							batch.Send(p, m, nil)
						}
					}
					if err := batch.Commit(s.ctx(t)); err != nil {
						t.Fatalf("round %d: %v", r, err)
					}
					if err := p.Close(); err != nil {
						t.Fatal(err)
					}
				}
				seen := map[string]bool{}
				last := map[string]string{}
				for n := range keys * each * rounds {
					m := s.receive(t, outC, fmt.Sprintf("message %d of %d (%d distinct so far)", n+1, keys*each*rounds, len(seen)))
					ack(t, outC, m)
					if seen[string(m.Payload)] {
						t.Fatalf("duplicate %q", m.Payload)
					}
					seen[string(m.Payload)] = true
					if prev := last[m.Key]; prev > string(m.Payload) {
						t.Fatalf("key %s out of order: %q after %q", m.Key, m.Payload, prev)
					}
					last[m.Key] = string(m.Payload)
				}
				s.none(t, outC, "after every message")
			})
		}
	}
}
