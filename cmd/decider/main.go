// Command decider runs pulsaga's decider. Configuration: docs/operations.md
// (--config FILE, PULSAGA_* environment variables, one flag per key; --help).
package main

import (
	"context"
	"os"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/config"
	"github.com/pulsaga/pulsaga/internal/app"
)

func main() {
	cfg := config.DefaultDecider()
	app.Main("decider", &cfg, &cfg.Log, func(ctx context.Context, log zerolog.Logger) error {
		app.SetGCPercent(cfg.GCPercent, os.Getenv, log)
		return app.RunDecider(ctx, cfg, log)
	})
}
