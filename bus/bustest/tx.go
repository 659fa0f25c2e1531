package bustest

import (
	"bytes"
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
