package bus_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
)

// fakeProducer completes sends from goroutines of its own after a random
// pause (so outcomes arrive out of order), failing those whose payload is
// "fail", and never completing those whose payload is "hang".
type fakeProducer struct {
	bus.Producer
	mu      sync.Mutex
	byKey   map[string][]string // payloads in SendAsync order
	flushes int
	n       int
}

func newFakeProducer() *fakeProducer { return &fakeProducer{byKey: map[string][]string{}} }

func (p *fakeProducer) Topic() string { return "fake" }

func (p *fakeProducer) SendAsync(_ context.Context, msg *bus.OutMessage, done func(bus.MessageID, error)) {
	p.mu.Lock()
	p.byKey[msg.Key] = append(p.byKey[msg.Key], string(msg.Payload))
	p.n++
	id := bus.MessageID(fmt.Sprint(p.n))
	p.mu.Unlock()
	switch string(msg.Payload) {
	case "hang":
		return
	case "fail":
		go done(nil, bus.ErrUnavailable)
		return
	}
	go func() {
		time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
		done(id, nil)
	}()
}

func (p *fakeProducer) Flush(context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.flushes++
	return nil
}

func TestBatchKeepsKeyOrderAcrossLanes(t *testing.T) {
	p1, p2 := newFakeProducer(), newFakeProducer()
	b := bus.NewBatch(bus.BatchOptions{Lanes: 8})
	var mu sync.Mutex
	ids := 0
	for i := range 50 {
		for k := range 10 {
			for _, p := range []*fakeProducer{p1, p2} {
				b.Send(p, &bus.OutMessage{Key: fmt.Sprint("k", k), Payload: fmt.Appendf(nil, "%03d", i)}, func(bus.MessageID) {
					mu.Lock()
					ids++
					mu.Unlock()
				})
			}
		}
	}
	if err := b.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ids != 1000 {
		t.Fatalf("%d ids, want 1000 before Commit returns", ids)
	}
	for _, p := range []*fakeProducer{p1, p2} {
		if p.flushes != 1 {
			t.Fatalf("%d flushes, want one per producer", p.flushes)
		}
		for k, got := range p.byKey {
			for i := range got {
				if got[i] != fmt.Sprintf("%03d", i) {
					t.Fatalf("key %s sent out of order: %v", k, got)
				}
			}
		}
	}
}

func TestBatchForwardSettlesEachInput(t *testing.T) {
	p := newFakeProducer()
	c := newChanConsumer()
	b := bus.NewBatch(bus.BatchOptions{})
	for _, pl := range []string{"a", "fail", "b"} {
		b.Forward(p, &bus.OutMessage{Key: pl, Payload: []byte(pl)}, c, &bus.Message{Payload: []byte(pl)}, nil)
	}
	plain := &bus.Message{Payload: []byte("acked with the batch")}
	b.Ack(c, plain)
	err := b.Commit(context.Background())
	if !errors.Is(err, bus.ErrUnavailable) {
		t.Fatalf("Commit: %v, want the failed send's error", err)
	}
	if fmt.Sprint(c.acks) != "[a b]" {
		t.Fatalf("acked %v, want [a b]", c.acks)
	}
	if fmt.Sprint(c.nacks) != "[fail acked with the batch]" {
		t.Fatalf("nacked %v: the failed forward and the batch's own input", c.nacks)
	}
}

func TestBatchWaitEndsWithItsContext(t *testing.T) {
	p := newFakeProducer()
	c := newChanConsumer()
	b := bus.NewBatch(bus.BatchOptions{})
	b.Forward(p, &bus.OutMessage{Key: "k", Payload: []byte("hang")}, c, &bus.Message{Payload: []byte("in")}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := b.Commit(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Commit: %v, want the context's error", err)
	}
	if fmt.Sprint(c.nacks) != "[in]" || len(c.acks) != 0 {
		t.Fatalf("acks %v nacks %v: an input whose send's outcome is unknown must come again", c.acks, c.nacks)
	}
	if err := b.Commit(context.Background()); !errors.Is(err, bus.ErrBadOptions) {
		t.Fatalf("second Commit: %v", err)
	}
}

type fakeTx struct{}

func (fakeTx) Commit(context.Context) error { return nil }
func (fakeTx) Abort(context.Context) error  { return nil }

// txConsumer records its acknowledgements in a transaction; listing
// consumers (a bus.TxListAcker) record each AckTxList call's payloads.
type txConsumer struct {
	chanConsumer
	failList error
	acks     []string   // AckTx, one payload per call
	lists    [][]string // AckTxList, one list per call
}

func (c *txConsumer) AckTx(_ context.Context, m *bus.Message, _ bus.Tx) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.acks = append(c.acks, string(m.Payload))
	return nil
}

type listingConsumer struct{ txConsumer }

func (c *listingConsumer) AckTxList(_ context.Context, msgs []*bus.Message, _ bus.Tx) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var l []string
	for _, m := range msgs {
		l = append(l, string(m.Payload))
	}
	c.lists = append(c.lists, l)
	return c.failList
}

func TestBatchAcksAListPerListingConsumer(t *testing.T) {
	a, b2, plain := &listingConsumer{}, &listingConsumer{}, &txConsumer{}
	b := bus.NewBatch(bus.BatchOptions{Tx: fakeTx{}, AckConcurrency: 1})
	for i := range 5 {
		b.Ack(a, &bus.Message{Payload: fmt.Appendf(nil, "a%d", i)})
		if i < 3 {
			b.Ack(b2, &bus.Message{Payload: fmt.Appendf(nil, "b%d", i)})
		}
		if i < 2 {
			b.Ack(plain, &bus.Message{Payload: fmt.Appendf(nil, "p%d", i)})
		}
	}
	if err := b.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(a.lists) != "[[a0 a1 a2 a3 a4]]" || fmt.Sprint(b2.lists) != "[[b0 b1 b2]]" || len(a.acks)+len(b2.acks) != 0 {
		t.Fatalf("lists %v and %v (single acks %v %v), want one list per consumer in Ack order", a.lists, b2.lists, a.acks, b2.acks)
	}
	if fmt.Sprint(plain.acks) != "[p0 p1]" {
		t.Fatalf("a consumer without AckTxList got %v, want AckTx per input", plain.acks)
	}
	// A second Wait issues only what was queued since.
	b.Ack(a, &bus.Message{Payload: []byte("a5")})
	a.failList = fmt.Errorf("refused: %w", bus.ErrTxFailed)
	if err := b.Wait(context.Background()); !errors.Is(err, bus.ErrTxFailed) {
		t.Fatalf("Wait after a failed AckTxList: %v, want its error", err)
	}
	if fmt.Sprint(a.lists) != "[[a0 a1 a2 a3 a4] [a5]]" {
		t.Fatalf("lists %v after the second Wait", a.lists)
	}
}
