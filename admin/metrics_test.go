package admin

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

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
		{"timer lateness, early counted as 0", func(m *Metrics) { m.ObserveTimer("sleep", 30*time.Millisecond); m.ObserveTimer("sleep", -time.Second) },
			func(m *Metrics) float64 { return float64(testutil.CollectAndCount(m.timerLateness)) }, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMetrics(nil)
			tc.do(m)
			if got := tc.check(m); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}
