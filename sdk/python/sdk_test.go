// Package pythonsdk_test runs the Python SDK's tests in the test command:
// its pytest suite against the real broker, a strict type check, and the
// car-rental saga served by Python workers through a real engine.
package pythonsdk_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/pulsarbus"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/internal/pulsartest"
	"github.com/pulsaga/pulsaga/internal/pyenv"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/tracing"
	"github.com/pulsaga/pulsaga/tracing/tracingtest"
	"github.com/pulsaga/pulsaga/workflow"
)

func python(t *testing.T, py string, env []string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, args...)
	cmd.Env = append(os.Environ(), append(env, "PYTHONDONTWRITEBYTECODE=1")...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(py), strings.Join(args, " "), err, out)
	}
	if testing.Verbose() {
		t.Logf("%s", out)
	}
}

// TestPytest runs sdk/python/tests: the wire format, and the worker against
// the real broker with the test playing the engine (outcomes, deadlines,
// dead letters and their properties, a command that kills its worker,
// graceful shutdown, trace continuation).
func TestPytest(t *testing.T) {
	py := pyenv.Python(t)
	svc, adm := pulsartest.URLs(t)
	python(t, py, []string{"PULSAR_URL=" + svc, "PULSAR_ADMIN_URL=" + adm}, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests")
}

// TestTyped: the SDK type-checks under mypy --strict.
func TestTyped(t *testing.T) {
	py := pyenv.Python(t)
	python(t, py, nil, "-m", "mypy", "--config-file", "pyproject.toml", "--cache-dir", t.TempDir(), "src/pulsaga")
}

// TestCarRental runs the car-rental saga (examples/car-rental.yaml) with
// its services in Python (examples/rental_worker.py, in a process of its
// own) through an engine on the real broker: one rental completes, one is
// declined and released, one authorization is retried. The engine and the
// Python workers export their spans to an in-process collector: each
// process's trace is one tree, the process at its root, an attempt span per
// command under it and the Python worker's span under each attempt.
func TestCarRental(t *testing.T) {
	py := pyenv.Python(t)
	svcURL, admURL := pulsartest.URLs(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ns := fmt.Sprintf("pysdk-e2e-%d", time.Now().UnixNano())
	log := zerolog.Nop()
	b, err := pulsarbus.New(ctx, pulsarbus.Config{ServiceURL: svcURL, AdminURL: admURL, Namespace: bus.Namespace{Tenant: "public", Namespace: ns}}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pulsartest.DeleteNamespace(t, admURL, "public/"+ns) })
	t.Cleanup(func() { _ = b.Close() })
	col := tracingtest.NewCollector(t)
	tr, err := tracing.New(tracing.Options{Endpoint: col.URL, ServiceName: "pulsaga-test", BatchTimeout: 100 * time.Millisecond}, log)
	if err != nil {
		t.Fatal(err)
	}
	topics := protocol.DefaultTopics()
	topics.Partitions = 1
	stack, err := engine.StartStack(ctx, b, engine.StackOptions{Topics: topics, Name: "pysdk", Tracer: tr}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := stack.Stop(); err != nil {
			t.Errorf("engine: %v", err)
		}
	})
	src, err := os.ReadFile("examples/car-rental.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stack.Registry.Register(ctx, "car-rental.yaml", src); err != nil {
		t.Fatal(err)
	}

	calls := filepath.Join(t.TempDir(), "calls.jsonl")
	var stderr bytes.Buffer
	w := exec.Command(py, "examples/rental_worker.py")
	w.Env = append(os.Environ(), "PULSAR_URL="+svcURL, "PULSAGA_PULSAR_NAMESPACE="+ns, "RENTAL_CALLS="+calls, "PYTHONDONTWRITEBYTECODE=1",
		"OTEL_EXPORTER_OTLP_ENDPOINT="+col.URL)
	w.Stderr = &stderr
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = w.Process.Kill()
			_ = w.Wait()
		}
	}()

	want := map[string]workflow.Status{"alice": workflow.StatusCompleted, "declined": workflow.StatusCompensated, "flaky": workflow.StatusCompleted}
	for customer := range want {
		in, _ := json.Marshal(map[string]string{"customer": customer, "car": "fiat"})
		if err := stack.Client.Start(ctx, protocol.StartRequest{ProcessID: "rent-" + customer, Definition: "car-rental", Input: in}); err != nil {
			t.Fatal(err)
		}
	}
	for customer, status := range want {
		pid := "rent-" + customer
		deadline := time.Now().Add(90 * time.Second)
		for {
			if err := stack.Status.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
			row, _ := stack.Status.Get(pid)
			if row.Status == status {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s is %q (steps %v, last error %q), want %s; worker stderr:\n%s", pid, row.Status, row.Steps, row.LastError, status, stderr.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// SIGTERM: the worker stops gracefully (exit status 0).
	if err := w.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	stopped = true
	if err := w.Wait(); err != nil {
		t.Fatalf("worker after SIGTERM: %v\n%s", err, stderr.String())
	}

	ran := map[string][]string{}
	f, err := os.Open(calls)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var c struct {
			ProcessID string `json:"process_id"`
			Command   string `json:"command"`
			Attempt   int    `json:"attempt"`
		}
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatal(err)
		}
		ran[c.ProcessID] = append(ran[c.ProcessID], fmt.Sprintf("%s#%d", c.Command, c.Attempt))
	}
	for pid, cmds := range ran {
		slices.Sort(cmds)
		ran[pid] = cmds
	}
	wantRan := map[string][]string{
		"rent-alice":    {"Authorize#1", "Confirm#1", "Reserve#1"},
		"rent-declined": {"Authorize#1", "Release#1", "Reserve#1"},
		"rent-flaky":    {"Authorize#1", "Authorize#2", "Confirm#1", "Reserve#1"},
	}
	for pid, w := range wantRan {
		if !slices.Equal(ran[pid], w) {
			t.Errorf("%s ran %v, want %v", pid, ran[pid], w)
		}
	}

	// The traces.
	fctx, fcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer fcancel()
	if err := tr.ForceFlush(fctx); err != nil {
		t.Fatal(err)
	}
	for pid, cmds := range wantRan {
		trace := tracing.TraceID(pid).String()
		spans := col.WaitFor(t, 20*time.Second, "the trace of "+pid, func([]tracingtest.Span) bool {
			n := 0
			for _, s := range col.Trace(trace) {
				if s.Service == "car-rental-workers" {
					n++
				}
			}
			return n == len(cmds) && len(col.Trace(trace)) >= 1+2*len(cmds)
		})
		_ = spans
		checkTree(t, pid, col.Trace(trace), len(cmds))
	}
}

