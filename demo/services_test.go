package demo

import (
	"fmt"
	"math"
	"testing"
)

func TestFailsRandomlyIsIndependentPerAttempt(t *testing.T) {
	f := Faults{Probability: 0.25, Seed: 7}
	const n = 20000
	fails, both := 0, 0
	for i := 0; i < n; i++ {
		a := f.FailsRandomly(fmt.Sprintf("p-%d/flight/1", i))
		b := f.FailsRandomly(fmt.Sprintf("p-%d/flight/2", i))
		if a {
			fails++
		}
		if a && b {
			both++
		}
	}
	if rate := float64(fails) / n; math.Abs(rate-0.25) > 0.02 {
		t.Errorf("failure rate %.3f, want 0.25", rate)
	}
	if rate := float64(both) / n; math.Abs(rate-0.0625) > 0.01 {
		t.Errorf("two consecutive attempts both fail at %.4f, want about 0.0625 (independent)", rate)
	}
	if (Faults{}).FailsRandomly("x") {
		t.Error("no probability, no failure")
	}
}
