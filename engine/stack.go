package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/timers"
	"github.com/pulsaga/pulsaga/tracing"
	"github.com/pulsaga/pulsaga/worker"
)

// StackOptions describe a whole engine in one process: what `pulsaga dev`
// and the end-to-end tests run.
type StackOptions struct {
	Topics protocol.Topics
	// Name prefixes the instance names (default "dev").
	Name string
	// Decider is the decider mode (OrchestratorOptions.Decider): inline by
	// default, or remote with Deciders decider instances.
	Decider string
	// Orchestrators, Deciders and Relays are instance counts (default 1;
	// no decider runs in the inline mode).
	Orchestrators, Deciders, Relays int
	// Services are the workers to run: service → command → handler.
	Services map[string]map[string]worker.Handler
	// WorkerConcurrency is each worker's concurrency (default 16).
	WorkerConcurrency int
	// DecisionTimeout, see OrchestratorOptions (remote mode).
	DecisionTimeout time.Duration
	// AnswerWait, see OrchestratorOptions (remote mode).
	AnswerWait time.Duration
	// Retention, see OrchestratorOptions (default 24h).
	Retention time.Duration
	// Observer receives the orchestrators' measurements.
	Observer Observer
	// Tracer exports a trace per process (nil: none).
	Tracer *tracing.Tracer
	// ObserveTimer receives each fired timer's lateness.
	ObserveTimer func(kind string, lateness time.Duration)
}

// Stack is a running engine.
type Stack struct {
	Orchestrators []*Orchestrator
	Registry      *Registry
	Client        *Client
	Status        *StatusTable

	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	errs   []error
}

// StartStack starts every component on b (in goroutines) and returns once
// the topics exist.
func StartStack(ctx context.Context, b bus.Bus, opts StackOptions, log zerolog.Logger) (*Stack, error) {
	opts.Topics = opts.Topics.WithDefaults()
	if opts.Name == "" {
		opts.Name = "dev"
	}
	opts.Orchestrators, opts.Deciders, opts.Relays = max(opts.Orchestrators, 1), max(opts.Deciders, 1), max(opts.Relays, 1)
	if opts.WorkerConcurrency <= 0 {
		opts.WorkerConcurrency = 16
	}
	if err := (OrchestratorOptions{Decider: opts.Decider}).Validate(); err != nil {
		return nil, err
	}
	if err := EnsureTopics(ctx, b, opts.Topics); err != nil {
		return nil, err
	}
	reg := NewRegistry(b, opts.Topics.Definitions, nil)
	if err := reg.Sync(ctx); err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &Stack{Registry: reg, Client: NewClient(b, opts.Topics), Status: NewStatusTable(b, opts.Topics.Status), cancel: cancel}
	run := func(name string, f func(context.Context) error) {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := f(rctx); err != nil && rctx.Err() == nil {
				log.Error().Err(err).Str("component", name).Msg("component stopped")
				s.mu.Lock()
				s.errs = append(s.errs, fmt.Errorf("%s: %w", name, err))
				s.mu.Unlock()
			}
		}()
	}
	for i := 0; i < opts.Orchestrators; i++ {
		o := NewOrchestrator(b, reg, OrchestratorOptions{
			Name: fmt.Sprintf("%s-orchestrator-%d", opts.Name, i), Topics: opts.Topics, Decider: opts.Decider,
			DecisionTimeout: opts.DecisionTimeout, AnswerWait: opts.AnswerWait, Observer: opts.Observer, Tracer: opts.Tracer, Retention: opts.Retention,
		}, log)
		s.Orchestrators = append(s.Orchestrators, o)
		run("orchestrator", o.Run)
	}
	for i := 0; opts.Decider == DeciderRemote && i < opts.Deciders; i++ {
		d := NewDecider(b, NewRegistry(b, opts.Topics.Definitions, nil), DeciderOptions{Name: fmt.Sprintf("%s-decider-%d", opts.Name, i), Topics: opts.Topics}, log)
		run("decider", d.Run)
	}
	run("start-relay", NewStartRelay(b, opts.Topics, opts.Name+"-start-relay", log).Run)
	for i := 0; i < opts.Relays; i++ {
		r := timers.NewRelay(b, timers.RelayOptions{Topic: opts.Topics.Timers, Name: fmt.Sprintf("%s-relay-%d", opts.Name, i), Observe: opts.ObserveTimer}, log)
		run("timer-relay", r.Run)
	}
	for svc, handlers := range opts.Services {
		w, err := worker.New(b, worker.Options{Service: svc, Name: opts.Name + "-" + svc, Concurrency: opts.WorkerConcurrency}, log)
		if err != nil {
			cancel()
			return nil, err
		}
		for cmd, h := range handlers {
			w.Handle(cmd, h)
		}
		run("worker-"+svc, w.Run)
	}
	return s, nil
}

// Stop stops every component and waits for them.
func (s *Stack) Stop() error {
	s.cancel()
	s.wg.Wait()
	_ = s.Client.Close()
	_ = s.Status.Close()
	_ = s.Registry.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	return errors.Join(s.errs...)
}

// Err returns the errors of components that stopped on their own.
func (s *Stack) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return errors.Join(s.errs...)
}
