package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/admin"
	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/pulsarbus"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/internal/pulsartest"
	"github.com/pulsaga/pulsaga/protocol"
)

// BenchmarkStartPath measures each entrance of the start path up to the
// events topic: starts/s is b.N start requests divided by the time from
// the first request to the last start read back from the events topic
// (the orchestrator is not running: bench's BenchmarkStarts measures the
// whole path to the process's first status row). Entrances:
//
//	Client          engine.Client.Start from 64 goroutines
//	ClientMany      engine.Client.StartMany, 1,000 per call (what
//	                `pulsaga start --from` does straight to Pulsar)
//	Topic           one producer publishing on the starts topic, pipelined;
//	                the start relay forwards
//	HTTP            POST /api/v1/processes from 64 goroutines
//	HTTPBatch       POST /api/v1/processes/batch, 1,000 per request, 2 at
//	                a time (what `pulsaga start --from --server` does)
//
// Run it with the raw relay baseline of the same session:
//
//	go test -run '^$' -bench 'BenchmarkStartPath' -benchtime 5000x -count 3 ./engine/
//	go test -run '^$' -bench 'BenchmarkRelay/Pipelined/Raw' -benchtime 3s -count 3 ./bus/pulsarbus/
func BenchmarkStartPath(b *testing.B) {
	for _, e := range []struct {
		name string
		run  func(b *testing.B, env *startEnv, pids []string) error
	}{
		{"Client", benchClientStart},
		{"ClientMany", benchClientStartMany},
		{"Topic", benchTopicStart},
		{"HTTP", benchHTTPStart},
		{"HTTPBatch", benchHTTPBatch},
	} {
		b.Run(e.name, func(b *testing.B) {
			env := sharedStartEnv(b)
			pids := make([]string, b.N)
			for i := range pids {
				pids[i] = fmt.Sprintf("%s-%d-%d", e.name, time.Now().UnixNano()%1e9, i)
			}
			got := env.count(b, b.N)
			b.ResetTimer()
			start := time.Now()
			if err := e.run(b, env, pids); err != nil {
				b.Fatal(err)
			}
			if err := <-got; err != nil {
				b.Fatal(err)
			}
			el := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/el.Seconds(), "starts/s")
		})
	}
}

type startEnv struct {
	bus    bus.Bus
	topics protocol.Topics
	client *engine.Client
	api    string
}

var benchInput = json.RawMessage(`{"ticket":"T-1"}`)

var (
	startEnvOnce sync.Once
	theStartEnv  *startEnv
)

// sharedStartEnv is one environment for every entrance and run of the
// benchmark (creating a namespace and its topics takes the broker seconds).
func sharedStartEnv(b *testing.B) *startEnv {
	if testing.Short() {
		b.Skip("needs a Pulsar broker")
	}
	startEnvOnce.Do(func() { theStartEnv = newStartEnv(&envTB{TB: b}) })
	if theStartEnv == nil {
		b.Fatal("the benchmark's environment could not be set up (see the first failure)")
	}
	return theStartEnv
}

// envTB is the testing.TB of the first benchmark, whose cleanups never run:
// the environment lives as long as the test binary.
type envTB struct{ testing.TB }

func (e *envTB) Cleanup(func()) {}

func newStartEnv(b testing.TB) *startEnv {
	bb := benchBus(b)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	topics := protocol.DefaultTopics()
	if err := engine.EnsureTopics(ctx, bb, topics); err != nil {
		b.Fatal(err)
	}
	reg := engine.NewRegistry(bb, topics.Definitions, nil)
	src, err := os.ReadFile(repoFile(b, "admin/testdata/repair.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := reg.Register(ctx, "repair.yaml", src); err != nil {
		b.Fatal(err)
	}
	env := &startEnv{bus: bb, topics: topics, client: engine.NewClient(bb, topics)}
	b.Cleanup(func() { _ = env.client.Close() })
	srv, err := admin.New(admin.Options{Bus: bb, Topics: topics, Registry: reg}, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = srv.Close() })
	hs := httptest.NewServer(srv.Handler())
	b.Cleanup(hs.Close)
	env.api = hs.URL
	rctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- engine.NewStartRelay(bb, topics, "bench-relay", zerolog.Nop()).Run(rctx) }()
	b.Cleanup(func() {
		stop()
		<-done
	})
	return env
}

