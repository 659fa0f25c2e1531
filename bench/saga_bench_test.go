package bench_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bench"
)

// The end-to-end benchmarks run the engine as separate processes of its
// real binaries (bench.Engine: cmd/orchestrator, and cmd/decider in the
// remote mode) on a namespace of their own, a fresh one per run; the
// no-op workers, the load generator and the status reader run in the
// benchmark's process. Every benchmark runs its scenario once per
// iteration (run them with -benchtime 1x; -count gives the repetitions
// bench/report takes medians of) and reports with b.ReportMetric.
// Latency is what a client sees: from handing the start request to the
// entrance (or, open loop, from its scheduled arrival) to reading the
// process's terminal row on the status topic.

// BenchmarkTrip keeps a number of trip sagas in flight (closed loop: each
// one completed lets the next start) and measures, over a window after a
// warm-up: completed sagas per second, latency under that load, the Pulsar
// messages, bytes and timers written per saga, and the CPU time per saga
// of the engine's processes, of the broker and of the benchmark's own
// process (from /proc).
func BenchmarkTrip(b *testing.B) {
	for i, mode := range modes(b) {
		ns := sizes(*flagInflight)
		if i > 0 {
			ns = sizes(*flagOtherSizes)
		}
		for _, n := range ns {
			b.Run(fmt.Sprintf("decider=%s/inflight=%d", mode, n), func(b *testing.B) {
				for range b.N {
					tripClosed(b, mode, n)
				}
			})
		}
	}
}

func tripClosed(b *testing.B, mode string, inflight int) {
	b.StopTimer()
	e := newEnv(b, "trip")
	bb := e.bus(b)
	workersSince := time.Now()
	stopWorkers := runWorkers(b, bb, tripServices())
	en := startEngine(b, e, mode)
	c := bench.NewClient(bb)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	// The messages per saga are those of running workers: a worker's first
	// seconds record every delivery (worker.Options.DeliveryRecordWarmUp),
	// a cost per instance start, not per saga.
	waitWorkerWarmUp(workersSince)

	var s0, s1 bench.Snapshot
	var perf *exec.Cmd
	loop := &bench.ClosedLoop{
		InFlight: inflight, Senders: *flagStarters, Warmup: inflight, Window: *flagWindow, Prefix: "trip",
		Start: clientStart(c, "trip-booking", tripInput), Alive: en.Alive, KeepGoing: true,
		OnWindow: func(open bool) error {
			if open {
				s0 = e.snapshot(b, en.PIDs())
				perf = startPerf(b, en, mode, inflight)
				startPprof(b, en, mode, inflight)
			} else {
				s1 = e.snapshot(b, en.PIDs())
				stopPerf(b, perf)
			}
			return nil
		},
	}
	w, err := bench.Watch(ctx, bb, bench.WatchOptions{Want: bench.Terminal, OnSeen: loop.Seen})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	b.StartTimer()
	res, err := loop.Run(ctx)
	b.StopTimer()
	if err != nil {
		b.Fatalf("closed loop of %d trip sagas, decider %s: %v", inflight, mode, err)
	}
	win := s1.Sub(s0)
	done := res.InWindow
	if done == 0 {
		b.Fatalf("no saga completed within the %s window", win.Wall)
	}
	reportSagaWindow(b, win, done, res)
	b.ReportMetric(float64(res.Failed), "failed-sagas")
	if res.Failed > 0 {
		b.Logf("%d sagas did not complete: %s", res.Failed, res.Why())
	}
	b.Logf("decider %s, %d in flight: %d sagas completed in the %s window (%d in all), %.1f sagas/s, p50 %.0fms p99 %.0fms; load %s",
		mode, inflight, done, res.Window.Round(time.Millisecond), res.Done, res.Rate(), bench.Quantile(res.Latencies, 0.5), bench.Quantile(res.Latencies, 0.99), bench.LoadAvg())
	b.Logf("per saga by topic: %s", win.PerUnit(done))
	b.Logf("CPU in the window: %s", cpuLine(win))
	w.Close()
	stopWorkers()
	stopEngine(b, en)
}

