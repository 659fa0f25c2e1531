// Command decider runs pulsaga's decider. Configuration: docs/operations.md
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
	cfg := config.DefaultDecider()
	if err := config.FromArgs("decider", os.Args[1:], &cfg); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	log := config.NewLogger(cfg.Log, os.Stderr, "decider")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := app.RunDecider(ctx, cfg, log); err != nil {
		log.Error().Err(err).Msg("decider stopped")
		os.Exit(1)
	}
}
