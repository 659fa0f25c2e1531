package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/pulsarbus"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/internal/pulsartest"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/workflow"
)

// Config is one run of the kit.
type Config struct {
	// Dir holds the run: binaries, logs of every component, the service's
	// ledger and calls log. Default: a new temporary folder.
	Dir string
	// Broker is the private broker the run starts (fresh), kills and
	// restarts.
	Broker BrokerConfig
	// Sagas are started evenly over Duration.
	Sagas int
	// Duration is the chaos phase: sagas are started, components killed,
	// an owner frozen and the broker restarted during it.
	Duration time.Duration
	// Drain bounds the wait, after the chaos phase, for every saga to
	// settle.
	Drain time.Duration
	// Seed makes the sagas (and the kills) repeatable.
	Seed uint64
	// Mix chooses the sagas.
	Mix Mix
	// Partitions of the process-keyed topics.
	Partitions int
	// Orchestrators, Deciders and Services are the instances of each
	// component (Deciders 0: the orchestrators decide in-process).
	Orchestrators, Deciders, Services int
	// DeciderMode is "inline" (decisions inside the orchestrators' batches),
	// "remote" (cmd/decider instances over the decisions topic), or "auto":
	// the orchestrator binary's default (inline when it has the mode).
	DeciderMode string
	// NoKills turns the kill -9 of components off (the frozen-owner test).
	NoKills bool
	// KillMin and KillMax bound the time between two kill -9.
	KillMin, KillMax time.Duration
	// RestartMin and RestartMax bound how long a killed component stays
	// down.
	RestartMin, RestartMax time.Duration
	// BrokerRestartAt is when (a fraction of Duration) the broker is
	// killed with SIGKILL and started again; negative: never.
	BrokerRestartAt float64
	// BrokerDownFor keeps the broker down that long after its kill before
	// it is started again (its start-up comes on top): an outage.
	BrokerDownFor time.Duration
	// FreezeAt is when (a fraction of Duration) an orchestrator that owns
	// partitions is frozen (SIGSTOP) for FreezeFor; negative: never.
	FreezeAt  float64
	FreezeFor time.Duration
	// FreezeTakeover requires the frozen owner's partitions to make
	// progress while it is frozen: another instance must take them over
	// (FreezeFor must then outlast the broker's detection of the frozen
	// connection, about twice its keepAliveIntervalSeconds).
	FreezeTakeover bool
	// Latency is the most a service attempt waits before acting.
	Latency time.Duration
	// ReplayTimers runs the timer probe (probe.go): a subscription of the
	// kit's own on the timers topic that counts acknowledged timers the
	// broker delivers again after its restart (apache/pulsar#20638), and
	// sends every timer that fired before the broker's kill again once the
	// broker is back, so that the engine meets acknowledged timers twice.
	ReplayTimers bool
	// ExactAttempts fails the run when a unit got an attempt its scripts
	// do not use (the outage test: an outage must cost no attempt).
	ExactAttempts bool
	// AttemptTimeout, when set, replaces the attempt timeout of the kit's
	// definitions (testdata: 30s for the trip, 20s for the orders): a lost
	// attempt costs that long, and a broker outage longer than it must
	// still cost no attempt (start-to-close, docs/language.md).
	AttemptTimeout time.Duration
	// Race builds the binaries with the race detector.
	Race bool
	// EngineBin, when set, is a folder holding orchestrator and decider
	// binaries to run instead of building this tree's (to try a branch:
	// git archive it, build it there). The chaos service is always built
	// from this tree.
	EngineBin string
	// Progress receives a line every few seconds (default: discarded).
	Progress io.Writer
}

// BrokerConfig is where the private broker lives.
type BrokerConfig struct {
	Home                       string
	Port, HTTPPort, BookiePort int
}

