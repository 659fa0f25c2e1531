package tracing

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"

	"go.opentelemetry.io/otel/trace"
)

// Ids are derived, never stored: the same process gets the same trace on
// every instance and after every restart.

func digest(parts ...string) [32]byte {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

// TraceID is the trace of a process.
func TraceID(processID string) trace.TraceID {
	d := digest("pulsaga/trace", processID)
	var id trace.TraceID
	copy(id[:], d[:16])
	if !id.IsValid() {
		id[15] = 1
	}
	return id
}

func spanID(parts ...string) trace.SpanID {
	d := digest(parts...)
	var id trace.SpanID
	copy(id[:], d[:8])
	if !id.IsValid() {
		id[7] = 1
	}
	return id
}

// ProcessSpanID is the span of the process itself (the trace's root).
func ProcessSpanID(processID string) trace.SpanID { return spanID("pulsaga/process", processID) }

// DecisionSpanID is the span of one decision of a process.
func DecisionSpanID(processID, taskID string) trace.SpanID {
	return spanID("pulsaga/decision", processID, taskID)
}

// AttemptSpanID is the span of one attempt (one command id): the parent
// of the worker's span for the job.
func AttemptSpanID(commandID string) trace.SpanID { return spanID("pulsaga/attempt", commandID) }

// Traceparent formats a W3C trace context.
func Traceparent(t trace.TraceID, s trace.SpanID, sampled bool) string {
	flags := 0
	if sampled {
		flags = 1
	}
	return fmt.Sprintf("00-%s-%s-%02x", t, s, flags)
}

// sampled decides as the SDK's TraceIDRatioBased sampler does, so the
// process span (sampled by the SDK) and its children (sampled by us) agree.
func sampled(t trace.TraceID, ratio float64) bool {
	if ratio >= 1 {
		return true
	}
	bound := uint64(ratio * (1 << 63))
	x := binary.BigEndian.Uint64(t[8:16]) >> 1
	return x < bound
}

// idGenerator hands the SDK the ids a context asks for (withSpanID,
// withRootIDs), random ones otherwise.
type idGenerator struct{}

type idKey struct{}

type wantIDs struct {
	trace trace.TraceID
	span  trace.SpanID
}

func withSpanID(ctx context.Context, s trace.SpanID) context.Context {
	return context.WithValue(ctx, idKey{}, wantIDs{span: s})
}

func withRootIDs(ctx context.Context, t trace.TraceID, s trace.SpanID) context.Context {
	return context.WithValue(ctx, idKey{}, wantIDs{trace: t, span: s})
}

func (idGenerator) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	if w, ok := ctx.Value(idKey{}).(wantIDs); ok && w.trace.IsValid() && w.span.IsValid() {
		return w.trace, w.span
	}
	var t trace.TraceID
	binary.BigEndian.PutUint64(t[:8], rand.Uint64())
	binary.BigEndian.PutUint64(t[8:], rand.Uint64()|1)
	return t, randomSpan()
}

func (idGenerator) NewSpanID(ctx context.Context, _ trace.TraceID) trace.SpanID {
	if w, ok := ctx.Value(idKey{}).(wantIDs); ok && w.span.IsValid() {
		return w.span
	}
	return randomSpan()
}

func randomSpan() trace.SpanID {
	var s trace.SpanID
	binary.BigEndian.PutUint64(s[:], rand.Uint64()|1)
	return s
}
