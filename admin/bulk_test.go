package admin

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/workflow"
)

func TestBulkRequestsRefused(t *testing.T) {
	h := newHarness(t)
	h.startPaused("car-1")
	tests := []struct {
		name, secret, body string
		code               int
		msg                string
	}{
		{"unknown action", opSecret, `{"action":"reboot","filter":{"status":["paused"]},"reason":"x"}`, 400, `action "reboot" is not one of retry, skip, cancel, terminate, signal`},
		{"empty filter", opSecret, `{"action":"terminate","reason":"x"}`, 400, "the filter is empty and would select every process"},
		{"no reason", opSecret, `{"action":"retry","filter":{"status":["paused"]}}`, 400, "a bulk action needs a reason"},
		{"skip without a step", opSecret, `{"action":"skip","filter":{"status":["paused"]},"reason":"x"}`, 400, "skip needs step_id"},
		{"cancel with a step", opSecret, `{"action":"cancel","step_id":"repair","filter":{"status":["paused"]},"reason":"x"}`, 400, "cancel applies to whole processes; remove step_id"},
		{"output for retry", opSecret, `{"action":"retry","output":1,"filter":{"status":["paused"]},"reason":"x"}`, 400, "output is for skip only"},
		{"signal without a name", opSecret, `{"action":"signal","filter":{"status":["paused"]},"reason":"x"}`, 400, "signal needs the signal's name"},
		{"rate too high", opSecret, `{"action":"retry","rate":5000,"filter":{"status":["paused"]},"reason":"x"}`, 400, "rate 5000 must be between 0"},
		{"bad status", opSecret, `{"action":"retry","filter":{"status":["sleepy"]},"reason":"x"}`, 400, `status "sleepy" is not one of`},
		{"step status without step", opSecret, `{"action":"retry","filter":{"step_status":"failed"},"reason":"x"}`, 400, "step_status needs step"},
		{"unknown field", opSecret, `{"action":"retry","filter":{"colour":"red"},"reason":"x"}`, 400, `unknown field "colour"`},
		{"nothing applies", opSecret, `{"action":"cancel","filter":{"status":["completed"]},"reason":"x"}`, 409, "cancel applies to none of the 0 processes the filter selects"},
		{"read-only token", readSecret, `{"action":"retry","filter":{"status":["paused"]},"reason":"x","dry_run":true}`, 403, "needs the operator role"},
		{"no such job", opSecret, "", 404, "no bulk job bulk-nope"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			method, path := "POST", "/api/v1/bulk"
			if tc.body == "" {
				method, path = "GET", "/api/v1/bulk/bulk-nope"
			}
			code, body, _ := h.do(method, path, tc.secret, tc.body)
			if msg := decode[ErrorBody](t, body).Error.Message; code != tc.code || !strings.Contains(msg, tc.msg) {
				t.Fatalf("%d %s, want %d with %q", code, body, tc.code, tc.msg)
			}
		})
	}
}