// DefaultConfig is the base of the kit's runs: a few minutes of chaos
// (the command's defaults; make chaos raises the sagas and the duration).
func DefaultConfig() Config {
	return Config{
		Broker: BrokerConfig{Port: 6651, HTTPPort: 8081, BookiePort: 3182},
		Sagas:  400, Duration: 100 * time.Second, Drain: 100 * time.Second, Seed: 1, Mix: DefaultMix(),
		Partitions: 4, Orchestrators: 2, Deciders: 2, Services: 3, DeciderMode: "auto",
		KillMin: 3 * time.Second, KillMax: 5 * time.Second, RestartMin: time.Second, RestartMax: 6 * time.Second,
		BrokerRestartAt: 0.3, FreezeAt: 0.65, FreezeFor: 40 * time.Second, Latency: 100 * time.Millisecond,
		ReplayTimers: true,
	}
}

// ShortConfig is the short run of the test command (TestChaosShort, in
// make test): about three minutes on two cores, the build and the fresh
// broker included. 150 sagas over one minute with every fault of the long
// run: kill -9 every 3 to 5s, an owner frozen for 15s early on, then the
// broker killed and restarted half-way (after it, owners are scarce for a
// while: its start takes 20s to a minute and a half); the drain bound is
// a safety margin for a loaded machine, the run goes on as soon as every
// saga settled.
func ShortConfig() Config {
	c := DefaultConfig()
	c.Sagas, c.Duration, c.Drain = 150, 60*time.Second, 5*time.Minute
	c.FreezeAt, c.FreezeFor, c.BrokerRestartAt = 0.1, 10*time.Second, 0.4
	// Lost attempts cost 10s instead of 20-30s, and the broker's restart
	// (down 10-20s on a quiet machine) outlasts every attempt timeout.
	c.AttemptTimeout = 10 * time.Second
	return c
}

// OutageConfig is the outage test (issue #11 item 2): the broker killed
// in the middle of the run and kept down for a minute — six times the
// attempt timeout of the definitions (10s) — with attempts in flight
// (the service takes up to 2s for each); no other fault. It must change
// no saga's outcome and cost no attempt: attempt time counts from a
// worker's start (start-to-close), and no worker can start, nor answer,
// while the broker is away.
func OutageConfig() Config {
	c := DefaultConfig()
	c.Sagas, c.Duration, c.Drain = 200, 100*time.Second, 5*time.Minute
	c.NoKills, c.FreezeAt = true, -1
	c.BrokerRestartAt, c.BrokerDownFor = 0.35, time.Minute
	c.AttemptTimeout, c.Latency, c.ExactAttempts = 10*time.Second, 2*time.Second, true
	// Lost attempts and crashes cost attempts by design: left out, so that
	// any attempt beyond a script's is the outage's.
	c.Mix.Lost, c.Mix.Crash = 0, 0
	return c
}

// FrozenOwnerConfig is the frozen-owner test: no kills, no broker
// restart, sagas without crash or lost faults, and one owner frozen for
// 90s — longer than the broker takes to notice (keepAliveIntervalSeconds
// 30: a ping unanswered for 30 to 60s closes the connection), so that the
// standby takes over while the old owner sleeps.
func FrozenOwnerConfig() Config {
	c := DefaultConfig()
	c.Sagas, c.Duration, c.Drain = 300, 180*time.Second, 240*time.Second
	c.NoKills, c.BrokerRestartAt = true, -1
	c.FreezeAt, c.FreezeFor, c.FreezeTakeover = 0.25, 90*time.Second, true
	c.Mix = Mix{TripShare: 0.6, Clean: 0.6, Failing: 0.3}
	return c
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	var errs []error
	bad := func(f string, a ...any) { errs = append(errs, fmt.Errorf(f, a...)) }
	if c.Broker.Home == "" || c.Broker.Port == 0 || c.Broker.HTTPPort == 0 || c.Broker.BookiePort == 0 {
		bad("broker: a home and three ports are required")
	}
	if c.Sagas < 1 {
		bad("sagas: at least 1")
	}
	if c.Duration <= 0 || c.Drain <= 0 {
		bad("duration and drain must be positive")
	}
	if c.Partitions < 1 || c.Orchestrators < 1 || c.Services < 1 {
		bad("partitions, orchestrators and services: at least 1 each")
	}
	switch c.DeciderMode {
	case "remote":
		if c.Deciders < 1 {
			bad("deciders: at least 1 in remote mode")
		}
	case "inline", "auto":
	default:
		bad("decider mode %q: want inline, remote or auto", c.DeciderMode)
	}
	if c.AttemptTimeout < 0 || (c.AttemptTimeout > 0 && c.AttemptTimeout < time.Second) {
		bad("attempt timeout %s: 0 (the definitions' own) or at least 1s", c.AttemptTimeout)
	}
	if c.KillMin <= 0 || c.KillMax < c.KillMin || c.RestartMin < 0 || c.RestartMax < c.RestartMin {
		bad("kill and restart intervals: 0 < min <= max")
	}
	return errors.Join(errs...)
}

