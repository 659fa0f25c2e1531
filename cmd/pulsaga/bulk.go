package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/pulsaga/pulsaga/admin"
)

func init() {
	subcommands = append(subcommands, newBulkCommand)
}

func newBulkCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bulk",
		Short: "Act on every process a filter selects (retry, skip, cancel, terminate, signal) as a durable, rate-limited job",
		Long: `Bulk actions select processes with the filters of "pulsaga list", count them and show a sample
(--dry-run stops there), ask for confirmation, then run the action as a job of the server: it
survives an orchestrator restart, acts at --rate actions per second, is recorded on each process
with your token's name and --reason, and can be stopped ("pulsaga bulk stop JOB").`,
		Example: `  pulsaga bulk retry --status paused --error-type GatewayTimeout --dry-run
  pulsaga bulk retry --definition trip-booking --at-step flight --step-status failed --reason "airline API back"
  pulsaga bulk terminate --stuck --started-before 2026-11-01T00:00:00Z --reason "stale test data" --yes
  pulsaga bulk signal approve --at-step approval --step-status waiting --data '{"by":"cfo"}' --reason "batch approval"
  pulsaga bulk list
  pulsaga bulk watch bulk-3f9a1c0d2e4b`,
	}
	for _, a := range []string{"retry", "skip", "cancel", "terminate", "signal"} {
		cmd.AddCommand(newBulkActionCommand(a))
	}
	cmd.AddCommand(newBulkListCommand(), newBulkGetCommand(), newBulkWatchCommand(), newBulkStopCommand())
	return cmd
}

var bulkHelp = map[string]string{
	"retry":     "Retry the failed step (--step) or every failed step and compensation of the selected processes",
	"skip":      "Skip a step (--step) of the selected processes with an output",
	"cancel":    "Cancel the selected processes: stop new work and compensate what was done",
	"terminate": "Terminate the selected processes at once, without compensation",
	"signal":    "Send the signal NAME to the selected processes",
}

// bulkFilterFlags are the selection flags, as "pulsaga list" has them.
type bulkFilterFlags struct {
	statuses                                        []string
	definition, search, atStep, stepStatus, errType string
	version                                         int
	stuck                                           bool
	stuckAfter, age, quiet                          time.Duration
	startedAfter, startedBefore                     string
	updatedAfter, updatedBefore                     string
	ids                                             []string
}

func (f *bulkFilterFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringSliceVar(&f.statuses, "status", nil, "statuses (comma-separated)")
	fl.StringVar(&f.definition, "definition", "", "definition name")
	fl.IntVar(&f.version, "version", 0, "definition version (with --definition)")
	fl.BoolVar(&f.stuck, "stuck", false, "only processes that need an operator")
	fl.DurationVar(&f.stuckAfter, "stuck-after", 0, "no progress for longer than this is stuck (default: the server's)")
	fl.StringVar(&f.atStep, "at-step", "", "only processes in which this step has started")
	fl.StringVar(&f.stepStatus, "step-status", "", "with --at-step: only where that step has this status (failed, waiting, running, ...)")
	fl.StringVar(&f.errType, "error-type", "", "only processes whose last step failure has this error type")
	fl.DurationVar(&f.age, "age", 0, "only processes started within this duration")
	fl.DurationVar(&f.quiet, "quiet-for", 0, "only processes not updated for this duration")
	fl.StringVar(&f.startedAfter, "started-after", "", "only processes started at or after this RFC 3339 time")
	fl.StringVar(&f.startedBefore, "started-before", "", "only processes started before this RFC 3339 time")
	fl.StringVar(&f.updatedAfter, "updated-after", "", "only processes updated at or after this RFC 3339 time")
	fl.StringVar(&f.updatedBefore, "updated-before", "", "only processes updated before this RFC 3339 time")
	fl.StringVar(&f.search, "search", "", "only process ids containing this")
	fl.StringSliceVar(&f.ids, "id", nil, "only these process ids (repeatable)")
}

