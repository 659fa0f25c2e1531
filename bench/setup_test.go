package bench_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bench"
	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/pulsarbus"
	"github.com/pulsaga/pulsaga/demo"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/internal/pulsartest"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/worker"
	"github.com/pulsaga/pulsaga/workflow"
)

// Sizes, settable on the command line: go test ./bench -bench . -args -sagas 2000.
var (
	flagSagas      = flag.Int("sagas", 300, "trip sagas started at once by BenchmarkTripThroughput")
	flagSerial     = flag.Int("serial", 20, "trip sagas run one at a time by BenchmarkTripLatencyUnloaded")
	flagWaiting    = flag.Int("waiting", 500, "waiting processes of BenchmarkMemoryPerWaitingProcess")
	flagRestart    = flag.Int("restart", 10000, "waiting processes of BenchmarkRestart")
	flagTimerProcs = flag.Int("timerprocs", 100, "processes of BenchmarkTimerLateness (3 sleep timers each)")
	flagStarters   = flag.Int("starters", 32, "goroutines sending start requests")
	flagWave       = flag.Int("wave", 200, "waiting processes are created this many at a time (so the fill does not overload the engine into decision and attempt timeouts)")
	flagDeciders   = flag.Int("deciders", 1, "decider instances of the engine under test (StackOptions.Deciders)")
	flagFill       = flag.Int("fill-deciders", 2, "decider instances of the engine that creates BenchmarkRestart's processes (only the restarted engine is measured)")
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
		// engine waits (go tool pprof or read as text).
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
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := bench.DeleteNamespace(ctx, e.admin, e.ns); err != nil {
			b.Logf("cleanup: %v", err)
		}
	})
	return e
}

// bus opens a client on the environment's namespace; the caller closes it.
func (e *benchEnv) bus(b *testing.B) bus.Bus {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bb, err := pulsarbus.New(ctx, pulsarbus.Config{ServiceURL: e.svc, AdminURL: e.admin, Namespace: e.ns}, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	return bb
}

// messages is the number of messages written to the namespace so far.
func (e *benchEnv) messages(b *testing.B) (int64, []bench.TopicCount) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, by, err := bench.MessagesIn(ctx, e.admin, e.ns)
	if err != nil {
		b.Fatal(err)
	}
	return n, by
}

// startStack runs the whole engine in this process, as `pulsaga dev
// --pulsar` does (defaults: one orchestrator, one decider, one timer relay,
// 4 partitions), with the given workers.
func startStack(b *testing.B, bb bus.Bus, services map[string]map[string]worker.Handler, observe func(string, time.Duration)) *engine.Stack {
	return startStackN(b, bb, services, observe, *flagDeciders)
}

func startStackN(b *testing.B, bb bus.Bus, services map[string]map[string]worker.Handler, observe func(string, time.Duration), deciders int) *engine.Stack {
	return startStackLog(b, bb, services, observe, deciders, engineLog("all"))
}

// engineLog is the engine's own log on stderr when BENCH_LOG is "all" or
// names the phase ("restart": only the restarted engine), for looking into
// a slow run; zerolog.Nop() otherwise.
func engineLog(phase string) zerolog.Logger {
	if v := os.Getenv("BENCH_LOG"); v == "all" || v == phase {
		return zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: "15:04:05.000"}).Level(zerolog.InfoLevel).With().Timestamp().Logger()
	}
	return zerolog.Nop()
}

func startStackLog(b *testing.B, bb bus.Bus, services map[string]map[string]worker.Handler, observe func(string, time.Duration), deciders int, log zerolog.Logger) *engine.Stack {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := engine.StartStack(ctx, bb, engine.StackOptions{Name: "bench", Services: services, ObserveTimer: observe, Deciders: deciders}, log)
	if err != nil {
		b.Fatal(err)
	}
	return st
}

func stopStack(b *testing.B, st *engine.Stack) {
	b.Helper()
	if err := st.Stop(); err != nil {
		b.Errorf("stack: %v", err)
	}
}

func register(b *testing.B, st *engine.Stack, path string) {
	b.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := st.Registry.Register(ctx, filepath.Base(path), src); err != nil {
		b.Fatal(err)
	}
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
)

var (
	tripInput = json.RawMessage(`{"customer":"c-1","amount":120}`)
	loanInput = json.RawMessage(`{"applicant":"a-1","amount":5000}`)
)

// startAll sends a start request for every pid from flagStarters
// goroutines and returns when each was sent (sent[i] is when pids[i]'s
// request was handed to the client).
func startAll(ctx context.Context, b *testing.B, c *engine.Client, def string, input json.RawMessage, pids []string) []time.Time {
	b.Helper()
	sent := make([]time.Time, len(pids))
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, *flagStarters)
	for range *flagStarters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(pids) {
					return
				}
				sent[i] = time.Now()
				if err := c.Start(ctx, protocol.StartRequest{ProcessID: pids[i], Definition: def, Input: input}); err != nil {
					errs <- fmt.Errorf("start %s: %w", pids[i], err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	return sent
}

// fill creates waiting processes wave by wave: each wave of -wave starts
// is sent once the previous one has settled (every process waiting or
// finished), so no decision waits in a queue for longer than its timeout.
// It returns the processes that did not reach the wait (they failed).
func fill(ctx context.Context, b *testing.B, c *engine.Client, w *bench.Watcher, pids []string, settledBefore int) []string {
	b.Helper()
	for i := 0; i < len(pids); i += *flagWave {
		j := min(i+*flagWave, len(pids))
		startAll(ctx, b, c, "loan-approval", loanInput, pids[i:j])
		if err := w.WaitCount(ctx, settledBefore+j); err != nil {
			b.Fatal(err)
		}
	}
	var failed []string
	for _, pid := range pids {
		if r := w.Row(pid); r.Status.Terminal() {
			failed = append(failed, pid)
		}
	}
	return failed
}

// waitingOrDone is a loan process waiting for its signal, or finished
// (which the benchmark then reports as a failure).
func waitingOrDone(r engine.StatusRecord) bool {
	return r.Steps["review"] == string(workflow.StepWaiting) || r.Status.Terminal()
}

func pidsFor(prefix string, n int) []string {
	pids := make([]string, n)
	run := time.Now().UnixNano()
	for i := range pids {
		pids[i] = fmt.Sprintf("%s-%d-%d", prefix, run, i)
	}
	return pids
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
