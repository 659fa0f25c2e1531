package engine

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
)

// txCountingBus begins transactions that count their ends.
type txCountingBus struct {
	bus.Bus
	begun, fromRun, aborted, committed atomic.Int32
}

type countedTx struct {
	b      *txCountingBus
	flight bool // begun by a flight (not a spare)
}

type flightKey struct{}

func (t countedTx) Commit(context.Context) error { t.b.committed.Add(1); return nil }
func (t countedTx) Abort(context.Context) error  { t.b.aborted.Add(1); return nil }

func (b *txCountingBus) BeginTx(ctx context.Context, _ time.Duration) (bus.Tx, error) {
	b.begun.Add(1)
	flight := ctx.Value(flightKey{}) != nil
	if !flight {
		b.fromRun.Add(1)
	}
	return countedTx{b, flight}, nil
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 5 s: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestSpareTx(t *testing.T) {
	t.Run("a flight takes the spare and another is begun", func(t *testing.T) {
		b := &txCountingBus{}
		s := newSpareTx(b, 10*time.Second, zerolog.Nop())
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); s.run(ctx) }()
		flight := context.WithValue(ctx, flightKey{}, true)
		took := 0
		eventually(t, "no flight got the spare", func() bool {
			tx, err := s.take(flight)
			if err != nil {
				t.Fatal(err)
			}
			took++
			return !tx.(countedTx).flight
		})
		// Each take asked for the next spare: one is begun (and held).
		eventually(t, "no next spare begun after the take", func() bool { return int(b.fromRun.Load()) == 2 })
		cancel()
		<-done
		if got := b.aborted.Load(); got != 1 {
			t.Fatalf("the spare held at the end: %d aborted, want 1", got)
		}
		if int(b.begun.Load()) != took+1 {
			t.Fatalf("%d transactions begun for %d takes, want one more (the spare held)", b.begun.Load(), took)
		}
	})
	t.Run("an untaken spare is aborted after maxAge and not replaced", func(t *testing.T) {
		b := &txCountingBus{}
		s := newSpareTx(b, 10*time.Second, zerolog.Nop())
		s.maxAge = 20 * time.Millisecond
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go s.run(ctx)
		eventually(t, "the idle spare is not aborted", func() bool { return b.aborted.Load() == 1 })
		time.Sleep(100 * time.Millisecond)
		if got := b.begun.Load(); got != 1 {
			t.Fatalf("an idle engine began %d transactions, want 1 (the aborted spare)", got)
		}
		// With no spare ready, a flight begins its own and asks for one.
		if _, err := s.take(ctx); err != nil {
			t.Fatal(err)
		}
		eventually(t, "no spare begun after a flight asked", func() bool { return b.begun.Load() == 3 })
	})
	t.Run("maxAge is at most a tenth of the timeout", func(t *testing.T) {
		if got := newSpareTx(&txCountingBus{}, 2*time.Second, zerolog.Nop()).maxAge; got != 200*time.Millisecond {
			t.Fatalf("maxAge %s, want 200ms", got)
		}
		if got := newSpareTx(&txCountingBus{}, time.Minute, zerolog.Nop()).maxAge; got != time.Second {
			t.Fatalf("maxAge %s, want 1s", got)
		}
	})
}
