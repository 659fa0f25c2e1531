package memory_test

import (
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/bustest"
	"github.com/pulsaga/pulsaga/bus/memory"
)

func TestConformance(t *testing.T) {
	broker := memory.NewBroker()
	bustest.Run(t, func(t *testing.T) bus.Bus {
		return memory.New(memory.Options{Broker: broker})
	}, bustest.Options{
		Lateness: func(test string, samples []time.Duration) {
			// The memory bus only waits for timers: lateness is small.
			if max := samples[len(samples)-1]; max > 500*time.Millisecond {
				t.Errorf("%s: a delayed message was %s late", test, max)
			}
		},
	})
}
