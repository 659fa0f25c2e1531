// Package admin is pulsaga's operations surface: a JSON HTTP API served by
// the orchestrator (processes, dead letters, definitions), the web
// dashboard embedded in the binary, Prometheus metrics and health checks,
// plus the HTTP client the pulsaga CLI uses (see docs/api.md).
//
// Reads come from the compacted status table, so any instance answers
// them; actions go through the events topic (engine.Client), so they obey
// one decision at a time per process and are recorded in the process's
// event stream with who did them and why.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/schedule"
	"github.com/pulsaga/pulsaga/trigger"
)

// Actions sends what changes processes (engine.Client does).
type Actions interface {
	Start(ctx context.Context, req protocol.StartRequest) error
	// StartMany sends many starts at once (an *engine.StartErrors says
	// which were not sent).
	StartMany(ctx context.Context, reqs []protocol.StartRequest) error
	SignalAs(ctx context.Context, pid, name, signalID string, data json.RawMessage, actor, reason string) error
	Admin(ctx context.Context, req protocol.AdminRequest, requestID string) error
}

// ProcessReader reads exactly one process's records and state
// (default: engine.ReadProcess).
type ProcessReader func(ctx context.Context, row engine.StatusRecord) (*engine.ProcessView, error)

// Options configure a Server.
type Options struct {
	// Bus is where the engine's topics live.
	Bus bus.Bus
	// Topics are the engine's topics.
	Topics protocol.Topics
	// Registry holds the definitions.
	Registry *engine.Registry
	// Status is the status table (default: a new one on Topics.Status).
	Status *engine.StatusTable
	// Actions sends actions (default: an engine.Client on Bus).
	Actions Actions
	// ReadProcess reads one process (default engine.ReadProcess).
	ReadProcess ProcessReader
	// Tokens authenticate callers; none means no authentication (every
	// caller is the operator "anonymous"): use it on loopback only.
	Tokens []Token
	// Listen is the address the server listens on: without tokens it
	// answers only to requests whose Host names it, localhost or a
	// loopback address (see security.go).
	Listen string
	// AllowedHosts are more Host names a server without tokens answers to
	// (a name of this machine in /etc/hosts, say).
	AllowedHosts []string
	// AllowedOrigins are more origins (scheme://host:port) whose pages may
	// call the API from a browser, besides the server's own.
	AllowedOrigins []string
	// StuckAfter is the default "no progress for longer than" threshold of
	// the stuck filter (default 15m).
	StuckAfter time.Duration
	// Ready, when set, is one more readiness check of /readyz, named
	// "orchestrator": on an instance that runs an orchestrator, its Ready
	// (subscribed, and every partition it owns loaded). /readyz always
	// checks that the broker answers and that the status table is caught
	// up with the status topic.
	Ready func(ctx context.Context) error
	// Metrics, when set, is served on /metrics (with the dead-letter
	// counts added).
	Metrics *Metrics
	// Clock returns the current time (default time.Now).
	Clock func() time.Time
	// Schedules reads and changes schedules (default: a table and a client
	// on Bus).
	Schedules *Schedules
	// Triggers, when set, returns the triggers this instance runs with
	// their counts (trigger.Manager.Triggers).
	Triggers func() []trigger.Info
	// Pprof serves Go's profiler under /debug/pprof/ to operators.
	Pprof bool
}

// Server serves the API, the dashboard, /metrics, /healthz and /readyz.
type Server struct {
	opts   Options
	log    zerolog.Logger
	auth   *authenticator
	status *engine.StatusTable
	acts   Actions
	dlq    *dlqStore
	bulk   *bulkStore
	idem   *idempotency
	mux    *http.ServeMux
	owned  []func() error
	sched  Schedules

	rmu    sync.Mutex
	flight *refreshFlight // the status table read under way, if any
}

// ErrBadOptions: the options cannot make a server.
var ErrBadOptions = errors.New("admin: bad options")

