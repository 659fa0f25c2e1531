package bench_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bench"
	"github.com/pulsaga/pulsaga/bus"
)

// BenchmarkStarts measures the start path through each entrance of the
// engine (-entrances): the Go client (-starters goroutines, one request
// each at a time), the starts topic (one producer, pipelined, as another
// system would publish), the admin HTTP API (-starters goroutines on
// keep-alive connections), and the CLI (`pulsaga start`, 8 at a time, one
// process each; "cli-api" through the admin API with --server, "cli"
// straight to Pulsar). The processes (bench/testdata/wait.yaml) wait for a
// signal once started, so no worker and no timer is involved: starts/s is
// the requests of one entrance divided by the time from the first request
// to the last process's first status row.
func BenchmarkStarts(b *testing.B) {
	for range b.N {
		starts(b, modes(b)[0])
	}
}

func starts(b *testing.B, mode string) {
	b.StopTimer()
	e := newEnv(b, "starts")
	bb := e.bus(b)
	defer bb.Close()
	en := startEngine(b, e, mode)
	c := bench.NewClient(bb)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	var cur atomic.Pointer[func(bench.Row, time.Time)]
	w, err := bench.Watch(ctx, bb, bench.WatchOptions{Want: bench.Any, OnSeen: func(r bench.Row, at time.Time) {
		if f := cur.Load(); f != nil {
			(*f)(r, at)
		}
	}})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	run := func(name string, n, senders int, start bench.StartFunc, after func() error) {
		l := &bench.ClosedLoop{InFlight: n, Senders: senders, Total: n, Prefix: "start-" + name, Start: start, Alive: en.Alive, Drain: 10 * time.Minute}
		f := l.Seen
		cur.Store(&f)
		res, err := l.Run(ctx)
		if err == nil && after != nil {
			err = after()
		}
		if err != nil {
			b.Fatalf("starts through %s: %v", name, err)
		}
		rate := float64(res.Done) / res.Last.Sub(res.First).Seconds()
		if name != "warm" {
			b.ReportMetric(rate, name+"-starts/s")
		}
		b.Logf("%s: %d starts, %d at a time: first request → last process started %s: %.0f starts/s; load %s",
			name, n, senders, res.Last.Sub(res.First).Round(time.Millisecond), rate, bench.LoadAvg())
	}
	// Warm-up: every partition loaded, the producers open.
	run("warm", 64, 16, clientStart(c, "bench-wait", nil), nil)
	b.StartTimer()
	for _, ent := range strings.Split(*flagEntrances, ",") {
		switch ent {
		case "client":
			run(ent, *flagStarts, *flagStarters, clientStart(c, "bench-wait", nil), nil)
		case "topic":
			start, flush := topicStart(b, bb)
			run(ent, *flagStarts, 1, start, flush)
		case "http":
			run(ent, *flagStarts, *flagStarters, httpStart(en.API), nil)
		case "cli-api":
			run(ent, *flagStartsCLI, 8, cliStart(en, en.API), nil)
		case "cli":
			run(ent, *flagStartsCLI, 8, cliStart(en, ""), nil)
		case "":
		default:
			b.Fatalf("unknown entrance %q (have client, topic, http, cli-api, cli)", ent)
		}
	}
	b.StopTimer()
	w.Close()
	stopEngine(b, en)
}

// topicStart publishes start requests on the starts topic through one
// producer, without waiting for each (the send errors are collected and
// returned by flush).
func topicStart(b *testing.B, bb bus.Bus) (bench.StartFunc, func() error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := bb.Producer(ctx, bus.ProducerOptions{Topic: bench.StartsTopic()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = p.Close() })
	var mu sync.Mutex
	var errs []error
	start := func(ctx context.Context, pid string) error {
		m, err := bench.StartMessage(pid, "bench-wait", nil)
		if err != nil {
			return err
		}
		p.SendAsync(ctx, m, func(_ bus.MessageID, err error) {
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
		return nil
	}
	flush := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := p.Flush(ctx); err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		return errors.Join(errs...)
	}
	return start, flush
}

// httpStart posts start requests to the admin API.
func httpStart(api string) bench.StartFunc {
	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	return func(ctx context.Context, pid string) error {
		body, err := bench.HTTPStartBody(pid, "bench-wait", nil)
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, api+bench.HTTPStartPath, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		msg, _ := io.ReadAll(resp.Body)
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("POST %s: %s: %s", bench.HTTPStartPath, resp.Status, msg)
		}
		return nil
	}
}

// cliStart runs `pulsaga start` once per process.
func cliStart(en *bench.Engine, server string) bench.StartFunc {
	return func(ctx context.Context, pid string) error {
		cmd := exec.CommandContext(ctx, engineBinsPath("pulsaga"), bench.CLIStartArgs(en.Config, server, pid, "bench-wait", []byte("{}"))...)
		cmd.Env = append(cmd.Environ(), "PULSAR_URL="+en.Config.ServiceURL, "PULSAR_ADMIN_URL="+en.Config.AdminURL)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("pulsaga start: %w: %s", err, out)
		}
		return nil
	}
}

func engineBinsPath(name string) string { return bins[name] }