func (f *bulkFilterFlags) filter() (admin.BulkFilter, error) {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	if len(f.statuses) > 0 {
		q.Set("status", strings.Join(f.statuses, ","))
	}
	set("definition", f.definition)
	if f.version > 0 {
		q.Set("version", strconv.Itoa(f.version))
	}
	if f.stuck {
		q.Set("stuck", "true")
	}
	if f.stuckAfter > 0 {
		q.Set("stuck_after", f.stuckAfter.String())
	}
	set("step", f.atStep)
	set("step_status", f.stepStatus)
	set("error_type", f.errType)
	now := time.Now().UTC()
	if f.age > 0 {
		q.Set("started_after", now.Add(-f.age).Format(time.RFC3339))
	}
	if f.quiet > 0 {
		q.Set("updated_before", now.Add(-f.quiet).Format(time.RFC3339))
	}
	set("started_after", f.startedAfter)
	set("started_before", f.startedBefore)
	set("updated_after", f.updatedAfter)
	set("updated_before", f.updatedBefore)
	set("q", f.search)
	bf, err := admin.BulkFilterFromValues(q)
	if err != nil {
		return bf, errors.New(strings.TrimPrefix(err.Error(), "bad request: "))
	}
	bf.ProcessIDs = f.ids
	return bf, nil
}

func newBulkActionCommand(action string) *cobra.Command {
	var (
		ff                              bulkFilterFlags
		step, reason, output, data, key string
		rate                            float64
		dryRun, yes, detach             bool
	)
	use := action + " [filter flags]"
	args := cobra.NoArgs
	if action == "signal" {
		use, args = "signal NAME [filter flags]", cobra.ExactArgs(1)
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: bulkHelp[action],
		Args:  args,
		RunE: func(cmd *cobra.Command, args []string) error {
			req := admin.BulkRequest{Action: action, StepID: step, Reason: reason, Rate: rate}
			var err error
			if req.Filter, err = ff.filter(); err != nil {
				return err
			}
			if action == "signal" {
				req.Signal = args[0]
				if req.Data, err = jsonArg(data, "--data"); err != nil {
					return err
				}
			}
			if action == "skip" {
				if req.Output, err = jsonArg(output, "--output-json"); err != nil {
					return err
				}
			}
			if !dryRun && strings.TrimSpace(reason) == "" {
				return errors.New("--reason is required: it is recorded on every process the job acts on")
			}
			if key == "" {
				key = admin.NewKey()
			}
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			pctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			pv, err := c.BulkPreview(pctx, req)
			cancel()
			if err != nil {
				return explain(cmd, err)
			}
			if dryRun || pv.Applicable == 0 {
				if err := emit(cmd, pv, func(w io.Writer) { printPreview(w, action, pv) }); err != nil {
					return err
				}
				if !dryRun {
					return fmt.Errorf("nothing to do: %s applies to none of the %d processes the filter selects", action, pv.Matched)
				}
				return nil
			}
			if o, _ := outputFormat(cmd); o == "table" {
				tw := tabwriter.NewWriter(cmd.ErrOrStderr(), 0, 4, 2, ' ', 0)
				printPreview(tw, action, pv)
				_ = tw.Flush()
			}
			if !yes {
				ok, err := confirm(cmd, fmt.Sprintf("%s %d process(es) at %s per second?", action, pv.Applicable, rateText(rate)))
				if err != nil {
					return err
				}
				if !ok {
					return errors.New("not confirmed; nothing done")
				}
			}
			sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			job, err := c.BulkStart(sctx, req, key)
			cancel()
			if err != nil {
				return explain(cmd, err)
			}
			if detach {
				return emit(cmd, job, func(w io.Writer) {
					fmt.Fprintf(w, "%s queued: %s of %d process(es); follow it with: pulsaga bulk watch %s\n", job.ID, job.Action, job.Total, job.ID)
				})
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "%s queued (stop it with: pulsaga bulk stop %s)\n", job.ID, job.ID)
			return watchJob(cmd, c, job.ID)
		},
	}
	ff.add(cmd)
	fl := cmd.Flags()
	switch action {
	case "retry":
		fl.StringVar(&step, "step", "", "the step to retry (default: every failed step)")
	case "skip":
		fl.StringVar(&step, "step", "", "the step to skip (required)")
		_ = cmd.MarkFlagRequired("step")
		fl.StringVar(&output, "output-json", "", "the skipped step's output: JSON, or @file")
	case "signal":
		fl.StringVar(&data, "data", "", "the signal's data: JSON, or @file")
	}
	fl.StringVar(&reason, "reason", "", "why (recorded on every process with your token's name); required")
	fl.Float64Var(&rate, "rate", 0, fmt.Sprintf("actions per second (default %g, at most %g)", admin.DefaultBulkRate, admin.MaxBulkRate))
	fl.BoolVar(&dryRun, "dry-run", false, "count and show a sample, do nothing")
	fl.BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	fl.BoolVar(&detach, "detach", false, "queue the job and return (do not follow its progress)")
	fl.StringVar(&key, "idempotency-key", "", "makes a repeated command start one job (default: a fresh key; retries of this invocation reuse it)")
	return cmd
}

