// Command chaos-service is the chaos kit's service (e2e/chaos): it serves
// the job queues of the kit's sagas on the worker SDK, plays each
// command's fault script and keeps its effects in a ledger shared by its
// instances, by idempotency key. Configuration: --help.
package main

import (
	"context"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/e2e/chaos"
	"github.com/pulsaga/pulsaga/internal/app"
)

func main() {
	cfg := chaos.DefaultServiceConfig()
	app.Main("chaos-service", &cfg, &cfg.Log, func(ctx context.Context, log zerolog.Logger) error {
		return chaos.RunService(ctx, cfg, log)
	})
}
