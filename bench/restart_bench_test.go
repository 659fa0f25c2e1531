package bench_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bench"
)

// BenchmarkRestart creates -restart waiting loan-approval processes (at
// most -restart-inflight being created at once), then restarts the
// orchestrator (SIGTERM, or SIGKILL with -restart-kill; the decider keeps
// running) and signals 64 of the processes (spread over every partition)
// as soon as the new process is started. It reports the time from the new
// process's start to its /readyz answering, to the first signalled
// process's first decision after the signal (the step "review" completed
// in its status row) and to all 64 such decisions; the rate the processes
// were created at; and the new orchestrator's resident memory per loaded
// process (RSS, so it includes the Go heap's headroom), and, when the
// orchestrator serves /debug/pprof, its live heap per waiting process (after
// a collection, before and after the fill: the engine's memory per waiting
// process in the real binary).
func BenchmarkRestart(b *testing.B) {
	for range b.N {
		restart(b, modes(b)[0])
	}
}

func restart(b *testing.B, mode string) {
	b.StopTimer()
	e := newEnv(b, "restart")
	bb := e.bus(b)
	stopWorkers := runWorkers(b, bb, loanServices())
	en := startEngine(b, e, mode)
	c := bench.NewClient(bb)
	defer c.Close()
	n := *flagRestart
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()

	// The orchestrator's live heap before and after the fill, when it
	// serves /debug/pprof (its configuration, see bench.OrchestratorEnv).
	heap0, heapErr := bench.LiveHeap(en.API)
	if heapErr != nil {
		b.Logf("no live heap of the orchestrator binary: %v", heapErr)
	}

	// Fill.
	var mu sync.Mutex
	pids := make([]string, 0, n)
	start := clientStart(c, "loan-approval", loanInput)
	l := &bench.ClosedLoop{InFlight: min(n, *flagRestartIn), Senders: *flagStarters, Total: n, Prefix: "loan", Alive: en.Alive, Drain: 50 * time.Minute,
		Start: func(ctx context.Context, pid string) error {
			mu.Lock()
			pids = append(pids, pid)
			mu.Unlock()
			return start(ctx, pid)
		}}
	w, err := bench.Watch(ctx, bb, bench.WatchOptions{Want: waitingOrDone, OnSeen: l.Seen})
	if err != nil {
		b.Fatal(err)
	}
	res, err := l.Run(ctx)
	if err != nil {
		b.Fatalf("creating %d waiting processes: %v", n, err)
	}
	w.Close()
	created := float64(n) / res.Window.Seconds()
	rss0, err := bench.ProcRSS(en.Orchestrator.PID)
	if err != nil {
		b.Fatal(err)
	}
	if heapErr == nil {
		// Measured once they are idle, as BenchmarkMemoryPerWaitingProcess
		// does: the engine keeps an idle image encoded after its
		// SnapshotAfter (5 s) and a sweep; right after the fill the last
		// processes created are still decoded.
		// The sweep encodes at most 4,096 images a second, after the
		// orchestrator's own work: with 100,000 processes the heap goes on
		// falling after the settle time (2,082 B/process after 10 s, 1,484
		// after 30 s), so it is read again every 5 s until it falls by less
		// than 1 % (at most a minute more).
		time.Sleep(*flagSettle)
		heap1, err := bench.LiveHeap(en.API)
		if err != nil {
			b.Fatal(err)
		}
		for end := time.Now().Add(time.Minute); time.Now().Before(end); {
			time.Sleep(5 * time.Second)
			h, err := bench.LiveHeap(en.API)
			if err != nil {
				b.Fatal(err)
			}
			fell := heap1 - h
			heap1 = min(heap1, h)
			if fell*100 < heap1 {
				break
			}
		}
		b.ReportMetric(float64(heap1-heap0)/float64(n), "heap-bytes/process")
		b.Logf("live heap of the orchestrator: %d → %d bytes with %d waiting processes: %.0f bytes/process", heap0, heap1, n, float64(heap1-heap0)/float64(n))
	}
	const signals = 64
	targets := make([]string, signals)
	for i := range targets {
		targets[i] = pids[i*len(pids)/signals]
	}
	pids = nil

	// Restart.
	decided := func(r bench.Row) bool { return r.Steps["review"] == "completed" || r.Terminal }
	w2, err := bench.Watch(ctx, bb, bench.WatchOptions{Want: decided, Latest: true, KeepRows: true})
	if err != nil {
		b.Fatal(err)
	}
	defer w2.Close()
	b.StartTimer()
	t1 := time.Now()
	if err := en.Restart(*flagRestartK); err != nil {
		b.Fatal(err)
	}
	for _, pid := range targets {
		if err := c.Signal(ctx, pid, "loan_decision", "restart-"+pid, json.RawMessage(`{"approved":true,"officer":"o-1"}`)); err != nil {
			b.Fatal(err)
		}
	}
	readyc := make(chan time.Time, 1)
	go func() {
		if err := bench.WaitHTTP(ctx, en.API+bench.ReadyPath, en.Alive); err == nil {
			readyc <- time.Now()
		}
		close(readyc)
	}()
	var first, last time.Time
	for _, pid := range targets {
		seen, err := w2.Wait(ctx, pid)
		if err != nil {
			b.Fatal(err)
		}
		if r := w2.Row(pid); r.Terminal && !r.Completed {
			b.Fatalf("%s ended %s after the restart", pid, r.Status)
		}
		if first.IsZero() || seen.Before(first) {
			first = seen
		}
		if seen.After(last) {
			last = seen
		}
	}
	b.StopTimer()
	ready, ok := <-readyc
	if !ok {
		b.Fatal("the restarted orchestrator never answered /readyz")
	}
	rss1, err := bench.ProcRSS(en.Orchestrator.PID)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(first.Sub(t1).Seconds(), "first-decision-s")
	b.ReportMetric(last.Sub(t1).Seconds(), "all-decisions-s")
	b.ReportMetric(ready.Sub(t1).Seconds(), "ready-s")
	b.ReportMetric(created, "created/s")
	b.ReportMetric(float64(n), "processes")
	b.ReportMetric(float64(rss1)/float64(n), "rss-bytes/process")
	b.Logf("%d waiting processes created in %s (%.0f/s), orchestrator RSS %d MB; restart (%s): ready after %s, first decision after %s, all %d after %s; RSS of the new orchestrator %d MB; load %s",
		n, res.Window.Round(time.Millisecond), created, rss0>>20, map[bool]string{true: "SIGKILL", false: "SIGTERM"}[*flagRestartK],
		ready.Sub(t1).Round(time.Millisecond), first.Sub(t1).Round(time.Millisecond), signals, last.Sub(t1).Round(time.Millisecond), rss1>>20, bench.LoadAvg())
	w2.Close()
	stopWorkers()
	stopEngine(b, en)
}
