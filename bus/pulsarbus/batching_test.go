package pulsarbus_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
	plog "github.com/apache/pulsar-client-go/pulsar/log"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/internal/pulsartest"
)

// TestBatchingMaxMessages: a MixedKeys producer puts the messages of
// different keys sent together into shared broker entries, at most
// BatchingMaxMessages each (the engine's job queues: a worker is never
// handed much more than its receive queue), in a transaction as without.
func TestBatchingMaxMessages(t *testing.T) {
	b := newBus(t)
	ctx := ctxFor(t, 2*time.Minute)
	topic := topicName(t)
	if err := b.EnsureTopic(ctx, bus.TopicSpec{Name: topic}); err != nil {
		t.Fatal(err)
	}
	p, err := b.Producer(ctx, bus.ProducerOptions{Topic: topic, MixedKeys: true, BatchingMaxMessages: 3})
	if err != nil {
		t.Fatal(err)
	}
	tx, err := b.BeginTx(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	s := bus.NewBatch(bus.BatchOptions{Tx: tx, Lanes: 1})
	const n = 10
	for i := range n {
		s.Send(p, &bus.OutMessage{Key: fmt.Sprintf("proc-%d", i), Payload: []byte{byte(i)}}, nil)
	}
	if err := s.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	svc, _ := pulsartest.URLs(t)
	client, err := pulsar.NewClient(pulsar.ClientOptions{URL: svc, Logger: plog.DefaultNopLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	r, err := client.CreateReader(pulsar.ReaderOptions{Topic: b.Namespace().Topic(topic), StartMessageID: pulsar.EarliestMessageID()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	perEntry := map[[2]int64]int{}
	for i := range n {
		m, err := r.Next(ctx)
		if err != nil {
			t.Fatalf("message %d of %d: %v", i+1, n, err)
		}
		if got := m.Payload(); len(got) != 1 || got[0] != byte(i) {
			t.Fatalf("message %d: payload %v, want [%d] (order kept)", i, got, i)
		}
		perEntry[[2]int64{m.ID().LedgerID(), m.ID().EntryID()}]++
	}
	most := 0
	for _, c := range perEntry {
		most = max(most, c)
	}
	if most > 3 {
		t.Fatalf("an entry holds %d messages, more than BatchingMaxMessages 3: %v", most, perEntry)
	}
	if len(perEntry) == n {
		t.Fatalf("every message has its own entry: keys were not mixed (%v)", perEntry)
	}
	if _, err := b.Producer(ctx, bus.ProducerOptions{Topic: topic, BatchingMaxMessages: -1}); err == nil {
		t.Fatal("a negative BatchingMaxMessages was accepted")
	}
}
