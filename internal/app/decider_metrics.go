package app

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/admin"
	"github.com/pulsaga/pulsaga/engine"
)

// deciderMetrics listens on addr at once (an address that cannot be taken
// fails the decider's start) and returns what serves /metrics and /healthz
// there until its context ends (listening again on the address bound first
// when it is run again after a failure).
func deciderMetrics(addr string, d *engine.Decider, name string, log zerolog.Logger) (func(context.Context) error, net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("decider: metrics_listen %s: %w", addr, err)
	}
	bound := ln.Addr()
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", admin.DeciderMetrics(d.Stats, name))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	return func(ctx context.Context) error {
		if ln == nil {
			if ln, err = net.Listen("tcp", bound.String()); err != nil {
				return fmt.Errorf("decider: metrics_listen %s: %w", addr, err)
			}
		}
		defer func() { ln = nil }()
		hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute}
		log.Info().Str("listen", ln.Addr().String()).Msg("decider metrics serving")
		return serveUntil(ctx, hs, ln, "decider metrics server")
	}, bound, nil
}
