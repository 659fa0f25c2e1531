package admin

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/memory"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/workflow"
)

func TestMetricsObserver(t *testing.T) {
	tests := []struct {
		name  string
		do    func(m *Metrics)
		check func(m *Metrics) float64
		want  float64
	}{
		{"a step leaving pending starts", func(m *Metrics) { m.StepChanged("d", "s", workflow.StepPending, workflow.StepRunning) },
			func(m *Metrics) float64 { return testutil.ToFloat64(m.stepsStarted.WithLabelValues("d", "s")) }, 1},
		{"a wait step starts too", func(m *Metrics) { m.StepChanged("d", "w", workflow.StepPending, workflow.StepWaiting) },
			func(m *Metrics) float64 { return testutil.ToFloat64(m.stepsStarted.WithLabelValues("d", "w")) }, 1},
		{"an admin retry is no new start", func(m *Metrics) { m.StepChanged("d", "s", workflow.StepFailed, workflow.StepRunning) },
			func(m *Metrics) float64 { return testutil.ToFloat64(m.stepsStarted.WithLabelValues("d", "s")) }, 0},
		{"failed", func(m *Metrics) { m.StepChanged("d", "s", workflow.StepRunning, workflow.StepFailed) },
			func(m *Metrics) float64 { return testutil.ToFloat64(m.stepsFailed.WithLabelValues("d", "s")) }, 1},
		{"second attempt is a retry", func(m *Metrics) { m.CommandSent("d", "s", 2, false) },
			func(m *Metrics) float64 { return testutil.ToFloat64(m.stepRetries.WithLabelValues("d", "s")) }, 1},
		{"a compensation's second attempt is no step retry", func(m *Metrics) { m.CommandSent("d", "s", 2, true) },
			func(m *Metrics) float64 { return testutil.ToFloat64(m.stepRetries.WithLabelValues("d", "s")) }, 0},
		{"first attempt", func(m *Metrics) { m.CommandSent("d", "s", 1, false) },
			func(m *Metrics) float64 { return testutil.ToFloat64(m.commands.WithLabelValues("d", "first")) }, 1},
		{"drops by reason", func(m *Metrics) { m.Dropped("duplicate"); m.Dropped("duplicate") },
			func(m *Metrics) float64 { return testutil.ToFloat64(m.dropped.WithLabelValues("duplicate")) }, 2},
		{"a committed batch's phases", func(m *Metrics) { m.BatchCommitted(70, 7*time.Millisecond, 2*time.Millisecond, 5*time.Millisecond) },
			func(m *Metrics) float64 { return histSum(m.batchPhase.WithLabelValues("second_round")) }, 0.002},
		{"a committed batch's inputs", func(m *Metrics) { m.BatchCommitted(70, 0, 0, 0); m.BatchCommitted(3, 0, 0, 0) },
			func(m *Metrics) float64 { return histSum(m.batchInputs) }, 73},
		{"timer lateness, early counted as 0", func(m *Metrics) { m.ObserveTimer("sleep", 30*time.Millisecond); m.ObserveTimer("sleep", -time.Second) },
			func(m *Metrics) float64 { return float64(testutil.CollectAndCount(m.timerLateness)) }, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMetrics(nil, "")
			tc.do(m)
			if got := tc.check(m); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// Two instances scraped side by side: per-instance series are told apart by
// pulsaga_instance and sum to what both observed; the global gauge is the
// same on both and has no instance label (so max, not sum, is its total).
func TestMetricsAcrossInstances(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b := memory.New(memory.Options{})
	defer b.Close()
	topics := protocol.DefaultTopics()
	p, err := b.Producer(ctx, bus.ProducerOptions{Topic: topics.Status})
	if err != nil {
		t.Fatal(err)
	}
	for i, st := range []workflow.Status{workflow.StatusRunning, workflow.StatusRunning, workflow.StatusPaused} {
		pid := fmt.Sprintf("p%d", i)
		env, err := bus.NewEnvelope(engine.TypeStatus, "status:"+pid, pid, time.Now(), engine.StatusRecord{ProcessID: pid, Definition: "d", Status: st, Seq: 1})
		if err != nil {
			t.Fatal(err)
		}
		payload, _ := env.Encode()
		if _, err := p.Send(ctx, &bus.OutMessage{Key: pid, Payload: payload}); err != nil {
			t.Fatal(err)
		}
	}
	var scrapes []string
	for i, name := range []string{"orch-a", "orch-b"} {
		status := engine.NewStatusTable(b, topics.Status)
		defer status.Close()
		m := NewMetrics(status, name)
		for range i + 1 {
			m.StepChanged("d", "s", workflow.StepRunning, workflow.StepCompleted)
		}
		rec := httptest.NewRecorder()
		m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		scrapes = append(scrapes, rec.Body.String())
	}
	sum := 0.0
	for i, body := range scrapes {
		name := []string{"orch-a", "orch-b"}[i]
		for _, want := range []string{
			fmt.Sprintf(`pulsaga_steps_completed_total{definition="d",pulsaga_instance="%s",step="s"} %d`, name, i+1),
			`pulsaga_processes{definition="d",status="running"} 2`,
			`pulsaga_processes{definition="d",status="paused"} 1`,
			fmt.Sprintf(`go_goroutines{pulsaga_instance="%s"}`, name),
		} {
			if !strings.Contains(body, want) {
				t.Errorf("%s: no %s in\n%s", name, want, body)
			}
		}
		for _, line := range strings.Split(body, "\n") {
			if strings.HasPrefix(line, "pulsaga_processes{") && strings.Contains(line, InstanceLabel) {
				t.Errorf("%s: a global gauge carries the instance: %s", name, line)
			}
			if v, ok := strings.CutPrefix(line, fmt.Sprintf(`pulsaga_steps_completed_total{definition="d",pulsaga_instance="%s",step="s"} `, name)); ok {
				f, _ := strconv.ParseFloat(v, 64)
				sum += f
			}
		}
	}
	if sum != 3 {
		t.Errorf("steps completed summed over instances: %v, want 3", sum)
	}
}

// TestMetricsWhenStatusTableUnreadable: a broker that does not answer
// makes pulsaga_status_table_up 0 and keeps the last rows read, and every
// other metric is still served.
func TestMetricsWhenStatusTableUnreadable(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	topics := protocol.DefaultTopics()
	p, err := b.Producer(ctx, bus.ProducerOptions{Topic: topics.Status})
	if err != nil {
		t.Fatal(err)
	}
	env, err := bus.NewEnvelope(engine.TypeStatus, "status:p1", "p1", time.Now(), engine.StatusRecord{ProcessID: "p1", Definition: "d", Status: workflow.StatusRunning, Seq: 1})
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := env.Encode()
	if _, err := p.Send(ctx, &bus.OutMessage{Key: "p1", Payload: payload}); err != nil {
		t.Fatal(err)
	}
	status := engine.NewStatusTable(b, topics.Status)
	defer status.Close()
	m := NewMetrics(status, "orch-a")
	m.StepChanged("d", "s", workflow.StepRunning, workflow.StepCompleted)
	scrape := func() (int, string) {
		rec := httptest.NewRecorder()
		m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		return rec.Code, rec.Body.String()
	}
	for _, tc := range []struct {
		name  string
		close bool
		up    string
	}{
		{"broker answers", false, "pulsaga_status_table_up 1"},
		{"broker gone", true, "pulsaga_status_table_up 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.close {
				_ = status.Close() // the table's reader is gone ...
				_ = b.Close()      // ... and the bus cannot open another
			}
			code, body := scrape()
			for _, want := range []string{
				tc.up,
				`pulsaga_processes{definition="d",status="running"} 1`,
				`pulsaga_steps_completed_total{definition="d",pulsaga_instance="orch-a",step="s"} 1`,
			} {
				if code != 200 || !strings.Contains(body, want) {
					t.Errorf("%d: no %s in\n%s", code, want, body)
				}
			}
		})
	}
}

// histSum is the sum of what a histogram observed.
func histSum(o prometheus.Observer) float64 {
	var pb dto.Metric
	if err := o.(prometheus.Metric).Write(&pb); err != nil {
		return -1
	}
	return pb.GetHistogram().GetSampleSum()
}
