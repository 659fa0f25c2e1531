package config

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// Orchestrator configures cmd/orchestrator.
type Orchestrator struct {
	Base `mapstructure:",squash"`
	// Name identifies the instance; Failover hands partitions out by name,
	// so give each instance its own stable name.
	Name string `mapstructure:"name" usage:"instance name (unique and stable)"`
	// Partitions of the events, history and snapshots topics (fixed once
	// the topics exist).
	Partitions int `mapstructure:"partitions" usage:"partitions of the process-keyed topics"`
	// Definitions is a YAML file or a directory of them registered at start.
	Definitions string `mapstructure:"definitions" usage:"definition file or directory to register at start"`
	// BatchSize bounds the events handled in one transaction.
	BatchSize int `mapstructure:"batch_size" usage:"events per transaction at most"`
	// JobBatchMessages bounds the commands sharing one broker entry on a
	// job queue. A worker is handed a whole entry at once, and its crash
	// brings back the entry's finished commands too: keep it at most the
	// workers' concurrency (default 8, the SDKs' default). 1 sends each
	// command on its own: the best spread, and on Pulsar 4.0.x a third of
	// the throughput (its transaction buffer stores a topic's entries one
	// at a time).
	JobBatchMessages int `mapstructure:"job_batch_messages" usage:"commands per broker entry on a job queue at most (at most the workers' concurrency)"`
	// BatchSpacing: while a batch is on its way, the next one is launched
	// this long after it at the earliest, unless the inputs waiting fill a
	// batch (default 25ms; 0: as soon as a slot is free). Fewer, larger
	// transactions at partial load: each costs the broker a fixed amount
	// (coordinator log records, commit markers). A batch with no other on
	// its way never waits.
	BatchSpacing time.Duration `mapstructure:"batch_spacing" usage:"launch a batch this long after the one on its way at the earliest (0: at once)"`
	// AnswerWait (decider remote): a batch that issues decision tasks
	// waits up to this long for their answers before it launches, so that
	// a decision's events and its answer are recorded in one transaction
	// and one history entry (default 100ms; 0: never wait, two flights per
	// decision). The rest of the batch launches at once; a process whose
	// answer is later than this gets it applied by a later batch.
	AnswerWait time.Duration `mapstructure:"answer_wait" usage:"decider remote: a batch waits this long at most for the answers to the tasks it issued (0: launch at once)"`
	// OwnershipPoll is how often the orchestrator asks the broker which
	// events partitions it owns (default 5s). It also asks at once whenever
	// the broker tells its consumer the partition's active consumer changed,
	// so this is the fallback for a notice that never came. Each question is
	// one topic-stats request per partition, and the broker's admin API
	// spends milliseconds of CPU on each: polling every 500ms cost the
	// broker ~12 % of a core per idle orchestrator (docs/benchmarks.md,
	// session 13).
	OwnershipPoll time.Duration `mapstructure:"ownership_poll" usage:"ask the broker which partitions this instance owns this often (it also asks when told of a change)"`
	// Decider is where decisions are made: "inline" (default) inside the
	// orchestrator's batch, or "remote" by cmd/decider instances over the
	// decisions topic (isolation, costly expressions). decision_timeout and
	// max_outstanding apply to the remote mode only.
	Decider string `mapstructure:"decider" usage:"decider mode: inline or remote"`
	// DecisionTimeout re-issues a remote decision nobody answered.
	DecisionTimeout time.Duration `mapstructure:"decision_timeout" usage:"re-issue a decision task after this long"`
	// MaxOutstanding bounds the decision tasks this instance has in flight
	// (issued, not yet answered). A process that needs a decision when every
	// slot is taken waits in a FIFO queue in the orchestrator, gathering its
	// new events, and gets one task with all of them when a slot frees; its
	// decision timeout counts from then. Keep it below what the deciders
	// answer within decision_timeout (about 15–40 decisions per second per
	// decider on a busy two-core machine), or tasks wait in the deciders'
	// queue until they time out and are issued again. Default 512.
	MaxOutstanding int `mapstructure:"max_outstanding" usage:"decision tasks in flight at most (more wait in the orchestrator)"`
	// Retention keeps finished processes (image and status) this long.
	Retention time.Duration `mapstructure:"retention" usage:"how long finished processes are kept"`
	// HistoryRetention keeps event streams this long (-1s: forever).
	HistoryRetention time.Duration `mapstructure:"history_retention" usage:"how long event streams are kept"`
	// TimerRelay runs a timer relay in the orchestrator process.
	TimerRelay bool `mapstructure:"timer_relay" usage:"run a timer relay in this process"`
	// AdminListen is the address of the admin API, the dashboard, /metrics,
	// /healthz and /readyz, such as 127.0.0.1:8088 (default empty: none, so
	// several orchestrators can share a host without choosing ports).
	AdminListen string `mapstructure:"admin_listen" usage:"address of the admin API, dashboard and metrics (empty: off)"`
	// AdminTokens are the API's bearer tokens, each name:role:secret with
	// role read or operator (PULSAGA_ADMIN_TOKENS: comma-separated). Without
	// tokens the API needs none, so it must then listen on a loopback
	// address. Prefer AdminTokensFile: a flag shows in ps.
	AdminTokens []string `mapstructure:"admin_tokens" usage:"admin API bearer tokens, name:role:secret (prefer admin_tokens_file: flags show in ps)"`
	// AdminTokensFile is a file of tokens, one name:role:secret per line
	// (# comments and blank lines skipped), read at start; keep it mode 0600.
	AdminTokensFile string `mapstructure:"admin_tokens_file" usage:"file of admin API tokens, one name:role:secret per line"`
	// AdminAllowedHosts are more Host names a tokenless admin API answers
	// to, besides loopback addresses, localhost and its listen address.
	AdminAllowedHosts []string `mapstructure:"admin_allowed_hosts" usage:"more Host names a tokenless admin API answers to"`
	// AdminAllowedOrigins are more origins (scheme://host:port) whose pages
	// may call the admin API from a browser, besides its own.
	AdminAllowedOrigins []string `mapstructure:"admin_allowed_origins" usage:"more browser origins allowed to call the admin API"`
	// AdminStuckAfter is the default threshold of the "stuck" filter: a live
	// process without progress for longer is stuck.
	AdminStuckAfter time.Duration `mapstructure:"admin_stuck_after" usage:"a live process without progress for longer is stuck"`
	// GCPercent is the Go garbage collector's target (runtime/debug
	// SetGCPercent): the heap may grow this many percent over the live heap
	// before a collection (default 200, Go's own 100). At 1,000 sagas in
	// flight the orchestrator spent a sixth of its CPU collecting: 200 cut
	// its CPU per saga by 14 % and raised sagas/s by 7 %, for a 60 % larger
	// peak resident set (250 → 405 MB), and with 100,000 waiting processes
	// 520 MB of RSS against 375 MB (docs/benchmarks.md, session 9). The
	// environment's GOGC, when set, wins; GOMEMLIMIT caps the heap whatever
	// this is (Go's soft memory limit).
	GCPercent int `mapstructure:"gc_percent" usage:"Go GC target in percent of the live heap (the GOGC environment variable wins when set)"`
	// DebugPprof serves Go's profiler (/debug/pprof/: CPU, heap, goroutines,
	// execution trace) on the admin listener, to operators only (the API's
	// operator tokens; none needed on a tokenless loopback listener). Off by
	// default: a CPU profile or trace costs while it runs. Needs admin_listen.
	DebugPprof bool `mapstructure:"debug_pprof" usage:"serve /debug/pprof on the admin listener (operators only)"`
}

