package admin_test

import (
	"io"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/pulsaga/pulsaga/admin"
	"github.com/pulsaga/pulsaga/engine"
)

func TestDeciderMetricsReadTheCountersAtEachScrape(t *testing.T) {
	var decided atomic.Int64
	decided.Store(7)
	h := admin.DeciderMetrics(func() engine.DeciderStats {
		d := decided.Load()
		return engine.DeciderStats{Tasks: d + 2, Decided: d, Errors: 2, DeadLettered: 3, Nacked: 4, StatesReused: 5}
	}, "d1")
	scrape := func() string {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		if rec.Code != 200 {
			t.Fatalf("GET /metrics: %d", rec.Code)
		}
		b, _ := io.ReadAll(rec.Body)
		return string(b)
	}
	body := scrape()
	for _, want := range []string{
		`pulsaga_decider_tasks_total{outcome="decided",pulsaga_instance="d1"} 7`,
		`pulsaga_decider_tasks_total{outcome="error",pulsaga_instance="d1"} 2`,
		`pulsaga_decider_dead_lettered_total{pulsaga_instance="d1"} 3`,
		`pulsaga_decider_nacked_total{pulsaga_instance="d1"} 4`,
		`pulsaga_decider_states_reused_total{pulsaga_instance="d1"} 5`,
		`go_goroutines{pulsaga_instance="d1"}`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %q:\n%s", want, body)
		}
	}
	decided.Store(11)
	if body := scrape(); !strings.Contains(body, `pulsaga_decider_tasks_total{outcome="decided",pulsaga_instance="d1"} 11`) {
		t.Errorf("second scrape does not read the counter again:\n%s", body)
	}
}
