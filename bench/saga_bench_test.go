package bench_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bench"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/workflow"
)

// Every benchmark runs its whole scenario once per iteration in a fresh
// namespace with a fresh engine (run them with -benchtime 1x; -count gives
// the repetitions the docs take medians of) and reports its figures with
// b.ReportMetric. Latency is what a client sees: from handing the start
// request to engine.Client to reading the process's terminal row on the
// status topic.

// BenchmarkTripThroughput starts -sagas trip sagas at once (no-op workers)
// and waits until all are completed: completed sagas per second, latency
// percentiles under that load, and the Pulsar messages written per saga.
func BenchmarkTripThroughput(b *testing.B) {
	var rate, p50, p99, msgs, timersPer, eventual, kb []float64
	for range b.N {
		b.StopTimer()
		e := newEnv(b, "trip")
		bb := e.bus(b)
		var fired atomic.Int64
		st := startStack(b, bb, tripServices(), func(string, time.Duration) { fired.Add(1) })
		register(b, st, tripFile)
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		w, err := bench.Watch(ctx, bb, protocol.DefaultTopics().Status, bench.Terminal)
		if err != nil {
			b.Fatal(err)
		}
		// Warm-up: producers opened, every partition loaded.
		warm := pidsFor("warm", 16)
		startAll(ctx, b, st.Client, "trip-booking", tripInput, warm)
		if err := w.WaitCount(ctx, len(warm)); err != nil {
			b.Fatal(err)
		}
		m0, by0 := e.messages(b)
		f0 := fired.Load()
		n := *flagSagas
		pids := pidsFor("trip", n)
		b.StartTimer()
		sent := startAll(ctx, b, st.Client, "trip-booking", tripInput, pids)
		if err := w.WaitCount(ctx, len(warm)+n); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		lat := make([]time.Duration, n)
		var last time.Time
		for i, pid := range pids {
			seen, _ := w.Seen(pid)
			if r := w.Row(pid); r.Status != workflow.StatusCompleted {
				b.Fatalf("%s ended %s: %+v", pid, r.Status, r)
			}
			lat[i] = seen.Sub(sent[i])
			if seen.After(last) {
				last = seen
			}
		}
		m1, by1 := e.messages(b)
		f1 := fired.Load()
		w.Close()
		cancel()
		stopStack(b, st)
		_ = bb.Close()
		el := last.Sub(sent[0])
		rate = append(rate, float64(n)/el.Seconds())
		p50 = append(p50, bench.Quantile(lat, 0.50))
		p99 = append(p99, bench.Quantile(lat, 0.99))
		// Timers (attempt and decision timeouts, retention) fire after the
		// saga, each relayed to the events topic then: a run longer than
		// the 30s timeouts sees some fire. msgs/saga leaves those relays
		// out; msgs-eventual/saga adds one per timer written.
		delta := diff(by0, by1)
		var bytes, timerMsgs int64
		for _, c := range delta {
			bytes += c.Bytes
			if c.Topic == "timers" {
				timerMsgs = c.Messages
			}
		}
		own := m1 - m0 - (f1 - f0)
		msgs = append(msgs, float64(own)/float64(n))
		timersPer = append(timersPer, float64(timerMsgs)/float64(n))
		eventual = append(eventual, float64(own+timerMsgs)/float64(n))
		kb = append(kb, float64(bytes)/float64(n)/1024)
		b.Logf("%d sagas in %s: %.1f sagas/s, p50 %.0fms p99 %.0fms, %.1f msgs/saga (%d timers relayed meanwhile); per saga by topic: %s",
			n, el.Round(time.Millisecond), rate[len(rate)-1], p50[len(p50)-1], p99[len(p99)-1], msgs[len(msgs)-1], f1-f0, perSaga(delta, n))
	}
	b.ReportMetric(median(rate), "sagas/s")
	b.ReportMetric(median(p50), "p50-ms")
	b.ReportMetric(median(p99), "p99-ms")
	b.ReportMetric(median(msgs), "msgs/saga")
	b.ReportMetric(median(timersPer), "timers/saga")
	b.ReportMetric(median(eventual), "msgs-eventual/saga")
	b.ReportMetric(median(kb), "KB/saga")
}

