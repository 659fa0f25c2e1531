package config

import (
	"errors"
	"net/url"
	"strings"
)

// Tracing is where a binary's OpenTelemetry traces go (docs/operations.md,
// "Traces"): the orchestrator exports a trace per process (the process,
// each decision, each attempt), workers continue it with a span per job.
type Tracing struct {
	// Endpoint is the collector's OTLP/HTTP endpoint, such as
	// http://127.0.0.1:4318 ("/v1/traces" is appended unless the path ends
	// with it). Empty: no traces. OTEL_EXPORTER_OTLP_ENDPOINT is honoured.
	Endpoint string `mapstructure:"endpoint" usage:"OTLP/HTTP endpoint of the trace collector, such as http://127.0.0.1:4318 (empty: no traces)"`
	// Headers are sent with every export, each name=value (an API key,
	// say).
	Headers []string `mapstructure:"headers" usage:"headers of every trace export, name=value"`
	// SampleRatio is the share of processes traced, from 0 to 1; the choice
	// is made from the process's trace id, so every instance and every
	// worker makes the same one.
	SampleRatio float64 `mapstructure:"sample_ratio" usage:"share of processes traced, from 0 to 1"`
}

// DefaultTracing: no traces; when an endpoint is set, every process.
func DefaultTracing() Tracing { return Tracing{SampleRatio: 1} }

// Validate checks the section; prefix is its key ("tracing").
func (t Tracing) Validate(prefix string) error {
	var errs []error
	if t.Endpoint != "" {
		if err := checkURL(t.Endpoint, "http", "https"); err != nil {
			errs = append(errs, &FieldError{Key: prefix + ".endpoint", Value: t.Endpoint, Problem: err.Error()})
		} else if u, _ := url.Parse(t.Endpoint); u.RawQuery != "" || u.Fragment != "" {
			errs = append(errs, &FieldError{Key: prefix + ".endpoint", Value: t.Endpoint, Problem: "must not have a query or a fragment"})
		}
	}
	if t.SampleRatio <= 0 || t.SampleRatio > 1 {
		errs = append(errs, &FieldError{Key: prefix + ".sample_ratio", Value: t.SampleRatio, Problem: "must be above 0 and at most 1 (leave endpoint empty for no traces)"})
	}
	for _, h := range t.Headers {
		if name, _, ok := strings.Cut(h, "="); !ok || strings.TrimSpace(name) == "" {
			errs = append(errs, &FieldError{Key: prefix + ".headers", Value: h, Problem: "each header must be name=value"})
		}
	}
	return errors.Join(errs...)
}

// HeaderMap is Headers as a map.
func (t Tracing) HeaderMap() map[string]string {
	if len(t.Headers) == 0 {
		return nil
	}
	m := make(map[string]string, len(t.Headers))
	for _, h := range t.Headers {
		name, value, _ := strings.Cut(h, "=")
		m[strings.TrimSpace(name)] = strings.TrimSpace(value)
	}
	return m
}
