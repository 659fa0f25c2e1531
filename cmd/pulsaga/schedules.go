package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/spf13/cobra"

	"github.com/pulsaga/pulsaga/admin"
	"github.com/pulsaga/pulsaga/schedule"
)

func init() { subcommands = append(subcommands, newSchedulesCommand, newTriggersCommand) }

func newSchedulesCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "schedules",
		Aliases: []string{"schedule"},
		Short:   "Schedules: create, list, get, pause, resume, delete (through the admin API)",
	}
	var (
		spec  schedule.Spec
		every time.Duration
		file  string
		input string
		win   time.Duration
	)
	create := &cobra.Command{
		Use:   "create NAME --definition DEF (--cron EXPR | --every DURATION) | create -f FILE",
		Short: "Create or replace a schedule",
		Long: `Create a schedule, or replace the spec of an existing one (same name). From flags,
or from a YAML/JSON file with the fields of docs/schemas/schedule.schema.json:

  pulsaga schedules create nightly --definition nightly-pipeline --cron '0 2 * * *' --timezone Europe/Paris
  pulsaga schedules create poll --definition poll --every 5m --overlap skip --catch-up none
  pulsaga schedules create -f testdata/schedules/nightly.yaml`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s := spec
			if file != "" {
				b, err := os.ReadFile(file)
				if err != nil {
					return err
				}
				j, err := yaml.YAMLToJSON(b)
				if err != nil {
					return fmt.Errorf("%s: %v", file, err)
				}
				dec := json.NewDecoder(strings.NewReader(string(j)))
				dec.DisallowUnknownFields()
				if err := dec.Decode(&s); err != nil {
					return fmt.Errorf("%s: %v", file, err)
				}
			}
			if len(args) == 1 {
				s.Name = args[0]
			}
			if every > 0 {
				s.Every = schedule.Duration(every)
			}
			if win > 0 {
				s.CatchUpWindow = schedule.Duration(win)
			}
			if input != "" {
				in, err := jsonArg(input, "--input")
				if err != nil {
					return err
				}
				s.Input = in
			}
			if err := s.Normalize(); err != nil {
				return err
			}
			return apiRun(cmd, func(ctx context.Context, c *admin.Client) error {
				res, err := c.PutSchedule(ctx, s, admin.NewKey())
				if err != nil {
					return err
				}
				return emitScheduleAnswer(cmd, res, "created")
			})
		},
	}
	f := create.Flags()
	f.StringVarP(&file, "file", "f", "", "read the schedule from a YAML or JSON file")
	f.StringVar(&spec.Definition, "definition", "", "definition to start")
	f.IntVar(&spec.Version, "version", 0, "definition version (default: the latest at each tick)")
	f.StringVar(&spec.Cron, "cron", "", "cron expression: minute hour day-of-month month day-of-week, or @hourly, @daily, …")
	f.DurationVar(&every, "every", 0, "fixed interval instead of --cron (ticks on multiples of it since the Unix epoch)")
	f.StringVar(&spec.Timezone, "timezone", "", "IANA time zone of --cron (default UTC)")
	f.StringVar((*string)(&spec.Overlap), "overlap", "", "skip (default), allow, cancel_previous or terminate_previous")
	f.StringVar((*string)(&spec.CatchUp), "catch-up", "", "latest (default), all or none")
	f.DurationVar(&win, "catch-up-window", 0, "missed ticks older than this are never started (default 24h)")
	f.StringVar(&input, "input", "", "start input: JSON, or @file; strings may use ${{ schedule.time }}, ${{ schedule.name }}")
	f.BoolVar(&spec.Paused, "paused", false, "create it paused")
	f.StringVar(&spec.Description, "description", "", "free text")
	cmd.AddCommand(create, &cobra.Command{
		Use:   "list",
		Short: "List schedules with their next tick and counters",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return apiRun(cmd, func(ctx context.Context, c *admin.Client) error {
				list, err := c.Schedules(ctx)
				if err != nil {
					return err
				}
				return emit(cmd, list, func(w io.Writer) {
					fmt.Fprintln(w, "NAME\tDEFINITION\tWHEN\tOVERLAP\tCATCH UP\tSTATE\tNEXT\tLAST RUN\tSTARTED\tSKIPPED")
					for _, r := range list {
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\n", r.Spec.Name, r.Spec.Definition, when(r.Spec),
							r.Spec.Overlap, r.Spec.CatchUp, state(r), next(r), dash(r.State.LastProcessID), r.State.Started, r.State.Skipped)
					}
				})
			})
		},
	}, &cobra.Command{
		Use:   "get NAME",
		Short: "Show one schedule",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return apiRun(cmd, func(ctx context.Context, c *admin.Client) error {
				r, err := c.Schedule(ctx, args[0])
				if err != nil {
					return err
				}
				return emit(cmd, r, func(w io.Writer) { describeSchedule(w, r) })
			})
		},
	})
	for _, op := range []struct{ op, short, done string }{
		{schedule.OpPause, "Pause a schedule: no tick starts anything until resume", "paused"},
		{schedule.OpResume, "Resume a paused schedule from now (the ticks missed while paused are not run)", "resumed"},
		{schedule.OpDelete, "Delete a schedule (the processes it started go on)", "deleted"},
	} {
		cmd.AddCommand(&cobra.Command{
			Use:   op.op + " NAME",
			Short: op.short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return apiRun(cmd, func(ctx context.Context, c *admin.Client) error {
					res, err := c.ScheduleAction(ctx, args[0], op.op, admin.NewKey())
					if err != nil {
						return err
					}
					if res.Schedule == nil && res.Applied {
						res.Schedule = &schedule.Record{Spec: schedule.Spec{Name: args[0]}}
					}
					return emitScheduleAnswer(cmd, res, op.done)
				})
			},
		})
	}
	return cmd
}