// checkTree checks one process's trace: one root (the process span), every
// other span's parent in the trace, an attempt span (pulsaga) per command
// with the Python worker's span under it.
func checkTree(t *testing.T, pid string, spans []tracingtest.Span, commands int) {
	t.Helper()
	byID := map[string]tracingtest.Span{}
	for _, s := range spans {
		byID[s.SpanID] = s
	}
	root := byID[tracing.ProcessSpanID(pid).String()]
	if root.Name != "process car-rental" || root.ParentID != "" || root.Attrs["pulsaga.process_id"] != pid {
		t.Errorf("%s: process span %+v", pid, root)
	}
	attempts, workers := 0, 0
	for _, s := range spans {
		if s.SpanID == root.SpanID {
			continue
		}
		parent, ok := byID[s.ParentID]
		if !ok {
			t.Errorf("%s: span %q (%s) has a parent %s outside the trace", pid, s.Name, s.Service, s.ParentID)
			continue
		}
		switch {
		case s.Service == "pulsaga-test" && s.Kind == "PRODUCER":
			attempts++
			if s.ParentID != root.SpanID || s.SpanID != tracing.AttemptSpanID(s.Attrs["pulsaga.command_id"]).String() {
				t.Errorf("%s: attempt span %+v", pid, s)
			}
		case s.Service == "car-rental-workers":
			workers++
			if parent.Kind != "PRODUCER" || parent.Name != s.Name || s.Kind != "CONSUMER" || s.Attrs["pulsaga.command_id"] != parent.Attrs["pulsaga.command_id"] {
				t.Errorf("%s: worker span %q under %q (%s)", pid, s.Name, parent.Name, parent.Kind)
			}
			if s.Attrs["pulsaga.error_type"] == "CardDeclined" && (!s.Failed || !parent.Failed) {
				t.Errorf("%s: the declined card is not an error on both spans: %+v / %+v", pid, s, parent)
			}
		case s.Name == "decide car-rental":
			if s.ParentID != root.SpanID {
				t.Errorf("%s: decision span under %q", pid, parent.Name)
			}
		default:
			t.Errorf("%s: unexpected span %+v", pid, s)
		}
	}
	if attempts != commands || workers != commands {
		t.Errorf("%s: %d attempt spans and %d worker spans, want %d of each", pid, attempts, workers, commands)
	}
}