// Run is one run of the kit: build the binaries, start a fresh private
// broker and the components, start the sagas while killing components,
// freezing an owner and restarting the broker, let every saga settle,
// then check each against its known outcome. The error is for a run that
// could not be made; what the run found is in the report.
func Run(ctx context.Context, cfg Config) (rep *Report, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	if cfg.Dir == "" {
		if cfg.Dir, err = os.MkdirTemp("", "pulsaga-chaos-"); err != nil {
			return nil, err
		}
	}
	r := &run{cfg: cfg, t0: time.Now(), rng: rand.New(rand.NewPCG(cfg.Seed, 0xc4a05))}
	for _, d := range []string{r.path("bin"), r.path("logs"), r.path("service")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	r.logf("run folder %s", cfg.Dir)
	// The binaries are built while the broker starts: each takes tens of
	// seconds on a busy machine.
	buildCtx, stopBuild := context.WithCancel(ctx)
	defer stopBuild()
	built := make(chan error, 1)
	go func() {
		err := r.build(buildCtx)
		if err == nil {
			r.logf("binaries ready in %s", time.Since(r.t0).Round(100*time.Millisecond))
		}
		built <- err
	}()
	r.logf("starting a fresh private broker in %s (ports %d/%d/%d)", cfg.Broker.Home, cfg.Broker.Port, cfg.Broker.HTTPPort, cfg.Broker.BookiePort)
	scriptLog, err := os.Create(r.path("logs", "broker-script.log"))
	if err != nil {
		return nil, err
	}
	defer scriptLog.Close()
	brokerAt := time.Now()
	r.broker, err = pulsartest.StartPrivate(ctx, pulsartest.PrivateOptions{
		Home: cfg.Broker.Home, Port: cfg.Broker.Port, HTTPPort: cfg.Broker.HTTPPort, BookiePort: cfg.Broker.BookiePort,
		Fresh: true, Log: scriptLog, FastStart: true,
	})
	if err != nil {
		stopBuild()
		<-built
		return nil, err
	}
	// Whatever ends the kit (a test binary killed at go test's -timeout
	// included), the broker goes with it; the components die with it too
	// (cluster.go: Pdeathsig).
	stopWatch, err := r.broker.DieWith(os.Getpid())
	if err != nil {
		_ = r.broker.Kill()
		return nil, err
	}
	defer func() {
		if kerr := r.broker.Kill(); kerr != nil && err == nil {
			err = kerr
		}
		stopWatch()
	}()
	r.logf("broker ready in %s", time.Since(brokerAt).Round(time.Second))
	if err := <-built; err != nil {
		return nil, err
	}
	if err := r.resolveMode(ctx); err != nil {
		return nil, err
	}
	r.ns = bus.Namespace{Tenant: "public", Namespace: "chaos"}
	r.topics = protocol.DefaultTopics()
	r.topics.Partitions = cfg.Partitions
	if r.bus, err = r.connect(ctx); err != nil {
		return nil, err
	}
	defer func() { _ = r.bus.Close() }()
	// A broker just started on a busy machine answers its admin API slowly.
	for try := 1; ; try++ {
		err := engine.EnsureTopics(ctx, r.bus, r.topics)
		if err == nil {
			break
		}
		if try == 10 || ctx.Err() != nil {
			return nil, err
		}
		r.logf("creating the topics: %v; again", err)
		time.Sleep(5 * time.Second)
	}
	if cfg.ReplayTimers {
		// Before any timer: the probe must see every one of them.
		r.probe = newTimerProbe()
		if err := r.probe.run(ctx, r.bus, r.topics.Timers); err != nil {
			return nil, fmt.Errorf("chaos: the timer probe: %w", err)
		}
	}
	r.sagas = make([]Saga, cfg.Sagas)
	for i := range r.sagas {
		r.sagas[i] = Generate(cfg.Seed, i, cfg.Mix)
	}
	defs, err := r.definitions()
	if err != nil {
		return nil, err
	}
	r.cluster = newCluster(r.childEnv(), r.logf)
	r.addComponents(defs)
	r.cluster.run()
	defer r.cluster.stop(15 * time.Second)
	return r.chaos(ctx)
}

// run is the state of one run.
type run struct {
	cfg     Config
	t0      time.Time
	rng     *rand.Rand
	broker  *pulsartest.Private
	ns      bus.Namespace
	topics  protocol.Topics
	bus     *pulsarbus.Bus
	sagas   []Saga
	cluster *cluster
	probe   *timerProbe

	// modeFlag: the orchestrator binary has --decider (inline|remote).
	modeFlag bool

	mu          sync.Mutex
	brokerDown  []interval // when the broker was away
	freezes     []freezeEvent
	kills       []killEvent
	owners      []ownerSnapshot
	brokerKills int
	started     atomic.Int64
	settled     atomic.Int64
}

type interval struct{ from, to time.Time }

type killEvent struct {
	at    time.Time
	name  string
	kind  string
	owned []int // partitions it owned (orchestrators)
}

type freezeEvent struct {
	at, until time.Time
	name      string
	owned     []int
}

type ownerSnapshot struct {
	at     time.Time
	owners map[int]string
}

func (r *run) path(elem ...string) string {
	return filepath.Join(append([]string{r.cfg.Dir}, elem...)...)
}

func (r *run) logf(format string, args ...any) {
	fmt.Fprintf(r.cfg.Progress, "chaos %6.1fs  %s\n", time.Since(r.t0).Seconds(), fmt.Sprintf(format, args...))
}

// repoRoot is the module's root (this file is e2e/chaos/run.go).
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func (r *run) build(ctx context.Context) error {
	// copyBin takes a binary from EngineBin; false when there is none.
	copyBin := func(name string) (bool, error) {
		if r.cfg.EngineBin == "" {
			return false, nil
		}
		raw, err := os.ReadFile(filepath.Join(r.cfg.EngineBin, name))
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		return true, os.WriteFile(r.path("bin", name), raw, 0o755)
	}
	var pkgs []string
	for _, b := range []string{"orchestrator", "decider", "chaos-service"} {
		ok, err := copyBin(b)
		if err != nil {
			return fmt.Errorf("chaos: %s from %s: %w", b, r.cfg.EngineBin, err)
		}
		switch {
		case ok:
			r.logf("%s from %s", b, r.cfg.EngineBin)
		case b == "chaos-service":
			pkgs = append(pkgs, "./e2e/chaos/cmd/chaos-service")
		case r.cfg.EngineBin != "":
			return fmt.Errorf("chaos: no %s binary in %s", b, r.cfg.EngineBin)
		default:
			pkgs = append(pkgs, "./cmd/"+b)
		}
	}
	if len(pkgs) == 0 {
		return nil
	}
	// -ldflags=-w: no DWARF, the biggest part of linking (stack traces
	// stay whole).
	args := []string{"build", "-ldflags=-w", "-o", r.path("bin") + "/"}
	if r.cfg.Race {
		args = append(args, "-race")
	}
	cmd := exec.CommandContext(ctx, "go", append(args, pkgs...)...)
	cmd.Dir = repoRoot()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("chaos: building the binaries: %v\n%s", err, out)
	}
	return nil
}

