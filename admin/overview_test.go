package admin

import (
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/workflow"
)

func TestBuildOverview(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 30, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	rows := []engine.StatusRecord{
		{ProcessID: "t1", Definition: "trip", Status: workflow.StatusCompleted, StartedAt: ago(50 * time.Minute), UpdatedAt: ago(49 * time.Minute), EndedAt: ago(49 * time.Minute)},
		{ProcessID: "t2", Definition: "trip", Status: workflow.StatusCompensated, StartedAt: ago(10 * time.Minute), UpdatedAt: ago(9 * time.Minute), EndedAt: ago(9 * time.Minute), LastError: "flight: NoSeats: full"},
		{ProcessID: "t3", Definition: "trip", Status: workflow.StatusPaused, StartedAt: ago(30 * time.Minute), UpdatedAt: ago(20 * time.Minute), LastError: "hotel: Timeout: no answer"},
		{ProcessID: "t4", Definition: "trip", Status: workflow.StatusRunning, StartedAt: ago(3 * time.Hour), UpdatedAt: ago(2 * time.Hour)},
		{ProcessID: "t5", Definition: "trip", Status: workflow.StatusRunning, StartedAt: ago(30 * time.Second), UpdatedAt: ago(20 * time.Second)},
		{ProcessID: "r1", Definition: "repair", Status: workflow.StatusCompensationFailed, StartedAt: ago(5 * time.Minute), UpdatedAt: ago(4 * time.Minute), LastError: "repair: Timeout: slow"},
		{ProcessID: "r2", Definition: "repair", Status: workflow.StatusTerminated, StartedAt: ago(2 * time.Hour), UpdatedAt: ago(90 * time.Second), EndedAt: ago(90 * time.Second)},
	}
	o, err := BuildOverview(rows, now, "1h", "", 15*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if o.Total != 7 || o.ByStatus[workflow.StatusRunning] != 2 || o.ByStatus[workflow.StatusFailed] != 0 || len(o.ByStatus) != 8 {
		t.Errorf("counts: %d %v", o.Total, o.ByStatus)
	}
	if len(o.ByDefinition) != 2 || o.ByDefinition[0].Definition != "trip" || o.ByDefinition[0].Total != 5 || o.ByDefinition[0].Stuck != 2 || o.ByDefinition[1].Stuck != 1 {
		t.Errorf("by definition: %+v", o.ByDefinition)
	}
	// Stuck: t4 (no progress for 2h), t3 (paused, 20m), r1 (compensation failed): oldest first.
	if o.Stuck != 3 || len(o.OldestStuck) != 3 || o.OldestStuck[0].ProcessID != "t4" || o.OldestStuck[1].ProcessID != "t3" || o.OldestStuck[2].ProcessID != "r1" {
		t.Errorf("stuck: %d %+v", o.Stuck, o.OldestStuck)
	}
	// 61 one-minute buckets from 11:00 to 12:00.
	if len(o.Buckets) != 61 || !o.Buckets[0].Start.Equal(time.Date(2026, 11, 25, 11, 0, 0, 0, time.UTC)) {
		t.Fatalf("buckets: %d from %v", len(o.Buckets), o.Buckets[0].Start)
	}
	var started, completed, failed int
	for _, b := range o.Buckets {
		started, completed, failed = started+b.Started, completed+b.Completed, failed+b.Failed
	}
	// Started within the hour: t1, t2, t3, t5, r1; ended: t1 completed, t2 and r2 failed.
	if started != 5 || completed != 1 || failed != 2 {
		t.Errorf("over the window: %d started, %d completed, %d failed", started, completed, failed)
	}
	if b := o.Buckets[len(o.Buckets)-1]; b.Started != 1 {
		t.Errorf("last bucket: %+v", b)
	}
	if len(o.ErrorTypes) != 1 || o.ErrorTypes[0] != (ErrorTypeCount{Type: "Timeout", Count: 2}) {
		t.Errorf("error types: %+v", o.ErrorTypes)
	}
	one, _ := BuildOverview(rows, now, "24h", "repair", 15*time.Minute)
	if one.Total != 2 || len(one.Buckets) != 73 || one.Step != "20m0s" {
		t.Errorf("one definition over a day: %d processes, %d buckets of %s", one.Total, len(one.Buckets), one.Step)
	}
	if _, err := BuildOverview(rows, now, "2h", "", time.Minute); err == nil {
		t.Error("a window that is not offered")
	}
}
