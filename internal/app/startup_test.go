package app

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
)

func TestUntilAvailable(t *testing.T) {
	policy := startupRetry{first: time.Millisecond, most: 4 * time.Millisecond, budget: time.Second}
	unavailable := fmt.Errorf("connect: %w", bus.ErrUnavailable)
	bad := fmt.Errorf("auth: %w", bus.ErrBadOptions)
	for _, tc := range []struct {
		name     string
		errs     []error // what the attempts return, in turn; the last one repeats
		calls    int     // attempts expected
		want     error
		canceled bool
	}{
		{name: "first attempt succeeds", errs: []error{nil}, calls: 1},
		{name: "broker unavailable, then up", errs: []error{unavailable, unavailable, unavailable, nil}, calls: 4},
		{name: "not retryable ends at once", errs: []error{bad}, calls: 1, want: bus.ErrBadOptions},
		{name: "unavailable, then not retryable", errs: []error{unavailable, bad}, calls: 2, want: bus.ErrBadOptions},
		{name: "unavailable past the budget", errs: []error{unavailable}, want: bus.ErrUnavailable},
		{name: "context ends", errs: []error{unavailable}, want: bus.ErrUnavailable, canceled: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			calls := 0
			start := time.Now()
			err := policy.run(ctx, zerolog.Nop(), "step", func(context.Context) error {
				calls++
				if tc.canceled && calls == 3 {
					cancel()
				}
				return tc.errs[min(calls, len(tc.errs))-1]
			})
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if tc.calls > 0 && calls != tc.calls {
				t.Errorf("%d attempts, want %d", calls, tc.calls)
			}
			switch {
			case tc.canceled && calls != 3:
				t.Errorf("%d attempts after the context ended at the third", calls)
			case tc.name == "unavailable past the budget" && (time.Since(start) < 900*time.Millisecond || calls < 10):
				t.Errorf("gave up after %s and %d attempts, the budget is %s", time.Since(start), calls, policy.budget)
			}
		})
	}
}
