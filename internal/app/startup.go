package app

import (
	"context"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
)

// startupRetry is how a startup step retries while the broker is
// unavailable: it waits first, then doubled up to most; after budget it
// gives up and the process ends with the step's error.
type startupRetry struct {
	first, most, budget time.Duration
}

var defaultStartupRetry = startupRetry{first: 500 * time.Millisecond, most: 10 * time.Second, budget: 2 * time.Minute}

// untilAvailable runs a startup step made once the bus is connected
// (create topics, register definitions) until it succeeds, fails for a
// reason that retrying cannot mend (not bus.Retryable: bad credentials, an
// invalid definition), ctx ends or the budget of defaultStartupRetry has
// passed: a broker that answers the connection but fails a request for a
// while — a restart, a lost connection, an overloaded metadata store —
// delays the start instead of ending the process. Connecting itself is not
// retried: a broker that cannot be reached at all ends the process at once
// with the error (exit 1), for its supervisor to restart it.
func untilAvailable(ctx context.Context, log zerolog.Logger, step string, fn func(context.Context) error) error {
	return defaultStartupRetry.run(ctx, log, step, fn)
}

func (r startupRetry) run(ctx context.Context, log zerolog.Logger, step string, fn func(context.Context) error) error {
	wait := r.first
	giveUp := time.Now().Add(r.budget)
	for attempt := 1; ; attempt++ {
		err := fn(ctx)
		if err == nil || !bus.Retryable(err) || ctx.Err() != nil || time.Now().Add(wait).After(giveUp) {
			return err
		}
		log.Warn().Err(err).Str("step", step).Int("attempt", attempt).Dur("retry_in", wait).Msg("startup step failed: broker unavailable; retrying")
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, r.most)
	}
}
