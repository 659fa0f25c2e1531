package pulsartest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/pulsarbus"
)

// Namespace is a namespace of its own for one test (prefix-<nanoseconds>),
// so runs and tests never see each other's topics.
func Namespace(prefix string) bus.Namespace {
	return bus.Namespace{Tenant: "public", Namespace: fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano())}
}

// Bus connects to the test broker (URLs) in namespace ns; the bus is
// closed when the test ends. Call it once per simulated process: each bus
// is a client connection of its own.
func Bus(t testing.TB, ns bus.Namespace, log zerolog.Logger) bus.Bus {
	t.Helper()
	svc, adm := URLs(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := pulsarbus.New(ctx, pulsarbus.Config{ServiceURL: svc, AdminURL: adm, Namespace: ns}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}
