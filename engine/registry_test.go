package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus/memory"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/worker"
	"github.com/pulsaga/pulsaga/workflow"
)

func TestRegistry(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	broker := memory.NewBroker()
	b := memory.New(memory.Options{Broker: broker})
	defer b.Close()
	reg := engine.NewRegistry(b, "definitions", nil)
	defer reg.Close()
	v1, err := os.ReadFile(repoFile(t, "testdata/trip-booking.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	v2, err := os.ReadFile(repoFile(t, "engine/testdata/trip-booking-v2-short-timeouts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Register(ctx, "trip-booking.yaml", v1); err != nil {
		t.Fatal(err)
	}
	t.Run("same source again is a no-op", func(t *testing.T) {
		if _, err := reg.Register(ctx, "trip-booking.yaml", v1); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("same version with other content is refused", func(t *testing.T) {
		changed := strings.Replace(string(v1), "timeout: 30s", "timeout: 31s", 1)
		_, err := reg.Register(ctx, "trip-booking.yaml", []byte(changed))
		if !errors.Is(err, engine.ErrVersionConflict) || !strings.Contains(err.Error(), "bump version") {
			t.Fatalf("want a version conflict that says to bump the version, got %v", err)
		}
	})
	t.Run("invalid definitions are refused with positions", func(t *testing.T) {
		_, err := reg.Register(ctx, "bad.yaml", []byte("name: x\nversion: 1\nsteps:\n  - id: a\n    sevrice: s\n    command: C\n"))
		if !errors.Is(err, workflow.ErrInvalidDefinition) || !strings.Contains(err.Error(), "bad.yaml:5:") {
			t.Fatalf("want a validation error with file:line, got %v", err)
		}
	})
	t.Run("a directory is validated whole before anything is registered", func(t *testing.T) {
		dir := t.TempDir()
		_ = os.WriteFile(filepath.Join(dir, "good.yaml"), []byte(strings.Replace(string(v1), "name: trip-booking", "name: other", 1)), 0o644)
		_ = os.WriteFile(filepath.Join(dir, "bad.yml"), []byte("name: y\nversion: 1\nsteps: []\n"), 0o644)
		if _, err := reg.RegisterPath(ctx, dir); err == nil || !strings.Contains(err.Error(), "bad.yml") {
			t.Fatalf("want the error of bad.yml, got %v", err)
		}
		if _, err := reg.Get(ctx, "other", 0); !errors.Is(err, engine.ErrUnknownDefinition) {
			t.Fatalf("good.yaml was registered although its directory had an invalid file: %v", err)
		}
	})
	t.Run("versions: latest and pinned, seen by another connection", func(t *testing.T) {
		if _, err := reg.Register(ctx, "v2.yaml", v2); err != nil {
			t.Fatal(err)
		}
		other := engine.NewRegistry(memory.New(memory.Options{Broker: broker}), "definitions", nil)
		defer other.Close()
		latest, err := other.Get(ctx, "trip-booking", 0)
		if err != nil || latest.Version != 2 {
			t.Fatalf("latest: %v, %v", latest, err)
		}
		one, err := other.Get(ctx, "trip-booking", 1)
		if err != nil || one.Version != 1 {
			t.Fatalf("version 1: %v, %v", one, err)
		}
		if _, err := other.Get(ctx, "trip-booking", 3); !errors.Is(err, engine.ErrUnknownDefinition) {
			t.Fatalf("version 3: %v", err)
		}
		list, err := other.List(ctx)
		if err != nil || len(list) != 2 {
			t.Fatalf("list: %v, %v", list, err)
		}
	})
}

// A process keeps the version it started with when a newer one is registered.
func TestProcessPinnedToItsVersion(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	release := make(chan struct{})
	ok := func(ctx context.Context, j *worker.Job) (any, error) { return map[string]any{"ok": true}, nil }
	s := startStack(ctx, t, memory.New(memory.Options{}), engineCfg{topics: protocol.DefaultTopics()}, map[string]map[string]worker.Handler{
		"payments": {"ProcessPayment": func(ctx context.Context, j *worker.Job) (any, error) {
			<-release
			return map[string]any{"payment_id": "P"}, nil
		}, "RefundPayment": ok},
		"flights":       {"BookFlight": ok, "CancelFlight": ok},
		"hotels":        {"BookHotel": ok, "CancelHotel": ok},
		"notifications": {"NotifyCustomer": ok},
	}, "trip-booking.yaml")
	if err := s.Client.Start(ctx, protocol.StartRequest{ProcessID: "pinned", Definition: "trip-booking", Input: json.RawMessage(`{"customer":"c","amount":1}`)}); err != nil {
		t.Fatal(err)
	}
	waitStep(ctx, t, s, "pinned", "payment", string(workflow.StepRunning))
	v2, err := os.ReadFile(repoFile(t, "engine/testdata/trip-booking-v2-short-timeouts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Registry.Register(ctx, "v2.yaml", v2); err != nil {
		t.Fatal(err)
	}
	close(release)
	row := waitTerminal(ctx, t, s, "pinned")
	if row.Status != workflow.StatusCompleted || row.Version != 1 {
		t.Fatalf("want completed on version 1, got %s on version %d", row.Status, row.Version)
	}
	if err := s.Client.Start(ctx, protocol.StartRequest{ProcessID: "newer", Definition: "trip-booking", Input: json.RawMessage(`{"customer":"c","amount":1}`)}); err != nil {
		t.Fatal(err)
	}
	if row := waitTerminal(ctx, t, s, "newer"); row.Version != 2 {
		t.Fatalf("a new start takes the latest version: got %d", row.Version)
	}
}

// A finished process is forgotten once its retention has passed: its
// status row and image go, and later events for it are dropped as unknown.
func TestRetentionOfFinishedProcesses(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := memory.New(memory.Options{})
	defer b.Close()
	ok := func(ctx context.Context, j *worker.Job) (any, error) { return map[string]any{"payment_id": "P"}, nil }
	s, err := engine.StartStack(ctx, b, engine.StackOptions{Retention: time.Second, Services: map[string]map[string]worker.Handler{
		"payments": {"ProcessPayment": ok}, "flights": {"BookFlight": ok}, "hotels": {"BookHotel": ok}, "notifications": {"NotifyCustomer": ok},
	}}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if _, err := s.Registry.RegisterPath(ctx, repoFile(t, "testdata/trip-booking.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := s.Client.Start(ctx, protocol.StartRequest{ProcessID: "short-lived", Definition: "trip-booking", Input: json.RawMessage(`{"customer":"c","amount":1}`)}); err != nil {
		t.Fatal(err)
	}
	if row := waitTerminal(ctx, t, s, "short-lived"); row.Status != workflow.StatusCompleted {
		t.Fatalf("%+v", row)
	}
	for ctx.Err() == nil {
		if err := s.Status.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		if _, ok := s.Status.Get("short-lived"); !ok {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if ctx.Err() != nil {
		t.Fatal("the finished process was never forgotten")
	}
	if err := s.Client.Signal(ctx, "short-lived", "late", "late-1", nil); err != nil {
		t.Fatal(err)
	}
	for s.Orchestrators[0].Drops()[engine.DropUnknownProcess] == 0 {
		if ctx.Err() != nil {
			t.Fatalf("a signal to the expired process was not dropped as unknown: %v", s.Orchestrators[0].Drops())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
