// Package e2e runs pulsaga's real binaries against a real Pulsar broker and
// kills them with SIGKILL mid-run: every process must still reach the
// status it would have reached without the crash, no step may be lost, and
// every command run twice must be a redelivery of the same attempt.
package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/pulsarbus"
	"github.com/pulsaga/pulsaga/demo"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/internal/pulsartest"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/workflow"
)

var binDir string

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..")
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pulsaga-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	build := exec.Command("go", "build", "-o", dir+"/", "./cmd/orchestrator", "./cmd/decider", "./cmd/worker")
	build.Dir = repoRoot()
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building the binaries failed:", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// cluster is a set of pulsaga processes sharing one namespace.
type cluster struct {
	t        *testing.T
	svc, adm string
	ns       string
	dir      string
	calls    string
	kept     bool   // dir is under $PULSAGA_E2E_LOGS: it stays after the test
	decider  string // the orchestrators' decider mode
	latency  string // the demo worker's latency per command (default 150ms)

	mu    sync.Mutex
	procs map[string]*proc
}

// proc is a running component; done closes when it has exited.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func newCluster(t *testing.T) *cluster {
	if testing.Short() {
		t.Skip("needs a Pulsar broker and the binaries; run without -short (make test)")
	}
	svc, adm := pulsartest.URLs(t)
	c := &cluster{
		t: t, svc: svc, adm: adm, ns: fmt.Sprintf("crash-%d", time.Now().UnixNano()), dir: t.TempDir(),
		procs: map[string]*proc{},
	}
	if keep := os.Getenv(logsEnv); keep != "" {
		c.dir, c.kept = filepath.Join(keep, strings.NewReplacer("/", "_", " ", "_", ",", "").Replace(t.Name())+"-"+c.ns), true
		if err := os.MkdirAll(c.dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	c.calls = filepath.Join(c.dir, "calls.jsonl")
	t.Cleanup(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		for name, p := range c.procs {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(15 * time.Second):
				_ = p.cmd.Process.Kill()
				<-p.done
				t.Logf("%s did not stop on SIGTERM within 15s", name)
			}
		}
		if t.Failed() {
			c.diagnose(t.Logf) // diagnose_test.go
		}
	})
	return c
}

func (c *cluster) common(name string) []string {
	return []string{
		"--pulsar-url", c.svc, "--pulsar-admin-url", c.adm, "--pulsar-namespace", c.ns,
		"--name", name, "--log-level", "info",
	}
}

// start runs a component; its output goes to <dir>/<name>.log.
func (c *cluster) start(name string) {
	c.t.Helper()
	var bin string
	args := c.common(name)
	switch {
	case strings.HasPrefix(name, "orchestrator"):
		bin = "orchestrator"
		args = append(args, "--partitions", "2", "--definitions", filepath.Join(repoRoot(), "testdata", "trip-booking.yaml"), "--decider", c.decider)
	case name == "decider":
		bin = "decider"
		args = append(args, "--partitions", "2")
	case name == "worker":
		bin = "worker"
		latency := c.latency
		if latency == "" {
			latency = "150ms"
		}
		// The demo services record the work done per idempotency key in a
		// directory that outlives a killed worker, as a real service's
		// database would.
		args = append(args, "--calls-log", c.calls, "--latency", latency, "--demo-store", filepath.Join(c.dir, "store"))
	}
	logf, err := os.OpenFile(filepath.Join(c.dir, name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(binDir, bin), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "PULSAR_URL=", "PULSAR_ADMIN_URL=")
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	c.mu.Lock()
	c.procs[name] = p
	c.mu.Unlock()
	go func() { _ = cmd.Wait(); logf.Close(); close(p.done) }()
}

// kill sends SIGKILL: no shutdown code runs.
func (c *cluster) kill(name string) {
	c.t.Helper()
	c.mu.Lock()
	p := c.procs[name]
	delete(c.procs, name)
	c.mu.Unlock()
	if p == nil {
		c.t.Fatalf("kill %s: not running", name)
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		c.t.Fatalf("kill %s: %v", name, err)
	}
	<-p.done
	c.t.Logf("killed %s (kill -9)", name)
}

// client connects the test itself to the cluster's namespace.
func (c *cluster) client(ctx context.Context) (bus.Bus, *engine.Client, *engine.StatusTable) {
	c.t.Helper()
	b, err := pulsarbus.New(ctx, pulsarbus.Config{ServiceURL: c.svc, AdminURL: c.adm, Namespace: bus.Namespace{Tenant: "public", Namespace: c.ns}}, zerolog.Nop())
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { _ = b.Close() })
	topics := protocol.DefaultTopics()
	topics.Partitions = 2
	if err := engine.EnsureTopics(ctx, b, topics); err != nil {
		c.t.Fatal(err)
	}
	return b, engine.NewClient(b, topics), engine.NewStatusTable(b, topics.Status)
}

