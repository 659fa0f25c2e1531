package bench_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bench"
	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/pulsarbus"
	"github.com/pulsaga/pulsaga/demo"
	"github.com/pulsaga/pulsaga/internal/pulsartest"
	"github.com/pulsaga/pulsaga/worker"
)

// Sizes, settable on the command line: go test ./bench -bench . -args -inflight 2000.
// `make bench` sets them from its knobs (docs/benchmarks.md).
var (
	flagInflight   = flag.String("inflight", "1000,2000", "closed loop: trip sagas kept in flight, one run per size, in the default decider mode")
	flagOtherSizes = flag.String("other-inflight", "1000", "closed loop: sizes run in the other decider modes")
	flagModes      = flag.String("modes", "", "decider modes to measure, comma-separated, the first taken as the default mode; \"default\": the engine's default mode only (default: every mode the engine has, its default first)")
	flagWindow     = flag.Duration("window", 20*time.Second, "closed loop: the measuring window opens after a warm-up of one generation (as many sagas completed as are in flight) and lasts at least this long and at least one more generation")
	flagOpenRate   = flag.Float64("open-max", 0, "open loop: the measured maximum in sagas/s (make bench passes the closed loop's median); 0 reads -open-max-file")
	flagOpenFile   = flag.String("open-max-file", "", "open loop: file holding the measured maximum in sagas/s")
	flagOpenSteps  = flag.String("open-steps", "25,50,75,100", "open loop: arrival rates in % of the measured maximum")
	flagOpenDur    = flag.Duration("open-duration", 15*time.Second, "open loop: how long arrivals last at each rate")
	flagSerial     = flag.Int("serial", 20, "trip sagas run one at a time by BenchmarkTripUnloaded")
	flagStarts     = flag.Int("starts", 3000, "BenchmarkStarts: start requests per entrance (client, topic, http)")
	flagStartsCLI  = flag.Int("starts-cli", 60, "BenchmarkStarts: start requests through the CLI (one pulsaga process each)")
	flagEntrances  = flag.String("entrances", "client,client-many,topic,http,http-batch,cli,cli-api,cli-from,cli-from-api", "BenchmarkStarts: entrances measured (those the engine does not offer are skipped)")
	flagWaiting    = flag.Int("waiting", 2000, "waiting processes of BenchmarkMemoryPerWaitingProcess")
	flagSettle     = flag.Duration("settle", 10*time.Second, "BenchmarkMemoryPerWaitingProcess: how long the processes wait before the heap is measured (the engine encodes images idle for 5 s)")
	flagRestart    = flag.Int("restart", 10000, "waiting processes of BenchmarkRestart")
	flagRestartIn  = flag.Int("restart-inflight", 2000, "BenchmarkRestart: processes being created at once while filling")
	flagRestartK   = flag.Bool("restart-kill", false, "BenchmarkRestart: SIGKILL the orchestrator instead of SIGTERM")
	flagTimerProcs = flag.Int("timerprocs", 100, "processes of BenchmarkTimerLateness (3 sleep timers each)")
	flagStarters   = flag.Int("starters", 64, "goroutines sending start requests (closed loop and the Go client entrance)")
	flagWorkers    = flag.Int("worker-concurrency", 32, "concurrency of each no-op worker (in the benchmark's process)")
	flagDurable    = flag.Bool("worker-durable-deliveries", true, "the no-op workers count deliveries durably (worker.Options.DisableDurableDeliveryCount false)")
	flagEager      = flag.Bool("worker-eager-deliveries", false, "with -worker-durable-deliveries, record every delivery (worker.Options.EagerDeliveryRecords: 2 messages per command on jobs.<svc>-workers-deliveries); default lazy (only redeliveries and an instance's first 10s)")
	flagStartedAft = flag.Duration("worker-started-after", 0, "worker.Options.StartedAfter of the no-op workers (0: the SDK default; negative: report every job started at once)")
	flagPartitions = flag.Int("partitions", 4, "partitions of the engine's process-keyed topics")
	flagLogDir     = flag.String("logdir", "", "where the engine's processes log (default: a temporary folder, removed unless a benchmark failed)")
	flagBrokerPID  = flag.Int("broker-pid", 0, "the broker's process id (default: the process listening on PULSAR_URL's port)")
	flagPerf       = flag.String("perf", "", "record a CPU profile of the orchestrator (perf record -g) during each closed-loop window into this folder")
	flagEngineLog  = flag.String("engine-log-level", "warn", "log level of the engine's processes (their logs: -logdir); info logs every process started and finished")
	flagPprof      = flag.String("pprof", "", "fetch a CPU profile of the orchestrator from its /debug/pprof during each closed-loop window into this folder")
)

