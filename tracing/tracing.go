// Package tracing exports OpenTelemetry traces of processes: one trace per
// process, with a span for the process, one per decision and one per
// attempt of a step (or of its compensation). Commands carry the attempt
// span's W3C trace context (the envelope's traceparent), so a worker that
// continues it (the Go and Python SDKs do) puts its own span for the job
// under the attempt.
//
// Trace and span ids are derived from the process id, the decision's task
// id and the command id (hash-based, see ids.go), so no id is stored
// anywhere and any orchestrator instance, after any restart, gives the same
// process the same trace. Spans are built from the process's state after
// each decision (Tracer.DecisionApplied: the attempts that ended, the
// decision itself, the process once it ends) and exported over OTLP/HTTP in
// batches, off the orchestrator's loop. The process span, like any span,
// is exported when it ends: until then a backend shows its children under
// a parent it has not received yet.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/pulsaga/pulsaga/workflow"
)

// Options configure a Tracer (config.Tracing holds them for the binaries).
type Options struct {
	// Endpoint is the collector's OTLP/HTTP endpoint, such as
	// http://127.0.0.1:4318; "/v1/traces" is appended to its path unless
	// the path ends with it (as OTEL_EXPORTER_OTLP_ENDPOINT is read).
	// Empty: tracing is off.
	Endpoint string
	// Headers are sent with every export (an API key, say).
	Headers map[string]string
	// SampleRatio is the share of processes traced, 0 to 1 (default 1).
	// The choice is made from the trace id, so every instance makes the
	// same one for a process and a worker follows it.
	SampleRatio float64
	// ServiceName is the service.name of the spans (default "pulsaga").
	ServiceName string
	// Instance is the service.instance.id (the instance's name).
	Instance string
	// Exporter replaces the OTLP exporter (tests).
	Exporter sdktrace.SpanExporter
	// BatchTimeout is the longest a span waits to be exported (default 5s).
	BatchTimeout time.Duration
}

// ErrBadOptions: the options cannot make a tracer.
var ErrBadOptions = errors.New("tracing: bad options")

// Tracer builds and exports the spans of processes. A nil *Tracer is valid
// and does nothing (tracing off).
type Tracer struct {
	tp      *sdktrace.TracerProvider
	tracer  trace.Tracer
	ratio   float64
	log     zerolog.Logger
	queue   chan Decision
	done    chan struct{}
	dropped int
}

// New makes a tracer; with an empty Endpoint (and no Exporter) it returns
// nil: tracing off.
func New(opts Options, log zerolog.Logger) (*Tracer, error) {
	if opts.Endpoint == "" && opts.Exporter == nil {
		return nil, nil
	}
	if opts.SampleRatio == 0 {
		opts.SampleRatio = 1
	}
	if opts.SampleRatio < 0 || opts.SampleRatio > 1 {
		return nil, fmt.Errorf("%w: sample ratio %g is not between 0 and 1", ErrBadOptions, opts.SampleRatio)
	}
	if opts.ServiceName == "" {
		opts.ServiceName = "pulsaga"
	}
	if opts.BatchTimeout <= 0 {
		opts.BatchTimeout = 5 * time.Second
	}
	exp := opts.Exporter
	if exp == nil {
		var err error
		if exp, err = otlpExporter(opts); err != nil {
			return nil, err
		}
	}
	attrs := []attribute.KeyValue{semconv.ServiceName(opts.ServiceName)}
	if opts.Instance != "" {
		attrs = append(attrs, semconv.ServiceInstanceID(opts.Instance))
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(opts.BatchTimeout)),
		sdktrace.WithResource(resource.NewWithAttributes(semconv.SchemaURL, attrs...)),
		sdktrace.WithIDGenerator(idGenerator{}),
		// Every span is a child of a span context whose sampled flag
		// Sampled(process) set, or the process span itself (sampled the same
		// way by the generator's ids): follow the parent.
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(opts.SampleRatio))),
	)
	t := &Tracer{tp: tp, tracer: tp.Tracer("github.com/pulsaga/pulsaga/engine"), ratio: opts.SampleRatio, log: log.With().Str("component", "tracing").Logger(),
		queue: make(chan Decision, 4096), done: make(chan struct{})}
	go t.loop()
	return t, nil
}

func otlpExporter(opts Options) (sdktrace.SpanExporter, error) {
	u, err := url.Parse(opts.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: endpoint %q is not an http(s) URL such as http://127.0.0.1:4318", ErrBadOptions, opts.Endpoint)
	}
	eo := []otlptracehttp.Option{otlptracehttp.WithEndpoint(u.Host)}
	if u.Scheme == "http" {
		eo = append(eo, otlptracehttp.WithInsecure())
	}
	p := strings.TrimRight(u.Path, "/")
	if !strings.HasSuffix(p, "/v1/traces") {
		p += "/v1/traces"
	}
	eo = append(eo, otlptracehttp.WithURLPath(p))
	if len(opts.Headers) > 0 {
		eo = append(eo, otlptracehttp.WithHeaders(opts.Headers))
	}
	// The client is lazy: it connects on the first export.
	return otlptracehttp.New(context.Background(), eo...)
}