func (c *cluster) readCalls() []demo.Call {
	c.t.Helper()
	f, err := os.Open(c.calls)
	if err != nil {
		c.t.Fatal(err)
	}
	defer f.Close()
	var out []demo.Call
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var call demo.Call
		if err := json.Unmarshal(sc.Bytes(), &call); err != nil {
			continue // a line cut by a kill -9 of the worker
		}
		out = append(out, call)
	}
	return out
}

var directives = []string{"ok", "flaky-BookFlight", "fail-BookHotel", "ok", "fail-NotifyCustomer", "flaky-BookHotel", "fail-BookFlight", "fail-ProcessPayment"}

// expectation of a saga steered by its directive.
func expect(directive string) (workflow.Status, []string) {
	switch directive {
	case "fail-ProcessPayment":
		return workflow.StatusCompensated, nil
	case "fail-BookFlight":
		return workflow.StatusCompensated, []string{"payment", "hotel"}
	case "fail-BookHotel":
		return workflow.StatusCompensated, []string{"payment", "flight"}
	case "fail-NotifyCustomer":
		return workflow.StatusCompensated, []string{"payment", "flight", "hotel"}
	}
	return workflow.StatusCompleted, []string{"payment", "flight", "hotel", "notify"}
}

type crashPlan struct {
	name  string
	start []string
	// kill these after the sagas are under way; restart those in restart.
	kill, restart []string
	// then, a little later, start join and kill leave.
	join, leave []string
	// decider is the orchestrators' decider mode.
	decider string
}

func TestCrashes(t *testing.T) {
	plans := []crashPlan{
		{name: "orchestrator", start: []string{"orchestrator-a", "decider", "worker"}, kill: []string{"orchestrator-a"}, restart: []string{"orchestrator-a"}},
		{name: "decider", start: []string{"orchestrator-a", "decider", "worker"}, kill: []string{"decider"}, restart: []string{"decider"}},
		{name: "worker", start: []string{"orchestrator-a", "decider", "worker"}, kill: []string{"worker"}, restart: []string{"worker"}},
		{name: "all together", start: []string{"orchestrator-a", "decider", "worker"}, kill: []string{"orchestrator-a", "decider", "worker"}, restart: []string{"orchestrator-a", "decider", "worker"}},
		{name: "two orchestrators, one killed", start: []string{"orchestrator-a", "orchestrator-b", "decider", "worker"}, kill: []string{"orchestrator-a"}},
		// A live owner loses partitions to a newcomer (Failover rebalances by
		// name), then gets them back when the newcomer dies.
		{name: "live takeover and back", start: []string{"orchestrator-b", "decider", "worker"}, join: []string{"orchestrator-a"}, leave: []string{"orchestrator-a"}},
	}
	// Every plan runs in both decider modes; inline, no decider runs, so a
	// plan that only crashes the decider has nothing to crash.
	for _, mode := range []string{engine.DeciderInline, engine.DeciderRemote} {
		for _, plan := range plans {
			plan.decider = mode
			if mode == engine.DeciderInline {
				if slices.Equal(plan.kill, []string{"decider"}) {
					continue
				}
				noDecider := func(names []string) []string {
					return slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == "decider" })
				}
				plan.start, plan.kill, plan.restart = noDecider(plan.start), noDecider(plan.kill), noDecider(plan.restart)
			}
			t.Run(mode+"/"+plan.name, func(t *testing.T) {
				t.Parallel()
				runCrash(t, plan)
			})
		}
	}
}

