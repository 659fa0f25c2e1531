package app

import (
	"context"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/config"
	"github.com/pulsaga/pulsaga/tracing"
)

// newTracer makes the tracer a binary's tracing section asks for (nil when
// it names no endpoint) and the function that flushes and stops it.
func newTracer(c config.Tracing, service, instance string, log zerolog.Logger) (*tracing.Tracer, func(), error) {
	tr, err := tracing.New(tracing.Options{Endpoint: c.Endpoint, Headers: c.HeaderMap(), SampleRatio: c.SampleRatio, ServiceName: service, Instance: instance}, log)
	if err != nil || tr == nil {
		return nil, func() {}, err
	}
	log.Info().Str("endpoint", c.Endpoint).Float64("sample_ratio", c.SampleRatio).Msg("exporting traces")
	return tr, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tr.Shutdown(ctx); err != nil {
			log.Warn().Err(err).Msg("traces not all exported at shutdown")
		}
	}, nil
}