func rateText(r float64) string {
	if r <= 0 {
		r = admin.DefaultBulkRate
	}
	return strconv.FormatFloat(r, 'g', -1, 64)
}

func printPreview(w io.Writer, action string, pv *admin.BulkPreview) {
	fmt.Fprintf(w, "%d process(es) match; %s applies to %d of them now.\n", pv.Matched, action, pv.Applicable)
	if pv.TooMany {
		fmt.Fprintf(w, "That is more than %d: narrow the filter and run several jobs.\n", admin.MaxBulkTargets)
	}
	if len(pv.Sample) > 0 {
		fmt.Fprintln(w, "PROCESS\tDEFINITION\tSTATUS\tUPDATED\tNOTE")
		for _, p := range pv.Sample {
			note := p.LastError
			if note == "" {
				note = p.Stuck
			}
			fmt.Fprintf(w, "%s\t%s v%d\t%s\t%s\t%s\n", p.ProcessID, p.Definition, p.Version, p.Status, since(p.UpdatedAt), oneLine(dash(note), 60))
		}
		if pv.Applicable > len(pv.Sample) {
			fmt.Fprintf(w, "… and %d more\n", pv.Applicable-len(pv.Sample))
		}
	}
	for _, p := range pv.NotApplicable {
		fmt.Fprintf(w, "not applicable: %s: %s\n", p.ProcessID, oneLine(p.Error, 100))
	}
}

// confirm asks on the terminal; without one it refuses (use --yes).
func confirm(cmd *cobra.Command, question string) (bool, error) {
	in := cmd.InOrStdin()
	if f, ok := in.(*os.File); !ok || !term.IsTerminal(int(f.Fd())) {
		return false, errors.New("not a terminal to ask for confirmation: pass --yes to act (or --dry-run to look)")
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "%s [y/N] ", question)
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && line == "" {
		return false, nil
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true, nil
	}
	return false, nil
}

