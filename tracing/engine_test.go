package tracing_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/memory"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/tracing"
	"github.com/pulsaga/pulsaga/tracing/tracingtest"
	"github.com/pulsaga/pulsaga/worker"
	"github.com/pulsaga/pulsaga/workflow"
)

// TestEngineTraces runs the shop saga through a whole engine (embedded
// bus) with a tracer: the orchestrator hands each decision to it and its
// commands carry the attempts' trace context; the exported trace of the
// process is the expected tree.
func TestEngineTraces(t *testing.T) {
	col := tracingtest.NewCollector(t)
	tr, err := tracing.New(tracing.Options{Endpoint: col.URL, ServiceName: "pulsaga-test", BatchTimeout: 50 * time.Millisecond}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	b := memory.New(memory.Options{})
	t.Cleanup(func() { _ = b.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ok := func(_ context.Context, _ *worker.Job) (any, error) { return map[string]bool{"ok": true}, nil }
	stack, err := engine.StartStack(ctx, b, engine.StackOptions{Topics: protocol.DefaultTopics(), Tracer: tr, Services: map[string]map[string]worker.Handler{
		"payments": {"Charge": ok, "Refund": ok},
		"shipping": {"Ship": func(context.Context, *worker.Job) (any, error) {
			return nil, worker.NonRetryable("NoStock", errors.New("sold out"))
		}},
	}}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer stack.Stop()
	if _, err := stack.Registry.Register(ctx, "shop.yaml", []byte(saga)); err != nil {
		t.Fatal(err)
	}
	if err := stack.Client.Start(ctx, protocol.StartRequest{ProcessID: "order-7", Definition: "shop", Input: json.RawMessage(`{}`)}); err != nil {
		t.Fatal(err)
	}
	for {
		_ = stack.Status.Refresh(ctx)
		if r, _ := stack.Status.Get("order-7"); r.Status == workflow.StatusCompensated {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("order-7 never compensated")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := tr.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
	trace := tracing.TraceID("order-7").String()
	spans := col.WaitFor(t, 10*time.Second, "the process span", func([]tracingtest.Span) bool {
		for _, s := range col.Trace(trace) {
			if s.ParentID == "" {
				return true
			}
		}
		return false
	})
	_ = spans
	root := tracing.ProcessSpanID("order-7").String()
	names := map[string]int{}
	for _, s := range col.Trace(trace) {
		if s.SpanID != root && s.ParentID != root {
			t.Errorf("span %q under %s, want the process span", s.Name, s.ParentID)
		}
		names[s.Name]++
	}
	// Pay, ship (one attempt: NoStock is not retried), refund; a decision
	// per batch of events (at least: start, pay's result, ship's result,
	// refund's result).
	if names["process shop"] != 1 || names["payments Charge"] != 1 || names["shipping Ship"] != 1 || names["payments Refund"] != 1 || names["decide shop"] < 4 {
		t.Errorf("spans of the trace: %v", names)
	}
	// The commands carried their attempts' trace context.
	rd, err := b.Reader(ctx, bus.ReaderOptions{Topic: protocol.JobTopic("payments")})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	for n := 0; n < 2; n++ {
		m, err := rd.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		env, err := bus.DecodeEnvelope(m.Payload)
		if err != nil {
			t.Fatal(err)
		}
		if want := tr.CommandTraceparent("order-7", env.ID); env.Traceparent != want || want == "" {
			t.Errorf("command %s carries traceparent %q, want %q", env.ID, env.Traceparent, want)
		}
	}
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}
