package app_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/config"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/internal/app"
	"github.com/pulsaga/pulsaga/internal/pulsartest"
	"github.com/pulsaga/pulsaga/internal/pyenv"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/workflow"
)

// Issue #10, problem 7: a worker written in another language, from
// docs/protocol.md alone, with that language's plain Pulsar client, whose
// key hash differs from the Go client's. testdata/python/plain_worker.py
// (pulsar-client, the C++ client under Python) serves the trip saga and
// starts half of its processes (the Go client starts the others); two
// orchestrators share four partitions of the events topic. Every saga
// reaches its end: the results, written with Python's hash to whatever
// partition it picks and to the reply topic the command names, reach each
// process's owner.
func TestPlainPythonWorker(t *testing.T) {
	python := pyenv.Python(t)
	p := pulsarConfig(t)
	p.Namespace = fmt.Sprintf("pyworker-%d", time.Now().UnixNano())
	svc, adm := p.URL, p.AdminURL
	t.Cleanup(func() { pulsartest.DeleteNamespace(t, adm, p.Tenant+"/"+p.Namespace) })

	for _, name := range []string{"py-orchestrator-a", "py-orchestrator-b"} {
		cfg := config.DefaultOrchestrator()
		cfg.Pulsar, cfg.Name, cfg.Partitions = p, name, 4
		cfg.Definitions = "../../testdata/trip-booking.yaml"
		background(t, name, func(ctx context.Context) error { return app.RunOrchestrator(ctx, cfg, testLogger(t)) })
	}

	// The Python client starts the processes too (its hash, its keys).
	var ids []string
	want := map[string]workflow.Status{}
	for i := range 12 {
		id := fmt.Sprintf("py-%02d", i)
		if i%4 == 3 {
			id += "-nohotel" // BookHotel fails for good: the saga compensates
			want[id] = workflow.StatusCompensated
		} else {
			want[id] = workflow.StatusCompleted
		}
		ids = append(ids, id)
	}
	deadline := time.Now().Add(3 * time.Minute)
	b := connect(t, p)
	status := engine.NewStatusTable(b, app.Topics(4, 0).Status)
	defer status.Close()
	for {
		// the orchestrators register trip-booking at start: a start before
		// that is dead-lettered, so wait for the definition first
		rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
		reg := engine.NewRegistry(b, app.Topics(4, 0).Definitions, nil)
		_, err := reg.Get(rctx, "trip-booking", 0)
		rcancel()
		reg.Close()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("trip-booking was never registered: %v", err)
		}
		time.Sleep(time.Second)
	}
	// The worker subscribes once the orchestrators have made the namespace
	// and its topics (they register the definition after that).
	script, err := filepath.Abs("../../testdata/python/plain_worker.py")
	if err != nil {
		t.Fatal(err)
	}
	ns := p.Tenant + "/" + p.Namespace
	logFile := filepath.Join(t.TempDir(), "handled.jsonl")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := exec.CommandContext(ctx, python, script, "work", "--url", svc, "--namespace", ns, "--log", logFile)
	w.Cancel = func() error { return w.Process.Signal(os.Interrupt) }
	w.WaitDelay = 10 * time.Second
	stdout, err := w.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	w.Stderr = &pyLog{t: t}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	scanned := make(chan struct{})
	t.Cleanup(func() { cancel(); _ = w.Wait(); <-scanned })
	// The client's own log lines (ConsoleLogger writes to stdout) may come
	// before "ready".
	lines := bufio.NewScanner(stdout)
	for lines.Scan() && strings.TrimSpace(lines.Text()) != "ready" {
		t.Logf("python: %s", lines.Text())
	}
	if lines.Err() != nil || strings.TrimSpace(lines.Text()) != "ready" {
		close(scanned)
		t.Fatalf("the Python worker did not start: %q %v", lines.Text(), lines.Err())
	}
	go func() {
		defer close(scanned)
		for lines.Scan() {
			t.Logf("python: %s", lines.Text())
		}
	}()

	// Half the processes are started by the Python client (its hash, its
	// keys), half by the Go client: a process started from Go gets its
	// results from Python, on whatever partition Python's hash picks.
	out, err := exec.Command(python, append([]string{script, "start", "--url", svc, "--namespace", ns}, ids[:len(ids)/2]...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("the Python starts: %v\n%s", err, out)
	}
	client := engine.NewClient(b, app.Topics(4, 0))
	defer client.Close()
	for _, id := range ids[len(ids)/2:] {
		sctx, scancel := context.WithTimeout(context.Background(), wait)
		err := client.Start(sctx, protocol.StartRequest{ProcessID: id, Definition: "trip-booking", Input: json.RawMessage(`{"customer":"go","amount":7}`)})
		scancel()
		if err != nil {
			t.Fatal(err)
		}
	}

	for {
		rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := status.Refresh(rctx)
		rcancel()
		done := 0
		var pending []string
		for _, id := range ids {
			r, ok := status.Get(id)
			switch {
			case ok && r.Status == want[id]:
				done++
			case ok && r.Status.Terminal():
				t.Fatalf("%s ended %s, want %s (steps %v, last error %q)", id, r.Status, want[id], r.Steps, r.LastError)
			default:
				pending = append(pending, fmt.Sprintf("%s:%s", id, r.Status))
			}
		}
		if done == len(ids) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not finished after 3 minutes (%v): %v\nhandled by Python:\n%s", err, pending, readFile(logFile))
		}
		time.Sleep(500 * time.Millisecond)
	}

	// Every command was run by the Python worker, and nothing it sent was
	// dead-lettered by the engine.
	handled := map[string]int{}
	elsewhere := 0 // results the Python client put on another partition than the Go client would
	events := app.Topics(4, 0).Events
	for _, line := range strings.Split(strings.TrimSpace(readFile(logFile)), "\n") {
		var h struct {
			Command   string `json:"command"`
			ProcessID string `json:"process_id"`
			ReplyTo   string `json:"reply_to"`
			Partition int    `json:"partition"`
		}
		if err := json.Unmarshal([]byte(line), &h); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		handled[h.ProcessID+" "+h.Command]++
		if h.ReplyTo != "persistent://"+ns+"/"+events {
			t.Errorf("%s of %s: reply_to %q is not the full name of the events topic", h.Command, h.ProcessID, h.ReplyTo)
		}
		if h.Partition != bus.KeyPartition(h.ProcessID, 4) {
			elsewhere++
		}
	}
	t.Logf("%d of the Python worker's results landed on another partition than the Go client's key hash picks", elsewhere)
	if elsewhere == 0 {
		t.Error("every result landed where the Go client would have put it: the test proves nothing about routing")
	}
	for _, id := range ids {
		cmds := []string{"ProcessPayment", "BookFlight", "BookHotel", "NotifyCustomer"}
		if want[id] == workflow.StatusCompensated {
			cmds = []string{"ProcessPayment", "BookHotel", "RefundPayment"}
		}
		for _, c := range cmds {
			if handled[id+" "+c] == 0 {
				t.Errorf("%s: %s was never run by the Python worker", id, c)
			}
		}
	}
	var bl bus.Backlogs = b
	topics, err := bl.Topics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range topics {
		if bus.IsDeadLetterTopic(tp) {
			t.Errorf("dead letters on %s", tp)
		}
	}
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// pyLog passes the Python worker's stderr to the test log.
type pyLog struct{ t *testing.T }

func (l *pyLog) Write(p []byte) (int, error) {
	l.t.Logf("python: %s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
