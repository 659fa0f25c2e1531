package config

import (
	"strings"
	"testing"
)

func TestTracingSection(t *testing.T) {
	tests := []struct {
		name string
		in   Tracing
		err  string
	}{
		{"off by default", DefaultTracing(), ""},
		{"a collector", Tracing{Endpoint: "http://otel:4318", SampleRatio: 0.1, Headers: []string{"x-api-key=abc"}}, ""},
		{"a full traces URL", Tracing{Endpoint: "https://otel.example/v1/traces", SampleRatio: 1}, ""},
		{"grpc scheme", Tracing{Endpoint: "grpc://otel:4317", SampleRatio: 1}, "tracing.endpoint"},
		{"a query", Tracing{Endpoint: "http://otel:4318/?a=b", SampleRatio: 1}, "must not have a query"},
		{"zero ratio", Tracing{Endpoint: "http://otel:4318"}, "tracing.sample_ratio"},
		{"ratio above one", Tracing{SampleRatio: 1.5}, "tracing.sample_ratio"},
		{"header without value", Tracing{SampleRatio: 1, Headers: []string{"x-api-key"}}, "each header must be name=value"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.in.Validate("tracing")
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("error %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("error %v, want %q", err, tc.err)
			}
		})
	}
	if m := (Tracing{Headers: []string{"a = b", "c=d=e"}}).HeaderMap(); m["a"] != "b" || m["c"] != "d=e" {
		t.Errorf("headers %v", m)
	}
}

func TestTracingFromTheEnvironment(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
	t.Setenv("PULSAGA_TRACING_SAMPLE_RATIO", "0.25")
	cfg := DefaultWorker()
	if err := Load(&cfg, "", nil); err != nil {
		t.Fatal(err)
	}
	if cfg.Tracing.Endpoint != "http://collector:4318" || cfg.Tracing.SampleRatio != 0.25 {
		t.Errorf("tracing %+v", cfg.Tracing)
	}
}
