// Command chaos runs the chaos kit (e2e/chaos, docs/reliability.md): the
// real binaries on a private broker, thousands of sagas with known
// outcomes, kill -9 of random components, a frozen owner and a broker
// restart, then a check of every saga. It exits 1 when the run found
// anything wrong (the logs of every component are kept, their folder
// printed), 2 when it could not run.
//
//	go run ./e2e/chaos/cmd/chaos -sagas 2500 -duration 10m
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/pulsaga/pulsaga/e2e/chaos"
)

func main() {
	cfg := chaos.DefaultConfig()
	chaos.Flags(flag.CommandLine, &cfg)
	limit := flag.Int("show", 40, "problems shown per kind")
	keep := flag.Bool("keep", false, "keep the run folder (binaries, logs, ledger) when the run passes too")
	frozen := flag.Bool("frozen", false, "the frozen-owner test: no kills, no broker restart, an owner frozen for 90s that the standby must take over (other flags still apply)")
	flag.Parse()
	if *frozen {
		// Start from the frozen-owner configuration, keep what was set.
		fc := chaos.FrozenOwnerConfig()
		fs := flag.NewFlagSet("frozen", flag.ContinueOnError)
		chaos.Flags(fs, &fc)
		flag.Visit(func(f *flag.Flag) {
			if g := fs.Lookup(f.Name); g != nil {
				_ = g.Value.Set(f.Value.String())
			}
		})
		fc.NoKills, fc.FreezeTakeover = true, true
		cfg = fc
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg.Progress = os.Stderr
	rep, err := chaos.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(2)
	}
	rep.Write(os.Stdout, *limit)
	if rep.Failed() {
		os.Exit(1)
	}
	if !*keep {
		os.RemoveAll(rep.Dir)
	}
}
