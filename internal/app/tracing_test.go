package app

import (
	"testing"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/config"
)

func TestNewTracer(t *testing.T) {
	tr, stop, err := newTracer(config.DefaultTracing(), "pulsaga-orchestrator", "o1", zerolog.Nop())
	if err != nil || tr != nil {
		t.Fatalf("no endpoint: %v %v", tr, err)
	}
	stop()
	tr, stop, err = newTracer(config.Tracing{Endpoint: "http://127.0.0.1:4318", SampleRatio: 0.5, Headers: []string{"x-key=1"}}, "pulsaga-orchestrator", "o1", zerolog.Nop())
	if err != nil || tr == nil {
		t.Fatalf("an endpoint: %v %v", tr, err)
	}
	if tp := tr.CommandTraceparent("p", "p/a/1"); tp == "" || tr.Sampled("p") != (tp[len(tp)-2:] == "01") {
		t.Errorf("traceparent %q", tp)
	}
	stop()
}
