package memory_test

import (
	"testing"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/bustest"
	"github.com/pulsaga/pulsaga/bus/memory"
)

func TestBacklogs(t *testing.T) {
	broker := memory.NewBroker()
	bustest.RunBacklogs(t, func(t *testing.T) bus.Bus {
		return memory.New(memory.Options{Broker: broker})
	}, bustest.Options{})
}
