package tracing

import (
	"context"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// What a worker needs to continue the engine's trace (the Go SDK uses it;
// the Python SDK does the same in pulsaga/_tracing.py).

var w3c = propagation.TraceContext{}

// ContextWithTraceparent returns ctx with the remote span context of a W3C
// traceparent header as the parent of the spans started from it (ctx
// unchanged when tp is empty or malformed).
func ContextWithTraceparent(ctx context.Context, tp string) context.Context {
	if tp == "" {
		return ctx
	}
	return w3c.Extract(ctx, propagation.MapCarrier{"traceparent": tp})
}

// TraceparentOf is the W3C traceparent of the span in ctx ("" without a
// valid one): what a worker sends back with its result.
func TraceparentOf(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ""
	}
	return Traceparent(sc.TraceID(), sc.SpanID(), sc.IsSampled())
}
