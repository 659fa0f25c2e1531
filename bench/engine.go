package bench

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"time"
)

// Engine is the engine under test, as separate processes of its real
// binaries: cmd/orchestrator (with its timer relay, start relay and admin
// API) and, in the remote decider mode, cmd/decider.
type Engine struct {
	Config       EngineConfig
	Orchestrator *Proc
	Decider      *Proc // nil in the in-process mode
	// API is the base URL of the orchestrator's admin API.
	API string

	bins   map[string]string
	logDir string
}

// StartEngine starts the engine's processes and waits until the
// orchestrator is ready (its /readyz answers 200: subscribed, its
// partitions loaded, the status table caught up).
func StartEngine(ctx context.Context, bins map[string]string, cfg EngineConfig, logDir string) (*Engine, error) {
	if cfg.AdminListen == "" {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		cfg.AdminListen = "127.0.0.1:" + strconv.Itoa(port)
	}
	e := &Engine{Config: cfg, API: "http://" + cfg.AdminListen, bins: bins, logDir: logDir}
	if err := e.start(ctx); err != nil {
		e.Kill()
		return nil, err
	}
	return e, nil
}

func (e *Engine) start(ctx context.Context) error {
	stamp := time.Now().Format("150405.000")
	if NeedsDecider(e.Config.DeciderMode) {
		d, err := StartProc("decider", e.bins["decider"], nil, DeciderEnv(e.Config), filepath.Join(e.logDir, e.Config.Name+"-decider-"+stamp+".log"))
		if err != nil {
			return err
		}
		e.Decider = d
	}
	o, err := StartProc("orchestrator", e.bins["orchestrator"], nil, OrchestratorEnv(e.Config), filepath.Join(e.logDir, e.Config.Name+"-orchestrator-"+stamp+".log"))
	if err != nil {
		return err
	}
	e.Orchestrator = o
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return WaitHTTP(rctx, e.API+ReadyPath, e.Alive)
}

// Alive returns an error when one of the engine's processes has exited.
func (e *Engine) Alive() error {
	var errs []error
	for _, p := range []*Proc{e.Orchestrator, e.Decider} {
		if p != nil {
			errs = append(errs, p.Alive())
		}
	}
	return errors.Join(errs...)
}

// PIDs are the engine's processes by name, for Take.
func (e *Engine) PIDs() map[string]int {
	m := map[string]int{}
	if e.Orchestrator != nil {
		m["orchestrator"] = e.Orchestrator.PID
	}
	if e.Decider != nil {
		m["decider"] = e.Decider.PID
	}
	return m
}

// Stop stops the engine's processes (SIGTERM, the orchestrator first).
func (e *Engine) Stop() error {
	var errs []error
	for _, p := range []*Proc{e.Orchestrator, e.Decider} {
		if p != nil {
			errs = append(errs, p.Stop(30*time.Second))
		}
	}
	return errors.Join(errs...)
}

// Kill ends the engine's processes with SIGKILL.
func (e *Engine) Kill() {
	for _, p := range []*Proc{e.Orchestrator, e.Decider} {
		if p != nil {
			p.Kill()
		}
	}
}

// Restart stops the orchestrator (SIGTERM, or SIGKILL when kill) and
// starts a new one with the same configuration; the decider keeps
// running. It returns when the new process was started, not when it is
// ready (the caller measures that).
func (e *Engine) Restart(kill bool) error {
	if kill {
		e.Orchestrator.Kill()
	} else if err := e.Orchestrator.Stop(time.Minute); err != nil {
		return err
	}
	o, err := StartProc("orchestrator", e.bins["orchestrator"], nil, OrchestratorEnv(e.Config),
		filepath.Join(e.logDir, fmt.Sprintf("%s-orchestrator-restarted-%s.log", e.Config.Name, time.Now().Format("150405.000"))))
	if err != nil {
		return err
	}
	e.Orchestrator = o
	return nil
}
