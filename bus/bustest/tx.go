package bustest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
)

var txTests = []test{
	{"Commit", func(t *testing.T, s *suite) { s.tx(t, "commit") }},
	{"Abort", func(t *testing.T, s *suite) { s.tx(t, "abort") }},
	{"Timeout", func(t *testing.T, s *suite) { s.tx(t, "timeout") }},
	{"CommitPartitionedAsync", func(t *testing.T, s *suite) { s.txPartitioned(t, true) }},
	{"AbortPartitionedAsync", func(t *testing.T, s *suite) { s.txPartitioned(t, false) }},
	{"ConcurrentSenders", func(t *testing.T, s *suite) { s.txConcurrentSenders(t) }},
	{"InterleavedKeys", func(t *testing.T, s *suite) { s.txInterleavedKeys(t) }},
	{"SendAfterTimeout", func(t *testing.T, s *suite) { s.txSendAfterTimeout(t) }},
	{"AckList", func(t *testing.T, s *suite) { s.txAckList(t) }},
}

// txPartitioned sends a batch with SendAsync to every partition of a topic
// in one transaction, as the engine does per batch, and commits or aborts.
func (s *suite) txPartitioned(t *testing.T, commit bool) {
	const n = 12
	out := unique("txparts")
	b := s.bus(t)
	s.ensure(t, b, bus.TopicSpec{Name: out, Partitions: s.o.Partitions})
	outC := s.subscribe(t, b, bus.SubscribeOptions{Topic: out, Subscription: unique("out"), Type: bus.Exclusive})
	p := s.producer(t, b, out)
	tx, err := b.BeginTx(s.ctx(t), time.Minute)
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		key := fmt.Sprintf("proc-%d", i)
		p.SendAsync(s.ctx(t), &bus.OutMessage{Key: key, Payload: payload(key, i), Tx: tx}, func(_ bus.MessageID, err error) { errs <- err })
	}
	if err := p.Flush(s.ctx(t)); err != nil {
		t.Fatalf("flush: %v", err)
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Fatalf("transactional SendAsync: %v", err)
		}
	}
	s.none(t, outC, "sends of an open transaction")
	if !commit {
		if err := tx.Abort(s.ctx(t)); err != nil {
			t.Fatalf("abort: %v", err)
		}
		s.none(t, outC, "sends of an aborted transaction")
		return
	}
	if err := tx.Commit(s.ctx(t)); err != nil {
		t.Fatalf("commit: %v", err)
	}
	seen := map[string]bool{}
	parts := map[int]bool{}
	for i := 0; i < n; i++ {
		m := s.receive(t, outC, fmt.Sprintf("committed message %d of %d", i+1, n))
		ack(t, outC, m)
		if seen[string(m.Payload)] {
			t.Fatalf("duplicate %q", m.Payload)
		}
		seen[string(m.Payload)] = true
		parts[m.Partition] = true
	}
	if len(parts) < 2 {
		t.Fatalf("%d keys reached only partitions %v", n, parts)
	}
	s.none(t, outC, "after the committed batch")
}

