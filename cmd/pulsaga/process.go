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
	"github.com/spf13/pflag"

	"github.com/pulsaga/pulsaga/admin"
	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/config"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/internal/app"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/workflow"
)

func init() {
	subcommands = append(subcommands, newStartCommand, newSignalCommand, newRegisterCommand)
}

// brokerFlags are the connection flags of the commands that talk to Pulsar:
// every key of the pulsar section (--pulsar-url, --pulsar-auth-token-file,
// --pulsar-tls-trust-certs-file, ...), each also read from its
// PULSAGA_PULSAR_* variable (and PULSAR_URL, PULSAR_ADMIN_URL), as the
// binaries read them.
type brokerFlags struct {
	cfg        cliPulsar
	partitions int
	fs         *pflag.FlagSet
}

// cliPulsar is the pulsar section alone, loaded like a binary's config.
type cliPulsar struct {
	Pulsar config.Pulsar `mapstructure:"pulsar"`
}

func (c *cliPulsar) Validate() error { return c.Pulsar.Validate("pulsar") }

func (f *brokerFlags) add(cmd *cobra.Command) {
	f.cfg.Pulsar = config.DefaultPulsar()
	f.fs = cmd.Flags()
	config.AddFlags(f.fs, &f.cfg)
	f.fs.IntVar(&f.partitions, "partitions", 4, "partitions of the process-keyed topics (as the orchestrator)")
}

// pulsar is the pulsar section: defaults, then the environment, then the
// flags given.
func (f *brokerFlags) pulsar() (config.Pulsar, error) {
	cfg := cliPulsar{Pulsar: config.DefaultPulsar()}
	if err := config.Load(&cfg, "", f.fs); err != nil {
		return config.Pulsar{}, err
	}
	return cfg.Pulsar, nil
}

// direct is the CLI's own view of an installation when no server is given:
// it reads the status table and the definitions itself, so it can say
// what a server would (a process that does not exist, a start of an
// existing id, a signal nobody waits for).
type direct struct {
	bus    bus.Bus
	topics protocol.Topics
	client *engine.Client
	status *engine.StatusTable
	reg    *engine.Registry
}

func (f *brokerFlags) connect(ctx context.Context) (*direct, error) {
	p, err := f.pulsar()
	if err != nil {
		return nil, err
	}
	b, err := app.Connect(ctx, p, zerolog.Nop())
	if err != nil {
		return nil, err
	}
	topics := app.Topics(f.partitions, 0)
	if err := engine.EnsureTopics(ctx, b, topics); err != nil {
		b.Close()
		return nil, err
	}
	return &direct{bus: b, topics: topics, client: engine.NewClient(b, topics),
		status: engine.NewStatusTable(b, topics.Status), reg: engine.NewRegistry(b, topics.Definitions, nil)}, nil
}

func (d *direct) Close() {
	d.client.Close()
	d.status.Close()
	d.reg.Close()
	d.bus.Close()
}

// row reads a process's status row (ok false: no such process).
func (d *direct) row(ctx context.Context, pid string) (engine.StatusRecord, bool, error) {
	if err := d.status.Refresh(ctx); err != nil {
		return engine.StatusRecord{}, false, fmt.Errorf("read the status table: %w", err)
	}
	r, ok := d.status.Get(pid)
	return r, ok, nil
}

