package engine

import (
	"testing"
	"time"
)

func TestAdaptiveBatchLimit(t *testing.T) {
	type step struct {
		fail  bool
		units int
		took  time.Duration
		want  int
	}
	// TxTimeout 9s: the target is 3s.
	tests := []struct {
		name  string
		steps []step
	}{
		{"starts at the maximum", []step{{units: 0, want: 256}}},
		{"a failure halves the failed batch", []step{
			{fail: true, units: 256, want: 128},
			{fail: true, units: 128, want: 64},
			{fail: true, units: 10, want: 5}, // halves what failed, not the limit
		}},
		{"never below one", []step{
			{fail: true, units: 1, want: 1},
			{fail: true, units: 1, want: 1},
		}},
		{"a slow batch shrinks to what fits the target", []step{
			{units: 200, took: 6 * time.Second, want: 100},
			{units: 100, took: 4 * time.Second, want: 75},
			{units: 10, took: 30 * time.Second, want: 1},
		}},
		{"a slow batch smaller than the limit does not raise it", []step{
			{fail: true, units: 40, want: 20},
			{units: 20, took: 3100 * time.Millisecond, want: 19},
			{units: 2, took: 4 * time.Second, want: 1},
		}},
		{"full fast batches grow it back by an eighth", []step{
			{fail: true, units: 64, want: 32},
			{units: 32, took: time.Second, want: 36},
			{units: 36, took: time.Second, want: 40},
			{units: 10, took: time.Second, want: 40},     // not full: no evidence
			{units: 40, took: 2 * time.Second, want: 40}, // not fast enough
		}},
		{"growth stops at the maximum", []step{
			{fail: true, units: 256, want: 128},
			{units: 128, took: time.Millisecond, want: 144},
			{units: 144, took: time.Millisecond, want: 162},
			{units: 162, took: time.Millisecond, want: 182},
			{units: 182, took: time.Millisecond, want: 205},
			{units: 205, took: time.Millisecond, want: 230},
			{units: 230, took: time.Millisecond, want: 256},
			{units: 256, took: time.Millisecond, want: 256},
		}},
		{"grows from one", []step{
			{fail: true, units: 1, want: 1},
			{units: 1, took: time.Millisecond, want: 2},
			{units: 2, took: time.Millisecond, want: 3},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAdaptive(256, 9*time.Second)
			for i, s := range tt.steps {
				if s.fail {
					a.failed(s.units)
				} else {
					a.succeeded(s.units, s.took)
				}
				if got := a.limit(); got != s.want {
					t.Fatalf("step %d (%+v): limit %d, want %d", i, s, got, s.want)
				}
			}
		})
	}
}
