package app_test

import (
	"context"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/internal/app"
	"github.com/pulsaga/pulsaga/protocol"
)

// Topics turns the configuration's history_retention into the engine's:
// unset keeps the default, "-1s" (any negative) is forever, which the bus
// spells -1.
func TestTopics(t *testing.T) {
	tests := []struct {
		name       string
		partitions int
		retention  time.Duration
		want       time.Duration
	}{
		{"unset keeps the default", 4, 0, protocol.DefaultTopics().HistoryRetention},
		{"a duration", 2, 48 * time.Hour, 48 * time.Hour},
		{"-1s is forever", 8, -time.Second, -1},
		{"any negative is forever", 1, -time.Millisecond, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := app.Topics(tc.partitions, tc.retention)
			if got.Partitions != tc.partitions || got.HistoryRetention != tc.want {
				t.Errorf("Topics(%d, %v) = partitions %d, history retention %v; want %d, %v",
					tc.partitions, tc.retention, got.Partitions, got.HistoryRetention, tc.partitions, tc.want)
			}
		})
	}
}

// The topics of a configuration that keeps history forever can be created
// on Pulsar (the orchestrator's first step).
func TestHistoryForeverOnPulsar(t *testing.T) {
	t.Parallel()
	b := connect(t, pulsarConfig(t))
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := engine.EnsureTopics(ctx, b, app.Topics(1, -time.Second)); err != nil {
		t.Fatalf("history_retention -1s: %v", err)
	}
}
