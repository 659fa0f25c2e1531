package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pulsaga/pulsaga/admin"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/workflow"
)

func init() {
	subcommands = append(subcommands, newListCommand, newGetCommand,
		func() *cobra.Command { return newActionCommand("retry") },
		func() *cobra.Command { return newActionCommand("skip") },
		func() *cobra.Command { return newActionCommand("cancel") },
		func() *cobra.Command { return newActionCommand("terminate") })
}

func newListCommand() *cobra.Command {
	var (
		statuses                []string
		definition, search      string
		version, limit          int
		stuck, all              bool
		stuckAfter, age, quiet  time.Duration
		startedAfter, startedBy string
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List processes (filter by status, definition, age, stuck; newest first)",
		Example: `  pulsaga list --stuck
  pulsaga list --status paused,compensation_failed --definition trip-booking
  pulsaga list --age 1h -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			if len(statuses) > 0 {
				q.Set("status", strings.Join(statuses, ","))
			}
			set := func(k, v string) {
				if v != "" {
					q.Set(k, v)
				}
			}
			set("definition", definition)
			set("q", search)
			if version > 0 {
				q.Set("version", strconv.Itoa(version))
			}
			if stuck {
				q.Set("stuck", "true")
			}
			if stuckAfter > 0 {
				q.Set("stuck_after", stuckAfter.String())
			}
			now := time.Now().UTC()
			if age > 0 {
				q.Set("started_after", now.Add(-age).Format(time.RFC3339))
			}
			if quiet > 0 {
				q.Set("updated_before", now.Add(-quiet).Format(time.RFC3339))
			}
			set("started_after", startedAfter)
			set("started_before", startedBy)
			q.Set("limit", strconv.Itoa(limit))
			return apiRun(cmd, func(ctx context.Context, c *admin.Client) error {
				var rows []admin.ProcessSummary
				total := 0
				for {
					l, err := c.List(ctx, q)
					if err != nil {
						return err
					}
					rows, total = append(rows, l.Processes...), l.Total
					if !all || l.NextCursor == "" {
						break
					}
					q.Set("cursor", l.NextCursor)
				}
				return emit(cmd, admin.ProcessList{Processes: rows, Total: total}, func(w io.Writer) {
					fmt.Fprintln(w, "PROCESS\tDEFINITION\tSTATUS\tSTARTED\tUPDATED\tNOTE")
					for _, p := range rows {
						note := p.LastError
						if note == "" {
							note = p.Stuck
						}
						fmt.Fprintf(w, "%s\t%s v%d\t%s\t%s\t%s\t%s\n", p.ProcessID, p.Definition, p.Version, p.Status, since(p.StartedAt), since(p.UpdatedAt), oneLine(dash(note), 70))
					}
					if len(rows) < total {
						fmt.Fprintf(w, "(%d of %d; --all for every page)\n", len(rows), total)
					}
				})
			})
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&statuses, "status", nil, "statuses (comma-separated): running, completed, compensating, compensated, failed, paused, compensation_failed, terminated")
	f.StringVar(&definition, "definition", "", "definition name")
	f.IntVar(&version, "version", 0, "definition version (with --definition)")
	f.BoolVar(&stuck, "stuck", false, "only processes that need an operator: paused, compensation_failed, or no progress for --stuck-after")
	f.DurationVar(&stuckAfter, "stuck-after", 0, "no progress for longer than this is stuck (default: the server's, 15m)")
	f.DurationVar(&age, "age", 0, "only processes started within this duration, such as 1h")
	f.DurationVar(&quiet, "quiet-for", 0, "only processes not updated for this duration")
	f.StringVar(&startedAfter, "started-after", "", "only processes started at or after this RFC 3339 time")
	f.StringVar(&startedBy, "started-before", "", "only processes started before this RFC 3339 time")
	f.StringVar(&search, "search", "", "only process ids containing this")
	f.IntVar(&limit, "limit", 50, "processes per page (1-1000)")
	f.BoolVar(&all, "all", false, "fetch every page")
	_ = cmd.RegisterFlagCompletionFunc("status", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{"running", "completed", "compensating", "compensated", "failed", "paused", "compensation_failed", "terminated"}, cobra.ShellCompDirectiveNoFileComp
	})
	return cmd
}

func newGetCommand() *cobra.Command {
	var history bool
	cmd := &cobra.Command{
		Use:               "get PROCESS",
		Short:             "Show a process: status, steps, attempts, last error and its event stream",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeProcesses,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkID(args[0]); err != nil {
				return err
			}
			return apiRun(cmd, func(ctx context.Context, c *admin.Client) error {
				d, err := c.Get(ctx, args[0])
				if err != nil {
					return err
				}
				return emit(cmd, d, func(w io.Writer) { printProcess(w, d, history) })
			})
		},
	}
	cmd.Flags().BoolVar(&history, "history", true, "print the event stream")
	return cmd
}

func printProcess(w io.Writer, d *admin.ProcessDetail, history bool) {
	p := d.Process
	fmt.Fprintf(w, "Process:\t%s\n", p.ProcessID)
	fmt.Fprintf(w, "Definition:\t%s v%d\n", p.Definition, p.Version)
	fmt.Fprintf(w, "Status:\t%s\n", p.Status)
	fmt.Fprintf(w, "Started:\t%s\n", fmtTime(p.StartedAt))
	fmt.Fprintf(w, "Updated:\t%s\n", fmtTime(p.UpdatedAt))
	if !p.EndedAt.IsZero() {
		fmt.Fprintf(w, "Ended:\t%s\n", fmtTime(p.EndedAt))
	}
	if p.Stuck != "" {
		fmt.Fprintf(w, "Stuck:\t%s\n", p.Stuck)
	}
	if p.LastError != "" {
		fmt.Fprintf(w, "Last error:\t%s\n", p.LastError)
	}
	if d.State != nil && d.State.Admin != nil {
		a := d.State.Admin
		fmt.Fprintf(w, "Last action:\t%s %s by %s (%s) at %s\n", a.Type, a.StepID, dash(a.Actor), dash(a.Reason), fmtTime(a.At))
	}
	if d.State != nil {
		fmt.Fprintln(w, "\nSTEP\tSTATUS\tATTEMPTS\tSTARTED\tENDED\tERROR")
		for _, s := range d.State.Steps {
			attempts := 0
			for _, r := range s.Runs {
				attempts += len(r.Attempts)
			}
			e := ""
			if s.Error != nil {
				e = s.Error.Type + ": " + s.Error.Message
			}
			fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\n", s.ID, s.Status, attempts, fmtTime(s.StartedAt), fmtTime(s.EndedAt), oneLine(dash(e), 60))
		}
	}
	if history {
		fmt.Fprintln(w, "\nSEQ\tAT\tRECORD\tDETAIL")
		for _, r := range d.Records {
			fmt.Fprintf(w, "%d\t%s\t%s\t%s\n", r.Seq, r.At.UTC().Format("15:04:05.000"), recordKind(r), oneLine(recordDetail(r), 90))
		}
	}
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func recordKind(r engine.Record) string {
	if r.Kind == engine.RecordEvent && r.Event != nil {
		return string(r.Event.Type)
	}
	return r.Kind
}

// recordDetail summarises one record of the event stream.
func recordDetail(r engine.Record) string {
	switch r.Kind {
	case engine.RecordDecision:
		parts := []string{"status " + string(r.Status)}
		if len(r.Commands) > 0 {
			parts = append(parts, "commands "+strings.Join(r.Commands, ", "))
		}
		for _, ig := range r.Ignored {
			parts = append(parts, fmt.Sprintf("ignored %s (%s)", ig.Type, ig.Detail))
		}
		return strings.Join(parts, "; ")
	case engine.RecordRejected:
		return r.Error
	}
	ev := r.Event
	if ev == nil {
		return ""
	}
	switch ev.Type {
	case workflow.EventResult:
		if ev.Error != nil {
			return fmt.Sprintf("%s failed: %s: %s", ev.CommandID, ev.Error.Type, ev.Error.Message)
		}
		return ev.CommandID + " completed"
	case workflow.EventTimer:
		return ev.TimerID
	case workflow.EventSignal:
		return ev.Signal + " " + string(ev.Data)
	case workflow.EventStart:
		return "by " + dash(ev.Actor) + " input " + string(ev.Input)
	}
	s := "by " + dash(ev.Actor)
	if ev.StepID != "" {
		s = "step " + ev.StepID + " " + s
	}
	if ev.Reason != "" {
		s += ": " + ev.Reason
	}
	return s
}

var actionHelp = map[string]string{
	"retry":     "Retry a failed step (--step) or every failed step and compensation of a paused or compensation_failed process",
	"skip":      "Skip a failed or waiting step (or a failed compensation) with an output",
	"cancel":    "Cancel a running or paused process: stop new work and compensate what was done",
	"terminate": "Terminate a process at once, without compensation",
}

func newActionCommand(action string) *cobra.Command {
	var (
		step, reason, output, key string
	)
	cmd := &cobra.Command{
		Use:               action + " PROCESS",
		Short:             actionHelp[action],
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeProcesses,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkID(args[0]); err != nil {
				return err
			}
			req := admin.ActionRequest{StepID: step, Reason: reason}
			if action == "skip" {
				out, err := jsonArg(output, "--output-json")
				if err != nil {
					return err
				}
				req.Output = out
			}
			if key == "" {
				key = admin.NewKey()
			}
			return apiRun(cmd, func(ctx context.Context, c *admin.Client) error {
				res, err := c.Act(ctx, args[0], action, req, key)
				if err != nil {
					return err
				}
				return printAccepted(cmd, res)
			})
		},
	}
	f := cmd.Flags()
	switch action {
	case "retry":
		f.StringVar(&step, "step", "", "the step to retry (default: every failed step)")
	case "skip":
		f.StringVar(&step, "step", "", "the step to skip (required)")
		_ = cmd.MarkFlagRequired("step")
		f.StringVar(&output, "output-json", "", "the skipped step's output: JSON, or @file")
	}
	f.StringVar(&reason, "reason", "", "why (recorded in the process's event stream with your token's name)")
	f.StringVar(&key, "idempotency-key", "", "makes a repeated command apply once (default: a fresh key; retries of this invocation reuse it)")
	return cmd
}