// Shutdown exports what is queued and stops (bounded by ctx).
func (t *Tracer) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	close(t.queue)
	select {
	case <-t.done:
	case <-ctx.Done():
	}
	return t.tp.Shutdown(ctx)
}

// ForceFlush exports the spans built so far (tests).
func (t *Tracer) ForceFlush(ctx context.Context) error {
	if t == nil {
		return nil
	}
	// Wait until the queue is drained into spans.
	for len(t.queue) > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return t.tp.ForceFlush(ctx)
}

// Sampled says whether the process is traced (same answer everywhere).
func (t *Tracer) Sampled(processID string) bool {
	if t == nil {
		return false
	}
	return sampled(TraceID(processID), t.ratio)
}

// CommandTraceparent is the trace context a command carries: the attempt's
// span in the process's trace ("" when tracing is off).
func (t *Tracer) CommandTraceparent(processID, commandID string) string {
	if t == nil {
		return ""
	}
	return Traceparent(TraceID(processID), AttemptSpanID(commandID), t.Sampled(processID))
}

// Decision is what the orchestrator knows about a decision it applied.
type Decision struct {
	ProcessID  string
	Definition string
	Version    int
	// TaskID identifies the decision (its span id derives from it).
	TaskID string
	// IssuedAt is when the oldest event the decision folded arrived (or the
	// task was issued); AppliedAt when the decision took effect.
	IssuedAt, AppliedAt time.Time
	// Before and After are the process's state around the decision (Before
	// nil for a start).
	Before, After *workflow.State
	// Decision is what was decided.
	Decision *workflow.Decision
	// Def is the process's definition (names the attempts' services and
	// commands).
	Def *workflow.Definition
	// Events are the events folded.
	Events []workflow.Event
}

// DecisionApplied queues a decision for its spans; it never blocks (a full
// queue drops the decision's spans and counts them).
func (t *Tracer) DecisionApplied(d Decision) {
	if t == nil || !t.Sampled(d.ProcessID) {
		return
	}
	select {
	case t.queue <- d:
	default:
		t.dropped++
		if t.dropped%1000 == 1 {
			t.log.Warn().Int("dropped", t.dropped).Msg("trace queue full; spans of some decisions dropped")
		}
	}
}

func (t *Tracer) loop() {
	defer close(t.done)
	for d := range t.queue {
		t.spans(d)
	}
}

// Attribute keys of the spans.
const (
	AttrProcessID    = attribute.Key("pulsaga.process_id")
	AttrDefinition   = attribute.Key("pulsaga.definition")
	AttrVersion      = attribute.Key("pulsaga.version")
	AttrStatus       = attribute.Key("pulsaga.status")
	AttrStep         = attribute.Key("pulsaga.step")
	AttrItem         = attribute.Key("pulsaga.item")
	AttrAttempt      = attribute.Key("pulsaga.attempt")
	AttrCommandID    = attribute.Key("pulsaga.command_id")
	AttrCompensation = attribute.Key("pulsaga.compensation")
	AttrOutcome      = attribute.Key("pulsaga.outcome")
	AttrErrorType    = attribute.Key("pulsaga.error_type")
	AttrTaskID       = attribute.Key("pulsaga.task_id")
	AttrEvents       = attribute.Key("pulsaga.events")
	AttrCommands     = attribute.Key("pulsaga.commands")
	AttrIgnored      = attribute.Key("pulsaga.ignored")
)