// DefaultOrchestrator is the default orchestrator configuration.
func DefaultOrchestrator() Orchestrator {
	host, _ := os.Hostname()
	return Orchestrator{
		Base: DefaultBase(), Name: "orchestrator-" + host, Partitions: 4, BatchSize: 256, JobBatchMessages: 8, BatchSpacing: 25 * time.Millisecond, AnswerWait: 100 * time.Millisecond, OwnershipPoll: 5 * time.Second, Decider: "inline",
		DecisionTimeout: 30 * time.Second, MaxOutstanding: 512, Retention: 24 * time.Hour, HistoryRetention: 7 * 24 * time.Hour, TimerRelay: true,
		AdminStuckAfter: 15 * time.Minute, GCPercent: defaultGCPercent,
	}
}

// Validate checks every key.
func (c *Orchestrator) Validate() error {
	errs := []error{c.Base.Validate()}
	if c.Name == "" {
		errs = append(errs, &FieldError{Key: "name", Value: c.Name, Problem: "must not be empty"})
	}
	if c.Partitions < 1 || c.Partitions > 1024 {
		errs = append(errs, &FieldError{Key: "partitions", Value: c.Partitions, Problem: "must be between 1 and 1024"})
	}
	if c.BatchSize < 1 {
		errs = append(errs, &FieldError{Key: "batch_size", Value: c.BatchSize, Problem: "must be at least 1"})
	}
	if c.JobBatchMessages < 1 || c.JobBatchMessages > 1000 {
		errs = append(errs, &FieldError{Key: "job_batch_messages", Value: c.JobBatchMessages, Problem: "must be between 1 and 1000 (at most the workers' concurrency)"})
	}
	if c.BatchSpacing < 0 || c.BatchSpacing > time.Second {
		errs = append(errs, &FieldError{Key: "batch_spacing", Value: c.BatchSpacing.String(), Problem: "must be between 0 and 1s (a batch may wait this long)"})
	}
	if c.AnswerWait < 0 || c.AnswerWait > time.Second {
		errs = append(errs, &FieldError{Key: "answer_wait", Value: c.AnswerWait.String(), Problem: "must be between 0 and 1s (a batch may wait this long)"})
	}
	if c.OwnershipPoll < 100*time.Millisecond || c.OwnershipPoll > time.Minute {
		errs = append(errs, &FieldError{Key: "ownership_poll", Value: c.OwnershipPoll.String(), Problem: "must be between 100ms and 1m"})
	}
	if err := validGCPercent(c.GCPercent); err != nil {
		errs = append(errs, err)
	}
	if c.Decider != "inline" && c.Decider != "remote" {
		errs = append(errs, &FieldError{Key: "decider", Value: c.Decider, Problem: "must be inline or remote"})
	}
	if c.MaxOutstanding < 1 {
		errs = append(errs, &FieldError{Key: "max_outstanding", Value: c.MaxOutstanding, Problem: "must be at least 1"})
	}
	if c.Definitions != "" {
		if _, err := os.Stat(c.Definitions); err != nil {
			errs = append(errs, &FieldError{Key: "definitions", Value: c.Definitions, Problem: "no such file or directory"})
		}
	}
	errs = append(errs, positive("decision_timeout", c.DecisionTimeout), positive("retention", c.Retention))
	if c.HistoryRetention == 0 || c.HistoryRetention < -time.Second {
		errs = append(errs, &FieldError{Key: "history_retention", Value: c.HistoryRetention.String(), Problem: "must be positive, or -1s for forever"})
	}
	errs = append(errs, positive("admin_stuck_after", c.AdminStuckAfter), c.validateAdmin())
	return errors.Join(errs...)
}

