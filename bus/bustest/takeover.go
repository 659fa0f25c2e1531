package bustest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
)

// The takeover of a partition from an owner that may still hold an open
// transaction (a frozen process): fence its producer, end its transactions
// (bus.TxEnder), then read and write. Every step is ordered by the test,
// not by timing: the deposed owner's transaction is held open for as long
// as the test wants.
var takeoverTests = []test{
	{"DeposedTransaction", testDeposedTransaction},
	{"NothingInScope", testEndNothingInScope},
	{"OwnershipNotified", testOwnershipNotified},
}

func txEnder(t *testing.T, b bus.Bus) bus.TxEnder {
	t.Helper()
	e, ok := b.(bus.TxEnder)
	if !ok {
		t.Fatalf("%T does not implement bus.TxEnder", b)
	}
	return e
}

// testDeposedTransaction: the old owner received an input, wrote to its
// partition and acknowledged the input in a transaction it has not ended
// (frozen). A new owner takes the input partition over (Failover), fences
// the old owner's producer and ends the transactions in scope. Then: the old
// owner's transaction cannot commit; what it wrote never appears and does
// not hold readers back; its input is delivered to the new owner; another
// transaction of the old owner that touched nothing in scope is left
// alone.
func testDeposedTransaction(t *testing.T, s *suite) {
	events, out, other, sub := unique("tkevents"), unique("tkout"), unique("tkother"), unique("orch")
	oldBus, newBus, client := s.bus(t), s.bus(t), s.bus(t)
	s.ensure(t, client, bus.TopicSpec{Name: events, Partitions: s.o.Partitions})
	s.ensure(t, client, bus.TopicSpec{Name: out, Partitions: s.o.Partitions})
	s.ensure(t, client, bus.TopicSpec{Name: other})
	const p = 1
	key := keyFor(p, s.o.Partitions, "proc")
	target := client.Namespace().Partition(out, p)
	ctx := s.ctx(t)

	o := bus.SubscribeOptions{Topic: events, Subscription: sub, Type: bus.Failover, ConsumerName: "a"}
	oldCons, err := oldBus.Subscribe(ctx, o)
	if err != nil {
		t.Fatalf("old owner subscribes: %v", err)
	}
	defer oldCons.Close()
	s.settle()
	send(t, s.producer(t, client, events), &bus.OutMessage{Key: key, Payload: []byte("input")})
	in := s.receive(t, oldCons, "the input, by the old owner")

	oldProd, err := s.open(t, oldBus, target, bus.AccessExclusiveWithFencing)
	if err != nil {
		t.Fatalf("old owner's producer: %v", err)
	}
	tx, err := oldBus.BeginTx(ctx, 10*time.Minute) // only the takeover may end it
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	if _, err := oldProd.Send(ctx, &bus.OutMessage{Key: key, Payload: []byte("old owner, in its open transaction"), Tx: tx}); err != nil {
		t.Fatalf("old owner's send in its transaction: %v", err)
	}
	if err := oldCons.AckTx(ctx, in, tx); err != nil {
		t.Fatalf("old owner's ack in its transaction: %v", err)
	}
	unrelated, err := oldBus.BeginTx(ctx, 10*time.Minute)
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	if _, err := s.producer(t, oldBus, other).Send(ctx, &bus.OutMessage{Key: key, Payload: []byte("unrelated"), Tx: unrelated}); err != nil {
		t.Fatalf("send in the unrelated transaction: %v", err)
	}

	// The broker gives the partition to the new owner.
	o.ConsumerName = "b"
	k := collect(t, "b", s.subscribe(t, newBus, o))
	if err := oldCons.Close(); err != nil {
		t.Fatalf("old owner's consumer closes: %v", err)
	}
	s.quiet(t, "while the old owner's open transaction holds the input", k)

	owner, err := s.open(t, newBus, target, bus.AccessExclusiveWithFencing)
	if err != nil {
		t.Fatalf("new owner's fencing producer: %v", err)
	}
	ended, err := txEnder(t, newBus).EndTransactions(ctx, bus.TxScope{
		Topics: []string{target},
		Acks:   []bus.SubscriptionRef{{Topic: events, Subscription: sub}},
	})
	if err != nil {
		t.Fatalf("end the old owner's transactions: %v", err)
	}
	if ended.Aborted != 1 || ended.Waited != 0 {
		t.Fatalf("ended %+v, want exactly the old owner's transaction aborted", ended)
	}

	// The old owner wakes up: nothing of its transaction can commit.
	if err := tx.Commit(ctx); !errors.Is(err, bus.ErrTxFailed) {
		t.Fatalf("the deposed owner's commit: %v, want an error wrapping bus.ErrTxFailed", err)
	}
	_, err = oldProd.Send(ctx, &bus.OutMessage{Key: key, Payload: []byte("old owner, after")})
	wantFenced(t, "the deposed owner's send after the takeover", err)

	// Its input comes to the new owner.
	m, _ := s.next(t, "the input, given back to the new owner", k)
	if string(m.Payload) != "input" {
		t.Fatalf("new owner got %q, want the input", m.Payload)
	}
	ack(t, k.c, m)

	// Its write never appears, and does not hold a reader back: the new
	// owner's first message is the first one readable.
	send(t, owner, &bus.OutMessage{Key: key, Payload: []byte("new owner")})
	rd, err := client.Reader(ctx, bus.ReaderOptions{Topic: target})
	if err != nil {
		t.Fatalf("reader: %v", err)
	}
	defer rd.Close()
	rctx, cancel := context.WithTimeout(ctx, s.o.Wait)
	defer cancel()
	first, err := rd.Next(rctx)
	if err != nil {
		t.Fatalf("read the partition: %v", err)
	}
	if string(first.Payload) != "new owner" {
		t.Fatalf("first readable message %q, want the new owner's (the deposed owner's must never appear)", first.Payload)
	}
	if more, err := rd.HasNext(ctx); err != nil || more {
		t.Fatalf("after the new owner's message: more=%v err=%v, want nothing", more, err)
	}

	// The transaction that touched nothing in scope was left alone.
	if err := unrelated.Commit(ctx); err != nil {
		t.Fatalf("commit of the transaction out of scope: %v", err)
	}
	ord, err := client.Reader(ctx, bus.ReaderOptions{Topic: other})
	if err != nil {
		t.Fatalf("reader: %v", err)
	}
	defer ord.Close()
	if m, err := ord.Next(rctx); err != nil || string(m.Payload) != "unrelated" {
		t.Fatalf("the unrelated transaction's message: %v %v", m, err)
	}
	s.quiet(t, "after the takeover", k)
}

