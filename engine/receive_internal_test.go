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