func runCrash(t *testing.T, plan crashPlan) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := newCluster(t)
	c.decider = plan.decider
	_, client, status := c.client(ctx)
	defer status.Close()
	for _, name := range plan.start {
		c.start(name)
	}
	const n = 24
	pids := make([]string, n)
	for i := range pids {
		pids[i] = fmt.Sprintf("trip-%d-%s", i, directives[i%len(directives)])
		if err := client.Start(ctx, protocol.StartRequest{ProcessID: pids[i], Definition: "trip-booking", Input: json.RawMessage(`{"customer":"c","amount":5}`)}); err != nil {
			t.Fatal(err)
		}
	}
	// Let the sagas get under way (the orchestrator first registers the
	// definition), then crash in the middle of them.
	waitAny(ctx, t, status, pids)
	time.Sleep(300 * time.Millisecond)
	for _, name := range plan.kill {
		c.kill(name)
	}
	time.Sleep(500 * time.Millisecond)
	for _, name := range plan.restart {
		c.start(name)
	}
	for _, name := range plan.join {
		c.start(name)
	}
	if len(plan.leave) > 0 {
		time.Sleep(4 * time.Second)
		for _, name := range plan.leave {
			c.kill(name)
		}
	}
	rows := map[string]engine.StatusRecord{}
	for len(rows) < n && ctx.Err() == nil {
		if err := status.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		for _, pid := range pids {
			if r, ok := status.Get(pid); ok && r.Status.Terminal() {
				rows[pid] = r
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(rows) < n {
		for _, line := range unfinished(rows, pids, status) {
			t.Error(line)
		}
		t.FailNow()
	}
	calls := c.readCalls()
	// Every attempt of a step carries the step's idempotency key; the
	// services do a key's work once (Call.Effect) and answer later calls
	// with it. A key whose work was done twice would be a double booking.
	byKey := map[string][]demo.Call{}
	dups := 0
	for _, call := range calls {
		if call.Failed {
			continue
		}
		if !call.Effect {
			dups++ // a redelivery or another attempt of a key already done
			continue
		}
		byKey[call.IdempotencyKey] = append(byKey[call.IdempotencyKey], call)
	}
	for key, cs := range byKey {
		if len(cs) > 1 {
			t.Errorf("the work of %s was done %d times: %+v", key, len(cs), cs)
		}
	}
	for i, pid := range pids {
		want, steps := expect(directives[i%len(directives)])
		if rows[pid].Status != want {
			t.Errorf("%s: status %s, want %s (%v %s)", pid, rows[pid].Status, want, rows[pid].Steps, rows[pid].LastError)
			continue
		}
		// step → idempotency keys that did work (forward, compensations)
		done, comps := successesByStep(calls, pid, func(c demo.Call) (string, bool) { return c.IdempotencyKey, c.Effect })
		for _, step := range steps {
			if len(done[step]) != 1 {
				t.Errorf("%s: step %s did its work under %d keys, want exactly 1", pid, step, len(done[step]))
			}
			wantComp := 0
			if want == workflow.StatusCompensated && step != "notify" {
				wantComp = 1
			}
			if len(comps[step]) != wantComp {
				t.Errorf("%s: step %s compensated by %d distinct commands, want %d", pid, step, len(comps[step]), wantComp)
			}
		}
		if len(done) != len(steps) {
			t.Errorf("%s: steps %v succeeded, want %v", pid, keys(done), steps)
		}
	}
	t.Logf("%d sagas reached their statuses; %d calls found their key's work done already (redeliveries, retries)", n, dups)
}

// successesByStep groups the successful calls of process pid by step, the
// forward ones and the compensations apart; id names a call (its command
// id, its key…) and says whether to count it.
func successesByStep(calls []demo.Call, pid string, id func(demo.Call) (string, bool)) (done, comps map[string]map[string]bool) {
	done, comps = map[string]map[string]bool{}, map[string]map[string]bool{}
	for _, call := range calls {
		name, count := id(call)
		if call.ProcessID != pid || call.Failed || !count {
			continue
		}
		m := done
		if call.Compensation {
			m = comps
		}
		if m[call.Step] == nil {
			m[call.Step] = map[string]bool{}
		}
		m[call.Step][name] = true
	}
	return done, comps
}

func keys(m map[string]map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// waitAny waits until some saga has a status row.
func waitAny(ctx context.Context, t *testing.T, status *engine.StatusTable, pids []string) {
	t.Helper()
	for ctx.Err() == nil {
		if err := status.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		for _, pid := range pids {
			if _, ok := status.Get(pid); ok {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("no saga started")
}