// waitJob polls a bulk job until it has ended.
func (h *harness) waitJob(id string, timeout time.Duration) BulkJob {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		code, body, _ := h.do("GET", "/api/v1/bulk/"+id, readSecret, "")
		if code != 200 {
			h.t.Fatalf("get job %s: %d %s", id, code, body)
		}
		j := decode[BulkJob](h.t, body)
		if j.Ended() {
			return j
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("bulk job %s not over after %s: %+v", id, timeout, j)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// recordsBy counts the events of a process's stream of a type whose reason
// mentions the job.
func (h *harness) recordsBy(pid string, typ workflow.EventType, job string) int {
	h.t.Helper()
	code, body, _ := h.do("GET", "/api/v1/processes/"+pid, readSecret, "")
	if code != 200 {
		h.t.Fatalf("get %s: %d %s", pid, code, body)
	}
	n := 0
	for _, r := range decode[ProcessDetail](h.t, body).Records {
		if r.Event != nil && r.Event.Type == typ && strings.Contains(r.Event.Reason, "[bulk "+job+"]") {
			if r.Event.Actor != "alice" {
				h.t.Errorf("%s: %s by %q, want alice", pid, typ, r.Event.Actor)
			}
			n++
		}
	}
	return n
}

// TestBulkActions: a dry run counts and samples; a retry job and then a
// signal job act on the processes they select, each recorded on the
// process with who and why; the job list shows both.
func TestBulkActions(t *testing.T) {
	h := newHarness(t)
	for i := 1; i <= 4; i++ {
		h.startPaused(fmt.Sprintf("car-%d", i))
	}
	h.startPaused("bike-1")
	if code, body, _ := h.do("POST", "/api/v1/processes/bike-1/skip", opSecret, `{"step_id":"repair","output":{}}`); code != 202 {
		t.Fatalf("skip: %d %s", code, body)
	}
	h.waitStep("bike-1", "approval", workflow.StepWaiting)

	code, body, _ := h.do("POST", "/api/v1/bulk", opSecret, `{"action":"retry","step_id":"repair","filter":{"definition":"repair"},"dry_run":true}`)
	if code != 200 {
		t.Fatalf("dry run: %d %s", code, body)
	}
	pv := decode[BulkPreview](t, body)
	if pv.Matched != 5 || pv.Applicable != 4 || len(pv.Sample) != 4 || len(pv.NotApplicable) != 1 || pv.NotApplicable[0].ProcessID != "bike-1" ||
		!strings.Contains(pv.NotApplicable[0].Error, "cannot retry step repair of process bike-1: the step is skipped") {
		t.Fatalf("dry run: %s", body)
	}
	// The error-type filter selects the same four.
	code, body, _ = h.do("POST", "/api/v1/bulk", opSecret, `{"action":"retry","filter":{"error_type":"NoParts","step":"repair","step_status":"failed"},"dry_run":true}`)
	if pv = decode[BulkPreview](t, body); code != 200 || pv.Matched != 4 || pv.Applicable != 4 {
		t.Fatalf("dry run by error type: %d %s", code, body)
	}
	time.Sleep(200 * time.Millisecond)
	if got := strings.Count(strings.Join(h.garage.ran("car-1"), ","), "Repair"); got != 1 {
		t.Fatalf("a dry run acted: %v", h.garage.ran("car-1"))
	}

	code, body, _ = h.do("POST", "/api/v1/bulk", opSecret, `{"action":"retry","step_id":"repair","filter":{"status":["paused"],"definition":"repair"},"reason":"parts arrived","rate":100}`, IdempotencyHeader, "bulk-retry-1")
	if code != 202 {
		t.Fatalf("retry job: %d %s", code, body)
	}
	job := decode[BulkJob](t, body)
	if job.State != BulkQueued || job.Total != 4 || job.Actor != "alice" || job.Remaining != 4 {
		t.Fatalf("queued job: %s", body)
	}
	// The same request again: the same job, not a second one.
	code, body, _ = h.do("POST", "/api/v1/bulk", opSecret, `{"action":"retry","step_id":"repair","filter":{"status":["paused"],"definition":"repair"},"reason":"parts arrived","rate":100}`, IdempotencyHeader, "bulk-retry-1")
	if again := decode[BulkJob](t, body); code >= 300 || again.ID != job.ID {
		t.Fatalf("resent job request: %d %s", code, body)
	}
	done := h.waitJob(job.ID, 30*time.Second)
	if done.State != BulkCompleted || done.Done != 4 || done.Failed != 0 || done.Skipped != 0 || done.Remaining != 0 || done.Runner != "runner-a" || done.FinishedAt.IsZero() {
		t.Fatalf("retry job: %+v", done)
	}
	for i := 1; i <= 4; i++ {
		pid := fmt.Sprintf("car-%d", i)
		h.waitStep(pid, "approval", workflow.StepWaiting)
		if n := h.recordsBy(pid, workflow.EventRetry, job.ID); n != 1 {
			t.Errorf("%s has %d retries by the job", pid, n)
		}
	}

	// Every waiting approval at once.
	code, body, _ = h.do("POST", "/api/v1/bulk", opSecret, `{"action":"signal","signal":"approve","data":{"by":"bulk"},"filter":{"step":"approval","step_status":"waiting"},"reason":"approved in the weekly review"}`)
	if code != 202 {
		t.Fatalf("signal job: %d %s", code, body)
	}
	sig := decode[BulkJob](t, body)
	if d := h.waitJob(sig.ID, 30*time.Second); d.Done != 5 {
		t.Fatalf("signal job: %+v", d)
	}
	for _, pid := range []string{"car-1", "car-2", "car-3", "car-4", "bike-1"} {
		h.waitStatus(pid, workflow.StatusCompleted)
		if n := h.recordsBy(pid, workflow.EventSignal, sig.ID); n != 1 {
			t.Errorf("%s has %d signals by the job", pid, n)
		}
	}
	code, body, _ = h.do("GET", "/api/v1/bulk", readSecret, "")
	list := decode[BulkJobList](t, body)
	if code != 200 || len(list.Jobs) != 2 || list.Jobs[0].ID != sig.ID || list.Jobs[1].ID != job.ID {
		t.Fatalf("job list: %d %s", code, body)
	}
	// A finished job cannot be cancelled.
	if code, body, _ := h.do("POST", "/api/v1/bulk/"+job.ID+"/cancel", opSecret, ""); code != http.StatusConflict {
		t.Errorf("cancel of a finished job: %d %s", code, body)
	}
}

// TestBulkCancel: a slow job cancelled after its first action stops there;
// the other processes are untouched.
func TestBulkCancel(t *testing.T) {
	h := newHarness(t)
	for i := 1; i <= 4; i++ {
		h.startPaused(fmt.Sprintf("car-%d", i))
	}
	code, body, _ := h.do("POST", "/api/v1/bulk", opSecret, `{"action":"terminate","filter":{"status":["paused"]},"reason":"bad batch","rate":0.5}`)
	if code != 202 {
		t.Fatalf("job: %d %s", code, body)
	}
	job := decode[BulkJob](t, body)
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, body, _ = h.do("GET", "/api/v1/bulk/"+job.ID, readSecret, "")
		if j := decode[BulkJob](t, body); j.Done >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no progress: %s", body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, body, _ := h.do("POST", "/api/v1/bulk/"+job.ID+"/cancel", opSecret, `{"reason":"wrong filter"}`); code != 202 {
		t.Fatalf("cancel: %d %s", code, body)
	}
	j := h.waitJob(job.ID, 20*time.Second)
	if j.State != BulkCancelled || j.Done != 1 || j.Remaining != 3 || j.CancelledBy != "alice" || j.CancelReason != "wrong filter" {
		t.Fatalf("cancelled job: %+v", j)
	}
	terminated := 0
	for i := 1; i <= 4; i++ {
		pid := fmt.Sprintf("car-%d", i)
		deadline := time.Now().Add(10 * time.Second)
		for {
			h.stack.Status.Refresh(t.Context())
			row, _ := h.stack.Status.Get(pid)
			if row.Status == workflow.StatusTerminated {
				terminated++
				break
			}
			if row.Status == workflow.StatusPaused && (i > 1 || time.Now().After(deadline)) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if terminated != 1 {
		t.Errorf("%d processes terminated, want 1", terminated)
	}
	// The runner stays idle: 2 s later nothing more happened.
	time.Sleep(2 * time.Second)
	if _, body, _ = h.do("GET", "/api/v1/bulk/"+job.ID, readSecret, ""); decode[BulkJob](t, body).Done != 1 {
		t.Errorf("the job went on after its cancellation: %s", body)
	}
}

// TestBulkRestartOnPulsar: on a real broker, the runner running a job is
// stopped mid-job (its instance goes away) and another takes over from the
// last checkpoint: every process is acted on exactly once.
func TestBulkRestartOnPulsar(t *testing.T) {
	ns := pulsarNamespace(t)
	h := newHarnessOn(t, connectPulsar(t, ns))
	h.stopRunner()
	h.startRunner("runner-a", connectPulsar(t, ns))
	const n = 12
	for i := 1; i <= n; i++ {
		code, body, _ := h.do("POST", "/api/v1/processes", opSecret, fmt.Sprintf(`{"process_id":"car-%d","definition":"repair","input":{"ticket":"T"}}`, i))
		if code != 202 {
			t.Fatalf("start: %d %s", code, body)
		}
	}
	for i := 1; i <= n; i++ {
		h.waitStatus(fmt.Sprintf("car-%d", i), workflow.StatusPaused)
	}
	code, body, _ := h.do("POST", "/api/v1/bulk", opSecret, `{"action":"retry","filter":{"status":["paused"]},"reason":"supplier back","rate":3}`)
	if code != 202 {
		t.Fatalf("job: %d %s", code, body)
	}
	job := decode[BulkJob](t, body)
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, body, _ = h.do("GET", "/api/v1/bulk/"+job.ID, readSecret, "")
		j := decode[BulkJob](t, body)
		if j.Done >= 3 {
			if j.Done >= n-2 {
				t.Fatalf("too late to stop the runner mid-job: %+v", j)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no progress: %s", body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.stopRunner() // the instance stops in the middle of the job
	_, body, _ = h.do("GET", "/api/v1/bulk/"+job.ID, readSecret, "")
	mid := decode[BulkJob](t, body)
	if mid.Ended() || mid.Runner != "runner-a" {
		t.Fatalf("after the stop: %+v", mid)
	}
	h.startRunner("runner-b", connectPulsar(t, ns))
	j := h.waitJob(job.ID, 90*time.Second)
	if j.State != BulkCompleted || j.Done != n || j.Failed != 0 || j.Skipped != 0 || j.Runner != "runner-b" {
		t.Fatalf("job after the restart: %+v", j)
	}
	for i := 1; i <= n; i++ {
		pid := fmt.Sprintf("car-%d", i)
		h.waitStep(pid, "approval", workflow.StepWaiting)
		if got := h.recordsBy(pid, workflow.EventRetry, job.ID); got != 1 {
			t.Errorf("%s: %d retries by the job, want 1", pid, got)
		}
	}
	if got := strings.Count(strings.Join(h.garage.ran("car-1"), ","), "Repair"); got != 2 {
		t.Errorf("car-1 ran Repair %d times, want 2", got)
	}
	raw, _ := json.Marshal(j)
	t.Logf("job: %s", raw)
}
