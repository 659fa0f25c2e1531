package pulsarbus_test

import (
	"slices"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/bustest"
)

// TestConformance runs the shared bus conformance suite against the real
// broker.
func TestConformance(t *testing.T) {
	bustest.Run(t, func(t *testing.T) bus.Bus { return newBus(t) }, bustest.Options{
		Wait:  30 * time.Second,
		Quiet: 2 * time.Second,
		// activeConsumerFailoverDelayTimeMillis is 200ms on the test broker.
		Settle: time.Second,
		Lateness: func(test string, samples []time.Duration) {
			// The broker's delayed-delivery tick is 50ms; allow for a
			// loaded machine, but a timer seconds late is a bug.
			if p50 := samples[len(samples)/2]; p50 > time.Second {
				t.Errorf("%s: median lateness %s", test, p50)
			}
			if !slices.IsSorted(samples) {
				t.Errorf("%s: lateness samples not sorted", test)
			}
		},
	})
}