// resolveMode finds out whether the orchestrator binary chooses its
// decider mode (--decider inline|remote; before, deciders were always
// remote) and settles "auto" to the binary's default.
func (r *run) resolveMode(ctx context.Context) error {
	out, _ := exec.CommandContext(ctx, r.path("bin", "orchestrator"), "--help").CombinedOutput()
	r.modeFlag = strings.Contains(string(out), "--decider ")
	switch {
	case r.cfg.DeciderMode == "auto" && r.modeFlag:
		r.cfg.DeciderMode = "inline"
	case r.cfg.DeciderMode == "auto":
		r.cfg.DeciderMode = "remote"
	case r.cfg.DeciderMode == "inline" && !r.modeFlag:
		return errors.New("chaos: this orchestrator binary has no inline decider (no --decider flag); use -decider-mode remote")
	}
	if r.cfg.DeciderMode == "remote" && r.cfg.Deciders < 1 {
		return errors.New("chaos: the remote decider mode needs at least one decider")
	}
	r.logf("decider mode %s", r.cfg.DeciderMode)
	return nil
}

func (r *run) connect(ctx context.Context) (*pulsarbus.Bus, error) {
	return pulsarbus.New(ctx, pulsarbus.Config{
		ServiceURL: r.broker.ServiceURL, AdminURL: r.broker.AdminURL, Namespace: r.ns,
		ConnectionTimeout: 10 * time.Second, OperationTimeout: 30 * time.Second,
	}, zerolog.Nop())
}