// reportSagaWindow reports the figures of a measuring window in which done
// sagas completed.
func reportSagaWindow(b *testing.B, win bench.Window, done int, res bench.LoopResult) {
	per := func(v float64) float64 { return v / float64(done) }
	msgs, bytes := win.Messages()
	timers := win.Topic(bench.TimersTopic())
	// Timers fired in the window (delivered to the relay) are relayed to
	// events once each: msgs/saga leaves those relays out (they may belong
	// to sagas of before the window), msgs-eventual/saga counts one relay
	// per timer written instead.
	own := msgs - timers.Out
	b.ReportMetric(res.Rate(), "sagas/s")
	b.ReportMetric(bench.Quantile(res.Latencies, 0.50), "p50-ms")
	b.ReportMetric(bench.Quantile(res.Latencies, 0.99), "p99-ms")
	b.ReportMetric(per(float64(own)), "msgs/saga")
	b.ReportMetric(per(float64(own+timers.Messages)), "msgs-eventual/saga")
	b.ReportMetric(per(float64(bytes))/1024, "KB/saga")
	b.ReportMetric(per(float64(win.Entries())), "entries/saga")
	b.ReportMetric(per(float64(timers.Messages)), "timers/saga")
	engine := win.CPU["orchestrator"] + win.CPU["decider"]
	b.ReportMetric(per(ms(engine)), "engine-cpu-ms/saga")
	b.ReportMetric(per(ms(win.CPU["broker"])), "broker-cpu-ms/saga")
	b.ReportMetric(per(ms(win.CPU[bench.Self])), "bench-cpu-ms/saga")
	if _, ok := win.CPU["decider"]; ok {
		b.ReportMetric(per(ms(win.CPU["decider"])), "decider-cpu-ms/saga")
	}
	// How busy the machine was (every process, all cores): a figure near
	// 100 % means the cores, not the engine's shape, were the limit.
	b.ReportMetric(100*win.Machine.Seconds()/(win.Wall.Seconds()*float64(numCPU())), "machine-busy-%")
}

func cpuLine(win bench.Window) string {
	var parts []string
	for _, n := range []string{"orchestrator", "decider", "broker", bench.Self} {
		if c, ok := win.CPU[n]; ok {
			parts = append(parts, fmt.Sprintf("%s %.1fs (%.0f%% of a core)", n, c.Seconds(), 100*c.Seconds()/win.Wall.Seconds()))
		}
	}
	parts = append(parts, fmt.Sprintf("machine %.0f%% busy of %d cores", 100*win.Machine.Seconds()/(win.Wall.Seconds()*float64(numCPU())), numCPU()))
	return strings.Join(parts, ", ")
}

// startPerf records the orchestrator's CPU profile with perf (-perf DIR)
// until stopPerf; nil without -perf.
func startPerf(b *testing.B, en *bench.Engine, mode string, inflight int) *exec.Cmd {
	if *flagPerf == "" {
		return nil
	}
	if err := os.MkdirAll(*flagPerf, 0o755); err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(*flagPerf, fmt.Sprintf("orchestrator-%s-%d-%s.perf.data", mode, inflight, time.Now().Format("150405")))
	// cpu-clock: virtual machines often have no hardware cycle counter.
	cmd := exec.Command("perf", "record", "-e", "cpu-clock", "-F", "499", "-g", "-p", strconv.Itoa(en.Orchestrator.PID), "-o", out)
	if err := cmd.Start(); err != nil {
		b.Fatalf("perf: %v", err)
	}
	b.Logf("perf record of the orchestrator into %s", out)
	return cmd
}

// startPprof fetches a CPU profile of the orchestrator from its admin
// listener's /debug/pprof (-pprof DIR; the orchestrator serves it when
// configured to, see bench.PprofEnv) for the window's minimum length, in
// the background; an engine without the endpoint is noted and skipped.
func startPprof(b *testing.B, en *bench.Engine, mode string, inflight int) {
	if *flagPprof == "" {
		return
	}
	if err := os.MkdirAll(*flagPprof, 0o755); err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(*flagPprof, fmt.Sprintf("orchestrator-%s-%d-%s.pprof", mode, inflight, time.Now().Format("150405")))
	go func() {
		if err := bench.FetchCPUProfile(en.API, *flagWindow, out); err != nil {
			fmt.Fprintf(os.Stderr, "pprof of the orchestrator: %v\n", err)
			return
		}
		fmt.Fprintf(os.Stderr, "pprof of the orchestrator: %s (go tool pprof -top %s %s)\n", out, engineBinsPath("orchestrator"), out)
	}()
}