// testEndNothingInScope: with no transaction in scope EndTransactions
// returns at once and changes nothing; a transaction that only
// acknowledged on another subscription of the same topic is out of scope.
func testEndNothingInScope(t *testing.T, s *suite) {
	topic, mine, theirs := unique("tknone"), unique("mine"), unique("theirs")
	b1, b2 := s.bus(t), s.bus(t)
	s.ensure(t, b1, bus.TopicSpec{Name: topic})
	ctx := s.ctx(t)
	c := s.subscribe(t, b1, bus.SubscribeOptions{Topic: topic, Subscription: theirs, Type: bus.Shared})
	send(t, s.producer(t, b1, topic), &bus.OutMessage{Key: "k", Payload: []byte("m")})
	m := s.receive(t, c, "m")
	tx, err := b1.BeginTx(ctx, 10*time.Minute)
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	if err := c.AckTx(ctx, m, tx); err != nil {
		t.Fatalf("ack in tx: %v", err)
	}
	ended, err := txEnder(t, b2).EndTransactions(ctx, bus.TxScope{
		Topics: []string{unique("untouched")},
		Acks:   []bus.SubscriptionRef{{Topic: topic, Subscription: mine}},
	})
	if err != nil || ended != (bus.TxEnded{}) {
		t.Fatalf("EndTransactions = %+v, %v; want nothing ended", ended, err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("commit of the transaction out of scope: %v", err)
	}
	s.none(t, c, "after the commit of its ack")
}

// testOwnershipNotified: a Failover consumer is told when it gains or
// loses partitions, and its view (PartitionOwner) then shows the change:
// the first consumer gets every partition, a second takes some of them,
// and when the first closes the second is told and gets them all.
func testOwnershipNotified(t *testing.T, s *suite) {
	topic, sub := unique("tkowners"), unique("orch")
	b1, b2 := s.bus(t), s.bus(t)
	s.ensure(t, b1, bus.TopicSpec{Name: topic, Partitions: s.o.Partitions})
	o := bus.SubscribeOptions{Topic: topic, Subscription: sub, Type: bus.Failover, ConsumerName: "a"}
	c1 := s.subscribe(t, b1, o)
	o.ConsumerName = "b"
	notified := func(c bus.Consumer, what string) {
		t.Helper()
		n, ok := c.(bus.OwnershipNotifier)
		if !ok {
			t.Fatalf("%T does not implement bus.OwnershipNotifier", c)
		}
		select {
		case <-n.OwnershipChanged():
		case <-time.After(s.o.Wait):
			t.Fatalf("%s: not notified within %s", what, s.o.Wait)
		}
	}
	owns := func(c bus.Consumer, what string, want func(n int) bool) {
		t.Helper()
		deadline := time.Now().Add(s.o.Wait)
		for {
			got, err := c.(bus.PartitionOwner).OwnedPartitions(s.ctx(t))
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			if want(len(got)) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: owns %v after %s", what, got, s.o.Wait)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	all := func(n int) bool { return n == s.o.Partitions }
	notified(c1, "the first consumer")
	owns(c1, "the first consumer", all)
	c2 := s.subscribe(t, b2, o)
	notified(c2, "the second consumer")
	owns(c2, "the second consumer", func(n int) bool { return n > 0 && n < s.o.Partitions })
	if err := c1.Close(); err != nil {
		t.Fatalf("close the first: %v", err)
	}
	notified(c2, "the second consumer once the first closed")
	owns(c2, "the second consumer once the first closed", all)
}