func (c *Orchestrator) validateAdmin() error {
	if c.AdminListen == "" {
		if c.DebugPprof {
			return &FieldError{Key: "debug_pprof", Value: "true", Problem: "needs admin_listen: the profiler is served on the admin listener"}
		}
		return nil
	}
	var errs []error
	if _, _, err := net.SplitHostPort(c.AdminListen); err != nil {
		return &FieldError{Key: "admin_listen", Value: c.AdminListen, Problem: "must be host:port, such as 127.0.0.1:8088 or :8088"}
	}
	names := map[string]bool{}
	for _, t := range c.AdminTokens {
		name, rest, _ := strings.Cut(t, ":")
		role, secret, ok := strings.Cut(rest, ":")
		shown := name + ":" + role + ":***"
		switch {
		case !ok || name == "":
			errs = append(errs, &FieldError{Key: "admin_tokens", Value: shown, Problem: "each token must be name:role:secret"})
		case role != "read" && role != "operator":
			errs = append(errs, &FieldError{Key: "admin_tokens", Value: shown, Problem: "role must be read or operator"})
		case len(secret) < 8:
			errs = append(errs, &FieldError{Key: "admin_tokens", Value: shown, Problem: "secret must have at least 8 characters"})
		case names[name]:
			errs = append(errs, &FieldError{Key: "admin_tokens", Value: shown, Problem: "token names must be unique (they are recorded as the actor)"})
		}
		names[name] = true
	}
	if c.AdminTokensFile != "" {
		if st, err := os.Stat(c.AdminTokensFile); err != nil {
			errs = append(errs, &FieldError{Key: "admin_tokens_file", Value: c.AdminTokensFile, Problem: "cannot be read: " + err.Error()})
		} else if st.Mode().Perm()&0o077 != 0 {
			errs = append(errs, &FieldError{Key: "admin_tokens_file", Value: c.AdminTokensFile, Problem: fmt.Sprintf("is readable by others (mode %v): chmod 600 it", st.Mode().Perm())})
		}
	}
	if len(c.AdminTokens) == 0 && c.AdminTokensFile == "" && !IsLoopback(c.AdminListen) {
		errs = append(errs, &FieldError{Key: "admin_tokens", Value: "", Problem: fmt.Sprintf("are required (or admin_tokens_file) when admin_listen (%s) is not a loopback address", c.AdminListen)})
	}
	return errors.Join(errs...)
}

