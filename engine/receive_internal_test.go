package engine

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
)

// drip is a consumer that has one more input every interval, for ever.
type drip struct {
	bus.Consumer
	interval time.Duration
	n        int
}

func (d *drip) Receive(ctx context.Context) (*bus.Message, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(d.interval):
	}
	d.n++
	return &bus.Message{ID: bus.MessageID(fmt.Sprint(d.n)), Key: "pid"}, nil
}

// TestReceiveBatchWaitCountsFromTheFirstInput: under a steady trickle of
// inputs closer together than BatchWait, a receive batch still closes
// BatchWait after its first input (until session 8 the wait restarted at
// every input, so such a trickle held the batch until BatchSize).
func TestReceiveBatchWaitCountsFromTheFirstInput(t *testing.T) {
	for _, tc := range []struct {
		name   string
		flying int32
	}{
		{"a batch on its way: BatchWait", 1},
		{"none on its way: what has arrived", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := &Orchestrator{cons: &drip{interval: 200 * time.Microsecond}}
			o.opts.BatchWait, o.opts.BatchSize = 20*time.Millisecond, 1<<20
			o.flying.Store(tc.flying)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			start := time.Now()
			msgs, err := o.receiveBatch(ctx)
			took := time.Since(start)
			if err != nil {
				t.Fatalf("receiveBatch: %v after %v", err, took)
			}
			// 20 ms of waiting, generously bounded for a loaded machine; the
			// old behaviour only returned at the 10 s deadline, with an error.
			if took > 2*time.Second {
				t.Errorf("receiveBatch took %v (%d inputs): the wait did not count from the first input", took, len(msgs))
			}
			if len(msgs) < 1 {
				t.Errorf("receiveBatch returned no input")
			}
		})
	}
}

// TestSpacingWait: OrchestratorOptions.BatchSpacing's rule.
func TestSpacingWait(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		name     string
		inflight int
		since    time.Duration
		parked   int
		want     time.Duration
	}{
		{"nothing on its way: at once", 0, 0, 1, 0},
		{"one on its way, just launched: the rest of the spacing", 1, 5 * ms, 10, 20 * ms},
		{"one on its way, spacing over", 1, 25 * ms, 10, 0},
		{"one on its way, a full batch waits: at once", 1, 5 * ms, 256, 0},
		{"more than a full batch waits: at once", 1, 0, 1000, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := spacingWait(tc.inflight, tc.since, tc.parked, 256, 25*ms); got != tc.want {
				t.Errorf("spacingWait = %v, want %v", got, tc.want)
			}
		})
	}
	if got := spacingWait(1, 0, 1, 256, -1); got != 0 {
		t.Errorf("spacing off: spacingWait = %v, want 0", got)
	}
}