// BenchmarkTripLatencyUnloaded runs -serial trip sagas one at a time:
// the latency of a saga on an idle engine.
func BenchmarkTripLatencyUnloaded(b *testing.B) {
	var p50, p90 []float64
	for range b.N {
		b.StopTimer()
		e := newEnv(b, "serial")
		bb := e.bus(b)
		st := startStack(b, bb, tripServices(), nil)
		register(b, st, tripFile)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		w, err := bench.Watch(ctx, bb, protocol.DefaultTopics().Status, bench.Terminal)
		if err != nil {
			b.Fatal(err)
		}
		warm := pidsFor("warm", 16)
		startAll(ctx, b, st.Client, "trip-booking", tripInput, warm)
		if err := w.WaitCount(ctx, len(warm)); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		lat := make([]time.Duration, 0, *flagSerial)
		for _, pid := range pidsFor("serial", *flagSerial) {
			t0 := time.Now()
			if err := st.Client.Start(ctx, protocol.StartRequest{ProcessID: pid, Definition: "trip-booking", Input: tripInput}); err != nil {
				b.Fatal(err)
			}
			seen, err := w.Wait(ctx, pid)
			if err != nil {
				b.Fatal(err)
			}
			if r := w.Row(pid); r.Status != workflow.StatusCompleted {
				b.Fatalf("%s ended %s", pid, r.Status)
			}
			lat = append(lat, seen.Sub(t0))
		}
		b.StopTimer()
		w.Close()
		cancel()
		stopStack(b, st)
		_ = bb.Close()
		p50 = append(p50, bench.Quantile(lat, 0.5))
		p90 = append(p90, bench.Quantile(lat, 0.9))
		b.Logf("%d sagas one at a time: p50 %.1fms p90 %.1fms", len(lat), p50[len(p50)-1], p90[len(p90)-1])
	}
	b.ReportMetric(median(p50), "p50-ms")
	b.ReportMetric(median(p90), "p90-ms")
}

// BenchmarkTimerLateness runs -timerprocs processes of three 500ms sleeps
// each and reports how late the relay fired the sleep timers.
func BenchmarkTimerLateness(b *testing.B) {
	var p50, p99, maxs []float64
	for range b.N {
		b.StopTimer()
		e := newEnv(b, "timers")
		bb := e.bus(b)
		var mu sync.Mutex
		var late []time.Duration
		st := startStack(b, bb, nil, func(kind string, d time.Duration) {
			if kind == string(workflow.TimerSleep) {
				mu.Lock()
				late = append(late, d)
				mu.Unlock()
			}
		})
		register(b, st, sleepFile)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		w, err := bench.Watch(ctx, bb, protocol.DefaultTopics().Status, bench.Terminal)
		if err != nil {
			b.Fatal(err)
		}
		n := *flagTimerProcs
		b.StartTimer()
		startAll(ctx, b, st.Client, "bench-sleeps", nil, pidsFor("sleeps", n))
		if err := w.WaitCount(ctx, n); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		w.Close()
		cancel()
		stopStack(b, st)
		_ = bb.Close()
		mu.Lock()
		got := append([]time.Duration(nil), late...)
		mu.Unlock()
		if len(got) < 3*n {
			b.Fatalf("%d sleep timers observed, want at least %d", len(got), 3*n)
		}
		p50 = append(p50, bench.Quantile(got, 0.5))
		p99 = append(p99, bench.Quantile(got, 0.99))
		maxs = append(maxs, bench.Quantile(got, 1))
		b.Logf("%d sleep timers of %d processes: lateness p50 %.1fms p99 %.1fms max %.1fms", len(got), n, p50[len(p50)-1], p99[len(p99)-1], maxs[len(maxs)-1])
	}
	b.ReportMetric(median(p50), "late-p50-ms")
	b.ReportMetric(median(p99), "late-p99-ms")
	b.ReportMetric(median(maxs), "late-max-ms")
}

// BenchmarkMemoryPerWaitingProcess starts -waiting loan-approval
// processes that score below 700 and so wait for a signal, and reports the
// growth of the live heap (after GC) of the process running the engine,
// per waiting process.
func BenchmarkMemoryPerWaitingProcess(b *testing.B) {
	var per []float64
	for range b.N {
		b.StopTimer()
		e := newEnv(b, "memory")
		bb := e.bus(b)
		st := startStack(b, bb, loanServices(), nil)
		register(b, st, loanFile)
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		w, err := bench.Watch(ctx, bb, protocol.DefaultTopics().Status, waitingOrDone)
		if err != nil {
			b.Fatal(err)
		}
		warm := pidsFor("warm", 16)
		startAll(ctx, b, st.Client, "loan-approval", loanInput, warm)
		if err := w.WaitCount(ctx, len(warm)); err != nil {
			b.Fatal(err)
		}
		h0 := heap()
		n := *flagWaiting
		b.StartTimer()
		if failed := fill(ctx, b, st.Client, w, pidsFor("loan", n), len(warm)); len(failed) > 0 {
			b.Fatalf("%d of %d processes failed instead of waiting, e.g. %s: %+v", len(failed), n, failed[0], w.Row(failed[0]))
		}
		b.StopTimer()
		// The watcher's own table is not the engine's: drop it first.
		w.Close()
		w = nil
		h1 := heap()
		per = append(per, (float64(h1)-float64(h0))/float64(n))
		b.Logf("%d waiting processes: live heap %d → %d bytes, %.0f bytes/process", n, h0, h1, per[len(per)-1])
		cancel()
		stopStack(b, st)
		_ = bb.Close()
	}
	b.ReportMetric(median(per), "bytes/process")
}

