package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/admin"
	"github.com/pulsaga/pulsaga/bus/memory"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/worker"
	"github.com/pulsaga/pulsaga/workflow"
)

const (
	cliRead = "cli-read-secret"
	cliOp   = "cli-operator-secret"
)

// apiServer runs an engine on the embedded bus behind an admin server; the
// garage's Repair fails for good on each process's first attempt.
func apiServer(t *testing.T) (string, *engine.Stack) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := memory.New(memory.Options{})
	t.Cleanup(func() { _ = b.Close() })
	var mu sync.Mutex
	tries := map[string]int{}
	ok := func(_ context.Context, j *worker.Job) (any, error) {
		mu.Lock()
		defer mu.Unlock()
		if j.Command.Command == "Repair" {
			if tries[j.ProcessID]++; tries[j.ProcessID] == 1 {
				return nil, worker.NonRetryable("NoParts", errors.New("the spare part is missing"))
			}
		}
		return map[string]bool{"ok": true}, nil
	}
	handlers := map[string]worker.Handler{}
	for _, c := range []string{"Inspect", "Repair", "Polish", "Deliver", "Undo"} {
		handlers[c] = ok
	}
	topics := protocol.DefaultTopics()
	topics.Partitions = 1
	stack, err := engine.StartStack(ctx, b, engine.StackOptions{Topics: topics, Services: map[string]map[string]worker.Handler{"garage": handlers}}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stack.Stop() })
	srv, err := admin.New(admin.Options{Bus: b, Topics: topics, Registry: stack.Registry,
		Tokens: []admin.Token{{Name: "viewer", Role: admin.RoleRead, Secret: cliRead}, {Name: "alice", Role: admin.RoleOperator, Secret: cliOp}}}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	runner, err := admin.NewBulkRunner(admin.BulkRunnerOptions{Bus: b, Topics: topics, Registry: stack.Registry, Name: "cli-runner"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	rctx, stopRunner := context.WithCancel(context.Background())
	rdone := make(chan error, 1)
	go func() { rdone <- runner.Run(rctx) }()
	t.Cleanup(func() {
		stopRunner()
		if err := <-rdone; err != nil {
			t.Errorf("bulk runner: %v", err)
		}
	})
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return hs.URL, stack
}

func runCLI(args ...string) (string, string, error) {
	root := newRootCommand()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), errOut.String(), err
}

func waitFor(t *testing.T, stack *engine.Stack, pid string, want workflow.Status) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		_ = stack.Status.Refresh(context.Background())
		if r, ok := stack.Status.Get(pid); ok && r.Status == want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never became %s", pid, want)
}

