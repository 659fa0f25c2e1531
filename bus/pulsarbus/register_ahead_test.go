package pulsarbus_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/pulsarbus"
)

// TestRegisterAhead: a transaction registers with the coordinator exactly
// the partition a key routes to and the (partition, subscription) an input
// came from, before any send or acknowledgement (the coordinator's own
// record of the transaction says so), and what it then sends and
// acknowledges there commits as usual: the names the bus computes are the
// ones the client's sends and acknowledgements register, or the coordinator
// would list more partitions after them.
func TestRegisterAhead(t *testing.T) {
	b := newBus(t)
	ctx := ctxFor(t, 2*time.Minute)
	topic := topicName(t)
	const parts = 4
	if err := b.EnsureTopic(ctx, bus.TopicSpec{Name: topic, Partitions: parts}); err != nil {
		t.Fatal(err)
	}
	p, err := b.Producer(ctx, bus.ProducerOptions{Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	c, err := b.Subscribe(ctx, bus.SubscribeOptions{Topic: topic, Subscription: "s", Type: bus.Shared})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Send(ctx, &bus.OutMessage{Key: "input", Payload: []byte("input")}); err != nil {
		t.Fatal(err)
	}
	in, err := c.Receive(ctx)
	if err != nil {
		t.Fatal(err)
	}

	tx, err := b.BeginTx(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	reg, ok := tx.(bus.TxRegistrar)
	if !ok {
		t.Fatal("a pulsarbus transaction is not a bus.TxRegistrar")
	}
	// The output's key routes to another partition than the input's.
	key := ""
	for i := 0; key == ""; i++ {
		if k := fmt.Sprintf("out-%d", i); bus.KeyPartition(k, parts) != in.Partition {
			key = k
		}
	}
	wantProduced := []string{fullPartition(b, topic, bus.KeyPartition(key, parts))}
	wantAcked := []string{in.Topic + "/s"}
	targets := []bus.TxTarget{
		{Producer: p, Key: key},
		{Producer: p, Key: key}, // twice: registered once
		{Producer: p},           // no key: its partition is not known, skipped
		{Consumer: c, Input: in},
	}
	if err := reg.RegisterAhead(ctx, targets); err != nil {
		t.Fatal(err)
	}
	produced, acked := txPartitions(t, tx)
	if !slices.Equal(produced, wantProduced) || !slices.Equal(acked, wantAcked) {
		t.Fatalf("registered ahead: produced %v, acked %v; want %v, %v", produced, acked, wantProduced, wantAcked)
	}
	if _, err := p.Send(ctx, &bus.OutMessage{Key: key, Payload: []byte("output"), Tx: tx}); err != nil {
		t.Fatal(err)
	}
	if err := c.AckTx(ctx, in, tx); err != nil {
		t.Fatal(err)
	}
	if produced, acked := txPartitions(t, tx); !slices.Equal(produced, wantProduced) || !slices.Equal(acked, wantAcked) {
		t.Fatalf("after the send and the acknowledgement: produced %v, acked %v; want %v, %v (the bus named other partitions than the client's)",
			produced, acked, wantProduced, wantAcked)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	out, err := c.Receive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(out.Payload) != "output" {
		t.Fatalf("received %q after the commit, want the output (the input was acknowledged in it)", out.Payload)
	}
	if err := c.Ack(ctx, out); err != nil {
		t.Fatal(err)
	}
	quietCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if m, err := c.Receive(quietCtx); err == nil {
		t.Fatalf("received %q again: the acknowledgement in the committed transaction did not hold", m.Payload)
	}
}

// fullPartition is the full name of partition i of topic.
func fullPartition(b *pulsarbus.Bus, topic string, i int) string {
	return b.Namespace().Topic(b.Namespace().Partition(topic, i))
}

// txPartitions is what the transaction coordinator lists for tx: the
// partitions it was sent to and the "partition/subscription" pairs it
// acknowledges on, sorted.
func txPartitions(t *testing.T, tx bus.Tx) (produced, acked []string) {
	t.Helper()
	most, least := pulsarbus.TxID(tx)
	var md struct {
		ProducedPartitions map[string]json.RawMessage            `json:"producedPartitions"`
		AckedPartitions    map[string]map[string]json.RawMessage `json:"ackedPartitions"`
	}
	if code := adminGet(t, fmt.Sprintf("/admin/v3/transactions/transactionMetadata/%d/%d", most, least), &md); code != http.StatusOK {
		t.Fatalf("transaction metadata of (%d,%d): HTTP %d", most, least, code)
	}
	for p := range md.ProducedPartitions {
		produced = append(produced, p)
	}
	for p, subs := range md.AckedPartitions {
		for s := range subs {
			acked = append(acked, p+"/"+s)
		}
	}
	slices.Sort(produced)
	slices.Sort(acked)
	return produced, acked
}
