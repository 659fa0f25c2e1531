package engine

import (
	"context"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
)

// Transactions begun ahead. A flight's first step is beginning its
// transaction, a coordinator round trip (~2–3 ms at half the maximum
// load); when its predecessor's first round is already over, that round
// trip is on every saga hop's path. So one transaction is kept begun for
// the next flight: a flight takes it and asks for another, which is begun
// while the flight is on its way. A spare nobody takes within maxAge is
// aborted (and not replaced until a flight asks again), so a spare is at
// most maxAge into its timeout when a flight takes it and an idle engine
// holds no transaction open.
type spareTx struct {
	bus     bus.Bus
	timeout time.Duration
	maxAge  time.Duration
	log     zerolog.Logger
	// want asks run for a spare (buffered: one request pending at most).
	want chan struct{}
	// ready hands a spare over.
	ready chan bus.Tx
}

func newSpareTx(b bus.Bus, timeout time.Duration, log zerolog.Logger) *spareTx {
	s := &spareTx{bus: b, timeout: timeout, maxAge: min(time.Second, timeout/10), log: log,
		want: make(chan struct{}, 1), ready: make(chan bus.Tx)}
	s.ask()
	return s
}

func (s *spareTx) ask() {
	select {
	case s.want <- struct{}{}:
	default:
	}
}

// run begins spares on demand until ctx ends.
func (s *spareTx) run(ctx context.Context) {
	age := time.NewTimer(time.Hour)
	defer age.Stop()
	for {
		select {
		case <-s.want:
		case <-ctx.Done():
			return
		}
		tx, err := s.bus.BeginTx(ctx, s.timeout)
		if err != nil {
			// The flights begin their own meanwhile (and see the error).
			s.log.Debug().Err(err).Msg("beginning a spare transaction failed")
			continue
		}
		age.Reset(s.maxAge)
		select {
		case s.ready <- tx:
			age.Stop() // (Go 1.23+: no stale tick is received after Stop)
		case <-age.C:
			s.abort(ctx, tx)
		case <-ctx.Done():
			s.abort(ctx, tx)
			return
		}
	}
}

func (s *spareTx) abort(ctx context.Context, tx bus.Tx) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := tx.Abort(actx); err != nil {
		s.log.Debug().Err(err).Msg("aborting an unused spare transaction failed (the broker ends it at its timeout)")
	}
}

// take returns the spare when one is ready, else begins a transaction; it
// asks for the next spare either way.
func (s *spareTx) take(ctx context.Context) (bus.Tx, error) {
	defer s.ask()
	select {
	case tx := <-s.ready:
		return tx, nil
	default:
		return s.bus.BeginTx(ctx, s.timeout)
	}
}
