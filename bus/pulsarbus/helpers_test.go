package pulsarbus_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/pulsarbus"
	"github.com/pulsaga/pulsaga/internal/pulsartest"
)

var seq atomic.Int64

// unique returns a name no other test (or earlier run) used.
func unique(prefix string) string {
	return fmt.Sprintf("%s-%d-%d-%d", prefix, os.Getpid(), time.Now().UnixNano()%1e9, seq.Add(1))
}

// testLogger writes warnings and errors to the test log.
func testLogger(t testing.TB) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
}

// newBus connects to the test broker in a namespace of its own, so topics
// never collide with other tests or runs.
func newBus(t testing.TB) *pulsarbus.Bus {
	t.Helper()
	svc, adm := pulsartest.URLs(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := pulsarbus.New(ctx, pulsarbus.Config{
		ServiceURL: svc,
		AdminURL:   adm,
		Namespace:  bus.Namespace{Tenant: "public", Namespace: "pulsarbus-test"},
	}, testLogger(t))
	if err != nil {
		t.Fatalf("pulsarbus.New: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func topicName(t testing.TB) string {
	return unique(strings.NewReplacer("/", "-", " ", "-").Replace(strings.ToLower(t.Name())))
}
