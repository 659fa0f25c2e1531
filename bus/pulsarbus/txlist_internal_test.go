package pulsarbus

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Calls made together share one listing of open transactions; a call made
// while a listing is under way gets a listing of its own that starts after
// it (it must see the transactions opened before it).
func TestTxListingsShareOnlyListingsNotStarted(t *testing.T) {
	var g txListings
	var started atomic.Int64
	release := make(chan struct{})
	var mu sync.Mutex
	var starts []time.Time
	list := func(ctx context.Context) ([]txMetadata, error) {
		n := started.Add(1)
		mu.Lock()
		starts = append(starts, time.Now())
		mu.Unlock()
		if n == 1 {
			<-release // the first listing stays under way
		}
		return []txMetadata{{TxnID: "(0,1)"}}, nil
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	for range 4 { // the partitions of one takeover
		wg.Go(func() {
			open, err := g.get(ctx, list)
			if err != nil || len(open) != 1 {
				t.Errorf("get = %v, %v", open, err)
			}
		})
	}
	for started.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	late := time.Now() // after the first listing started
	lateDone := make(chan struct{})
	go func() {
		defer close(lateDone)
		if _, err := g.get(ctx, list); err != nil {
			t.Error(err)
		}
	}()
	select {
	case <-lateDone:
	case <-time.After(5 * time.Second):
		t.Fatal("a call made during a listing waited for it")
	}
	close(release)
	wg.Wait()
	if n := started.Load(); n != 2 {
		t.Fatalf("%d listings for 4 calls together and 1 later, want 2", n)
	}
	if starts[1].Before(late) {
		t.Errorf("the later call's listing started %s before the call", late.Sub(starts[1]))
	}
	// A caller that leaves gets its context's error; the listing goes on.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := g.get(cctx, list); err == nil {
		t.Error("a cancelled call returned no error")
	}
}
