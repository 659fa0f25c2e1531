package bench_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bench"
	"github.com/pulsaga/pulsaga/bus"
)

// BenchmarkStarts measures the start path through each entrance of the
// engine (-entrances):
//
//   - client: the Go client, one request at a time from -starters goroutines;
//   - client-many: the Go client's StartMany, batches of 500 from 4 goroutines;
//   - topic: the starts topic, one producer, pipelined (as another system
//     would publish);
//   - http: POST /api/v1/processes, -starters goroutines on keep-alive
//     connections; http-batch: POST /api/v1/processes/batch, 1,000 a request,
//     4 at a time;
//   - cli, cli-api: `pulsaga start`, one process per start, 8 at a time,
//     straight to Pulsar or through the API (--server); cli-from,
//     cli-from-api: one `pulsaga start --from FILE` of all the requests.
//
// The processes (bench/testdata/wait.yaml) wait for a signal once started,
// so no worker and no timer is involved: starts/s is the requests of one
// entrance divided by the time from the first request to the last
// process's first status row.
func BenchmarkStarts(b *testing.B) {
	for range b.N {
		starts(b, modes(b)[0])
	}
}

func starts(b *testing.B, mode string) {
	b.StopTimer()
	e := newEnv(b, "starts")
	bb := e.bus(b)
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
	one := func(start bench.StartFunc) func(context.Context, []string) error {
		return func(ctx context.Context, pids []string) error {
			for _, pid := range pids {
				if err := start(ctx, pid); err != nil {
					return err
				}
			}
			return nil
		}
	}
	run := func(name string, n, batch, senders int, send func(context.Context, []string) error, after func() error) {
		l := &bench.Burst{N: n, Batch: batch, Senders: senders, Prefix: "start-" + name, StartBatch: send, Alive: en.Alive}
		f := l.Seen
		cur.Store(&f)
		res, err := l.Run(ctx)
		if err == nil && after != nil {
			err = after()
		}
		if errors.Is(err, bench.ErrNotOffered) {
			b.Logf("%s: %v", name, err)
			return
		}
		if err != nil {
			b.Fatalf("starts through %s: %v", name, err)
		}
		rate := float64(res.Done) / res.Window.Seconds()
		if name != "warm" {
			b.ReportMetric(rate, name+"-starts/s")
		}
		b.Logf("%s: %d starts, batches of %d, %d at a time: first request → last process started %s: %.0f starts/s; load %s",
			name, n, batch, senders, res.Window.Round(time.Millisecond), rate, bench.LoadAvg())
	}
	// Warm-up: every partition loaded, the producers open.
	run("warm", 64, 1, 16, one(clientStart(c, "bench-wait", nil)), nil)
	b.StartTimer()
	for _, ent := range strings.Split(*flagEntrances, ",") {
		switch ent {
		case "client":
			run(ent, *flagStarts, 1, *flagStarters, one(clientStart(c, "bench-wait", nil)), nil)
		case "client-many":
			run(ent, *flagStarts, 500, 4, func(ctx context.Context, pids []string) error { return c.StartMany(ctx, pids, "bench-wait", nil) }, nil)
		case "topic":
			start, flush := topicStart(b, bb)
			run(ent, *flagStarts, 1, 1, one(start), flush)
		case "http":
			run(ent, *flagStarts, 1, *flagStarters, one(httpStart(en.API)), nil)
		case "http-batch":
			run(ent, *flagStarts, 1000, 4, httpBatchStart(en.API), nil)
		case "cli-api":
			run(ent, *flagStartsCLI, 1, 8, one(cliStart(en, en.API)), nil)
		case "cli":
			run(ent, *flagStartsCLI, 1, 8, one(cliStart(en, "")), nil)
		case "cli-from-api":
			run(ent, *flagStarts, *flagStarts, 1, cliFromStart(b, en, en.API), nil)
		case "cli-from":
			run(ent, *flagStarts, *flagStarts, 1, cliFromStart(b, en, ""), nil)
		case "":
		default:
			b.Fatalf("unknown entrance %q (have client, client-many, topic, http, http-batch, cli, cli-api, cli-from, cli-from-api)", ent)
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
		_, err = postJSON(ctx, hc, api, bench.HTTPStartPath, body)
		return err
	}
}

// httpBatchStart posts batches of start requests to the admin API.
func httpBatchStart(api string) func(context.Context, []string) error {
	hc := &http.Client{Timeout: time.Minute}
	return func(ctx context.Context, pids []string) error {
		body, err := bench.HTTPBatchStartBody(pids, "bench-wait", nil)
		if err != nil {
			return err
		}
		msg, err := postJSON(ctx, hc, api, bench.HTTPBatchStartPath, body)
		if err != nil {
			return err
		}
		return bench.CheckHTTPBatchStart(msg, len(pids))
	}
}

// postJSON posts body to the admin API's path and returns the answer's body.
// A 404 of the batch endpoint is bench.ErrNotOffered (an engine without
// it); any other status but 2xx is an error with the answer.
func postJSON(ctx context.Context, hc *http.Client, api, path string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, api+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusNotFound && path == bench.HTTPBatchStartPath {
		return nil, fmt.Errorf("POST %s: %w", path, bench.ErrNotOffered)
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("POST %s: %s: %s", path, resp.Status, msg)
	}
	return msg, nil
}

// cliFromStart runs one `pulsaga start --from FILE` for a batch.
func cliFromStart(b *testing.B, en *bench.Engine, server string) func(context.Context, []string) error {
	dir := b.TempDir()
	return func(ctx context.Context, pids []string) error {
		f := filepath.Join(dir, pids[0]+".ndjson")
		if err := os.WriteFile(f, bench.StartLines(pids, "bench-wait", []byte("{}")), 0o644); err != nil {
			return err
		}
		cmd := exec.CommandContext(ctx, engineBinsPath("pulsaga"), bench.CLIStartFromArgs(en.Config, server, f, "bench-wait")...)
		cmd.Env = append(cmd.Environ(), "PULSAR_URL="+en.Config.ServiceURL, "PULSAR_ADMIN_URL="+en.Config.AdminURL)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			if bytes.Contains(stderr.Bytes(), []byte("unknown flag: --from")) {
				return fmt.Errorf("pulsaga start --from: %w", bench.ErrNotOffered)
			}
			return fmt.Errorf("pulsaga start --from: %w: %s", err, stderr.Bytes())
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
