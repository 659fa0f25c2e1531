package app

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus/memory"
	"github.com/pulsaga/pulsaga/config"
	"github.com/pulsaga/pulsaga/engine"
)

func TestDeciderServesMetricsAndHealth(t *testing.T) {
	b := memory.New(memory.Options{})
	d := engine.NewDecider(b, engine.NewRegistry(b, "definitions", nil), engine.DeciderOptions{Name: "d1"}, zerolog.Nop())
	serve, addr, err := deciderMetrics("127.0.0.1:0", d, "d1", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx) }()
	get := func(path string) string {
		t.Helper()
		resp, err := http.Get("http://" + addr.String() + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
		}
		return string(body)
	}
	if got := get("/healthz"); got != "ok\n" {
		t.Errorf("/healthz = %q", got)
	}
	if got := get("/metrics"); !strings.Contains(got, `pulsaga_decider_tasks_total{outcome="decided",pulsaga_instance="d1"} 0`) {
		t.Errorf("/metrics lacks the decider's counters:\n%s", got)
	}
	// The address is taken: a second decider on it fails at its start.
	if _, _, err := deciderMetrics(addr.String(), d, "d2", zerolog.Nop()); err == nil {
		t.Error("a second listener on a taken address started")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the metrics server did not stop")
	}
}

func TestDeciderMetricsListenIsChecked(t *testing.T) {
	for _, tc := range []struct {
		name, listen string
		ok           bool
	}{
		{"off", "", true},
		{"host and port", "127.0.0.1:9091", true},
		{"any host", ":9091", true},
		{"no port", "localhost", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := config.DefaultDecider()
			c.MetricsListen = tc.listen
			err := c.Validate()
			if (err == nil) != tc.ok {
				t.Errorf("Validate(metrics_listen=%q) = %v", tc.listen, err)
			}
			if err != nil && !strings.Contains(err.Error(), "metrics_listen") {
				t.Errorf("the error does not name the key: %v", err)
			}
		})
	}
}
