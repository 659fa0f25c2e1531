package bench

import (
	"slices"
	"testing"
	"time"
)

// TestQuantile: nearest rank, and the caller's slice keeps its order
// (byArrival pairs LoopResult.Latencies with SeenAt after the quantiles
// are taken; until session 8 Quantile sorted it in place, which paired
// sorted latencies with arrival times and drew a latency rising smoothly
// through every step).
func TestQuantile(t *testing.T) {
	ms := time.Millisecond
	ds := []time.Duration{50 * ms, 10 * ms, 40 * ms, 20 * ms, 30 * ms}
	orig := slices.Clone(ds)
	for _, tc := range []struct {
		name string
		q    float64
		want float64
	}{
		{"min", 0, 10},
		{"median", 0.5, 30},
		{"p80", 0.8, 40},
		{"p99", 0.99, 50},
		{"max", 1, 50},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Quantile(ds, tc.q); got != tc.want {
				t.Errorf("Quantile(%v) = %v, want %v", tc.q, got, tc.want)
			}
			if !slices.Equal(ds, orig) {
				t.Errorf("Quantile reordered its input: %v, was %v", ds, orig)
			}
		})
	}
	if got := Quantile(nil, 0.5); got != 0 {
		t.Errorf("Quantile(nil) = %v, want 0", got)
	}
}
