package pulsarbus_test

import (
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/bustest"
)

// TestBacklogs runs the bus.Backlogs conformance tests (what the admin
// API's dead-letter replay and purge rely on) against the real broker.
func TestBacklogs(t *testing.T) {
	bustest.RunBacklogs(t, func(t *testing.T) bus.Bus { return newBus(t) }, bustest.Options{Wait: 30 * time.Second, Quiet: 2 * time.Second})
}
