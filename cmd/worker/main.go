// Command worker runs pulsaga's worker. Configuration: docs/operations.md
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
	cfg := config.DefaultWorker()
	if err := config.FromArgs("worker", os.Args[1:], &cfg); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	log := config.NewLogger(cfg.Log, os.Stderr, "worker")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := app.RunWorker(ctx, cfg, log); err != nil {
		log.Error().Err(err).Msg("worker stopped")
		os.Exit(1)
	}
}
