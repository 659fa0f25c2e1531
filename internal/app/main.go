package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/rs/zerolog"
	"github.com/spf13/pflag"

	"github.com/pulsaga/pulsaga/config"
)

// Main is the whole main of a binary: load cfg (defaults, --config file,
// PULSAGA_* environment, flags), set up logging from logCfg (a field of
// cfg), run until SIGINT/SIGTERM, and exit 2 on a configuration error, 1
// when run fails.
func Main(name string, cfg config.Validator, logCfg *config.Log, run func(context.Context, zerolog.Logger) error) {
	if err := config.FromArgs(name, os.Args[1:], cfg); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	log := config.NewLogger(*logCfg, os.Stderr, name)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, log); err != nil {
		log.Error().Err(err).Msg(name + " stopped")
		stop()
		os.Exit(1)
	}
}