// childEnv is the kit's environment without the variables that would
// point the binaries at another broker.
func (r *run) childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "PULSAR_URL" || k == "PULSAR_ADMIN_URL" || strings.HasPrefix(k, "PULSAGA_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// timeoutLine is the attempt timeout of a definition's defaults.
var timeoutLine = regexp.MustCompile(`(?m)^(  timeout:[ \t]*)\S+[ \t]*$`)

// definitions is the folder of the definitions the orchestrators load:
// the kit's own, or copies with AttemptTimeout in the run folder.
func (r *run) definitions() (string, error) {
	src := filepath.Join(repoRoot(), "e2e", "chaos", "testdata")
	if r.cfg.AttemptTimeout == 0 {
		return src, nil
	}
	dst := r.path("definitions")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return "", err
	}
	files, err := filepath.Glob(filepath.Join(src, "*.yaml"))
	if err != nil {
		return "", err
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		if len(timeoutLine.FindAll(raw, -1)) != 1 {
			return "", fmt.Errorf("chaos: %s: want one attempt timeout in its defaults to replace", f)
		}
		out := timeoutLine.ReplaceAll(raw, []byte("${1}"+r.cfg.AttemptTimeout.String()))
		if err := os.WriteFile(filepath.Join(dst, filepath.Base(f)), out, 0o644); err != nil {
			return "", err
		}
	}
	r.logf("attempt timeouts of the definitions: %s", r.cfg.AttemptTimeout)
	return dst, nil
}

func (r *run) addComponents(defs string) {
	common := func(name string) []string {
		return []string{"--pulsar-url", r.broker.ServiceURL, "--pulsar-admin-url", r.broker.AdminURL,
			"--pulsar-namespace", r.ns.Namespace, "--name", name, "--log-level", "info"}
	}
	parts := strconv.Itoa(r.cfg.Partitions)
	for i := range r.cfg.Orchestrators {
		name := "orch-" + string(rune('a'+i))
		args := append(common(name), "--partitions", parts, "--definitions", defs)
		if r.modeFlag {
			args = append(args, "--decider", r.cfg.DeciderMode)
		}
		r.cluster.add(name, KindOrchestrator, r.path("bin", "orchestrator"), logPath(r.path("logs"), name), args...)
	}
	if r.cfg.DeciderMode == "remote" {
		for i := range r.cfg.Deciders {
			name := "dec-" + string(rune('a'+i))
			r.cluster.add(name, KindDecider, r.path("bin", "decider"), logPath(r.path("logs"), name), append(common(name), "--partitions", parts)...)
		}
	}
	for i := range r.cfg.Services {
		name := "svc-" + string(rune('a'+i))
		args := append(common(name), "--ledger", r.path("service", "ledger.jsonl"), "--calls", r.path("service", "calls.jsonl"),
			"--latency", r.cfg.Latency.String())
		r.cluster.add(name, KindService, r.path("bin", "chaos-service"), logPath(r.path("logs"), name), args...)
	}
}

