package engine_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/pulsarbus"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/internal/pulsartest"
)

// pulsarBuses connects to the test broker; every bus of one test shares a
// namespace of its own, so runs and tests never see each other's topics.
func pulsarBuses(t *testing.T) func(t *testing.T) bus.Bus {
	if testing.Short() {
		t.Skip("needs a Pulsar broker; run without -short (make test)")
	}
	svc, adm := pulsartest.URLs(t)
	ns := bus.Namespace{Tenant: "public", Namespace: fmt.Sprintf("e2e-%d", time.Now().UnixNano())}
	return func(t *testing.T) bus.Bus {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		b, err := pulsarbus.New(ctx, pulsarbus.Config{ServiceURL: svc, AdminURL: adm, Namespace: ns}, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return b
	}
}

func TestTripScenariosPulsar(t *testing.T) {
	t.Parallel()
	topics := engine.DefaultTopics()
	topics.Partitions = 2
	runTripScenarios(t, pulsarBuses(t), topics)
}
