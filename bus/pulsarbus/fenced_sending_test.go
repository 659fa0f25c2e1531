package pulsarbus_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/pulsarbus"
)

// TestFencedWhileSending: an owner's fencing producer is fenced out while
// several goroutines send on it, over and over, as a deposed orchestrator
// still writing when the next one takes its partition. The fenced producer
// closes from its reconnection (ProducerFenced); the upstream client closed
// its request channels there while sends were under way — a "send on
// closed channel" panic that takes the process down, reported by -race as a
// race between the close and the send (CI run of 2026-12-06,
// third_party/pulsar-client-go/PULSAGA.md). Every send must end, each with
// success or bus.ErrFenced, and the next owner's sends must succeed.
func TestFencedWhileSending(t *testing.T) {
	const (
		rounds  = 12
		senders = 64
	)
	buses := []*pulsarbus.Bus{newBus(t), newBus(t)}
	ctx := ctxFor(t, 3*time.Minute)
	topic := topicName(t)
	open := func(b *pulsarbus.Bus) bus.Producer {
		t.Helper()
		p, err := b.Producer(ctx, bus.ProducerOptions{Topic: topic, AccessMode: bus.AccessExclusiveWithFencing, SendTimeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	cur := open(buses[0])
	fencedSends := 0
	for round := range rounds {
		var wg sync.WaitGroup
		var mu sync.Mutex
		var sent, fenced int
		var other []error
		stop := make(chan struct{})
		for s := range senders {
			wg.Go(func() {
				for i := 0; ; i++ {
					sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
					_, err := cur.Send(sctx, &bus.OutMessage{Key: fmt.Sprint(s), Payload: []byte(fmt.Sprint(round, s, i))})
					cancel()
					mu.Lock()
					switch {
					case err == nil:
						sent++
					case errors.Is(err, bus.ErrFenced):
						fenced++
					default:
						other = append(other, err)
					}
					mu.Unlock()
					if err != nil {
						return
					}
					select {
					case <-stop:
						return
					default:
					}
				}
			})
		}
		time.Sleep(50 * time.Millisecond) // sends under way
		next := open(buses[(round+1)%2])  // fences cur out
		time.Sleep(200 * time.Millisecond)
		close(stop)
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(time.Minute):
			t.Fatalf("round %d: the deposed owner's sends did not end within a minute", round)
		}
		if len(other) > 0 {
			t.Fatalf("round %d: a send on the deposed producer failed with %v, want success or bus.ErrFenced", round, other[0])
		}
		if sent == 0 {
			t.Fatalf("round %d: no send succeeded before the fencing", round)
		}
		fencedSends += fenced
		_ = cur.Close()
		cur = next
		if _, err := cur.Send(ctx, &bus.OutMessage{Key: "k", Payload: []byte(fmt.Sprint("owner ", round+1))}); err != nil {
			t.Fatalf("round %d: the new owner's send: %v", round, err)
		}
	}
	_ = cur.Close()
	if fencedSends == 0 {
		t.Error("no send was refused as fenced in any round: the test never raced a send with the fencing")
	}
	t.Logf("%d rounds, %d sends refused as fenced", rounds, fencedSends)
}