// chaos is the run proper, once everything is up.
func (r *run) chaos(ctx context.Context) (*Report, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	end := time.Now().Add(r.cfg.Duration)
	var wg sync.WaitGroup
	chaosCtx, stopChaos := context.WithDeadline(ctx, end)
	defer stopChaos()
	bg := func(f func(context.Context)) {
		wg.Add(1)
		go func() { defer wg.Done(); f(chaosCtx) }()
	}
	status := newStatusWatch(r)
	go status.run(ctx)
	go r.watchOwners(ctx)
	bg(r.startSagas)
	if !r.cfg.NoKills {
		bg(r.killer)
	}
	if r.cfg.BrokerRestartAt >= 0 {
		bg(func(ctx context.Context) {
			r.restartBroker(ctx, time.Duration(float64(r.cfg.Duration)*r.cfg.BrokerRestartAt))
		})
	}
	if r.cfg.FreezeAt >= 0 {
		// An owner to freeze may be missing for a while (the broker away,
		// the orchestrators restarting): the freeze may come up to 30s
		// after the phase.
		freezeCtx, stopFreeze := context.WithDeadline(ctx, end.Add(30*time.Second))
		defer stopFreeze()
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.freezeOwner(freezeCtx, time.Duration(float64(r.cfg.Duration)*r.cfg.FreezeAt))
		}()
	}
	progress := time.NewTicker(10 * time.Second)
	defer progress.Stop()
wait:
	for {
		select {
		case <-chaosCtx.Done():
			break wait
		case <-progress.C:
			r.logf("started %d/%d, settled %d, kills %d", r.started.Load(), len(r.sagas), r.settled.Load(), r.killCount())
		}
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	wg.Wait() // the broker restart and the freeze finish what they started
	r.logf("chaos over: every component up again; waiting up to %s for the sagas to settle", r.cfg.Drain)
	r.cluster.reviveAll()
	drainEnd := time.Now().Add(r.cfg.Drain)
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for time.Now().Before(drainEnd) && int(r.settled.Load()) < len(r.sagas) {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
			r.logf("started %d/%d, settled %d", r.started.Load(), len(r.sagas), r.settled.Load())
		case <-time.After(time.Second):
		}
	}
	r.logf("settled %d/%d; letting the service finish what it holds", r.settled.Load(), len(r.sagas))
	r.quiesce(ctx)
	// Stop everything, so that what is checked stays as it is.
	r.cluster.stop(15 * time.Second)
	if err := status.readToEnd(ctx, 3*time.Minute); err != nil {
		return nil, err
	}
	rep, err := r.check(ctx, status)
	if err != nil {
		return nil, err
	}
	// Every takeover's times, for whoever works on their tail (kept with
	// the logs when the run fails; printed by Report.Write too).
	if f, err := os.Create(r.path("takeovers.tsv")); err == nil {
		rep.WriteTakeovers(f)
		_ = f.Close()
	}
	return rep, nil
}

func (r *run) killCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.kills)
}

// startSagas starts the sagas evenly over the chaos phase; a start that
// fails (the broker is away) is tried again with the same process id.
func (r *run) startSagas(ctx context.Context) {
	client := engine.NewClient(r.bus, r.topics)
	every := r.cfg.Duration / time.Duration(len(r.sagas)+1)
	next := time.Now()
	for _, s := range r.sagas {
		if d := time.Until(next); d > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(d):
			}
		}
		next = next.Add(every)
		for {
			// Sagas not started within the chaos phase are started after it.
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := client.Start(sctx, protocol.StartRequest{ProcessID: s.ID, Definition: s.Definition, Input: s.Input, Actor: "chaos"})
			cancel()
			if err == nil {
				break
			}
			time.Sleep(time.Second)
		}
		r.started.Add(1)
	}
}