// IsLoopback says whether a listen address (host:port) is on a loopback
// address or localhost only.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Decider configures cmd/decider.
type Decider struct {
	Base `mapstructure:",squash"`
	// Name identifies the instance.
	Name string `mapstructure:"name" usage:"instance name"`
	// Concurrency is the number of batches of decision tasks whose answers
	// are on their way at once.
	Concurrency int `mapstructure:"concurrency" usage:"batches of decisions whose answers are on their way at once"`
	// MaxBatch bounds the decision tasks of one batch: their answers are
	// sent together, each task acknowledged once its answer is sent (no
	// transaction: a task answered twice is applied once by the
	// orchestrator, which drops the stale answer).
	MaxBatch int `mapstructure:"max_batch" usage:"decision tasks per batch at most"`
	// BatchWait is how long a batch waits for one more task once it has
	// one: a batch grows while tasks keep arriving within batch_wait of each
	// other, up to max_batch. Longer batches mean fewer transactions and a
	// little more latency.
	BatchWait time.Duration `mapstructure:"batch_wait" usage:"how long a batch waits for one more decision task"`
	// StateCache is how many processes' last states the decider keeps
	// decoded: the state it answered with, taken instead of decoding the
	// process's next task when that task carries the same bytes (0: none).
	// Each costs a decoded state, a few kilobytes.
	StateCache int `mapstructure:"state_cache" usage:"processes whose last state is kept decoded for their next decision (0: none)"`
	// Partitions must match the orchestrator's.
	Partitions int `mapstructure:"partitions" usage:"partitions of the process-keyed topics (as the orchestrator)"`
	// MetricsListen is the address where the decider serves /metrics (its
	// counters: tasks decided and failed, dead-lettered, given back, states
	// taken from the cache; Go runtime and process metrics) and /healthz
	// (empty: off).
	MetricsListen string `mapstructure:"metrics_listen" usage:"address of /metrics and /healthz (empty: off)"`
	// GCPercent is the Go garbage collector's target, as the
	// orchestrator's gc_percent (default 200: at 1,000 sagas in flight a
	// decider's CPU per saga fell by 9 %; its heap is small). GOGC, when
	// set, wins.
	GCPercent int `mapstructure:"gc_percent" usage:"Go GC target in percent of the live heap (the GOGC environment variable wins when set)"`
}

// DefaultDecider is the default decider configuration.
func DefaultDecider() Decider {
	host, _ := os.Hostname()
	return Decider{Base: DefaultBase(), Name: "decider-" + host, Concurrency: 4, MaxBatch: 64, BatchWait: 3 * time.Millisecond, StateCache: 4096, Partitions: 4, GCPercent: defaultGCPercent}
}

// Validate checks every key.
func (c *Decider) Validate() error {
	errs := []error{c.Base.Validate()}
	if c.Name == "" {
		errs = append(errs, &FieldError{Key: "name", Value: c.Name, Problem: "must not be empty"})
	}
	if c.Concurrency < 1 {
		errs = append(errs, &FieldError{Key: "concurrency", Value: c.Concurrency, Problem: "must be at least 1"})
	}
	if c.MaxBatch < 1 || c.MaxBatch > 1000 {
		errs = append(errs, &FieldError{Key: "max_batch", Value: c.MaxBatch, Problem: "must be between 1 and 1000"})
	}
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			errs = append(errs, &FieldError{Key: "metrics_listen", Value: c.MetricsListen, Problem: "must be host:port (e.g. 127.0.0.1:9091) or empty"})
		}
	}
	if c.StateCache < 0 || c.StateCache > 1_000_000 {
		errs = append(errs, &FieldError{Key: "state_cache", Value: c.StateCache, Problem: "must be between 0 (none) and 1000000"})
	}
	if c.BatchWait <= 0 || c.BatchWait > time.Second {
		errs = append(errs, &FieldError{Key: "batch_wait", Value: c.BatchWait.String(), Problem: "must be positive and at most 1s (every decision may wait this long)"})
	}
	if err := validGCPercent(c.GCPercent); err != nil {
		errs = append(errs, err)
	}
	if c.Partitions < 1 || c.Partitions > 1024 {
		errs = append(errs, &FieldError{Key: "partitions", Value: c.Partitions, Problem: "must be between 1 and 1024 (as the orchestrator's)"})
	}
	return errors.Join(errs...)
}