// isTerminal says whether w is a terminal (for the progress bar).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// watchJob follows a job until it ends: a progress bar on a terminal,
// a line per change otherwise. Ctrl-C stops watching, not the job.
func watchJob(cmd *cobra.Command, c *admin.Client, id string) error {
	ctx := cmd.Context()
	out := cmd.OutOrStdout()
	var bar *progressbar.ProgressBar
	if o, _ := outputFormat(cmd); o == "table" && isTerminal(out) {
		bar = progressbar.NewOptions(1, progressbar.OptionSetWriter(out), progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true),
			progressbar.OptionSetWidth(40), progressbar.OptionSetDescription(id), progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionUseANSICodes(true), progressbar.OptionShowDescriptionAtLineEnd())
	}
	last := ""
	failures := 0
	for {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		j, err := c.BulkJob(rctx, id)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if failures++; failures > 5 {
				return explain(cmd, err)
			}
		} else {
			failures = 0
			line := fmt.Sprintf("%s %s: %d/%d done, %d failed, %d skipped, %d remaining", j.ID, j.State, j.Done, j.Total, j.Failed, j.Skipped, j.Remaining)
			if bar != nil {
				bar.ChangeMax(j.Total)
				_ = bar.Set(j.Done + j.Failed + j.Skipped)
				bar.Describe(fmt.Sprintf("%s: %d failed, %d skipped", j.State, j.Failed, j.Skipped))
			} else if line != last {
				if o, _ := outputFormat(cmd); o == "table" {
					fmt.Fprintln(out, line)
				}
			}
			last = line
			if j.Ended() {
				if bar != nil {
					_ = bar.Finish()
					fmt.Fprintln(out)
				}
				return emit(cmd, j, func(w io.Writer) { printJob(w, j) })
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func printJob(w io.Writer, j *admin.BulkJob) {
	fmt.Fprintf(w, "Job:\t%s\n", j.ID)
	fmt.Fprintf(w, "Action:\t%s\n", strings.TrimSpace(j.Action+" "+j.StepID+j.Signal))
	fmt.Fprintf(w, "Filter:\t%s\n", j.Filter.String())
	fmt.Fprintf(w, "By:\t%s: %s\n", j.Actor, j.Reason)
	fmt.Fprintf(w, "State:\t%s\n", j.State)
	fmt.Fprintf(w, "Progress:\t%d/%d done, %d failed, %d skipped, %d remaining (at %g/s)\n", j.Done, j.Total, j.Failed, j.Skipped, j.Remaining, j.Rate)
	fmt.Fprintf(w, "Created:\t%s\n", fmtTime(j.CreatedAt))
	if !j.FinishedAt.IsZero() {
		fmt.Fprintf(w, "Finished:\t%s (took %s)\n", fmtTime(j.FinishedAt), j.FinishedAt.Sub(j.StartedAt).Round(time.Millisecond))
	}
	if j.CancelledBy != "" {
		fmt.Fprintf(w, "Stopped by:\t%s: %s\n", j.CancelledBy, dash(j.CancelReason))
	}
	if j.Runner != "" {
		fmt.Fprintf(w, "Runner:\t%s\n", j.Runner)
	}
	for _, p := range j.Problems {
		fmt.Fprintf(w, "problem:\t%s: %s\n", p.ProcessID, oneLine(p.Error, 100))
	}
}

func newBulkListCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the bulk jobs, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return apiRun(cmd, func(ctx context.Context, c *admin.Client) error {
				jobs, err := c.BulkJobs(ctx)
				if err != nil {
					return err
				}
				return emit(cmd, admin.BulkJobList{Jobs: jobs}, func(w io.Writer) {
					fmt.Fprintln(w, "JOB\tACTION\tSTATE\tDONE\tFAILED\tSKIPPED\tREMAINING\tBY\tCREATED\tFILTER")
					for _, j := range jobs {
						fmt.Fprintf(w, "%s\t%s\t%s\t%d/%d\t%d\t%d\t%d\t%s\t%s\t%s\n", j.ID, j.Action, j.State, j.Done, j.Total, j.Failed, j.Skipped, j.Remaining, j.Actor, since(j.CreatedAt), oneLine(j.Filter.String(), 60))
					}
				})
			})
		},
	}
}

func newBulkGetCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "get JOB",
		Short: "Show a bulk job: what it does, its progress and its problems",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return apiRun(cmd, func(ctx context.Context, c *admin.Client) error {
				j, err := c.BulkJob(ctx, args[0])
				if err != nil {
					return err
				}
				return emit(cmd, j, func(w io.Writer) { printJob(w, j) })
			})
		},
	}
}

func newBulkWatchCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "watch JOB",
		Short: "Follow a bulk job's progress until it ends (Ctrl-C stops watching, not the job)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			return watchJob(cmd, c, args[0])
		},
	}
}

func newBulkStopCommand() *cobra.Command {
	var reason, key string
	cmd := &cobra.Command{
		Use:   "stop JOB",
		Short: "Stop a bulk job: the processes acted on stay so, the others are left alone",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if key == "" {
				key = admin.NewKey()
			}
			return apiRun(cmd, func(ctx context.Context, c *admin.Client) error {
				res, err := c.BulkCancel(ctx, args[0], reason, key)
				if err != nil {
					return err
				}
				return emit(cmd, res, func(w io.Writer) { fmt.Fprintf(w, "%s: stop requested by %s\n", args[0], res.Actor) })
			})
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded with the job)")
	cmd.Flags().StringVar(&key, "idempotency-key", "", "makes a repeated command apply once")
	return cmd
}