// spans builds the spans of one decision: the attempts that ended in it,
// the decision, and the process if it ended.
func (t *Tracer) spans(d Decision) {
	if d.After == nil {
		return
	}
	tid := TraceID(d.ProcessID)
	proc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: ProcessSpanID(d.ProcessID), TraceFlags: trace.FlagsSampled, Remote: true})
	under := trace.ContextWithRemoteSpanContext(context.Background(), proc)
	base := []attribute.KeyValue{AttrProcessID.String(d.ProcessID), AttrDefinition.String(d.Definition), AttrVersion.Int(d.Version)}

	for _, a := range endedAttempts(d.Def, d.Before, d.After) {
		name := a.step
		if a.service != "" {
			name = a.service + " " + a.command
		}
		attrs := append(append([]attribute.KeyValue{}, base...), AttrStep.String(a.step), AttrAttempt.Int(a.att.N),
			AttrCommandID.String(a.att.CommandID), AttrOutcome.String(a.att.Outcome))
		if a.item != nil {
			attrs = append(attrs, AttrItem.Int(*a.item))
		}
		if a.compensation {
			attrs = append(attrs, AttrCompensation.Bool(true))
		}
		ctx := withSpanID(under, AttemptSpanID(a.att.CommandID))
		_, sp := t.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindProducer), trace.WithTimestamp(a.att.SentAt), trace.WithAttributes(attrs...))
		if a.att.Error != nil {
			sp.SetAttributes(AttrErrorType.String(a.att.Error.Type))
			sp.SetStatus(codes.Error, a.att.Error.Type+": "+a.att.Error.Message)
		} else if a.att.Outcome != workflow.OutcomeCompleted {
			sp.SetStatus(codes.Error, a.att.Outcome)
		}
		end := a.att.EndedAt
		if end.IsZero() {
			end = d.AppliedAt
		}
		sp.End(trace.WithTimestamp(end))
	}

	issued := d.IssuedAt
	if issued.IsZero() || issued.After(d.AppliedAt) {
		issued = d.AppliedAt
	}
	attrs := append(append([]attribute.KeyValue{}, base...), AttrTaskID.String(d.TaskID), AttrStatus.String(string(d.After.Status)))
	if n := len(d.Events); n > 0 {
		types := make([]string, n)
		for i, e := range d.Events {
			types[i] = string(e.Type)
		}
		attrs = append(attrs, AttrEvents.StringSlice(types))
	}
	if d.Decision != nil {
		attrs = append(attrs, AttrCommands.Int(len(d.Decision.Commands)))
		if len(d.Decision.Ignored) > 0 {
			ig := make([]string, len(d.Decision.Ignored))
			for i, x := range d.Decision.Ignored {
				ig[i] = string(x.Type) + ": " + string(x.Reason)
			}
			attrs = append(attrs, AttrIgnored.StringSlice(ig))
		}
	}
	_, sp := t.tracer.Start(withSpanID(under, DecisionSpanID(d.ProcessID, d.TaskID)), "decide "+d.Definition,
		trace.WithSpanKind(trace.SpanKindInternal), trace.WithTimestamp(issued), trace.WithAttributes(attrs...))
	sp.End(trace.WithTimestamp(d.AppliedAt))

	if d.After.Status.Terminal() && (d.Before == nil || !d.Before.Status.Terminal()) {
		start, end := d.After.StartedAt, d.After.EndedAt
		if start.IsZero() {
			start = issued
		}
		if end.IsZero() {
			end = d.AppliedAt
		}
		attrs := append(append([]attribute.KeyValue{}, base...), AttrStatus.String(string(d.After.Status)))
		ctx := withRootIDs(context.Background(), tid, ProcessSpanID(d.ProcessID))
		_, sp := t.tracer.Start(ctx, "process "+d.Definition, trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindServer),
			trace.WithTimestamp(start), trace.WithAttributes(attrs...))
		if f := d.After.Failure; f != nil && f.Error != nil {
			sp.SetAttributes(AttrErrorType.String(f.Error.Type))
			if f.StepID != "" {
				sp.SetAttributes(AttrStep.String(f.StepID))
			}
		}
		if d.After.Status != workflow.StatusCompleted {
			sp.SetStatus(codes.Error, string(d.After.Status))
		}
		sp.End(trace.WithTimestamp(end))
	}
}

type endedAttempt struct {
	step, service, command string
	item                   *int
	compensation           bool
	att                    workflow.Attempt
}

// endedAttempts are the attempts that have an outcome after the decision
// and had none (or did not exist) before it.
func endedAttempts(def *workflow.Definition, before, after *workflow.State) []endedAttempt {
	was := map[string]bool{} // command ids that had ended before
	if before != nil {
		for _, st := range before.Steps {
			for _, runs := range [][]*workflow.Run{st.Runs, st.Compensations} {
				for _, r := range runs {
					if r == nil {
						continue
					}
					for _, a := range r.Attempts {
						if a.Outcome != workflow.OutcomeInFlight {
							was[a.CommandID] = true
						}
					}
				}
			}
		}
	}
	var out []endedAttempt
	for _, st := range after.Steps {
		for k, runs := range [][]*workflow.Run{st.Runs, st.Compensations} {
			for i, r := range runs {
				if r == nil {
					continue
				}
				for _, a := range r.Attempts {
					if a.Outcome == workflow.OutcomeInFlight || was[a.CommandID] {
						continue
					}
					e := endedAttempt{step: st.ID, compensation: k == 1, att: a}
					if def != nil {
						if s, ok := def.Step(st.ID); ok {
							e.service, e.command = s.Service, s.Command
							if e.compensation && s.Compensate != nil {
								e.command = s.Compensate.Command
								if s.Compensate.Service != "" {
									e.service = s.Compensate.Service
								}
							}
						}
					}
					if len(runs) > 1 || len(st.Items) > 0 {
						item := i
						e.item = &item
					}
					out = append(out, e)
				}
			}
		}
	}
	return out
}