// New makes a server.
func New(opts Options, log zerolog.Logger) (*Server, error) {
	if opts.Bus == nil || opts.Registry == nil {
		return nil, fmt.Errorf("%w: Bus and Registry are required", ErrBadOptions)
	}
	opts.Topics = opts.Topics.WithDefaults()
	if opts.StuckAfter <= 0 {
		opts.StuckAfter = 15 * time.Minute
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	s := &Server{opts: opts, log: log.With().Str("component", "admin").Logger(), auth: newAuthenticator(opts.Tokens), idem: newIdempotency(1024)}
	s.status = opts.Status
	if s.status == nil {
		s.status = engine.NewStatusTable(opts.Bus, opts.Topics.Status)
		s.owned = append(s.owned, s.status.Close)
	}
	s.acts = opts.Actions
	if s.acts == nil {
		c := engine.NewClient(opts.Bus, opts.Topics)
		s.acts = c
		s.owned = append(s.owned, c.Close)
	}
	if opts.Schedules != nil {
		s.sched = *opts.Schedules
	} else {
		s.sched = Schedules{Table: schedule.NewTable(opts.Bus), Client: schedule.NewClient(opts.Bus)}
		s.owned = append(s.owned, s.sched.Table.Close, s.sched.Client.Close)
	}
	s.dlq = newDLQStore(opts.Bus)
	s.owned = append(s.owned, s.dlq.Close)
	s.bulk = newBulkStore(opts.Bus)
	s.owned = append(s.owned, s.bulk.Close)
	if s.opts.ReadProcess == nil {
		s.opts.ReadProcess = func(ctx context.Context, row engine.StatusRecord) (*engine.ProcessView, error) {
			return engine.ReadProcess(ctx, opts.Bus, opts.Topics, opts.Registry, row)
		}
	}
	if opts.Metrics != nil {
		if err := opts.Metrics.reg.Register(&dlqCollector{list: s.DeadLetterCounts, every: 15 * time.Second}); err != nil {
			return nil, fmt.Errorf("%w: metrics: %v", ErrBadOptions, err)
		}
	}
	s.routes()
	return s, nil
}

// Handler is the whole HTTP surface, with security headers and an access
// log (debug level).
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		hd := w.Header()
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		if err := s.crossSite(r); err != nil {
			s.fail(sw, r, err)
		} else {
			s.mux.ServeHTTP(sw, r)
		}
		s.log.Debug().Str("method", r.Method).Str("path", r.URL.Path).Int("status", sw.code).Dur("took", time.Since(start)).Msg("admin request")
	})
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) { w.code = code; w.ResponseWriter.WriteHeader(code) }

// Close releases what the server opened itself.
func (s *Server) Close() error {
	var errs []error
	for _, f := range s.owned {
		errs = append(errs, f())
	}
	return errors.Join(errs...)
}

func (s *Server) routes() {
	m := http.NewServeMux()
	rd, op := RoleRead, RoleOperator
	m.HandleFunc("GET /api/v1/processes", s.require(rd, s.listProcesses))
	m.HandleFunc("POST /api/v1/processes", s.require(op, s.idempotent(s.startProcess)))
	m.HandleFunc("POST /api/v1/processes/batch", s.require(op, s.idempotent(s.startBatch)))
	m.HandleFunc("GET /api/v1/processes/{id}", s.require(rd, s.getProcess))
	for _, a := range []string{"retry", "skip", "cancel", "terminate"} {
		m.HandleFunc("POST /api/v1/processes/{id}/"+a, s.require(op, s.idempotent(s.action(a))))
	}
	m.HandleFunc("POST /api/v1/processes/{id}/signals", s.require(op, s.idempotent(s.signal)))
	m.HandleFunc("GET /api/v1/dlq", s.require(rd, s.listDLQ))
	m.HandleFunc("GET /api/v1/dlq/{topic}", s.require(rd, s.inspectDLQ))
	m.HandleFunc("POST /api/v1/dlq/{topic}/replay", s.require(op, s.idempotent(s.replayDLQ)))
	m.HandleFunc("POST /api/v1/dlq/{topic}/purge", s.require(op, s.idempotent(s.purgeDLQ)))
	m.HandleFunc("GET /api/v1/definitions", s.require(rd, s.listDefinitions))
	m.HandleFunc("POST /api/v1/definitions", s.require(op, s.registerDefinition))
	m.HandleFunc("POST /api/v1/definitions/validate", s.require(rd, s.validateDefinition))
	m.HandleFunc("GET /api/v1/definitions/{name}", s.require(rd, s.getDefinition))
	s.scheduleRoutes(m)
	// Bulk actions (bulk.go) and the overview (overview.go).
	m.HandleFunc("POST /api/v1/bulk", s.require(op, s.idempotent(s.createBulk)))
	m.HandleFunc("GET /api/v1/bulk", s.require(rd, s.listBulk))
	m.HandleFunc("GET /api/v1/bulk/{id}", s.require(rd, s.getBulk))
	m.HandleFunc("POST /api/v1/bulk/{id}/cancel", s.require(op, s.idempotent(s.cancelBulk)))
	m.HandleFunc("GET /api/v1/overview", s.require(rd, s.overview))
	m.HandleFunc("GET /api/v1/whoami", s.require(rd, func(w http.ResponseWriter, r *http.Request) {
		p := PrincipalFrom(r.Context())
		writeJSON(w, http.StatusOK, map[string]string{"name": p.Name, "role": string(p.Role)})
	}))
	m.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, fmt.Errorf("%w: no API route %s %s (see docs/api.md)", ErrNotFound, r.Method, r.URL.Path))
	})
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	m.HandleFunc("GET /readyz", s.readyz)
	if s.opts.Metrics != nil {
		m.Handle("GET /metrics", s.opts.Metrics.Handler())
	}
	if s.opts.Pprof {
		// Operators only: a profile shows the process's inside and a CPU
		// profile or trace costs while it runs.
		m.HandleFunc("GET /debug/pprof/", s.require(op, pprof.Index))
		m.HandleFunc("GET /debug/pprof/cmdline", s.require(op, pprof.Cmdline))
		m.HandleFunc("GET /debug/pprof/profile", s.require(op, pprof.Profile))
		m.HandleFunc("GET /debug/pprof/symbol", s.require(op, pprof.Symbol))
		m.HandleFunc("GET /debug/pprof/trace", s.require(op, pprof.Trace))
	}
	ui, _ := fs.Sub(uiFiles, "ui")
	m.Handle("GET /ui/", http.StripPrefix("/ui/", http.FileServerFS(ui)))
	m.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ui/", http.StatusFound)
	})
	s.mux = m
}

