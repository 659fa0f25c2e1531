package pulsarbus_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/pulsarbus"
)

// TestEndTransactionsWithoutListing: when the broker cannot list its open
// transactions (its listing fails as soon as one open transaction touched
// a topic that is gone), EndTransactions still keeps its promise for the
// topics of its scope: it waits until their transaction buffers have
// nothing in progress, i.e. until the deposed writer's transaction ended
// by the broker's own timeout. It returns only then: the transaction
// cannot commit afterwards, and its message never appears.
func TestEndTransactionsWithoutListing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	deposed, owner := newBus(t), newBus(t)
	pulsarbus.RefuseTransactionListing(owner)
	topic := topicName(t)
	if err := owner.EnsureTopic(ctx, bus.TopicSpec{Name: topic}); err != nil {
		t.Fatal(err)
	}
	old, err := deposed.Producer(ctx, bus.ProducerOptions{Topic: topic, AccessMode: bus.AccessExclusiveWithFencing})
	if err != nil {
		t.Fatal(err)
	}
	// The broker times the transaction out txTimeout after it opened it:
	// never before opened+txTimeout.
	const txTimeout = 5 * time.Second
	opened := time.Now()
	tx, err := deposed.BeginTx(ctx, txTimeout)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Send(ctx, &bus.OutMessage{Key: "k", Payload: []byte("deposed, in its transaction"), Tx: tx}); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	p, err := owner.Producer(ctx, bus.ProducerOptions{Topic: topic, AccessMode: bus.AccessExclusiveWithFencing})
	if err != nil {
		t.Fatal(err)
	}
	ended, err := owner.EndTransactions(ctx, bus.TxScope{Topics: []string{topic}})
	if err != nil {
		t.Fatalf("EndTransactions: %v", err)
	}
	if ended.Aborted != 0 {
		t.Fatalf("ended %+v without a listing", ended)
	}
	took := time.Since(opened)
	t.Logf("sent in the transaction %s after opening it; EndTransactions returned %s after opening it", sent.Sub(opened), took)
	if err := tx.Commit(ctx); !errors.Is(err, bus.ErrTxFailed) {
		t.Fatalf("the deposed transaction's commit: %v, want ErrTxFailed", err)
	}
	// Measured from before the transaction was opened, not from the
	// takeover: the send before it may have used much of the timeout (its
	// first send on a new topic has the broker take the topic's first
	// transaction-buffer snapshot).
	if took < txTimeout*9/10 {
		t.Fatalf("EndTransactions returned %s after the transaction was opened, before it could have timed out (%s)", took, txTimeout)
	}
	if _, err := p.Send(ctx, &bus.OutMessage{Key: "k", Payload: []byte("owner")}); err != nil {
		t.Fatal(err)
	}
	rd, err := owner.Reader(ctx, bus.ReaderOptions{Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	m, err := rd.Next(ctx)
	if err != nil || string(m.Payload) != "owner" {
		t.Fatalf("first readable message: %v %v, want the owner's", m, err)
	}
}
