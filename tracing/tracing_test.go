package tracing_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/pulsaga/pulsaga/tracing"
	"github.com/pulsaga/pulsaga/tracing/tracingtest"
	"github.com/pulsaga/pulsaga/workflow"
)

const saga = `name: shop
version: 1
on_failure: compensate
defaults:
  retry: {max_attempts: 2, initial_interval: 1s}
  timeout: 30s
steps:
  - id: pay
    service: payments
    command: Charge
    compensate: {command: Refund}
  - id: ship
    service: shipping
    command: Ship
    needs: [pay]
`

// TestTraceTree runs a process through workflow.Decide (pay completes,
// ship fails twice, pay is refunded), gives every decision to a tracer
// that exports to an in-process collector, plays a worker that continues
// each command's trace context, and checks the tree: the process span at
// the root, decisions and attempts under it, each worker span under its
// attempt, all in the process's trace.
func TestTraceTree(t *testing.T) {
	col := tracingtest.NewCollector(t)
	tr, err := tracing.New(tracing.Options{Endpoint: col.URL, ServiceName: "pulsaga-test", Instance: "orch-1", BatchTimeout: 50 * time.Millisecond}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	// The worker's own provider, exporting to the same collector.
	exp, err := otlptracehttp.New(t.Context(), otlptracehttp.WithEndpointURL(col.URL+"/v1/traces"))
	if err != nil {
		t.Fatal(err)
	}
	wtp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer wtp.Shutdown(context.Background())

	def, err := workflow.Load("shop.yaml", []byte(saga))
	if err != nil {
		t.Fatal(err)
	}
	pid := "order-42"
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	var st *workflow.State
	task := 0
	decide := func(at time.Time, evs ...workflow.Event) workflow.Decision {
		t.Helper()
		d, err := workflow.Decide(def, st, evs, at)
		if err != nil {
			t.Fatal(err)
		}
		task++
		tr.DecisionApplied(tracing.Decision{ProcessID: pid, Definition: def.Name, Version: def.Version, TaskID: fmt.Sprintf("task-%d", task),
			IssuedAt: at.Add(-3 * time.Millisecond), AppliedAt: at, Before: st, After: d.State, Decision: &d, Events: evs, Def: def})
		st = d.State
		return d
	}
	// work plays the worker: a span continuing the command's context.
	work := func(c workflow.Command, ok bool, at time.Time) workflow.Event {
		ctx := tracing.ContextWithTraceparent(context.Background(), tr.CommandTraceparent(pid, c.ID))
		_, sp := wtp.Tracer("worker").Start(ctx, c.Service+" "+c.Command, oteltrace.WithSpanKind(oteltrace.SpanKindConsumer), oteltrace.WithTimestamp(at.Add(-time.Millisecond)))
		sp.SetAttributes(attribute.String("pulsaga.command_id", c.ID))
		sp.End(oteltrace.WithTimestamp(at))
		ev := workflow.Event{Type: workflow.EventResult, ProcessID: pid, CommandID: c.ID, Output: json.RawMessage(`{}`)}
		if !ok {
			no := false
			ev.Output, ev.Error = nil, &workflow.ErrorInfo{Type: "NoStock", Message: "sold out", Retryable: &no}
		}
		return ev
	}
	d := decide(t0, workflow.Event{Type: workflow.EventStart, ProcessID: pid, Input: json.RawMessage(`{}`)})
	pay := d.Commands[0]
	d = decide(t0.Add(100*time.Millisecond), work(pay, true, t0.Add(90*time.Millisecond)))
	ship := d.Commands[0]
	d = decide(t0.Add(200*time.Millisecond), work(ship, false, t0.Add(190*time.Millisecond)))
	refund := d.Commands[0]
	if !refund.Compensation {
		t.Fatalf("want the refund, got %+v", d.Commands)
	}
	d = decide(t0.Add(300*time.Millisecond), work(refund, true, t0.Add(290*time.Millisecond)))
	if d.State.Status != workflow.StatusCompensated {
		t.Fatalf("status %s", d.State.Status)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tr.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
	trace := tracing.TraceID(pid).String()
	spans := col.WaitFor(t, 10*time.Second, "the process's spans", func(s []tracingtest.Span) bool { return len(s) >= 11 })
	byID := map[string]tracingtest.Span{}
	for _, s := range spans {
		if s.TraceID != trace {
			t.Errorf("span %q in trace %s, want the process's %s", s.Name, s.TraceID, trace)
		}
		byID[s.SpanID] = s
	}
	root := byID[tracing.ProcessSpanID(pid).String()]
	if root.Name != "process shop" || root.ParentID != "" || root.Attrs["pulsaga.status"] != "compensated" || !root.Failed ||
		root.Attrs["pulsaga.error_type"] != "NoStock" || root.Attrs["pulsaga.step"] != "ship" || !root.Start.Equal(t0) || root.Service != "pulsaga-test" {
		t.Errorf("process span: %+v", root)
	}
	decisions := 0
	for _, s := range spans {
		if s.Name == "decide shop" {
			decisions++
			if s.ParentID != root.SpanID || s.End.Sub(s.Start) != 3*time.Millisecond {
				t.Errorf("decision span: %+v", s)
			}
		}
	}
	if decisions != 4 {
		t.Errorf("%d decision spans, want 4", decisions)
	}
	for _, c := range []struct {
		cmd    workflow.Command
		name   string
		failed bool
	}{{pay, "payments Charge", false}, {ship, "shipping Ship", true}, {refund, "payments Refund", false}} {
		att, ok := byID[tracing.AttemptSpanID(c.cmd.ID).String()]
		if !ok || att.Name != c.name || att.ParentID != root.SpanID || att.Attrs["pulsaga.command_id"] != c.cmd.ID || att.Failed != c.failed {
			t.Errorf("attempt span of %s: %+v", c.cmd.ID, att)
			continue
		}
		if c.cmd.Compensation && att.Attrs["pulsaga.compensation"] != "true" {
			t.Errorf("compensation attempt without the attribute: %+v", att)
		}
		var worker *tracingtest.Span
		for i := range spans {
			if spans[i].ParentID == att.SpanID {
				worker = &spans[i]
			}
		}
		if worker == nil || worker.Name != c.name || worker.Kind != "CONSUMER" {
			t.Errorf("no worker span under the attempt %s: %+v", c.cmd.ID, worker)
		}
	}
	if tp := tr.CommandTraceparent(pid, pay.ID); tp != "00-"+trace+"-"+tracing.AttemptSpanID(pay.ID).String()+"-01" {
		t.Errorf("command traceparent %s", tp)
	}
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestOffAndSampling(t *testing.T) {
	off, err := tracing.New(tracing.Options{}, zerolog.Nop())
	if err != nil || off != nil {
		t.Fatalf("no endpoint: %v %v", off, err)
	}
	if off.CommandTraceparent("p", "c") != "" || off.Sampled("p") {
		t.Error("a nil tracer traces")
	}
	off.DecisionApplied(tracing.Decision{ProcessID: "p"}) // no panic
	if _, err := tracing.New(tracing.Options{Endpoint: "ftp://x"}, zerolog.Nop()); err == nil {
		t.Error("an ftp endpoint")
	}
	if _, err := tracing.New(tracing.Options{Endpoint: "http://127.0.0.1:4318", SampleRatio: 2}, zerolog.Nop()); err == nil {
		t.Error("a ratio of 2")
	}
	half, err := tracing.New(tracing.Options{Endpoint: "http://127.0.0.1:4318", SampleRatio: 0.5}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer half.Shutdown(context.Background())
	n := 0
	for i := 0; i < 2000; i++ {
		pid := fmt.Sprintf("p-%d", i)
		s := half.Sampled(pid)
		if s {
			n++
		}
		tp := half.CommandTraceparent(pid, pid+"/a/1")
		if want := map[bool]string{true: "-01", false: "-00"}[s]; tp[len(tp)-3:] != want {
			t.Fatalf("traceparent %s of a process sampled=%v", tp, s)
		}
	}
	if n < 900 || n > 1100 {
		t.Errorf("%d of 2000 processes sampled at 0.5", n)
	}
	if tracing.TraceID("a") != tracing.TraceID("a") || tracing.TraceID("a") == tracing.TraceID("b") {
		t.Error("trace ids are not a function of the process id")
	}
}
