// Command orchestrator runs pulsaga's orchestrator. Configuration: docs/operations.md
// (--config FILE, PULSAGA_* environment variables, one flag per key; --help).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/pulsaga/pulsaga/config"
	"github.com/pulsaga/pulsaga/internal/app"
)

func main() {
	cfg := config.DefaultOrchestrator()
	if err := config.FromArgs("orchestrator", os.Args[1:], &cfg); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	log := config.NewLogger(cfg.Log, os.Stderr, "orchestrator")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := app.RunOrchestrator(ctx, cfg, log); err != nil {
		log.Error().Err(err).Msg("orchestrator stopped")
		os.Exit(1)
	}
}