// BenchmarkRestart creates -restart waiting loan-approval processes,
// stops the engine, starts a new one on a new connection and measures the
// time until it decides again on every partition: signals sent at once to
// 64 of the processes (spread over all 4 partitions) have all completed.
// The new engine loads a partition's snapshots when its first event arrives,
// so this is load + first decisions. It also reports the live heap the new
// engine grew by per loaded process.
func BenchmarkRestart(b *testing.B) {
	for range b.N {
		b.StopTimer()
		e := newEnv(b, "restart")
		n := *flagRestart
		bb := e.bus(b)
		st := startStackN(b, bb, loanServices(), nil, *flagFill)
		register(b, st, loanFile)
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
		w, err := bench.Watch(ctx, bb, protocol.DefaultTopics().Status, waitingOrDone)
		if err != nil {
			b.Fatal(err)
		}
		pids := pidsFor("loan", n)
		t0 := time.Now()
		if failed := fill(ctx, b, st.Client, w, pids, 0); len(failed) > 0 {
			b.Fatalf("%d of %d processes failed instead of waiting, e.g. %s: %+v", len(failed), n, failed[0], w.Row(failed[0]))
		}
		created := time.Since(t0)
		w.Close()
		w = nil
		stopStack(b, st)
		_ = bb.Close()
		const signals = 64
		targets := make([]string, signals)
		for i := range targets {
			targets[i] = pids[i*n/signals]
		}
		pids = nil
		h0 := heap()

		b.StartTimer()
		t1 := time.Now()
		bb2 := e.bus(b)
		st2 := startStackLog(b, bb2, loanServices(), nil, *flagDeciders, engineLog("restart"))
		up := time.Since(t1)
		w2, err := bench.WatchFrom(ctx, bb2, protocol.DefaultTopics().Status, bench.Terminal, true)
		if err != nil {
			b.Fatal(err)
		}
		for _, pid := range targets {
			if err := st2.Client.Signal(ctx, pid, "loan_decision", "restart-"+pid, json.RawMessage(`{"approved":true,"officer":"o-1"}`)); err != nil {
				b.Fatal(err)
			}
		}
		var first, last time.Time
		for _, pid := range targets {
			seen, err := w2.Wait(ctx, pid)
			if err != nil {
				b.Fatal(err)
			}
			if r := w2.Row(pid); r.Status != workflow.StatusCompleted {
				b.Fatalf("%s ended %s", pid, r.Status)
			}
			if first.IsZero() || seen.Before(first) {
				first = seen
			}
			if seen.After(last) {
				last = seen
			}
		}
		b.StopTimer()
		w2.Close()
		h1 := heap()
		restart := last.Sub(t1)
		b.ReportMetric(restart.Seconds(), "restart-s")
		b.ReportMetric(first.Sub(t1).Seconds(), "first-decision-s")
		b.ReportMetric(up.Seconds(), "stack-up-s")
		b.ReportMetric((float64(h1)-float64(h0))/float64(n), "loaded-bytes/process")
		b.ReportMetric(float64(n)/created.Seconds(), "created/s")
		b.Logf("%d waiting processes created in %s; restart: stack up in %s, first signalled process completed after %s, all %d after %s; live heap %d → %d",
			n, created.Round(time.Millisecond), up.Round(time.Millisecond), first.Sub(t1).Round(time.Millisecond), signals, restart.Round(time.Millisecond), h0, h1)
		cancel()
		stopStack(b, st2)
		_ = bb2.Close()
	}
}

func diff(before, after []bench.TopicCount) []bench.TopicCount {
	old := map[string]bench.TopicCount{}
	for _, c := range before {
		old[c.Topic] = c
	}
	var out []bench.TopicCount
	for _, c := range after {
		o := old[c.Topic]
		if d := (bench.TopicCount{Topic: c.Topic, Messages: c.Messages - o.Messages, Bytes: c.Bytes - o.Bytes}); d.Messages != 0 {
			out = append(out, d)
		}
	}
	return out
}

func perSaga(cs []bench.TopicCount, n int) string {
	s := ""
	for i, c := range cs {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s %.2f (%.0fB)", c.Topic, float64(c.Messages)/float64(n), float64(c.Bytes)/float64(max(c.Messages, 1)))
	}
	return s
}
