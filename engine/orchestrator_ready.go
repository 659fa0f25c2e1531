package engine

import (
	"errors"
	"fmt"
	"slices"
	"sync"
)

// ErrNotReady: the orchestrator is not serving every partition it owns yet
// (its subscription is down, the broker has not said which partitions are
// its own, or some of them are still being loaded). Ready wraps it.
var ErrNotReady = errors.New("orchestrator not ready")

// readiness is what Ready reads, published by the orchestrator's loop.
type readiness struct {
	mu     sync.Mutex
	own    *ownership // nil while there is no subscription
	loaded map[int]bool
}

func (r *readiness) subscribed(own *ownership) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.own, r.loaded = own, map[int]bool{}
}

func (r *readiness) unsubscribed() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.own, r.loaded = nil, nil
}

func (r *readiness) setLoaded(p int, loaded bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.loaded == nil {
		return
	}
	if loaded {
		r.loaded[p] = true
	} else {
		delete(r.loaded, p)
	}
}

// Ready says whether the orchestrator serves everything it owns: nil when
// its subscription to the events topic is up and every partition the broker
// reports as this instance's is loaded (a hot standby that owns none is
// ready); otherwise an error wrapping ErrNotReady that says what is
// missing. It is safe to call from any goroutine.
func (o *Orchestrator) Ready() error {
	r := &o.ready
	r.mu.Lock()
	own := r.own
	loaded := make(map[int]bool, len(r.loaded))
	for p := range r.loaded {
		loaded[p] = true
	}
	r.mu.Unlock()
	if own == nil {
		return fmt.Errorf("%w: not subscribed to the events topic", ErrNotReady)
	}
	owned, err := own.owned()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNotReady, err)
	}
	var missing []int
	for p := range owned {
		if !loaded[p] {
			missing = append(missing, p)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	slices.Sort(missing)
	return fmt.Errorf("%w: partitions %v of the events topic are owned but not taken over and loaded yet",
		ErrNotReady, missing)
}