// Worker configures cmd/worker.
type Worker struct {
	Base `mapstructure:",squash"`
	// Name identifies the instance.
	Name string `mapstructure:"name" usage:"instance name"`
	// Mode is demo (the trip services) or bridge (commands to HTTP or exec).
	Mode string `mapstructure:"mode" usage:"demo or bridge"`
	// Services to serve (demo: any of payments, flights, hotels,
	// notifications; bridge: exactly one).
	Services []string `mapstructure:"services" usage:"services to serve"`
	// Concurrency is the jobs run at once per service.
	Concurrency int `mapstructure:"concurrency" usage:"jobs run at once per service"`
	// DurableDeliveryCount counts the deliveries to instances that crash or
	// stop holding a command toward max deliveries (worker.Options
	// DisableDurableDeliveryCount when false).
	DurableDeliveryCount bool `mapstructure:"durable_delivery_count" usage:"count deliveries to instances that crash holding a command"`
	// EagerDeliveryRecords records every delivery durably (2 messages per
	// command) instead of only those that may follow a crash
	// (worker.Options.EagerDeliveryRecords).
	EagerDeliveryRecords bool `mapstructure:"eager_delivery_records" usage:"record every delivery, not only redeliveries and an instance's first 10s (2 messages per command)"`
	// FailProbability injects retryable failures (demo).
	FailProbability float64 `mapstructure:"fail_probability" usage:"chance of a retryable failure per attempt (demo)"`
	// FailCommand fails one command for good (demo).
	FailCommand string `mapstructure:"fail_command" usage:"command that always fails for good (demo)"`
	// FailSeed selects which attempts fail under fail_probability (demo).
	FailSeed int64 `mapstructure:"fail_seed" usage:"seed of the random failures (demo)"`
	// CallsLog, when set, appends one JSON line per attempt run (demo).
	CallsLog string `mapstructure:"calls_log" usage:"file that gets one JSON line per attempt run (demo)"`
	// Latency is added to every job (demo).
	Latency time.Duration `mapstructure:"latency" usage:"latency added to every job (demo)"`
	// DemoStore is a directory where the demo services record the work done
	// per idempotency key, shared by every demo worker of the machine (so
	// two processes running two attempts of one step do its work once);
	// empty: each process keeps its own record in memory (demo).
	DemoStore string `mapstructure:"demo_store" usage:"directory shared by demo workers recording the work done per idempotency key (demo)"`
	// StartedAfter is how long a job runs before the worker reports its
	// start (worker.Options.StartedAfter; negative: report every job at
	// once; 0: the SDK's default).
	StartedAfter time.Duration `mapstructure:"started_after" usage:"report a job started only once it has run this long (negative: at once; 0: the SDK default)"`
	// BridgeURL sends each command as an HTTP POST (bridge).
	BridgeURL string `mapstructure:"bridge_url" usage:"HTTP endpoint each command is POSTed to (bridge)"`
	// BridgeExec runs a program per command, the command on stdin (bridge).
	BridgeExec string `mapstructure:"bridge_exec" usage:"program run per command, command JSON on stdin (bridge)"`
}

// DefaultWorker is the default worker configuration.
func DefaultWorker() Worker {
	host, _ := os.Hostname()
	return Worker{Base: DefaultBase(), Name: "worker-" + host, Mode: "demo",
		Services: []string{"payments", "flights", "hotels", "notifications"}, Concurrency: 16, DurableDeliveryCount: true}
}