// tx consumes an input, sends three outputs and acknowledges the input in
// one transaction, then ends it as told: "commit", "abort" or "timeout".
func (s *suite) tx(t *testing.T, end string) {
	in, out, sub := unique("txin"), unique("txout"), unique("sub")
	b := s.bus(t)
	o := bus.SubscribeOptions{Topic: in, Subscription: sub, Type: bus.Failover, ConsumerName: "worker"}
	c := s.subscribe(t, b, o)
	outC := s.subscribe(t, b, bus.SubscribeOptions{Topic: out, Subscription: unique("out"), Type: bus.Exclusive})
	inP, outP := s.producer(t, b, in), s.producer(t, b, out)
	inID := send(t, inP, &bus.OutMessage{Key: "proc", Payload: []byte("input")})
	m := s.receive(t, c, "the input")

	timeout := time.Minute
	if end == "timeout" {
		timeout = s.o.TxTimeout
	}
	tx, err := b.BeginTx(s.ctx(t), timeout)
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	for i := 0; i < 3; i++ {
		send(t, outP, &bus.OutMessage{Key: "proc", Payload: payload("out", i), Tx: tx})
	}
	if err := c.AckTx(s.ctx(t), m, tx); err != nil {
		t.Fatalf("ack in the transaction: %v", err)
	}
	s.none(t, outC, "sends of an open transaction")

	switch end {
	case "commit":
		if err := tx.Commit(s.ctx(t)); err != nil {
			t.Fatalf("commit: %v", err)
		}
		for i := 0; i < 3; i++ {
			got := s.receive(t, outC, fmt.Sprintf("committed output %d", i))
			if string(got.Payload) != string(payload("out", i)) {
				t.Fatalf("output %d is %q", i, got.Payload)
			}
			ack(t, outC, got)
		}
		s.none(t, outC, "after the committed outputs")
	case "abort":
		if err := tx.Abort(s.ctx(t)); err != nil {
			t.Fatalf("abort: %v", err)
		}
	case "timeout":
		// The broker aborts it after TxTimeout; meanwhile the input
		// stays acknowledged-pending and is not delivered.
	}

	// A new consumer (the old one closed) sees the input again unless the
	// transaction committed.
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c2 := s.subscribe(t, b, o)
	if end == "commit" {
		s.none(t, c2, "the input acknowledged in a committed transaction")
		return
	}
	again := s.receive(t, c2, "the input after the transaction ended without commit")
	if !bytes.Equal(again.ID, inID) || string(again.Payload) != "input" {
		t.Fatalf("got %q, want the input again", again.Payload)
	}
	ack(t, c2, again)
	s.none(t, outC, "sends of a transaction that did not commit")
	if end == "timeout" {
		if err := tx.Commit(s.ctx(t)); !errors.Is(err, bus.ErrTxFailed) {
			t.Fatalf("commit after the timeout: got %v, want bus.ErrTxFailed", err)
		}
		if _, err := outP.Send(s.ctx(t), &bus.OutMessage{Key: "proc", Payload: []byte("late"), Tx: tx}); err == nil {
			t.Fatal("send in a timed-out transaction was accepted")
		}
	}
	// The output topic still works outside transactions.
	send(t, outP, &bus.OutMessage{Key: "proc", Payload: []byte("plain")})
	if got := s.receive(t, outC, "a plain message after the transaction"); string(got.Payload) != "plain" {
		t.Fatalf("got %q, want \"plain\"", got.Payload)
	}
}

// txSendAfterTimeout: a transaction that timed out while its sender still
// holds it: a send in it fails (promptly, not after the send timeout), and
// the producer goes on working: a later plain send arrives. (pulsarbus:
// the client fails it itself, knowing the timeout; the broker's refusal of
// a transaction it ended behind the client's back, finding (B), is
// pulsarbus's TestSendInEndedTransaction.)
func (s *suite) txSendAfterTimeout(t *testing.T) {
	out := unique("txdead")
	b := s.bus(t)
	outC := s.subscribe(t, b, bus.SubscribeOptions{Topic: out, Subscription: unique("out"), Type: bus.Exclusive})
	p := s.producer(t, b, out)
	tx, err := b.BeginTx(s.ctx(t), s.o.TxTimeout)
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	send(t, p, &bus.OutMessage{Key: "k", Payload: []byte("in the transaction"), Tx: tx})
	// Past the timeout, and then some: the broker has aborted it.
	time.Sleep(s.o.TxTimeout + 3*time.Second)
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), s.o.Wait)
		_, err := p.Send(ctx, &bus.OutMessage{Key: "k", Payload: []byte("late"), Tx: tx})
		cancel()
		if err == nil {
			t.Fatalf("send %d in a transaction aborted at its timeout was accepted", i+1)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("send %d in an aborted transaction did not fail within %s: %v", i+1, s.o.Wait, err)
		}
	}
	for i := range 3 {
		send(t, p, &bus.OutMessage{Key: "k", Payload: payload("plain", i)})
	}
	for i := range 3 {
		m := s.receive(t, outC, "a plain message after the dead transaction")
		ack(t, outC, m)
		if string(m.Payload) != string(payload("plain", i)) {
			t.Fatalf("got %q, want %q", m.Payload, payload("plain", i))
		}
	}
	s.none(t, outC, "messages of the aborted transaction")
}

