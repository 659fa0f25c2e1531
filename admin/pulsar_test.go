package admin

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/pulsarbus"
	"github.com/pulsaga/pulsaga/internal/pulsartest"
	"github.com/pulsaga/pulsaga/workflow"
)

// pulsarBus connects to the test broker in a namespace of its own (deleted
// at the end of the test).
func pulsarBus(t *testing.T) bus.Bus {
	t.Helper()
	return connectPulsar(t, pulsarNamespace(t))
}

// pulsarNamespace names a fresh namespace on the test broker, deleted at
// the end of the test.
func pulsarNamespace(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a Pulsar broker; run without -short (make test)")
	}
	t.Parallel()
	_, adm := pulsartest.URLs(t)
	ns := fmt.Sprintf("admin-%d", time.Now().UnixNano())
	t.Cleanup(func() { pulsartest.DeleteNamespace(t, adm, "public/"+ns) })
	return ns
}

// connectPulsar opens one more connection to the namespace ns (a process
// of its own, as far as the broker can tell), closed at the end of the
// test.
func connectPulsar(t *testing.T, ns string) bus.Bus {
	t.Helper()
	svc, adm := pulsartest.URLs(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := pulsarbus.New(ctx, pulsarbus.Config{ServiceURL: svc, AdminURL: adm,
		Namespace: bus.Namespace{Tenant: "public", Namespace: ns}}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// TestDeadLettersOnPulsar: listing, replay and purge of dead letters on a
// real broker (the messages leave the dead-letter topics' backlogs).
func TestDeadLettersOnPulsar(t *testing.T) {
	testDeadLetters(t, newHarnessOn(t, pulsarBus(t)))
}

// TestAPIOnPulsar runs the reads and actions of the API on a real broker:
// the status table, engine.ReadProcess, dead-letter topics that do not
// exist yet, a retry that takes a paused saga further.
func TestAPIOnPulsar(t *testing.T) {
	h := newHarnessOn(t, pulsarBus(t))
	h.startPaused("car-1")

	code, body, _ := h.do("GET", "/api/v1/processes/car-1", readSecret, "")
	d := decode[ProcessDetail](t, body)
	if code != 200 || d.State == nil || len(d.Records) == 0 || d.Process.Status != workflow.StatusPaused {
		t.Fatalf("get: %d %s", code, body)
	}
	code, body, _ = h.do("GET", "/api/v1/processes?stuck=true", readSecret, "")
	if code != 200 || !strings.Contains(string(body), `"process_id": "car-1"`) {
		t.Fatalf("list: %d %s", code, body)
	}
	code, body, _ = h.do("GET", "/api/v1/dlq", readSecret, "")
	if code != 200 || !strings.Contains(string(body), `"topics": []`) {
		t.Fatalf("dead letters (none yet): %d %s", code, body)
	}
	code, body, _ = h.do("GET", "/readyz", "", "")
	if code != 200 || !strings.Contains(string(body), `"bus": "ok"`) {
		t.Fatalf("readyz: %d %s", code, body)
	}
	code, body, _ = h.do("POST", "/api/v1/processes/car-1/retry", opSecret, `{"reason":"part arrived"}`, IdempotencyHeader, "k1")
	if code != 202 {
		t.Fatalf("retry: %d %s", code, body)
	}
	h.waitStep("car-1", "approval", workflow.StepWaiting)
	code, body, _ = h.do("GET", "/api/v1/processes/car-1", readSecret, "")
	d = decode[ProcessDetail](t, body)
	retries := 0
	for _, r := range d.Records {
		if r.Event != nil && r.Event.Type == workflow.EventRetry && r.Event.Actor == "alice" {
			retries++
		}
	}
	if code != 200 || retries != 1 {
		t.Fatalf("after retry: %d retry records by alice; %s", retries, body)
	}
	// The gauge reads the status table at each scrape; a scrape while the
	// broker is slow shows the rows read before (pulsaga_status_table_up 0),
	// so wait for an up-to-date one.
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body, _ = h.do("GET", "/metrics", "", "")
		if code == 200 && strings.Contains(string(body), "pulsaga_status_table_up 1") &&
			strings.Contains(string(body), `pulsaga_processes{definition="repair",status="running"} 1`) {
			break
		}
		if code != 200 || time.Now().After(deadline) {
			t.Fatalf("metrics: %d %s", code, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
