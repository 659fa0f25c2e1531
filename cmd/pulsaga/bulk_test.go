package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/pulsaga/pulsaga/admin"
	"github.com/pulsaga/pulsaga/workflow"
)

func TestBulkCommands(t *testing.T) {
	url, stack := apiServer(t)
	op := []string{"--server", url, "--token", cliOp}
	if out, _, err := runCLI(append(op, "register", "../../admin/testdata/repair.yaml")...); err != nil {
		t.Fatalf("register: %v %s", err, out)
	}
	for i := 1; i <= 3; i++ {
		pid := fmt.Sprintf("car-%d", i)
		if out, _, err := runCLI(append(op, "start", "repair", "--id", pid, "--input", `{"ticket":"T"}`)...); err != nil {
			t.Fatalf("start: %v %s", err, out)
		}
		waitFor(t, stack, pid, workflow.StatusPaused)
	}

	tests := []struct {
		name string
		args []string
		out  []string
		err  string
	}{
		{name: "dry run", args: []string{"bulk", "retry", "--status", "paused", "--error-type", "NoParts", "--dry-run"},
			out: []string{"3 process(es) match; retry applies to 3 of them now.", "car-1", "repair v1", "NoParts"}},
		{name: "dry run as JSON", args: []string{"bulk", "cancel", "--definition", "repair", "--dry-run", "-o", "json"}, out: []string{`"matched": 3`, `"applicable": 3`}},
		{name: "no reason", args: []string{"bulk", "retry", "--status", "paused"}, err: "--reason is required"},
		{name: "no terminal to confirm", args: []string{"bulk", "retry", "--status", "paused", "--reason", "x"}, err: "pass --yes to act"},
		{name: "empty filter", args: []string{"bulk", "terminate", "--reason", "x", "--yes"}, err: "the filter is empty and would select every process"},
		{name: "bad step status", args: []string{"bulk", "retry", "--at-step", "repair", "--step-status", "broken", "--dry-run"}, err: `step_status "broken" is not one of`},
		{name: "nothing applies", args: []string{"bulk", "retry", "--status", "completed", "--reason", "x", "--yes"}, err: "nothing to do: retry applies to none of the 0 processes"},
		{name: "skip needs a step", args: []string{"bulk", "skip", "--status", "paused", "--reason", "x"}, err: `required flag(s) "step" not set`},
		{name: "unknown job", args: []string{"bulk", "get", "bulk-nope"}, err: "no bulk job bulk-nope"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, err := runCLI(append(op, tc.args...)...)
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
		})
	}

	// A real job, followed to its end (no terminal: a line per change).
	out, errOut, err := runCLI(append(op, "bulk", "retry", "--at-step", "repair", "--step-status", "failed", "--step", "repair", "--reason", "parts arrived", "--rate", "50", "--yes")...)
	if err != nil {
		t.Fatalf("bulk retry: %v\n%s\n%s", err, out, errOut)
	}
	for _, w := range []string{"State:", "completed", "Progress:", "3/3 done, 0 failed, 0 skipped, 0 remaining", "By:", "alice: parts arrived"} {
		if !strings.Contains(out, w) {
			t.Errorf("bulk retry output lacks %q:\n%s", w, out)
		}
	}
	if !strings.Contains(errOut, "3 process(es) match; retry applies to 3 of them now.") || !strings.Contains(errOut, "queued (stop it with: pulsaga bulk stop bulk-") {
		t.Errorf("bulk retry stderr:\n%s", errOut)
	}
	out, _, err = runCLI(append(op, "bulk", "list", "-o", "json")...)
	if err != nil {
		t.Fatal(err)
	}
	var list admin.BulkJobList
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list.Jobs) != 1 || list.Jobs[0].Done != 3 {
		t.Fatalf("bulk list: %v %s", err, out)
	}
	id := list.Jobs[0].ID
	if out, _, err := runCLI(append(op, "bulk", "get", id)...); err != nil || !strings.Contains(out, "retry repair") || !strings.Contains(out, "Runner:") {
		t.Errorf("bulk get: %v %s", err, out)
	}
	if _, _, err := runCLI(append(op, "bulk", "stop", id)...); err == nil || !strings.Contains(err.Error(), "is completed already") {
		t.Errorf("bulk stop of a finished job: %v", err)
	}
	// A detached job, stopped.
	out, _, err = runCLI(append(op, "bulk", "terminate", "--definition", "repair", "--reason", "cleanup", "--rate", "0.2", "--yes", "--detach", "-o", "json")...)
	var job admin.BulkJob
	if err != nil || json.Unmarshal([]byte(out), &job) != nil || job.Total != 3 {
		t.Fatalf("detached: %v %s", err, out)
	}
	if out, _, err := runCLI(append(op, "bulk", "stop", job.ID, "--reason", "changed my mind")...); err != nil || !strings.Contains(out, "stop requested by alice") {
		t.Fatalf("bulk stop: %v %s", err, out)
	}
	out, _, err = runCLI(append(op, "bulk", "watch", job.ID)...)
	if err != nil || !strings.Contains(out, "cancelled") || !strings.Contains(out, "alice: changed my mind") {
		t.Fatalf("bulk watch: %v %s", err, out)
	}
}
