// Package app wires pulsaga's binaries: configuration in, components
// running on a Pulsar bus out. The cmd/* mains only call into it.
package app

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/pulsarbus"
	"github.com/pulsaga/pulsaga/child"
	"github.com/pulsaga/pulsaga/config"
	"github.com/pulsaga/pulsaga/demo"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/schedule"
	"github.com/pulsaga/pulsaga/timers"
	"github.com/pulsaga/pulsaga/trigger"
	"github.com/pulsaga/pulsaga/worker"
	"github.com/pulsaga/pulsaga/workflow"
)

// Connect opens the Pulsar bus a configuration names, and warns when the
// broker's version is known to break what pulsaga relies on
// (pulsarbus.KnownBrokerProblem).
func Connect(ctx context.Context, p config.Pulsar, log zerolog.Logger) (*pulsarbus.Bus, error) {
	b, err := pulsarbus.New(ctx, BusConfig(p), log)
	if err != nil {
		return nil, err
	}
	if v, err := b.BrokerVersion(ctx); err == nil {
		if problem := pulsarbus.KnownBrokerProblem(v); problem != "" {
			log.Warn().Str("broker_version", v).Str("problem", problem).Msg("the Pulsar broker has a known bug that can stop the engine")
		}
	}
	return b, nil
}

// BusConfig is the bus configuration of a Pulsar section: URLs,
// namespace, timeouts, credentials and TLS.
func BusConfig(p config.Pulsar) pulsarbus.Config {
	c := pulsarbus.Config{
		ServiceURL: p.URL, AdminURL: p.AdminURL,
		Namespace:         bus.Namespace{Tenant: p.Tenant, Namespace: p.Namespace},
		ConnectionTimeout: p.ConnectTimeout, OperationTimeout: p.OperationTimeout,
		CompactionThresholdBytes: p.CompactionThresholdMB << 20,
		Auth:                     pulsarbus.Auth{Token: p.AuthToken, TokenFile: p.AuthTokenFile},
		TLS:                      pulsarbus.TLS{TrustCertsFile: p.TLSTrustCertsFile, AllowInsecure: p.TLSAllowInsecure},
	}
	if p.AuthMethod() == "oauth2" {
		c.Auth.OAuth2 = &pulsarbus.OAuth2{IssuerURL: p.OAuth2IssuerURL, CredentialsFile: p.OAuth2CredentialsFile, Audience: p.OAuth2Audience, Scope: p.OAuth2Scope}
	}
	return c
}

// Topics are the engine topics for a partition count and history retention
// (0: the default; negative, as the configuration's "-1s": forever).
func Topics(partitions int, historyRetention time.Duration) protocol.Topics {
	t := protocol.DefaultTopics()
	t.Partitions = partitions
	switch {
	case historyRetention < 0:
		t.HistoryRetention = -1 // forever, as the bus spells it
	case historyRetention > 0:
		t.HistoryRetention = historyRetention
	}
	return t
}

// group runs components until ctx is done. A component that fails (the
// broker went away, a transaction could not be opened, ...) is logged and
// started again after a backoff (1s doubling to 30s): a binary survives a
// broker restart instead of exiting. Configuration errors are found before
// the components start.
func group(ctx context.Context, log zerolog.Logger, fns ...func(context.Context) error) error {
	var wg sync.WaitGroup
	for _, f := range fns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			backoff := time.Second
			for ctx.Err() == nil {
				t0 := time.Now()
				err := f(ctx)
				if ctx.Err() != nil {
					return
				}
				if time.Since(t0) > time.Minute {
					backoff = time.Second // it ran fine for a while
				}
				log.Error().Err(err).Dur("restart_in", backoff).Msg("component failed; restarting it")
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, 30*time.Second)
			}
		}()
	}
	wg.Wait()
	return nil
}

// RunOrchestrator runs an orchestrator (and a timer relay) until ctx ends.
func RunOrchestrator(ctx context.Context, cfg config.Orchestrator, log zerolog.Logger) error {
	b, err := Connect(ctx, cfg.Pulsar, log)
	if err != nil {
		return err
	}
	defer b.Close()
	topics := Topics(cfg.Partitions, cfg.HistoryRetention)
	if err := untilAvailable(ctx, log, "ensure topics", func(ctx context.Context) error {
		return engine.EnsureTopics(ctx, b, topics)
	}); err != nil {
		return err
	}
	reg := engine.NewRegistry(b, topics.Definitions, nil)
	defer reg.Close()
	if cfg.Definitions != "" {
		var defs []*workflow.Definition
		err := untilAvailable(ctx, log, "register definitions", func(ctx context.Context) (err error) {
			defs, err = reg.RegisterPath(ctx, cfg.Definitions)
			return err
		})
		if err != nil {
			return fmt.Errorf("register definitions: %w", err)
		}
		for _, d := range defs {
			log.Info().Str("definition", d.Name).Int("version", d.Version).Msg("definition registered")
		}
	}
	triggers := trigger.NewManager(b, trigger.Options{Name: cfg.Name, Topics: topics, Registry: reg}, log)
	adm, err := newAdmin(cfg, b, topics, reg, log)
	if err != nil {
		return err
	}
	defer adm.Close()
	adm.showTriggers(triggers.Triggers)
	tr, stopTracing, err := newTracer(cfg.Tracing, "pulsaga-orchestrator", cfg.Name, log)
	if err != nil {
		return err
	}
	defer stopTracing()
	o := engine.NewOrchestrator(b, reg, engine.OrchestratorOptions{
		Name: cfg.Name, Topics: topics, BatchSize: cfg.BatchSize, JobBatchMessages: cfg.JobBatchMessages, BatchSpacing: batchSpacing(cfg.BatchSpacing), Decider: cfg.Decider, DecisionTimeout: cfg.DecisionTimeout, Retention: cfg.Retention,
		AnswerWait:     batchSpacing(cfg.AnswerWait),
		MaxOutstanding: cfg.MaxOutstanding, OwnershipPoll: cfg.OwnershipPoll, Observer: adm.metrics, Tracer: tr,
	}, log)
	adm.watch(o)
	fns := []func(context.Context) error{o.Run, engine.NewStartRelay(b, topics, cfg.Name+"-start-relay", log).Run, adm.run,
		schedule.NewScheduler(b, schedule.Options{Name: cfg.Name, Topics: topics, Registry: reg}, log).Run, triggers.Run,
		child.New(b, child.Options{Name: cfg.Name, Topics: topics, Registry: reg}, log).Run}
	fns = append(fns, runBulk(cfg.Name, b, topics, reg, log))
	if cfg.TimerRelay {
		fns = append(fns, timers.NewRelay(b, timers.RelayOptions{Topic: topics.Timers, Name: cfg.Name + "-relay", Observe: adm.metrics.ObserveTimer}, log).Run)
	}
	log.Info().Str("instance", cfg.Name).Int("partitions", cfg.Partitions).Msg("orchestrator running")
	return group(ctx, log, fns...)
}