// benchBus connects to the test broker in a namespace of its own.
func benchBus(b testing.TB) bus.Bus {
	svc, adm := pulsartest.URLs(b)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns := bus.Namespace{Tenant: "public", Namespace: fmt.Sprintf("bench-starts-%d", time.Now().UnixNano())}
	bb, err := pulsarbus.New(ctx, pulsarbus.Config{ServiceURL: svc, AdminURL: adm, Namespace: ns}, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = bb.Close() })
	return bb
}

// count reads n start messages back from the events topic.
func (e *startEnv) count(b *testing.B, n int) <-chan error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	c, err := e.bus.Subscribe(ctx, bus.SubscribeOptions{Topic: e.topics.Events, Subscription: fmt.Sprintf("count-%d", time.Now().UnixNano()),
		Type: bus.Failover, ReceiveQueueSize: 5000, InitialPosition: bus.Latest})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		defer cancel()
		defer c.Close()
		seen := map[string]bool{}
		for len(seen) < n {
			m, err := c.Receive(ctx)
			if err != nil {
				done <- fmt.Errorf("events: %d of %d starts arrived: %w", len(seen), n, err)
				return
			}
			seen[m.Key] = true
			_ = c.Ack(ctx, m)
		}
		done <- nil
	}()
	return done
}

// parallel runs f for every pid from workers goroutines.
func parallel(pids []string, workers int, f func(pid string) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(pids) {
					return
				}
				if err := f(pids[i]); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func benchClientStart(_ *testing.B, e *startEnv, pids []string) error {
	ctx := context.Background()
	return parallel(pids, 64, func(pid string) error {
		return e.client.Start(ctx, protocol.StartRequest{ProcessID: pid, Definition: "repair", Input: benchInput})
	})
}

func benchClientStartMany(_ *testing.B, e *startEnv, pids []string) error {
	ctx := context.Background()
	for len(pids) > 0 {
		n := min(len(pids), admin.MaxBatchStarts)
		reqs := make([]protocol.StartRequest, n)
		for i := range reqs {
			reqs[i] = protocol.StartRequest{ProcessID: pids[i], Definition: "repair", Input: benchInput}
		}
		if err := e.client.StartMany(ctx, reqs); err != nil {
			return err
		}
		pids = pids[n:]
	}
	return nil
}

func benchTopicStart(_ *testing.B, e *startEnv, pids []string) error {
	ctx := context.Background()
	p, err := e.bus.Producer(ctx, bus.ProducerOptions{Topic: e.topics.Starts})
	if err != nil {
		return err
	}
	defer p.Close()
	var mu sync.Mutex
	var first error
	for _, pid := range pids {
		env, err := bus.NewEnvelope(protocol.TypeStart, "ext-"+pid, pid, time.Now(), protocol.StartRequest{ProcessID: pid, Definition: "repair", Input: benchInput})
		if err != nil {
			return err
		}
		payload, err := env.Encode()
		if err != nil {
			return err
		}
		p.SendAsync(ctx, &bus.OutMessage{Key: pid, Payload: payload}, func(_ bus.MessageID, err error) {
			if err != nil {
				mu.Lock()
				first = err
				mu.Unlock()
			}
		})
	}
	if err := p.Flush(ctx); err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	return first
}

var benchHTTP = &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}

func post(url string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := benchHTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST %s: %s: %s", url, resp.Status, msg)
	}
	return nil
}

func benchHTTPStart(_ *testing.B, e *startEnv, pids []string) error {
	return parallel(pids, 64, func(pid string) error {
		return post(e.api+"/api/v1/processes", admin.StartBody{ProcessID: pid, Definition: "repair", Input: benchInput})
	})
}

func benchHTTPBatch(_ *testing.B, e *startEnv, pids []string) error {
	var chunks []string // first pid of each chunk, as an index
	for i := 0; i < len(pids); i += admin.MaxBatchStarts {
		chunks = append(chunks, fmt.Sprint(i))
	}
	return parallel(chunks, 2, func(first string) error {
		var i int
		fmt.Sscan(first, &i)
		end := min(i+admin.MaxBatchStarts, len(pids))
		body := admin.BatchStartBody{}
		for _, pid := range pids[i:end] {
			body.Starts = append(body.Starts, admin.StartBody{ProcessID: pid, Definition: "repair", Input: benchInput})
		}
		return post(e.api+"/api/v1/processes/batch", body)
	})
}