// benchEnv is one benchmark iteration's own namespace on the broker.
type benchEnv struct {
	svc, admin string
	ns         bus.Namespace
}

var nsSeq atomic.Int64

// newEnv gives a fresh namespace, deleted when the benchmark ends.
func newEnv(b *testing.B, name string) *benchEnv {
	b.Helper()
	svc, adm := pulsartest.URLs(b)
	e := &benchEnv{svc: svc, admin: adm, ns: bus.Namespace{Tenant: "public", Namespace: fmt.Sprintf("bench-%s-%d-%d", name, time.Now().UnixNano(), nsSeq.Add(1))}}
	if d := os.Getenv("BENCH_DUMP"); d != "" {
		// Goroutine dumps every 5s while the benchmark runs, to see where the
		// benchmark's process waits (go tool pprof or read as text).
		stop := make(chan struct{})
		b.Cleanup(func() { close(stop) })
		go func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Second):
				}
				if f, err := os.Create(fmt.Sprintf("%s/%s-%02d.txt", d, name, i)); err == nil {
					_ = pprof.Lookup("goroutine").WriteTo(f, 1)
					_ = f.Close()
				}
			}
		}()
	}
	// Registered before the bus is opened, so it runs after the bus and
	// every client of the run are closed (cleanups run last-in first-out);
	// topics are unloaded before they are deleted (the lead's rule of
	// 17:56: a namespace deleted under a pending-ack replay wedged the
	// broker), and a failure is only logged.
	b.Cleanup(func() {
		for try := 0; ; try++ {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			err := bench.UnloadTopics(ctx, e.admin, e.ns)
			cancel()
			if err != nil {
				b.Logf("cleanup of %s: %v", e.ns, err)
			}
			pulsartest.DeleteNamespace(b, e.admin, e.ns.String())
			ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
			left, err := bench.NamespaceExists(ctx, e.admin, e.ns)
			cancel()
			if err == nil && left && try < 2 {
				// Only the pending-ack stores of the transactional
				// subscriptions should be left: every client is closed.
				ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
				err = bench.DeleteSystemTopics(ctx, e.admin, e.ns)
				cancel()
			}
			if err != nil || !left || try == 2 {
				if err != nil {
					b.Logf("cleanup of %s: %v", e.ns, err)
				}
				return
			}
		}
	})
	return e
}

// bus opens a client on the environment's namespace (creating it),
// closed when the benchmark ends, after what was started on it later (the
// cleanups run last-in first-out).
func (e *benchEnv) bus(b *testing.B) bus.Bus {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bb, err := pulsarbus.New(ctx, pulsarbus.Config{ServiceURL: e.svc, AdminURL: e.admin, Namespace: e.ns}, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = bb.Close() })
	return bb
}

