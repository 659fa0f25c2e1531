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
