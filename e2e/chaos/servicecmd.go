package chaos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/config"
	"github.com/pulsaga/pulsaga/internal/app"
	"github.com/pulsaga/pulsaga/worker"
)

// ServiceConfig configures e2e/chaos/cmd/chaos-service, one instance of
// the chaos service (the kit runs several sharing one ledger).
type ServiceConfig struct {
	config.Base `mapstructure:",squash"`
	// Name identifies the instance in the ledger, the calls log and the
	// worker names.
	Name string `mapstructure:"name" usage:"instance name"`
	// Ledger is the file of effects shared by every instance (required).
	Ledger string `mapstructure:"ledger" usage:"effects ledger shared by the instances (file)"`
	// Sync fsyncs every effect before answering.
	Sync bool `mapstructure:"sync" usage:"fsync every effect before answering"`
	// Calls, when set, gets one JSON line per delivery handled.
	Calls string `mapstructure:"calls" usage:"file that gets one JSON line per delivery"`
	// Services are the job queues served.
	Services []string `mapstructure:"services" usage:"job queues to serve"`
	// Concurrency is the jobs run at once per service.
	Concurrency int `mapstructure:"concurrency" usage:"jobs run at once per service"`
	// Latency is the most an attempt waits before acting.
	Latency time.Duration `mapstructure:"latency" usage:"most an attempt waits before acting (uniform from 0)"`
}

// DefaultServiceConfig is the default chaos service configuration.
func DefaultServiceConfig() ServiceConfig {
	return ServiceConfig{Base: config.DefaultBase(), Name: "chaos-service", Services: Services, Concurrency: 32,
		Latency: 100 * time.Millisecond, Sync: true}
}

// Validate checks every key.
func (c *ServiceConfig) Validate() error {
	errs := []error{c.Base.Validate()}
	if c.Name == "" {
		errs = append(errs, &config.FieldError{Key: "name", Value: c.Name, Problem: "must not be empty"})
	}
	if c.Ledger == "" {
		errs = append(errs, &config.FieldError{Key: "ledger", Value: c.Ledger, Problem: "must name the ledger file shared by the instances"})
	}
	if len(c.Services) == 0 {
		errs = append(errs, &config.FieldError{Key: "services", Value: "", Problem: "name at least one service"})
	}
	for _, s := range c.Services {
		if s == "" || strings.ContainsAny(s, "/: ") {
			errs = append(errs, &config.FieldError{Key: "services", Value: strings.Join(c.Services, ","), Problem: "service names must be non-empty, without '/', ':' or spaces"})
			break
		}
	}
	if c.Concurrency < 1 {
		errs = append(errs, &config.FieldError{Key: "concurrency", Value: c.Concurrency, Problem: "must be at least 1"})
	}
	if c.Latency < 0 {
		errs = append(errs, &config.FieldError{Key: "latency", Value: c.Latency.String(), Problem: "must not be negative"})
	}
	return errors.Join(errs...)
}

// RunService runs one chaos service instance until ctx ends.
func RunService(ctx context.Context, cfg ServiceConfig, log zerolog.Logger) error {
	ledger, err := OpenLedger(cfg.Ledger, cfg.Sync)
	if err != nil {
		return err
	}
	defer ledger.Close()
	marks := filepath.Join(filepath.Dir(cfg.Ledger), "marks")
	if err := os.MkdirAll(marks, 0o755); err != nil {
		return err
	}
	svc := &Service{Ledger: ledger, Instance: cfg.Name, Latency: cfg.Latency, Marks: marks}
	if cfg.Calls != "" {
		f, err := os.OpenFile(cfg.Calls, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return fmt.Errorf("%w: calls: %v", config.ErrInvalid, err)
		}
		defer f.Close()
		svc.Calls = f
	}
	b, err := app.Connect(ctx, cfg.Pulsar, log)
	if err != nil {
		return err
	}
	defer b.Close()
	var fns []func(context.Context) error
	for _, s := range cfg.Services {
		w, err := worker.New(b, worker.Options{Service: s, Name: cfg.Name + "-" + s, Concurrency: cfg.Concurrency}, log)
		if err != nil {
			return err
		}
		w.Handle(worker.AnyCommand, svc.Handle)
		fns = append(fns, w.Run)
	}
	log.Info().Strs("services", cfg.Services).Msg("chaos service running")
	// A queue that cannot be served (the broker is away) is served again
	// after a backoff, as cmd/worker does.
	done := make(chan struct{}, len(fns))
	for _, f := range fns {
		go func() {
			defer func() { done <- struct{}{} }()
			backoff := time.Second
			for ctx.Err() == nil {
				t0 := time.Now()
				err := f(ctx)
				if ctx.Err() != nil {
					return
				}
				if time.Since(t0) > time.Minute {
					backoff = time.Second
				}
				log.Warn().Err(err).Dur("restart_in", backoff).Msg("worker stopped; starting it again")
				select {
				case <-ctx.Done():
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, 10*time.Second)
			}
		}()
	}
	for range fns {
		<-done
	}
	return nil
}