// snapshot reads the counters of a window (see bench.Take).
func (e *benchEnv) snapshot(b *testing.B, pids map[string]int) bench.Snapshot {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	all := map[string]int{"broker": brokerPID(b, e.svc)}
	for k, v := range pids {
		all[k] = v
	}
	s, err := bench.Take(ctx, e.admin, e.ns, all)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

var (
	brokerOnce sync.Once
	brokerPid  int
	brokerErr  error
)

// brokerPID is the broker's process: -broker-pid, or the process
// listening on the service URL's port.
func brokerPID(b *testing.B, svc string) int {
	b.Helper()
	brokerOnce.Do(func() {
		if *flagBrokerPID > 0 {
			brokerPid = *flagBrokerPID
			return
		}
		u, err := url.Parse(svc)
		if err != nil {
			brokerErr = err
			return
		}
		port, err := strconv.Atoi(u.Port())
		if err != nil {
			brokerErr = fmt.Errorf("port of %s: %w", svc, err)
			return
		}
		brokerPid, brokerErr = bench.ListenerPID(port)
	})
	if brokerErr != nil {
		b.Fatalf("the broker's process (for its CPU time; set -broker-pid): %v", brokerErr)
	}
	return brokerPid
}

var (
	binsOnce sync.Once
	bins     map[string]string
	binsErr  error
	binDir   string // removed when the test binary ends (TestMain)
	logDir   string
)

// TestMain removes the engine's binaries built for the benchmarks (138 MB
// a run; their logs stay, in logDir).
func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// engineBins builds the engine's binaries once per test binary.
func engineBins(b *testing.B) map[string]string {
	b.Helper()
	binsOnce.Do(func() {
		dir, err := os.MkdirTemp("", "pulsaga-bench-bin-")
		if err != nil {
			binsErr = err
			return
		}
		binDir = dir
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		if bins, binsErr = bench.Build(ctx, "..", dir); binsErr != nil {
			return // (not hidden by the log folder's creation below)
		}
		logDir = *flagLogDir
		if logDir == "" {
			logDir, binsErr = os.MkdirTemp("", "pulsaga-bench-logs-")
		} else {
			binsErr = os.MkdirAll(logDir, 0o755)
		}
	})
	if binsErr != nil {
		b.Fatal(binsErr)
	}
	return bins
}

// definitionsDir holds the definitions every engine under test registers
// at start.
func definitionsDir(b *testing.B) string {
	b.Helper()
	dir := b.TempDir()
	for _, f := range []string{tripFile, loanFile, waitFile} {
		src, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), src, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	return dir
}

// startEngine starts the engine's binaries on the environment in a
// decider mode; they are killed when the benchmark ends if still running.
func startEngine(b *testing.B, e *benchEnv, mode string) *bench.Engine {
	b.Helper()
	bins := engineBins(b)
	cfg := bench.EngineConfig{
		ServiceURL: e.svc, AdminURL: e.admin, Namespace: e.ns, Name: e.ns.Namespace,
		Partitions: *flagPartitions, Definitions: definitionsDir(b), DeciderMode: mode, LogLevel: *flagEngineLog,
		DeciderSwitch: len(engineModes(b)) > 1, Pprof: engineInfo(b).Pprof,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	en, err := bench.StartEngine(ctx, bins, cfg, logDir)
	if err != nil {
		b.Fatalf("engine %s: %v", cfg, err)
	}
	b.Cleanup(func() {
		if b.Failed() {
			b.Logf("engine logs kept in %s", logDir)
		}
		en.Kill()
	})
	return en
}

func stopEngine(b *testing.B, en *bench.Engine) {
	b.Helper()
	if err := en.Stop(); err != nil {
		b.Errorf("engine: %v", err)
	}
}

// workerWarmUp is the SDK's default worker.Options.DeliveryRecordWarmUp
// (bus.SubscribeOptions.DeliveryRecordWarmUp's default).
const workerWarmUp = 10 * time.Second

// waitWorkerWarmUp waits until workers started at since are past the
// warm-up in which lazy delivery records record every delivery.
func waitWorkerWarmUp(since time.Time) {
	if *flagDurable && !*flagEager {
		time.Sleep(time.Until(since.Add(workerWarmUp)))
	}
}

// runWorkers runs no-op workers for services on bb in this process until
// the benchmark ends (or stop is called).
func runWorkers(b *testing.B, bb bus.Bus, services map[string]map[string]worker.Handler) (stop func()) {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for svc, handlers := range services {
		w, err := worker.New(bb, worker.Options{Service: svc, Name: "bench-" + svc, Concurrency: *flagWorkers, DisableDurableDeliveryCount: !*flagDurable,
			EagerDeliveryRecords: *flagEager, StartedAfter: *flagStartedAft}, zerolog.Nop())
		if err != nil {
			cancel()
			b.Fatal(err)
		}
		for cmd, h := range handlers {
			w.Handle(cmd, h)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.Run(ctx); err != nil && ctx.Err() == nil {
				b.Errorf("worker %s: %v", svc, err)
			}
		}()
	}
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	b.Cleanup(stop)
	return stop
}

// tripServices are the trip saga's workers with no work: each handler
// returns at once (demo services without faults or latency).
func tripServices() map[string]map[string]worker.Handler {
	return demo.Trip(demo.Faults{}, nil)
}

// loanServices score every applicant below 700, so loan-approval
// processes wait for a loan officer's signal.
func loanServices() map[string]map[string]worker.Handler {
	ok := func(context.Context, *worker.Job) (any, error) { return map[string]any{"ok": true}, nil }
	return map[string]map[string]worker.Handler{
		"credit":        {"ScoreApplicant": func(context.Context, *worker.Job) (any, error) { return map[string]any{"score": 650}, nil }},
		"loans":         {"ApproveLoan": ok},
		"notifications": {"SendLetter": ok},
	}
}

const (
	tripFile  = "../testdata/trip-booking.yaml"
	loanFile  = "../testdata/loan-approval.yaml"
	sleepFile = "testdata/sleeps.yaml"
	waitFile  = "testdata/wait.yaml"
)

var (
	tripInput = json.RawMessage(`{"customer":"c-1","amount":120}`)
	loanInput = json.RawMessage(`{"applicant":"a-1","amount":5000}`)
)

// clientStart starts processes of def through the Go client.
func clientStart(c *bench.Client, def string, input json.RawMessage) bench.StartFunc {
	return func(ctx context.Context, pid string) error { return c.Start(ctx, pid, def, input) }
}

// waitingOrDone is a loan process waiting for its signal, or finished
// (which the benchmark then reports as a failure).
func waitingOrDone(r bench.Row) bool {
	return r.Steps["review"] == "waiting" || r.Terminal
}

// modes are the decider modes to measure, the default first: -modes, or
// every mode the engine's orchestrator offers.
func modes(b *testing.B) []string {
	b.Helper()
	have := engineModes(b)
	switch *flagModes {
	case "":
		return have
	case "default":
		return have[:1]
	}
	want := strings.Split(*flagModes, ",")
	for _, m := range want {
		if !slices.Contains(have, m) {
			b.Fatalf("-modes %s: this engine has the decider modes %v", *flagModes, have)
		}
	}
	return want
}

// engineModes are the decider modes the engine's orchestrator offers.
func engineModes(b *testing.B) []string { return engineInfo(b).Modes }

var (
	infoOnce sync.Once
	info     bench.Info
	infoErr  error
)

// engineInfo is what the orchestrator binary says of itself.
func engineInfo(b *testing.B) bench.Info {
	b.Helper()
	bins := engineBins(b)
	infoOnce.Do(func() { info, infoErr = bench.Probe(bins["orchestrator"]) })
	if infoErr != nil {
		b.Fatal(infoErr)
	}
	return info
}

func sizes(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			panic(fmt.Sprintf("bad size %q in %q", f, s))
		}
		out = append(out, n)
	}
	return out
}

// heap is the live heap after a full collection.
func heap() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func numCPU() int { return runtime.NumCPU() }

// ms is a duration in milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