func stopPerf(b *testing.B, cmd *exec.Cmd) {
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(os.Interrupt)
	_ = cmd.Wait() // ends by the signal
	// A flat profile beside it (go run ./bench/report -perf FILE.txt sums it by package).
	data := cmd.Args[len(cmd.Args)-1]
	out, err := exec.Command("perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "dso,sym", "-g", "none", "--percent-limit", "0").Output()
	if err != nil {
		b.Logf("perf report: %v", err)
		return
	}
	if err := os.WriteFile(data+".txt", out, 0o644); err != nil {
		b.Logf("perf report: %v", err)
	}
}

// BenchmarkTripOpen is the latency–throughput curve: trip sagas arrive at
// fixed rates (a Poisson process, whether or not earlier ones are done)
// for -open-duration each, at -open-steps percent of the measured maximum
// (-open-max: make bench passes the median sagas/s of BenchmarkTrip's
// runs), one engine per run with the steps in rising order. Latency counts
// from each saga's scheduled arrival.
func BenchmarkTripOpen(b *testing.B) {
	max := *flagOpenRate
	if max <= 0 && *flagOpenFile != "" {
		v, err := os.ReadFile(*flagOpenFile)
		if err != nil {
			b.Fatal(err)
		}
		if max, err = strconv.ParseFloat(strings.TrimSpace(string(v)), 64); err != nil {
			b.Fatalf("%s: %v", *flagOpenFile, err)
		}
	}
	if max <= 0 {
		b.Fatal("the open loop needs the measured maximum: -open-max or -open-max-file (make bench passes BenchmarkTrip's median)")
	}
	for _, mode := range modes(b)[:1] {
		b.Run("decider="+mode, func(b *testing.B) {
			for range b.N {
				tripOpen(b, mode, max)
			}
		})
	}
}

func tripOpen(b *testing.B, mode string, max float64) {
	b.StopTimer()
	e := newEnv(b, "open")
	bb := e.bus(b)
	workersSince := time.Now()
	stopWorkers := runWorkers(b, bb, tripServices())
	en := startEngine(b, e, mode)
	c := bench.NewClient(bb)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	// Latency of running workers, as tripClosed and tripUnloaded: a
	// worker's first seconds record every delivery (a broker write waited
	// for before each job), a cost per instance start, not per saga. (Until
	// session 7 the first step, at 25 %, ran in those seconds.)
	waitWorkerWarmUp(workersSince)
	// The watcher hands each terminal row to the load running at the time.
	var cur atomic.Pointer[func(bench.Row, time.Time)]
	w, err := bench.Watch(ctx, bb, bench.WatchOptions{Want: bench.Terminal, OnSeen: func(r bench.Row, at time.Time) {
		if f := cur.Load(); f != nil {
			(*f)(r, at)
		}
	}})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	// Warm-up: producers opened, every partition loaded.
	warm := &bench.ClosedLoop{InFlight: 64, Total: 256, Prefix: "warm", Start: clientStart(c, "trip-booking", tripInput), Alive: en.Alive}
	f := warm.Seen
	cur.Store(&f)
	if _, err := warm.Run(ctx); err != nil {
		b.Fatalf("warm-up: %v", err)
	}
	b.StartTimer()
	failed := 0
	for _, pct := range sizes(*flagOpenSteps) {
		rate := max * float64(pct) / 100
		l := &bench.OpenLoop{Rate: rate, Duration: *flagOpenDur, Senders: 128, Prefix: fmt.Sprintf("open%d", pct), Seed: uint64(pct),
			Start: clientStart(c, "trip-booking", tripInput), Alive: en.Alive, Drain: 5 * time.Minute, KeepGoing: true}
		f := l.Seen
		cur.Store(&f)
		res, err := l.Run(ctx)
		if err != nil {
			b.Fatalf("open loop at %d%% of %.1f sagas/s: %v", pct, max, err)
		}
		p50, p99 := bench.Quantile(res.Latencies, 0.5), bench.Quantile(res.Latencies, 0.99)
		b.Logf("%d%%: latency by arrival second (mean/max ms): %s", pct, byArrival(res))
		b.ReportMetric(p50, fmt.Sprintf("p50-ms@%d%%", pct))
		b.ReportMetric(p99, fmt.Sprintf("p99-ms@%d%%", pct))
		b.ReportMetric(float64(res.InWindow)/res.Window.Seconds(), fmt.Sprintf("sagas/s@%d%%", pct))
		failed += res.Failed
		if res.Failed > 0 {
			b.Logf("%d%%: %d sagas did not complete: %s", pct, res.Failed, res.Why())
		}
		b.Logf("%d%% of %.1f: %.1f arrivals/s for %s, %d sagas, completed at %.1f/s, p50 %.0fms p99 %.0fms max %.0fms; load %s",
			pct, max, rate, *flagOpenDur, res.Done, float64(res.InWindow)/res.Window.Seconds(), p50, p99, bench.Quantile(res.Latencies, 1), bench.LoadAvg())
	}
	b.StopTimer()
	b.ReportMetric(float64(failed), "failed-sagas")
	w.Close()
	stopWorkers()
	stopEngine(b, en)
}

// byArrival summarises an open loop's latencies by the second of the step
// their saga arrived in: a latency that grows through the step (a queue
// filling up) shows here, while p50 and p99 mix it with noise.
func byArrival(res bench.LoopResult) string {
	if len(res.SeenAt) != len(res.Latencies) || len(res.Latencies) == 0 {
		return "-"
	}
	type agg struct {
		n        int
		sum, max time.Duration
	}
	var secs []agg
	for i, at := range res.SeenAt {
		l := res.Latencies[i]
		s := int(at.Add(-l).Sub(res.First).Seconds())
		if s < 0 {
			s = 0
		}
		for len(secs) <= s {
			secs = append(secs, agg{})
		}
		secs[s].n++
		secs[s].sum += l
		secs[s].max = max(secs[s].max, l)
	}
	var parts []string
	for s, a := range secs {
		if a.n > 0 {
			parts = append(parts, fmt.Sprintf("%d:%d/%d", s, (a.sum/time.Duration(a.n)).Milliseconds(), a.max.Milliseconds()))
		}
	}
	return strings.Join(parts, " ")
}

// BenchmarkTripUnloaded runs -serial trip sagas one at a time on a warmed
// engine: the latency of a saga when nothing else runs.
func BenchmarkTripUnloaded(b *testing.B) {
	for _, mode := range modes(b) {
		b.Run("decider="+mode, func(b *testing.B) {
			for range b.N {
				tripUnloaded(b, mode)
			}
		})
	}
}

func tripUnloaded(b *testing.B, mode string) {
	b.StopTimer()
	e := newEnv(b, "serial")
	bb := e.bus(b)
	workersSince := time.Now()
	stopWorkers := runWorkers(b, bb, tripServices())
	en := startEngine(b, e, mode)
	c := bench.NewClient(bb)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// Latency of running workers: a worker's first seconds record every
	// delivery (a broker write waited for before each job), a cost per
	// instance start, not per saga (as tripClosed).
	waitWorkerWarmUp(workersSince)
	w, err := bench.Watch(ctx, bb, bench.WatchOptions{Want: bench.Terminal, KeepRows: true})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	run := time.Now().UnixNano()
	one := func(pid string) time.Duration {
		t0 := time.Now()
		if err := c.Start(ctx, pid, "trip-booking", tripInput); err != nil {
			b.Fatal(err)
		}
		seen, err := w.Wait(ctx, pid)
		if err != nil {
			b.Fatal(err)
		}
		if r := w.Row(pid); !r.Completed {
			b.Fatalf("%s ended %s", pid, r.Status)
		}
		return seen.Sub(t0)
	}
	for i := range 5 { // warm-up: producers opened, partitions loaded
		one(fmt.Sprintf("warm-%d-%d", run, i))
	}
	b.StartTimer()
	lat := make([]time.Duration, 0, *flagSerial)
	for i := range *flagSerial {
		lat = append(lat, one(fmt.Sprintf("serial-%d-%d", run, i)))
	}
	b.StopTimer()
	b.ReportMetric(bench.Quantile(lat, 0.5), "p50-ms")
	b.ReportMetric(bench.Quantile(lat, 0.9), "p90-ms")
	b.ReportMetric(bench.Quantile(lat, 1), "max-ms")
	b.Logf("decider %s: %d sagas one at a time: p50 %.1fms p90 %.1fms max %.1fms", mode, len(lat), bench.Quantile(lat, 0.5), bench.Quantile(lat, 0.9), bench.Quantile(lat, 1))
	w.Close()
	stopWorkers()
	stopEngine(b, en)
}