func (d *direct) read(ctx context.Context, row engine.StatusRecord) (*engine.ProcessView, error) {
	return engine.ReadProcess(ctx, d.bus, d.topics, d.reg, row)
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
		from    string
	)
	cmd := &cobra.Command{
		Use:   "start DEFINITION | start [DEFINITION] --from FILE|-",
		Short: "Start a process, or many (idempotent: starting an existing --id does nothing)",
		Long: `Start a process of DEFINITION (--id, --input, --version).

With --from FILE (or - for stdin), start many: one JSON object per line,
{"process_id": "...", "definition": "...", "version": 2, "input": {...}}
(definition and version default to the DEFINITION argument and --version;
a missing process_id is generated). Each is checked as a single start is;
they are sent in batches of up to 1,000, each start's process id is printed
as it is accepted (-o json: one JSON object per line with its outcome), a
line that cannot be started is reported with its number on stderr, and the
others go on.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if from != "" {
				return cobra.MaximumNArgs(1)(cmd, args)
			}
			return cobra.ExactArgs(1)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if from != "" {
				if id != "" || input != "" {
					return fmt.Errorf("--from takes each start's process_id and input from its line; drop --id and --input")
				}
				return runStartMany(cmd, &f, args, version, from)
			}
			in, err := jsonArg(input, "--input")
			if err != nil {
				return err
			}
			if id != "" {
				if err := checkID(id); err != nil {
					return err
				}
			}
			if usesAPI(cmd) {
				return startViaAPI(cmd, args[0], id, version, in)
			}
			if id == "" {
				id = fmt.Sprintf("%s-%d", args[0], time.Now().UnixNano())
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			d, err := f.connect(ctx)
			if err != nil {
				return err
			}
			defer d.Close()
			def, err := d.reg.Get(ctx, args[0], version)
			if err != nil {
				return err
			}
			if err := workflow.CheckPayload("the input", in); err != nil {
				return err
			}
			row, exists, err := d.row(ctx, id)
			if err != nil {
				return err
			}
			if exists {
				if err := admin.ExistingStart(ctx, row, def, in, d.read); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s exists already (%s v%d, %s, started %s) with the same input: nothing started\n", id, row.Definition, row.Version, row.Status, since(row.StartedAt))
				return nil
			}
			if err := d.client.Start(ctx, protocol.StartRequest{ProcessID: id, Definition: def.Name, Version: def.Version, Input: in, Actor: actor()}); err != nil {
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
	cmd.Flags().StringVar(&from, "from", "", "start many: a file of start requests, one JSON object per line (- for stdin)")
	return cmd
}

func runStartMany(cmd *cobra.Command, f *brokerFlags, args []string, version int, from string) error {
	o, err := outputFormat(cmd)
	if err != nil {
		return err
	}
	if o == "yaml" {
		return fmt.Errorf("--from prints one line per start: use -o table or -o json")
	}
	r, err := openInput(from)
	if err != nil {
		return err
	}
	defer r.Close()
	s := &startMany{ver: version, json: o == "json", out: cmd.OutOrStdout(), errOut: cmd.ErrOrStderr()}
	if len(args) == 1 {
		s.def = args[0]
	}
	ctx := cmd.Context()
	if usesAPI(cmd) {
		c, err := apiClient(cmd)
		if err != nil {
			return err
		}
		return s.run(ctx, r, admin.MaxBatchStarts, s.viaAPI(cmd, c))
	}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	d, err := f.connect(cctx)
	cancel()
	if err != nil {
		return err
	}
	defer d.Close()
	return s.run(ctx, r, admin.MaxBatchStarts, s.direct(d))
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
			if err := checkID(args[0]); err != nil {
				return err
			}
			if usesAPI(cmd) {
				return signalViaAPI(cmd, args[0], args[1], signalID, reason, d)
			}
			if err := workflow.CheckPayload("the data", d); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			dc, err := f.connect(ctx)
			if err != nil {
				return err
			}
			defer dc.Close()
			row, ok, err := dc.row(ctx, args[0])
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("no process %s (the status table of this installation has no row for it)", args[0])
			}
			def, _ := dc.reg.Get(ctx, row.Definition, row.Version)
			if err := admin.CheckSignal(def, row, args[1]); err != nil {
				return err
			}
			if signalID == "" {
				signalID = admin.NewKey()
			}
			if err := dc.client.SignalAs(ctx, args[0], args[1], signalID, d, actor(), reason); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: signal %s sent (signal id %s)\n", args[0], args[1], signalID)
			return nil
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
			p, err := f.pulsar()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			b, err := app.Connect(ctx, p, zerolog.Nop())
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
