package bench_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bench"
	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/worker"
)

// These benchmarks run the whole engine inside the benchmark's process
// (bench.StartInProcess, as `pulsaga dev --pulsar`), for figures read from
// this process: its live heap, the timer relay's lateness hook.

// engineLog is the engine's own log on stderr when BENCH_LOG is "all",
// for looking into a slow run; zerolog.Nop() otherwise.
func engineLog() zerolog.Logger {
	if os.Getenv("BENCH_LOG") == "all" {
		return zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: "15:04:05.000"}).Level(zerolog.InfoLevel).With().Timestamp().Logger()
	}
	return zerolog.Nop()
}

func startInProcess(b *testing.B, bb bus.Bus, services map[string]map[string]worker.Handler, observe func(string, time.Duration), defs ...string) *bench.InProcessEngine {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	en, err := bench.StartInProcess(ctx, bb, services, *flagWorkers, observe, engineLog())
	if err != nil {
		b.Fatal(err)
	}
	for _, d := range defs {
		src, err := os.ReadFile(d)
		if err != nil {
			b.Fatal(err)
		}
		if err := en.Register(ctx, filepath.Base(d), src); err != nil {
			b.Fatal(err)
		}
	}
	return en
}

// BenchmarkMemoryPerWaitingProcess creates -waiting loan-approval
// processes that score below 700 and so wait for a signal, and reports the
// growth of the live heap (after GC) of the process running the engine,
// per waiting process.
func BenchmarkMemoryPerWaitingProcess(b *testing.B) {
	for range b.N {
		b.StopTimer()
		e := newEnv(b, "memory")
		bb := e.bus(b)
		en := startInProcess(b, bb, loanServices(), nil, loanFile)
		c := bench.NewClient(bb)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		var cur *bench.ClosedLoop
		var mu sync.Mutex
		w, err := bench.Watch(ctx, bb, bench.WatchOptions{Want: waitingOrDone, OnSeen: func(r bench.Row, at time.Time) {
			mu.Lock()
			l := cur
			mu.Unlock()
			if l != nil {
				l.Seen(r, at)
			}
		}})
		if err != nil {
			b.Fatal(err)
		}
		fill := func(prefix string, n int) bench.LoopResult {
			l := &bench.ClosedLoop{InFlight: min(n, *flagRestartIn), Senders: *flagStarters, Total: n, Prefix: prefix,
				Start: clientStart(c, "loan-approval", loanInput), Alive: en.Err}
			mu.Lock()
			cur = l
			mu.Unlock()
			res, err := l.Run(ctx)
			if err != nil {
				b.Fatalf("creating %d waiting processes: %v", n, err)
			}
			mu.Lock()
			cur = nil
			mu.Unlock()
			res.Latencies = nil // not to be counted in the heap
			return res
		}
		fill("warm", 64)
		h0 := heap()
		n := *flagWaiting
		b.StartTimer()
		res := fill("loan", n)
		b.StopTimer()
		// The watcher's own table is not the engine's: drop it first.
		w.Close()
		w = nil
		// Measured once they are idle: the engine keeps an idle image
		// encoded after its SnapshotAfter (5 s) and a sweep (each second).
		time.Sleep(*flagSettle)
		h1 := heap()
		per := (float64(h1) - float64(h0)) / float64(n)
		b.ReportMetric(per, "bytes/process")
		b.ReportMetric(float64(n), "processes")
		b.ReportMetric(float64(n)/res.Window.Seconds(), "created/s")
		b.Logf("%d waiting processes (created at %.0f/s): live heap %d → %d bytes, %.0f bytes/process; load %s", n, float64(n)/res.Window.Seconds(), h0, h1, per, bench.LoadAvg())
		cancel()
		_ = c.Close()
		if err := en.Stop(); err != nil {
			b.Errorf("engine: %v", err)
		}
	}
}

// BenchmarkTimerLateness runs -timerprocs processes of three 500ms sleeps
// each and reports how late the relay fired the sleep timers.
func BenchmarkTimerLateness(b *testing.B) {
	for range b.N {
		b.StopTimer()
		e := newEnv(b, "timers")
		bb := e.bus(b)
		var mu sync.Mutex
		var late []time.Duration
		en := startInProcess(b, bb, nil, func(kind string, d time.Duration) {
			if bench.SleepTimer(kind) {
				mu.Lock()
				late = append(late, d)
				mu.Unlock()
			}
		}, sleepFile)
		c := bench.NewClient(bb)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		n := *flagTimerProcs
		l := &bench.ClosedLoop{InFlight: n, Senders: *flagStarters, Total: n, Prefix: "sleeps", Start: clientStart(c, "bench-sleeps", nil), Alive: en.Err}
		w, err := bench.Watch(ctx, bb, bench.WatchOptions{Want: bench.Terminal, OnSeen: l.Seen})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := l.Run(ctx); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		w.Close()
		cancel()
		_ = c.Close()
		if err := en.Stop(); err != nil {
			b.Errorf("engine: %v", err)
		}
		mu.Lock()
		got := append([]time.Duration(nil), late...)
		mu.Unlock()
		if len(got) < 3*n {
			b.Fatalf("%d sleep timers observed, want at least %d", len(got), 3*n)
		}
		b.ReportMetric(bench.Quantile(got, 0.5), "late-p50-ms")
		b.ReportMetric(bench.Quantile(got, 0.99), "late-p99-ms")
		b.ReportMetric(bench.Quantile(got, 1), "late-max-ms")
		b.Logf("%d sleep timers of %d processes: lateness p50 %.1fms p99 %.1fms max %.1fms", len(got), n, bench.Quantile(got, 0.5), bench.Quantile(got, 0.99), bench.Quantile(got, 1))
	}
}
