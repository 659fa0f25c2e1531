package workflow_test

import (
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/memory"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/internal/pulsartest"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/worker"
	"github.com/pulsaga/pulsaga/workflow"
)

// End-to-end tests of the language's runtime features through a whole
// engine: on the embedded bus, and on a real broker.

func testLogger(t testing.TB) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel).With().Timestamp().Logger()
}

func TestBufferedSignalsMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	t.Parallel()
	b := memory.New(memory.Options{})
	t.Cleanup(func() { _ = b.Close() })
	bufferedSignals(t, b)
}

func TestBufferedSignalsPulsar(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a Pulsar broker; run without -short (make test)")
	}
	t.Parallel()
	bufferedSignals(t, pulsartest.Bus(t, pulsartest.Namespace("signals"), testLogger(t)))
}

// bufferedSignals: both approvals of testdata/document-review.yaml are sent
// while its first step is still running (its worker holds it until they
// are on the events topic, ahead of its result in the process's order);
// the waits take them when they start, and the process completes.
func bufferedSignals(t *testing.T, b bus.Bus) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	release := make(chan struct{})
	published := make(chan json.RawMessage, 1)
	services := map[string]map[string]worker.Handler{"documents": {
		"StoreDocument": func(ctx context.Context, _ *worker.Job) (any, error) {
			select {
			case <-release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return map[string]bool{"stored": true}, nil
		},
		"Publish": func(_ context.Context, j *worker.Job) (any, error) {
			published <- j.Input
			return map[string]string{"url": "https://docs/D-1"}, nil
		},
	}}
	topics := protocol.DefaultTopics()
	topics.Partitions = 2
	stack, err := engine.StartStack(ctx, b, engine.StackOptions{Topics: topics, Services: services}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer stack.Stop()
	src, err := os.ReadFile("../testdata/document-review.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stack.Registry.Register(ctx, "document-review.yaml", src); err != nil {
		t.Fatal(err)
	}
	c := stack.Client
	if err := c.Start(ctx, protocol.StartRequest{ProcessID: "doc-1", Definition: "document-review", Input: json.RawMessage(`{"doc":"D-1"}`)}); err != nil {
		t.Fatal(err)
	}
	if err := c.SignalAs(ctx, "doc-1", "approved", "fin", json.RawMessage(`{"by":"fay"}`), "fay", ""); err != nil {
		t.Fatal(err)
	}
	if err := c.SignalAs(ctx, "doc-1", "approved", "legal", json.RawMessage(`{"by":"lou"}`), "lou", ""); err != nil {
		t.Fatal(err)
	}
	close(release)
	var in map[string]string
	select {
	case raw := <-published:
		if err := json.Unmarshal(raw, &in); err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("publish never ran: the early signals were not kept")
	}
	if in["legal"] != "fay" || in["finance"] != "lou" {
		t.Fatalf("publish input %v: each wait takes the oldest signal kept (legal first, in step order)", in)
	}
	for {
		if err := stack.Status.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		if row, ok := stack.Status.Get("doc-1"); ok && row.Status == workflow.StatusCompleted {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("doc-1 did not complete")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