// Readiness is the answer of /readyz.
type Readiness struct {
	// Status is "ready" or "not ready".
	Status string `json:"status"`
	// Checks are "ok" or what is wrong, by name: "bus" (the broker
	// answers), "status_table" (caught up with the status topic) and, on an
	// instance running an orchestrator, "orchestrator".
	Checks map[string]string `json:"checks"`
}

// readyTimeout bounds each readiness check.
const readyTimeout = 5 * time.Second

// Ready runs the readiness checks (all of them, at once).
func (s *Server) Ready(ctx context.Context) Readiness {
	checks := map[string]func(context.Context) error{
		"bus": func(ctx context.Context) error {
			if bl, ok := s.opts.Bus.(bus.Backlogs); ok {
				_, err := bl.Topics(ctx)
				return err
			}
			return nil
		},
		"status_table": s.refresh,
	}
	if s.opts.Ready != nil {
		checks["orchestrator"] = s.opts.Ready
	}
	out := Readiness{Status: "ready", Checks: map[string]string{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, check := range checks {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, readyTimeout)
			defer cancel()
			res := "ok"
			if err := check(cctx); err != nil {
				res = err.Error()
			}
			mu.Lock()
			defer mu.Unlock()
			out.Checks[name] = res
			if res != "ok" {
				out.Status = "not ready"
			}
		})
	}
	wg.Wait()
	return out
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	res := s.Ready(r.Context())
	code := http.StatusOK
	if res.Status != "ready" {
		code = http.StatusServiceUnavailable
		s.log.Warn().Interface("checks", res.Checks).Msg("not ready")
	}
	writeJSON(w, code, res)
}

// refreshTimeout bounds how long a request waits for the status table to
// catch up: with the broker down the API answers 503 with the cause
// within it, not when the client gives up.
const refreshTimeout = 5 * time.Second

// refresh brings the status table up to date with what was written before
// the request came. Requests share refreshes: one runs at a time; a
// request joins the one running if it began after the request came, else
// waits for it to end and joins the next.
func (s *Server) refresh(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, refreshTimeout)
	defer cancel()
	came := time.Now()
	for {
		s.rmu.Lock()
		f := s.flight
		if f == nil {
			f = &refreshFlight{began: time.Now(), done: make(chan struct{})}
			s.flight = f
			go s.runFlight(f)
		}
		s.rmu.Unlock()
		select {
		case <-f.done:
			if f.began.Before(came) {
				continue // it began before this request: read again
			}
			if f.err != nil {
				return fmt.Errorf("%w: the server cannot read the status table from the Pulsar broker: %v", ErrUnavailable, f.err)
			}
			return nil
		case <-ctx.Done():
			return fmt.Errorf("%w: the Pulsar broker did not answer within %s (reading the status table); is it up? (/readyz says more)", ErrUnavailable, refreshTimeout)
		}
	}
}

type refreshFlight struct {
	began time.Time
	done  chan struct{}
	err   error
}

func (s *Server) runFlight(f *refreshFlight) {
	ctx, cancel := context.WithTimeout(context.Background(), refreshTimeout)
	f.err = s.status.Refresh(ctx)
	cancel()
	s.rmu.Lock()
	s.flight = nil
	s.rmu.Unlock()
	close(f.done)
}
