package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/memory"
	"github.com/pulsaga/pulsaga/child"
	"github.com/pulsaga/pulsaga/config"
	"github.com/pulsaga/pulsaga/demo"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/schedule"
	"github.com/pulsaga/pulsaga/trigger"
	"github.com/pulsaga/pulsaga/workflow"
)

// DevOptions configure `pulsaga dev`: the whole engine in one process.
type DevOptions struct {
	// Pulsar, when set, runs on that broker; nil runs on the embedded bus.
	Pulsar *config.Pulsar
	// Definitions is a file or directory registered at start.
	Definitions string
	// Sagas is how many trip sagas to start (a mix of outcomes).
	Sagas int
	// ExitWhenDone returns once every started saga has finished.
	ExitWhenDone bool
	// Faults inject failures into the demo services.
	Faults demo.Faults
	// AdminListen, when set, serves the admin API, the dashboard and the
	// metrics there (no tokens: keep it on loopback).
	AdminListen string
}

// scenarios cycles through outcomes, steered by the process id (package demo).
var scenarios = []string{"ok", "flaky-BookFlight", "fail-BookHotel", "ok", "fail-NotifyCustomer", "flaky-BookHotel", "fail-BookFlight", "fail-ProcessPayment"}

// RunDev runs orchestrator, decider, timer relay and the demo workers in
// one process, starts opts.Sagas trip sagas and reports what happens.
func RunDev(ctx context.Context, opts DevOptions, out io.Writer, log zerolog.Logger) error {
	var b bus.Bus
	where := "the embedded bus"
	if opts.Pulsar != nil {
		pb, err := Connect(ctx, *opts.Pulsar, log)
		if err != nil {
			return err
		}
		b, where = pb, "Pulsar at "+opts.Pulsar.URL
	} else {
		b = memory.New(memory.Options{})
	}
	defer b.Close()
	calls := demo.NewCalls()
	topics := protocol.DefaultTopics()
	if err := engine.EnsureTopics(ctx, b, topics); err != nil {
		return err
	}
	reg := engine.NewRegistry(b, topics.Definitions, nil)
	defer reg.Close()
	triggers := trigger.NewManager(b, trigger.Options{Name: "dev", Topics: topics, Registry: reg}, log)
	adm, err := newAdmin(config.Orchestrator{AdminListen: opts.AdminListen}, b, topics, reg, log)
	if err != nil {
		return err
	}
	defer adm.Close()
	stack, err := engine.StartStack(ctx, b, engine.StackOptions{
		Topics: topics, Services: demo.Trip(opts.Faults, calls), Observer: adm.metrics, ObserveTimer: adm.metrics.ObserveTimer,
	}, log)
	if err != nil {
		return err
	}
	defer stack.Stop()
	for _, o := range stack.Orchestrators {
		adm.watch(o)
	}
	actx, stopAdmin := context.WithCancel(ctx)
	defer stopAdmin()
	go func() {
		if err := adm.run(actx); err != nil {
			log.Error().Err(err).Msg("admin server stopped")
		}
	}()
	go func() {
		if err := runBulk("dev", b, topics, reg, log)(actx); err != nil {
			log.Error().Err(err).Msg("bulk runner stopped")
		}
	}()
	// schedules and triggers, as in the orchestrator binary
	adm.showTriggers(triggers.Triggers)
	go func() {
		_ = group(actx, log, schedule.NewScheduler(b, schedule.Options{Name: "dev", Topics: topics, Registry: reg}, log).Run, triggers.Run,
			child.New(b, child.Options{Name: "dev", Topics: topics, Registry: reg}, log).Run)
	}()
	defs, err := stack.Registry.RegisterPath(ctx, opts.Definitions)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "pulsaga dev on %s: orchestrator, decider, timer relay and the demo services (payments, flights, hotels, notifications)\n", where)
	for _, d := range defs {
		fmt.Fprintf(out, "  registered %s v%d (%d steps)\n", d.Name, d.Version, len(d.Steps))
	}
	if addr := adm.Addr(); addr != "" {
		fmt.Fprintf(out, "  dashboard http://%s/ui/  ·  API http://%s/api/v1  ·  metrics http://%s/metrics\n", addr, addr, addr)
	}
	run := time.Now().Format("150405")
	var pids []string
	for i := 0; i < opts.Sagas; i++ {
		pid := fmt.Sprintf("trip-%s-%d-%s", run, i+1, scenarios[i%len(scenarios)])
		input, _ := json.Marshal(map[string]any{"customer": fmt.Sprintf("customer-%d", i+1), "amount": 100 + 10*i})
		if err := stack.Client.Start(ctx, protocol.StartRequest{ProcessID: pid, Definition: "trip-booking", Input: input, Actor: "dev"}); err != nil {
			return err
		}
		pids = append(pids, pid)
	}
	if opts.Sagas > 0 {
		fmt.Fprintf(out, "started %d trip sagas; the id says what the demo services will do (fail-X: X fails for good, flaky-X: X fails once)\n\n", opts.Sagas)
	}
	last := map[string]workflow.Status{}
	started := time.Now()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if err := stack.Status.Refresh(ctx); err != nil {
			return err
		}
		done := 0
		for _, row := range stack.Status.List() {
			if row.Status != last[row.ProcessID] {
				detail := ""
				if row.LastError != "" && row.Status != workflow.StatusRunning {
					detail = "  (" + row.LastError + ")"
				}
				fmt.Fprintf(out, "%s  %-36s %s%s\n", time.Now().Format("15:04:05.000"), row.ProcessID, row.Status, detail)
				last[row.ProcessID] = row.Status
			}
		}
		for _, pid := range pids {
			if s := last[pid]; s.Terminal() || s == workflow.StatusPaused || s == workflow.StatusCompensationFailed {
				done++
			}
		}
		if err := stack.Err(); err != nil {
			return err
		}
		if opts.ExitWhenDone && done == len(pids) {
			break
		}
	}
	fmt.Fprintf(out, "\nall %d sagas finished in %s\n\n", len(pids), time.Since(started).Round(time.Millisecond))
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PROCESS\tSTATUS\tCOMMANDS RUN (↩ = compensation, ✗ = failed attempt)")
	for _, pid := range pids {
		var cmds []string
		for _, c := range calls.Of(pid) {
			name := c.Command
			if c.Compensation {
				name = "↩" + name
			}
			if c.Failed {
				name += "✗"
			}
			cmds = append(cmds, name)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", pid, last[pid], strings.Join(cmds, " → "))
	}
	return tw.Flush()
}