// Validate checks every key.
func (c *Worker) Validate() error {
	errs := []error{c.Base.Validate()}
	if c.Name == "" {
		errs = append(errs, &FieldError{Key: "name", Value: c.Name, Problem: "must not be empty"})
	}
	switch c.Mode {
	case "demo":
	case "bridge":
		if len(c.Services) != 1 {
			errs = append(errs, &FieldError{Key: "services", Value: strings.Join(c.Services, ","), Problem: "a bridge serves exactly one service"})
		}
		switch {
		case (c.BridgeURL == "") == (c.BridgeExec == ""):
			errs = append(errs, &FieldError{Key: "bridge_url", Value: c.BridgeURL, Problem: "set exactly one of bridge_url and bridge_exec"})
		case c.BridgeURL != "":
			if err := checkURL(c.BridgeURL, "http", "https"); err != nil {
				errs = append(errs, &FieldError{Key: "bridge_url", Value: c.BridgeURL, Problem: err.Error()})
			}
		default:
			if args, err := SplitArgs(c.BridgeExec); err != nil {
				errs = append(errs, &FieldError{Key: "bridge_exec", Value: c.BridgeExec, Problem: err.Error()})
			} else if len(args) == 0 {
				errs = append(errs, &FieldError{Key: "bridge_exec", Value: c.BridgeExec, Problem: "must name a program"})
			}
		}
	default:
		errs = append(errs, &FieldError{Key: "mode", Value: c.Mode, Problem: "must be demo or bridge"})
	}
	switch {
	case len(c.Services) == 0:
		errs = append(errs, &FieldError{Key: "services", Value: "", Problem: "name at least one service"})
	case slices.ContainsFunc(c.Services, func(s string) bool { return s == "" || strings.ContainsAny(s, "/: ") }):
		errs = append(errs, &FieldError{Key: "services", Value: strings.Join(c.Services, ","), Problem: "service names must be non-empty, without '/', ':' or spaces"})
	}
	if c.Latency < 0 {
		errs = append(errs, &FieldError{Key: "latency", Value: c.Latency.String(), Problem: "must not be negative"})
	}
	if c.Concurrency < 1 {
		errs = append(errs, &FieldError{Key: "concurrency", Value: c.Concurrency, Problem: "must be at least 1"})
	}
	if c.FailProbability < 0 || c.FailProbability > 1 {
		errs = append(errs, &FieldError{Key: "fail_probability", Value: c.FailProbability, Problem: "must be between 0 and 1"})
	}
	return errors.Join(errs...)
}

// SplitArgs splits a command line into words as a POSIX shell does, without
// expanding anything: words are separated by blanks; single quotes keep
// everything up to the next single quote; double quotes keep everything
// but a backslash escapes \, " and $ in them; a backslash outside quotes
// keeps the next character.
func SplitArgs(s string) ([]string, error) {
	var args []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == ' ' || ch == '\t' || ch == '\n':
			if inWord {
				args, inWord = append(args, cur.String()), false
				cur.Reset()
			}
		case ch == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, errors.New("unterminated ' quote")
			}
			cur.WriteString(s[i+1 : i+1+end])
			i, inWord = i+1+end, true
		case ch == '"':
			inWord = true
			for i++; ; i++ {
				if i >= len(s) {
					return nil, errors.New(`unterminated " quote`)
				}
				if s[i] == '"' {
					break
				}
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte(`\"$`, s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
		case ch == '\\':
			if i+1 >= len(s) {
				return nil, errors.New("a backslash ends the line")
			}
			i++
			cur.WriteByte(s[i])
			inWord = true
		default:
			cur.WriteByte(ch)
			inWord = true
		}
	}
	if inWord {
		args = append(args, cur.String())
	}
	return args, nil
}

// FromArgs parses a binary's command line (--config FILE plus one flag per
// key) and loads cfg. Help goes to stdout and returns pflag.ErrHelp.
func FromArgs(name string, args []string, cfg Validator) error {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	// pflag would print help and parse errors alike to stderr; the caller
	// reports errors, help goes to stdout.
	fs.SetOutput(io.Discard)
	file := fs.String("config", "", "YAML configuration file")
	AddFlags(fs, cfg)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fmt.Fprintf(os.Stdout, "Usage of %s:\n%s", name, fs.FlagUsages())
			return err
		}
		return fmt.Errorf("%s: %w (--help lists the flags)", name, err)
	}
	return Load(cfg, *file, fs)
}

// defaultGCPercent is the orchestrator's and the decider's gc_percent
// default (docs/benchmarks.md, session 9).
const defaultGCPercent = 200

// validGCPercent checks a gc_percent key.
func validGCPercent(p int) error {
	if p < 10 || p > 10000 {
		return &FieldError{Key: "gc_percent", Value: p, Problem: "must be between 10 and 10000 (cap the memory with GOMEMLIMIT)"}
	}
	return nil
}
