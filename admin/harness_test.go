package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/memory"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/worker"
	"github.com/pulsaga/pulsaga/workflow"
)

const (
	readSecret = "read-secret-1"
	opSecret   = "operator-secret-1"
)

// garage serves the repair saga: Repair fails for good on its first
// attempt of each process, so every process pauses there once.
type garage struct {
	mu    sync.Mutex
	tries map[string]int
	runs  map[string][]string
}

func (g *garage) handlers() map[string]worker.Handler {
	ok := func(cmd string) worker.Handler {
		return func(_ context.Context, j *worker.Job) (any, error) {
			g.mu.Lock()
			defer g.mu.Unlock()
			g.runs[j.ProcessID] = append(g.runs[j.ProcessID], cmd)
			if cmd == "Repair" {
				g.tries[j.ProcessID]++
				if g.tries[j.ProcessID] == 1 {
					return nil, worker.NonRetryable("NoParts", errors.New("the spare part is missing"))
				}
			}
			return map[string]string{"by": cmd}, nil
		}
	}
	return map[string]worker.Handler{"Inspect": ok("Inspect"), "Repair": ok("Repair"), "Polish": ok("Polish"), "Deliver": ok("Deliver"), "Undo": ok("Undo")}
}

func (g *garage) ran(pid string) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.runs[pid]...)
}

type harness struct {
	t      *testing.T
	bus    bus.Bus
	stack  *engine.Stack
	srv    *Server
	http   *httptest.Server
	garage *garage
	topics protocol.Topics

	runnerStop func() // stops the bulk runner started last
}

// startRunner runs a bulk runner named name on b (the harness's bus when
// nil) until stopRunner or the end of the test.
func (h *harness) startRunner(name string, b bus.Bus) {
	h.t.Helper()
	if b == nil {
		b = h.bus
	}
	r, err := NewBulkRunner(BulkRunnerOptions{Bus: b, Topics: h.topics, Registry: h.stack.Registry, Name: name, CheckpointEvery: 100 * time.Millisecond}, testLogger(h.t).With().Str("runner", name).Logger())
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	h.runnerStop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				h.t.Errorf("bulk runner %s: %v", name, err)
			}
		})
	}
	h.t.Cleanup(h.runnerStop)
}

func (h *harness) stopRunner() { h.runnerStop() }

func testLogger(t *testing.T) zerolog.Logger {
	if testing.Verbose() {
		return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
	}
	return zerolog.Nop()
}

// newHarness runs a whole engine on the embedded bus with the admin server
// in front of it.
func newHarness(t *testing.T) *harness {
	t.Helper()
	b := memory.New(memory.Options{})
	t.Cleanup(func() { _ = b.Close() })
	return newHarnessOn(t, b)
}

// newHarnessOn is newHarness on the bus b.
func newHarnessOn(t *testing.T, b bus.Bus) *harness {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	topics := protocol.DefaultTopics()
	topics.Partitions = 2
	g := &garage{tries: map[string]int{}, runs: map[string][]string{}}
	status := engine.NewStatusTable(b, topics.Status)
	t.Cleanup(func() { _ = status.Close() })
	metrics := NewMetrics(status, "test-1")
	stack, err := engine.StartStack(ctx, b, engine.StackOptions{
		Topics: topics, Services: map[string]map[string]worker.Handler{"garage": g.handlers()},
		Observer: metrics, ObserveTimer: metrics.ObserveTimer,
	}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := stack.Stop(); err != nil {
			t.Errorf("stack: %v", err)
		}
	})
	src, err := os.ReadFile("testdata/repair.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stack.Registry.Register(ctx, "repair.yaml", src); err != nil {
		t.Fatal(err)
	}
	srv, err := New(Options{
		Bus: b, Topics: topics, Registry: stack.Registry, Metrics: metrics,
		Tokens: []Token{{Name: "viewer", Role: RoleRead, Secret: readSecret}, {Name: "alice", Role: RoleOperator, Secret: opSecret}},
	}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	h := &harness{t: t, bus: b, stack: stack, srv: srv, http: hs, garage: g, topics: topics}
	h.startRunner("runner-a", nil)
	return h
}

// do sends a request and returns the status and body.
func (h *harness) do(method, path, secret, body string, hdr ...string) (int, []byte, http.Header) {
	h.t.Helper()
	req, err := http.NewRequest(method, h.http.URL+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	if method != http.MethodGet {
		req.Header.Set("Content-Type", "application/json") // as the CLI and the dashboard
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := h.http.Client().Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

// startPaused starts a repair process and waits until it pauses.
func (h *harness) startPaused(pid string) {
	h.t.Helper()
	code, body, _ := h.do("POST", "/api/v1/processes", opSecret, fmt.Sprintf(`{"process_id":%q,"definition":"repair","input":{"ticket":"T-1"}}`, pid))
	if code != http.StatusAccepted {
		h.t.Fatalf("start %s: %d %s", pid, code, body)
	}
	h.waitStatus(pid, workflow.StatusPaused)
}

func (h *harness) waitStatus(pid string, want workflow.Status) engine.StatusRecord {
	h.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var row engine.StatusRecord
	for time.Now().Before(deadline) {
		if err := h.stack.Status.Refresh(context.Background()); err != nil {
			h.t.Fatal(err)
		}
		var ok bool
		if row, ok = h.stack.Status.Get(pid); ok && row.Status == want {
			return row
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.t.Fatalf("process %s is %q, want %s (steps %v)", pid, row.Status, want, row.Steps)
	return row
}

func (h *harness) waitStep(pid, step string, want workflow.StepStatus) {
	h.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var row engine.StatusRecord
	for time.Now().Before(deadline) {
		if err := h.stack.Status.Refresh(context.Background()); err != nil {
			h.t.Fatal(err)
		}
		row, _ = h.stack.Status.Get(pid)
		if workflow.StepStatus(row.Steps[step]) == want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.t.Fatalf("step %s of %s is %q, want %s", step, pid, row.Steps[step], want)
}

func decode[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %T: %v: %s", v, err, b)
	}
	return v
}