// RunDecider runs a decider until ctx ends.
func RunDecider(ctx context.Context, cfg config.Decider, log zerolog.Logger) error {
	b, err := Connect(ctx, cfg.Pulsar, log)
	if err != nil {
		return err
	}
	defer b.Close()
	topics := Topics(cfg.Partitions, 0)
	reg := engine.NewRegistry(b, topics.Definitions, nil)
	defer reg.Close()
	d := engine.NewDecider(b, reg, engine.DeciderOptions{
		Name: cfg.Name, Topics: topics, Concurrency: cfg.Concurrency, MaxBatch: cfg.MaxBatch, BatchWait: cfg.BatchWait,
		StateCache: stateCache(cfg.StateCache),
	}, log)
	fns := []func(context.Context) error{d.Run}
	if cfg.MetricsListen != "" {
		serve, _, err := deciderMetrics(cfg.MetricsListen, d, cfg.Name, log)
		if err != nil {
			return err
		}
		fns = append(fns, serve)
	}
	log.Info().Str("instance", cfg.Name).Msg("decider running")
	return group(ctx, log, fns...)
}

// RunWorker runs demo services or a bridge until ctx ends.
func RunWorker(ctx context.Context, cfg config.Worker, log zerolog.Logger) error {
	b, err := Connect(ctx, cfg.Pulsar, log)
	if err != nil {
		return err
	}
	defer b.Close()
	services := map[string]map[string]worker.Handler{}
	switch cfg.Mode {
	case "demo":
		faults := demo.Faults{Probability: cfg.FailProbability, Command: cfg.FailCommand, Latency: cfg.Latency, Seed: uint64(cfg.FailSeed)}
		if cfg.DemoStore != "" {
			faults.Store = demo.DirStore{Dir: cfg.DemoStore}
		}
		if cfg.CallsLog != "" {
			f, err := os.OpenFile(cfg.CallsLog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
			if err != nil {
				return fmt.Errorf("%w: calls_log: %v", config.ErrInvalid, err)
			}
			defer f.Close()
			faults.Log = f
		}
		all := demo.Trip(faults, nil)
		for _, s := range cfg.Services {
			h, ok := all[s]
			if !ok {
				return fmt.Errorf("%w: services: no demo service %q (have payments, flights, hotels, notifications)", config.ErrInvalid, s)
			}
			services[s] = h
		}
	case "bridge":
		br := worker.Bridge{URL: cfg.BridgeURL}
		if cfg.BridgeExec != "" {
			if br.Exec, err = config.SplitArgs(cfg.BridgeExec); err != nil {
				return fmt.Errorf("%w: bridge_exec: %v", config.ErrInvalid, err)
			}
		}
		services[cfg.Services[0]] = map[string]worker.Handler{worker.AnyCommand: br.Handle}
	}
	var fns []func(context.Context) error
	for svc, hs := range services {
		w, err := worker.New(b, worker.Options{Service: svc, Name: cfg.Name + "-" + svc, Concurrency: cfg.Concurrency,
			DisableDurableDeliveryCount: !cfg.DurableDeliveryCount, EagerDeliveryRecords: cfg.EagerDeliveryRecords,
			StartedAfter: cfg.StartedAfter}, log)
		if err != nil {
			return err
		}
		for cmd, h := range hs {
			w.Handle(cmd, h)
		}
		fns = append(fns, w.Run)
		log.Info().Str("service", svc).Str("mode", cfg.Mode).Msg("worker running")
	}
	return group(ctx, log, fns...)
}

// stateCache maps the configuration's state_cache (0: none) to the
// engine's option (0: the default, negative: none).
func stateCache(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// batchSpacing maps the configuration's batch_spacing (0: off) to the
// engine's option (0: the default, negative: off).
func batchSpacing(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// SetGCPercent applies a binary's gc_percent to the Go runtime unless the
// environment's GOGC is set (getenv: os.Getenv). cmd/orchestrator and
// cmd/decider call it: the setting is the process's, so it is not made by
// RunOrchestrator or RunDecider, which tests run in their own process.
func SetGCPercent(percent int, getenv func(string) string, log zerolog.Logger) {
	if g := getenv("GOGC"); g != "" {
		log.Info().Str("GOGC", g).Int("gc_percent", percent).Msg("gc_percent left aside: the GOGC environment variable is set")
		return
	}
	debug.SetGCPercent(percent)
}