func emitScheduleAnswer(cmd *cobra.Command, res *admin.ScheduleAnswer, done string) error {
	return emit(cmd, res, func(w io.Writer) {
		if !res.Applied {
			fmt.Fprintln(w, "sent; no scheduler has applied it yet (it will once an orchestrator runs)")
			return
		}
		fmt.Fprintf(w, "schedule %s %s\n", res.Schedule.Spec.Name, done)
		if res.Schedule.State.Revision > 0 {
			describeSchedule(w, res.Schedule)
		}
	})
}

func when(s schedule.Spec) string {
	if s.Every > 0 {
		return "every " + time.Duration(s.Every).String()
	}
	if s.Timezone != "" {
		return s.Cron + " (" + s.Timezone + ")"
	}
	return s.Cron
}

func state(r *schedule.Record) string {
	if r.Spec.Paused {
		return "paused"
	}
	return "active"
}

func next(r *schedule.Record) string {
	if r.State.ArmedAt.IsZero() {
		return "-"
	}
	return r.State.ArmedAt.UTC().Format(time.RFC3339)
}

func describeSchedule(w io.Writer, r *schedule.Record) {
	s, st := r.Spec, r.State
	version := "latest"
	if s.Version > 0 {
		version = fmt.Sprint(s.Version)
	}
	fmt.Fprintf(w, "name\t%s\n", s.Name)
	fmt.Fprintf(w, "definition\t%s (version %s)\n", s.Definition, version)
	fmt.Fprintf(w, "when\t%s\n", when(s))
	fmt.Fprintf(w, "overlap\t%s\n", s.Overlap)
	fmt.Fprintf(w, "catch up\t%s (window %s)\n", s.CatchUp, time.Duration(s.CatchUpWindow))
	fmt.Fprintf(w, "state\t%s (revision %d, changed %s by %s)\n", state(r), st.Revision, since(st.UpdatedAt), dash(st.Actor))
	fmt.Fprintf(w, "next tick\t%s\n", next(r))
	fmt.Fprintf(w, "last run\t%s\n", dash(st.LastProcessID))
	fmt.Fprintf(w, "started / skipped\t%d / %d\n", st.Started, st.Skipped)
	if st.LastSkip != "" {
		fmt.Fprintf(w, "last skip\t%s\n", st.LastSkip)
	}
	for _, p := range st.Running {
		fmt.Fprintf(w, "live run\t%s\n", p.ProcessID)
	}
	if len(s.Input) > 0 {
		fmt.Fprintf(w, "input\t%s\n", oneLine(string(s.Input), 200))
	}
}

func newTriggersCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "triggers",
		Short: "List the triggers of the registered definitions (latest versions)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return apiRun(cmd, func(ctx context.Context, c *admin.Client) error {
				list, err := c.Triggers(ctx)
				if err != nil {
					return err
				}
				return emit(cmd, list, func(w io.Writer) {
					fmt.Fprintln(w, "DEFINITION\tVERSION\tTRIGGER\tTOPIC\tSUBSCRIPTION\tDEAD LETTERS\tSTARTED\tIGNORED\tDEAD-LETTERED")
					for _, t := range list {
						fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\t%d\t%d\t%d\n", t.Definition, t.Version, t.ID, t.Topic, t.Subscription, t.DeadLetterTopic, t.Started, t.Ignored, t.DeadLettered)
					}
				})
			})
		},
	}
}
