package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/pulsaga/pulsaga/config"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/internal/app"
	"github.com/pulsaga/pulsaga/protocol"
)

func init() {
	subcommands = append(subcommands, newStartCommand, newSignalCommand, newRegisterCommand)
}

// brokerFlags are the connection flags of the commands that talk to Pulsar.
type brokerFlags struct {
	pulsar     config.Pulsar
	partitions int
}

func (f *brokerFlags) add(cmd *cobra.Command) {
	f.pulsar = config.DefaultPulsar()
	if v := os.Getenv("PULSAR_URL"); v != "" {
		f.pulsar.URL = v
	}
	if v := os.Getenv("PULSAR_ADMIN_URL"); v != "" {
		f.pulsar.AdminURL = v
	}
	fl := cmd.Flags()
	fl.StringVar(&f.pulsar.URL, "pulsar-url", f.pulsar.URL, "Pulsar service URL (or PULSAR_URL)")
	fl.StringVar(&f.pulsar.AdminURL, "pulsar-admin-url", f.pulsar.AdminURL, "Pulsar admin URL (or PULSAR_ADMIN_URL)")
	fl.StringVar(&f.pulsar.Namespace, "pulsar-namespace", f.pulsar.Namespace, "Pulsar namespace of the installation")
	fl.IntVar(&f.partitions, "partitions", 4, "partitions of the process-keyed topics (as the orchestrator)")
}

func (f *brokerFlags) client(ctx context.Context) (*engine.Client, func(), error) {
	if err := f.pulsar.Validate("pulsar"); err != nil {
		return nil, nil, err
	}
	b, err := app.Connect(ctx, f.pulsar, zerolog.Nop())
	if err != nil {
		return nil, nil, err
	}
	topics := app.Topics(f.partitions, 0)
	if err := engine.EnsureTopics(ctx, b, topics); err != nil {
		b.Close()
		return nil, nil, err
	}
	c := engine.NewClient(b, topics)
	return c, func() { c.Close(); b.Close() }, nil
}

// jsonArg reads a JSON argument given inline or as @file.
func jsonArg(v, what string) (json.RawMessage, error) {
	if v == "" {
		return nil, nil
	}
	b := []byte(v)
	if strings.HasPrefix(v, "@") {
		var err error
		if b, err = os.ReadFile(v[1:]); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
	}
	if !json.Valid(b) {
		return nil, fmt.Errorf("%s is not valid JSON: %s", what, v)
	}
	return b, nil
}

func newStartCommand() *cobra.Command {
	var (
		f       brokerFlags
		id      string
		input   string
		version int
	)
	cmd := &cobra.Command{
		Use:   "start DEFINITION",
		Short: "Start a process (idempotent: starting an existing --id does nothing)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in, err := jsonArg(input, "--input")
			if err != nil {
				return err
			}
			if usesAPI(cmd) {
				return startViaAPI(cmd, args[0], id, version, in)
			}
			if id == "" {
				id = fmt.Sprintf("%s-%d", args[0], time.Now().UnixNano())
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			c, done, err := f.client(ctx)
			if err != nil {
				return err
			}
			defer done()
			if err := c.Start(ctx, protocol.StartRequest{ProcessID: id, Definition: args[0], Version: version, Input: in, Actor: actor()}); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), id)
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&id, "id", "", "process id (default: generated); starting an existing id is a no-op")
	cmd.Flags().StringVar(&input, "input", "", "input JSON, or @file")
	cmd.Flags().IntVar(&version, "version", 0, "definition version (default: the latest)")
	return cmd
}

func newSignalCommand() *cobra.Command {
	var (
		f        brokerFlags
		data     string
		signalID string
		reason   string
	)
	cmd := &cobra.Command{
		Use:   "signal PROCESS NAME",
		Short: "Send a signal to a process; its data becomes the output of the step waiting for it",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := jsonArg(data, "--data")
			if err != nil {
				return err
			}
			if usesAPI(cmd) {
				return signalViaAPI(cmd, args[0], args[1], signalID, reason, d)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			c, done, err := f.client(ctx)
			if err != nil {
				return err
			}
			defer done()
			return c.SignalAs(ctx, args[0], args[1], signalID, d, actor(), reason)
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&data, "data", "", "signal data JSON, or @file")
	cmd.Flags().StringVar(&signalID, "signal-id", "", "id that makes a resent signal count once (default: generated)")
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded in the process's event stream)")
	return cmd
}

func newRegisterCommand() *cobra.Command {
	var f brokerFlags
	cmd := &cobra.Command{
		Use:   "register FILE|DIR...",
		Short: "Validate and register definitions (versioned; a process keeps the version it started with)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if usesAPI(cmd) {
				return registerViaAPI(cmd, args)
			}
			if err := f.pulsar.Validate("pulsar"); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			b, err := app.Connect(ctx, f.pulsar, zerolog.Nop())
			if err != nil {
				return err
			}
			defer b.Close()
			topics := app.Topics(f.partitions, 0)
			if err := engine.EnsureTopics(ctx, b, topics); err != nil {
				return err
			}
			reg := engine.NewRegistry(b, topics.Definitions, nil)
			defer reg.Close()
			for _, p := range args {
				defs, err := reg.RegisterPath(ctx, p)
				if err != nil {
					return err
				}
				for _, d := range defs {
					fmt.Fprintf(cmd.OutOrStdout(), "registered %s v%d\n", d.Name, d.Version)
				}
			}
			return nil
		},
	}
	f.add(cmd)
	return cmd
}

func actor() string {
	if u := os.Getenv("USER"); u != "" {
		return "cli:" + u
	}
	return "cli"
}