// killer kills a random component with SIGKILL every KillMin..KillMax.
func (r *run) killer(ctx context.Context) {
	for {
		wait := r.cfg.KillMin + time.Duration(r.rng.Int64N(int64(r.cfg.KillMax-r.cfg.KillMin)+1))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		cands := r.cluster.pick()
		if len(cands) == 0 {
			continue
		}
		comp := cands[r.rng.IntN(len(cands))]
		delay := r.cfg.RestartMin + time.Duration(r.rng.Int64N(int64(r.cfg.RestartMax-r.cfg.RestartMin)+1))
		owned := r.ownedBy(comp.name)
		at := time.Now()
		if r.cluster.kill(comp, delay) {
			r.mu.Lock()
			r.kills = append(r.kills, killEvent{at: at, name: comp.name, kind: comp.kind, owned: owned})
			r.mu.Unlock()
			r.logf("kill -9 %s (back in %s)%s", comp.name, delay.Round(100*time.Millisecond), ownedNote(owned))
		}
	}
}

func ownedNote(owned []int) string {
	if len(owned) == 0 {
		return ""
	}
	return fmt.Sprintf("; it owned partitions %v", owned)
}

// watchOwners asks the broker every 250ms which orchestrator is the
// active consumer of each events partition.
func (r *run) watchOwners(ctx context.Context) {
	topic := r.ns.Topic(r.topics.Events)
	for ctx.Err() == nil {
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		owners, err := r.broker.ActiveConsumers(qctx, topic, protocol.OrchestratorSubscription)
		cancel()
		if err == nil {
			r.mu.Lock()
			r.owners = append(r.owners, ownerSnapshot{at: time.Now(), owners: owners})
			r.mu.Unlock()
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// ownedBy is what the last answer (at most 2s old) says name owns.
func (r *run) ownedBy(name string) []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.owners) == 0 {
		return nil
	}
	last := r.owners[len(r.owners)-1]
	if time.Since(last.at) > 2*time.Second {
		return nil
	}
	var out []int
	for p, o := range last.owners {
		if o == name {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// restartBroker kills the broker with SIGKILL after `after` and starts it
// again on its data.
func (r *run) restartBroker(ctx context.Context, after time.Duration) {
	select {
	case <-ctx.Done():
		return
	case <-time.After(after):
	}
	// The #20638 check needs timers acknowledged before the kill: on a
	// slow start none may have fired yet, so the kill waits for the first
	// (at most 30 s more) instead of leaving the run without its check.
	if r.probe != nil {
		for wait := time.Now().Add(30 * time.Second); time.Now().Before(wait); {
			if before, _, _ := r.probe.counts(); before > 0 {
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
	from := time.Now()
	if r.probe != nil {
		r.probe.brokerKilled()
	}
	r.logf("kill -9 the broker")
	if err := r.broker.Kill(); err != nil {
		r.logf("broker kill: %v", err)
	}
	r.mu.Lock()
	r.brokerKills++
	r.mu.Unlock()
	if d := r.cfg.BrokerDownFor; d > 0 {
		r.logf("the broker stays down for %s", d)
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}
	for {
		err := r.broker.Start(context.Background())
		if err == nil {
			break
		}
		r.logf("broker start failed, trying again: %v", err)
		time.Sleep(2 * time.Second)
	}
	r.mu.Lock()
	r.brokerDown = append(r.brokerDown, interval{from, time.Now()})
	r.mu.Unlock()
	r.logf("broker back after %s", time.Since(from).Round(100*time.Millisecond))
	if r.probe != nil {
		// apache/pulsar#20638, made sure of: every timer acknowledged
		// before the kill comes again.
		for try := 1; ; try++ {
			sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			n, err := r.probe.replay(sctx, r.bus, r.topics.Timers)
			cancel()
			if err == nil {
				r.logf("sent the %d timers acknowledged before the kill again", n)
				break
			}
			if try == 5 {
				r.logf("sending the acknowledged timers again: %v (sent %d); giving up", err, n)
				break
			}
			time.Sleep(2 * time.Second)
		}
	}
}

// freezeOwner stops an orchestrator that owns partitions with SIGSTOP for
// FreezeFor, then resumes it.
func (r *run) freezeOwner(ctx context.Context, after time.Duration) {
	select {
	case <-ctx.Done():
		return
	case <-time.After(after):
	}
	for ctx.Err() == nil {
		for _, comp := range r.cluster.pick(KindOrchestrator) {
			owned := r.ownedBy(comp.name)
			if len(owned) == 0 {
				continue
			}
			at := time.Now()
			if err := r.cluster.freeze(comp, true); err != nil {
				continue
			}
			r.logf("SIGSTOP %s for %s; it owned partitions %v", comp.name, r.cfg.FreezeFor, owned)
			time.Sleep(r.cfg.FreezeFor)
			if err := r.cluster.freeze(comp, false); err != nil {
				r.logf("SIGCONT %s: %v", comp.name, err)
			}
			r.mu.Lock()
			r.freezes = append(r.freezes, freezeEvent{at: at, until: time.Now(), name: comp.name, owned: owned})
			r.mu.Unlock()
			r.logf("SIGCONT %s", comp.name)
			return
		}
		time.Sleep(time.Second)
	}
}

// quiesce waits until the service has handled nothing for 5s (at most
// 60s), so that the ledger is final.
func (r *run) quiesce(ctx context.Context) {
	calls := r.path("service", "calls.jsonl")
	var last int64 = -1
	stable := time.Now()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		st, err := os.Stat(calls)
		size := int64(0)
		if err == nil {
			size = st.Size()
		}
		if size != last {
			last, stable = size, time.Now()
		}
		if time.Since(stable) >= 5*time.Second {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// statusWatch follows the status table and counts settled sagas.
type statusWatch struct {
	r         *run
	refreshMu sync.Mutex // one refresh at a time
	table     *engine.StatusTable
	failures  int // refreshes failed in a row
	mu        sync.Mutex
	rows      map[string]engine.StatusRecord
}

func newStatusWatch(r *run) *statusWatch {
	return &statusWatch{r: r, rows: map[string]engine.StatusRecord{}}
}

func (w *statusWatch) run(ctx context.Context) {
	defer func() {
		w.refreshMu.Lock()
		defer w.refreshMu.Unlock()
		if w.table != nil {
			_ = w.table.Close()
		}
	}()
	for ctx.Err() == nil {
		w.refresh(ctx)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// refresh reads the rows written since the last call (a table whose reader
// failed, the broker being away, is opened again).
func (w *statusWatch) refresh(ctx context.Context) {
	w.refreshMu.Lock()
	defer w.refreshMu.Unlock()
	if w.table == nil {
		w.table = engine.NewStatusTable(w.r.bus, w.r.topics.Status)
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := w.table.Refresh(rctx)
	cancel()
	// A pass cut short keeps what it read and its place: on a loaded
	// machine a pass may need longer than 10s to catch up. Only a reader
	// failing again and again (the broker restarted) is opened anew.
	if err == nil {
		w.failures = 0
	} else if w.failures++; w.failures >= 3 {
		_ = w.table.Close()
		w.table, w.failures = nil, 0
		return
	}
	n := 0
	w.mu.Lock()
	for _, row := range w.table.List() {
		w.rows[row.ProcessID] = row
	}
	for _, row := range w.rows {
		if Settled(row.Status) {
			n++
		}
	}
	w.mu.Unlock()
	w.r.settled.Store(int64(n))
}

// readToEnd refreshes until a pass reads the status topic to its end
// (what the check judges must be the last word of every saga), at most
// for limit.
func (w *statusWatch) readToEnd(ctx context.Context, limit time.Duration) error {
	end := time.Now().Add(limit)
	for {
		w.refresh(ctx)
		w.refreshMu.Lock()
		ok := w.table != nil && w.failures == 0
		w.refreshMu.Unlock()
		if ok {
			return nil
		}
		if time.Now().After(end) || ctx.Err() != nil {
			return fmt.Errorf("chaos: the status table could not be read to its end within %s", limit)
		}
	}
}

func (w *statusWatch) status(pid string) (workflow.Status, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	row, ok := w.rows[pid]
	return row.Status, ok
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