// txAckList acknowledges a list of inputs, from every partition of a topic,
// some batched together by the producer and some alone, in one transaction through
// bus.TxListAcker: while the transaction is open none comes again; when it
// aborts every one comes again; when a second one commits none does to a
// new consumer of the subscription, even though the first consumer closed
// before the commit (the transaction has every acknowledgement).
func (s *suite) txAckList(t *testing.T) {
	const n, alone = 24, 6
	in, sub := unique("txlist"), unique("sub")
	b := s.bus(t)
	s.ensure(t, b, bus.TopicSpec{Name: in, Partitions: s.o.Partitions})
	o := bus.SubscribeOptions{Topic: in, Subscription: sub, Type: bus.Exclusive, NackDelay: s.o.NackDelay}
	c := s.subscribe(t, b, o)
	la, ok := c.(bus.TxListAcker)
	if !ok {
		t.Fatalf("the consumer (%T) is not a bus.TxListAcker", c)
	}
	p := s.producer(t, b, in)
	errs := make(chan error, n)
	for i := range n {
		key := fmt.Sprintf("proc-%d", i%6) // several messages per key: batched entries
		p.SendAsync(s.ctx(t), &bus.OutMessage{Key: key, Payload: payload("in", i)}, func(_ bus.MessageID, err error) { errs <- err })
	}
	if err := p.Flush(s.ctx(t)); err != nil {
		t.Fatalf("flush: %v", err)
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("send: %v", err)
		}
	}
	for i := n; i < n+alone; i++ { // one at a time: entries of their own
		send(t, p, &bus.OutMessage{Key: fmt.Sprintf("proc-%d", i), Payload: payload("in", i)})
	}
	receiveAll := func(what string) []*bus.Message {
		t.Helper()
		var msgs []*bus.Message
		seen := map[string]bool{}
		parts := map[int]bool{}
		for len(msgs) < n+alone {
			m := s.receive(t, c, fmt.Sprintf("%s: input %d of %d", what, len(msgs)+1, n+alone))
			if seen[string(m.Payload)] {
				t.Fatalf("%s: %q delivered twice", what, m.Payload)
			}
			seen[string(m.Payload)] = true
			parts[m.Partition] = true
			msgs = append(msgs, m)
		}
		if len(parts) < 2 {
			t.Fatalf("%s: %d inputs came from partitions %v only", what, n+alone, parts)
		}
		return msgs
	}
	msgs := receiveAll("first delivery")

	tx, err := b.BeginTx(s.ctx(t), time.Minute)
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	if err := la.AckTxList(s.ctx(t), msgs, tx); err != nil {
		t.Fatalf("AckTxList: %v", err)
	}
	s.none(t, c, "inputs acknowledged in an open transaction")
	if err := tx.Abort(s.ctx(t)); err != nil {
		t.Fatalf("abort: %v", err)
	}
	msgs = receiveAll("after the abort")

	tx, err = b.BeginTx(s.ctx(t), time.Minute)
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	if err := la.AckTxList(s.ctx(t), msgs, tx); err != nil {
		t.Fatalf("AckTxList: %v", err)
	}
	// The consumer goes before the commit: the transaction alone carries
	// every acknowledgement (a batched entry included: none is left to a
	// plain acknowledgement after the commit, which a crash would lose).
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(s.ctx(t)); err != nil {
		t.Fatalf("commit: %v", err)
	}
	s.none(t, s.subscribe(t, b, o), "inputs acknowledged in a committed transaction, to a new consumer")
}
