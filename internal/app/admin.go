package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/admin"
	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/config"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/trigger"
)

// adminParts are the orchestrator binary's operations surface: the
// metrics it observes with and, when admin_listen is set, the HTTP server
// of the admin API, dashboard, /metrics, /healthz and /readyz.
type adminParts struct {
	metrics *admin.Metrics
	status  *engine.StatusTable
	srv     *admin.Server
	ln      net.Listener
	log     zerolog.Logger

	mu       sync.Mutex
	orchs    []readier
	triggers func() []trigger.Info
}

// showTriggers makes the triggers of this instance (with their counts)
// part of GET /api/v1/triggers.
func (a *adminParts) showTriggers(f func() []trigger.Info) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.triggers = f
}

func (a *adminParts) triggerInfo() []trigger.Info {
	a.mu.Lock()
	f := a.triggers
	a.mu.Unlock()
	if f == nil {
		return nil
	}
	return f()
}

// readier is what /readyz asks an orchestrator (engine.Orchestrator.Ready).
type readier interface{ Ready() error }

// watch makes o's readiness part of /readyz. Until an orchestrator is
// watched the instance is not ready.
func (a *adminParts) watch(o readier) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.orchs = append(a.orchs, o)
}

// orchestratorsReady is the "orchestrator" check of /readyz.
func (a *adminParts) orchestratorsReady(context.Context) error {
	a.mu.Lock()
	orchs := slices.Clone(a.orchs)
	a.mu.Unlock()
	if len(orchs) == 0 {
		return fmt.Errorf("%w: no orchestrator started yet", engine.ErrNotReady)
	}
	var errs []error
	for _, o := range orchs {
		errs = append(errs, o.Ready())
	}
	return errors.Join(errs...)
}

// newAdmin prepares the admin server of an orchestrator; its listener is
// open when it returns, so a taken port fails the start at once.
func newAdmin(cfg config.Orchestrator, b bus.Bus, topics protocol.Topics, reg *engine.Registry, log zerolog.Logger) (*adminParts, error) {
	a := &adminParts{status: engine.NewStatusTable(b, topics.Status), log: log}
	a.metrics = admin.NewMetrics(a.status, cfg.Name)
	if cfg.AdminListen == "" {
		return a, nil
	}
	var tokens []admin.Token
	for _, s := range cfg.AdminTokens {
		t, err := admin.ParseToken(s)
		if err != nil {
			a.Close()
			return nil, fmt.Errorf("%w: admin_tokens: %v", config.ErrInvalid, err)
		}
		tokens = append(tokens, t)
	}
	if cfg.AdminTokensFile != "" {
		ts, err := admin.ReadTokens(cfg.AdminTokensFile)
		if err != nil {
			a.Close()
			return nil, fmt.Errorf("%w: admin_tokens_file: %v", config.ErrInvalid, err)
		}
		tokens = append(tokens, ts...)
	}
	if len(tokens) == 0 && !config.IsLoopback(cfg.AdminListen) {
		a.Close()
		return nil, fmt.Errorf("%w: the admin API at %s would take any caller as an operator: give it tokens (admin_tokens_file) or listen on a loopback address such as 127.0.0.1:8088", config.ErrInvalid, cfg.AdminListen)
	}
	var err error
	if a.ln, err = net.Listen("tcp", cfg.AdminListen); err != nil {
		a.Close()
		return nil, fmt.Errorf("admin_listen %s: %w", cfg.AdminListen, err)
	}
	srv, err := admin.New(admin.Options{
		Bus: b, Topics: topics, Registry: reg, Status: a.status, Tokens: tokens, StuckAfter: cfg.AdminStuckAfter, Metrics: a.metrics,
		Ready: a.orchestratorsReady, Triggers: a.triggerInfo, Pprof: cfg.DebugPprof,
		Listen: a.ln.Addr().String(), AllowedHosts: cfg.AdminAllowedHosts, AllowedOrigins: cfg.AdminAllowedOrigins,
	}, log)
	if err != nil {
		a.Close()
		return nil, err
	}
	a.srv = srv
	if len(tokens) == 0 {
		log.Warn().Str("listen", a.ln.Addr().String()).Msg("admin API without tokens: every local caller is an operator")
	}
	return a, nil
}

// run serves until ctx ends, then shuts down gracefully.
func (a *adminParts) run(ctx context.Context) error {
	if a.srv == nil {
		<-ctx.Done()
		return nil
	}
	hs := &http.Server{Handler: a.srv.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, WriteTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute}
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go a.watchDeadLetters(wctx, dlqWatchEvery)
	a.log.Info().Str("listen", a.ln.Addr().String()).Msg("admin API, dashboard and metrics serving")
	return serveUntil(ctx, hs, a.ln, "admin server")
}

// serveUntil serves hs on ln until ctx ends, then shuts it down gracefully
// (5 s at most); a server that stops on its own is an error named what.
func serveUntil(ctx context.Context, hs *http.Server, ln net.Listener, what string) error {
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("%s: %w", what, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// dlqWatchEvery is how often the admin server lists the dead-letter topics.
const dlqWatchEvery = 30 * time.Second

// watchDeadLetters lists the dead-letter topics now and then until ctx
// ends: listing puts the admin API's subscription on a new dead-letter
// topic, so its messages are kept until an operator replays or purges them
// instead of only for the namespace's retention.
func (a *adminParts) watchDeadLetters(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		lctx, cancel := context.WithTimeout(ctx, every)
		if _, err := a.srv.DeadLetterCounts(lctx); err != nil && ctx.Err() == nil {
			a.log.Warn().Err(err).Msg("cannot list the dead-letter topics")
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Addr is where the server listens ("" when off).
func (a *adminParts) Addr() string {
	if a.ln == nil {
		return ""
	}
	return a.ln.Addr().String()
}

// Close releases the server's readers and producers.
func (a *adminParts) Close() {
	if a.srv != nil {
		_ = a.srv.Close()
	}
	if a.ln != nil {
		_ = a.ln.Close()
	}
	_ = a.status.Close()
}
