package main

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/pulsaga/pulsaga/config"
	"github.com/pulsaga/pulsaga/demo"
	"github.com/pulsaga/pulsaga/internal/app"
)

func init() { subcommands = append(subcommands, newDevCommand) }

func newDevCommand() *cobra.Command {
	var (
		opts      app.DevOptions
		onPulsar  bool
		namespace string
		logCfg    = config.Log{Level: "warn", Format: "console"}
	)
	opts.Faults = demo.Faults{}
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the whole engine and the demo services in one process (embedded bus, or --pulsar)",
		Long: `dev runs an orchestrator, a decider, a timer relay and the trip demo services in one
process, registers the definitions, starts --sagas trip sagas with a mix of outcomes and prints
every status change. Without --pulsar everything runs on the embedded in-process bus.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if onPulsar {
				// The pulsar section from the environment, as the
				// binaries read it (PULSAR_URL, PULSAGA_PULSAR_AUTH_TOKEN,
				// PULSAGA_PULSAR_TLS_TRUST_CERTS_FILE, ...).
				cfg := cliPulsar{Pulsar: config.DefaultPulsar()}
				if err := config.Load(&cfg, "", nil); err != nil {
					return err
				}
				if cmd.Flags().Changed("namespace") || os.Getenv("PULSAGA_PULSAR_NAMESPACE") == "" {
					cfg.Pulsar.Namespace = namespace
				}
				if err := cfg.Validate(); err != nil {
					return err
				}
				opts.Pulsar = &cfg.Pulsar
			}
			if err := logCfg.Validate("log"); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return app.RunDev(ctx, opts, cmd.OutOrStdout(), config.NewLogger(logCfg, cmd.ErrOrStderr(), "dev"))
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Definitions, "definitions", "testdata/trip-booking.yaml", "definition file or directory to register")
	f.IntVar(&opts.Sagas, "sagas", 8, "trip sagas to start")
	f.BoolVar(&opts.ExitWhenDone, "exit-when-done", false, "exit once every started saga has finished")
	f.Float64Var(&opts.Faults.Probability, "fail-probability", 0, "chance of a retryable failure per attempt")
	f.DurationVar(&opts.Faults.Latency, "latency", 0, "latency added to every job")
	f.StringVar(&opts.AdminListen, "listen", "127.0.0.1:8090", "serve the dashboard, the API and the metrics here (empty: off)")
	f.BoolVar(&onPulsar, "pulsar", false, "run on Pulsar (PULSAR_URL / PULSAR_ADMIN_URL and the PULSAGA_PULSAR_* variables; default the local broker)")
	f.StringVar(&namespace, "namespace", "pulsaga-dev", "Pulsar namespace (with --pulsar)")
	f.StringVar(&logCfg.Level, "log-level", logCfg.Level, "log level")
	return cmd
}