func TestOperationsCommands(t *testing.T) {
	url, stack := apiServer(t)
	op := []string{"--server", url, "--token", cliOp}
	rd := []string{"--server", url, "--token", cliRead}

	out, _, err := runCLI(append(op, "register", "../../admin/testdata/repair.yaml")...)
	if err != nil || !strings.Contains(out, "registered repair v1") {
		t.Fatalf("register: %v %s", err, out)
	}
	out, _, err = runCLI(append(op, "start", "repair", "--id", "car-1", "--input", `{"ticket":"T-1"}`)...)
	if err != nil || strings.TrimSpace(out) != "car-1" {
		t.Fatalf("start: %v %s", err, out)
	}
	waitFor(t, stack, "car-1", workflow.StatusPaused)

	tests := []struct {
		name    string
		args    []string
		out     []string // substrings of stdout
		err     string   // substring of the error ("" : success)
		errText []string // substrings of stderr
	}{
		{name: "list", args: append(rd, "list"), out: []string{"PROCESS", "car-1", "repair v1", "paused", "NoParts"}},
		{name: "list stuck as JSON", args: append(rd, "list", "--stuck", "-o", "json"), out: []string{`"process_id": "car-1"`, `"total": 1`}},
		{name: "list as YAML", args: append(rd, "list", "-o", "yaml"), out: []string{"process_id: car-1"}},
		{name: "list nothing completed", args: append(rd, "list", "--status", "completed"), out: []string{"PROCESS"}},
		{name: "list with a bad status", args: append(rd, "list", "--status", "sleeping"), err: `status "sleeping" is not one of`},
		{name: "get", args: append(rd, "get", "car-1"), out: []string{"Status:", "paused", "repair", "failed", "NoParts: the spare part is missing", "SEQ", "start"}},
		{name: "get an unknown process", args: append(rd, "get", "nope"), err: "no process nope"},
		{name: "unknown output", args: append(rd, "list", "-o", "xml"), err: `--output "xml": want table, json or yaml`},
		{name: "read-only token", args: append(rd, "retry", "car-1"), err: "forbidden: this token (viewer) is read-only"},
		{name: "no token", args: []string{"--server", url, "list"}, err: "set PULSAGA_TOKEN, --token-file or --token"},
		{name: "server down", args: []string{"--server", "http://127.0.0.1:1", "list"}, err: "cannot reach the pulsaga server at http://127.0.0.1:1: "},
		{name: "no server", args: []string{"list"}, err: "no pulsaga server: set --server or PULSAGA_SERVER"},
		{name: "skip of a completed step", args: append(op, "skip", "car-1", "--step", "inspect"), err: "cannot skip step inspect of process car-1: the step is completed"},
		{name: "skip without --step", args: append(op, "skip", "car-1"), err: `required flag(s) "step" not set`},
		{name: "dlq list", args: append(rd, "dlq", "list"), out: []string{"TOPIC", "events-orchestrator-DLQ", "jobs.garage-workers-DLQ"}},
		{name: "dlq inspect", args: append(rd, "dlq", "inspect", "events-orchestrator-DLQ"), out: []string{"ID", "REASON"}},
		{name: "dlq replay needs ids or --all", args: append(op, "dlq", "replay", "events-orchestrator-DLQ"), err: "--id (repeatable) or pass --all"},
		{name: "dlq purge all", args: append(op, "dlq", "purge", "events-orchestrator-DLQ", "--all"), out: []string{"purged 0 dead letter(s) of events-orchestrator-DLQ; 0 left"}},
		{name: "dlq inspect of a topic that does not exist", args: append(rd, "dlq", "inspect", "jobs.nothing-workers-DLQ"), err: "no dead-letter topic jobs.nothing-workers-DLQ"},
		{name: "dlq purge of an id not there", args: append(op, "dlq", "purge", "events-orchestrator-DLQ", "--id", "Ym9ndXM="), out: []string{"purged 0", "not in the topic (replayed or purged already, or unknown): Ym9ndXM="}},
		{name: "definitions list", args: append(rd, "definitions", "list"), out: []string{"NAME", "repair", "repair.yaml"}},
		{name: "definitions get", args: append(rd, "definitions", "get", "repair"), out: []string{"approval", "wait", "repair,polish"}},
		{name: "definitions get source", args: append(rd, "defs", "get", "repair", "--source"), out: []string{"name: repair"}},
		{name: "register an invalid definition", args: append(op, "definitions", "register", "../../testdata/invalid/unknown-keys.yaml"), err: "the definition is invalid",
			errText: []string{"../../testdata/invalid/unknown-keys.yaml:3:1: unknown key"}},
		{name: "completion", args: []string{"completion", "bash"}, out: []string{"bash completion"}},
		{name: "get with an invalid id", args: append(rd, "get", "q?x=1#frag"), err: `process id: invalid process id: "q?x=1#frag" has "?"`},
		{name: "cancel of id ..", args: append(op, "cancel", ".."), err: `".." has "." at the start`},
		{name: "start with a NUL in the id", args: append(op, "start", "repair", "--id", "a\x00b"), err: "control character 0x00"},
		{name: "start of an existing id", args: append(op, "start", "repair", "--id", "car-1", "--input", `{"ticket":"T-1"}`), out: []string{"car-1 exists already (repair v1, paused, started ", "with the same input: nothing started"}},
		{name: "start of an existing id with another input", args: append(op, "start", "repair", "--id", "car-1", "--input", `{"ticket":"T-9"}`), err: "process car-1 exists already (repair v1, paused) with another input than this start's"},
		{name: "signal nobody waits for", args: append(op, "signal", "car-1", "aprove"), err: `process car-1 (repair v1) has no step that waits for signal "aprove"`},
		{name: "retry", args: append(op, "retry", "car-1", "--step", "repair", "--reason", "part arrived"), out: []string{"car-1: retry of step repair accepted", "by alice"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, err := runCLI(tc.args...)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("error: %v (stderr %s)", err, errOut)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("error %v, want one with %q", err, tc.err)
			}
			for _, w := range tc.out {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.errText {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
		})
	}

	// The retry took the process to its approval; the environment
	// supplies the server and a file the token.
	tokenFile := t.TempDir() + "/token"
	if err := os.WriteFile(tokenFile, []byte(cliOp+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PULSAGA_SERVER", url)
	t.Setenv("PULSAGA_TOKEN_FILE", tokenFile)
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, _, err := runCLI("get", "car-1", "-o", "json")
		if err != nil {
			t.Fatal(err)
		}
		var d admin.ProcessDetail
		if err := json.Unmarshal([]byte(out), &d); err != nil {
			t.Fatal(err)
		}
		if d.Process.Steps["approval"] == "waiting" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("approval never waited: %v", d.Process.Steps)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if out, _, err := runCLI("signal", "car-1", "approve", "--data", `{"by":"bob"}`); err != nil || !strings.Contains(out, "signal accepted") {
		t.Fatalf("signal: %v %s", err, out)
	}
	waitFor(t, stack, "car-1", workflow.StatusCompleted)
	if _, _, err := runCLI("cancel", "car-1"); err == nil || !strings.Contains(err.Error(), "process car-1 is completed") {
		t.Errorf("cancel of a completed process: %v", err)
	}
	if _, _, err := runCLI("signal", "car-1", "approve"); err == nil || !strings.Contains(err.Error(), "process car-1 is completed; it takes no signals") {
		t.Errorf("signal to a completed process: %v", err)
	}
}
