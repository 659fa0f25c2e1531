package app_test

import (
	"runtime/debug"
	"testing"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/config"
	"github.com/pulsaga/pulsaga/internal/app"
)

// SetGCPercent applies gc_percent unless GOGC is set in the environment.
func TestSetGCPercent(t *testing.T) {
	before := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(before) })
	for _, tc := range []struct {
		name string
		gogc string
		want int
	}{
		{"no GOGC: the configured target", "", 250},
		{"GOGC set: left to the runtime", "100", 100},
		{"GOGC off: left to the runtime", "off", 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetGCPercent(100)
			env := map[string]string{"GOGC": tc.gogc}
			app.SetGCPercent(250, func(k string) string { return env[k] }, zerolog.Nop())
			if got := debug.SetGCPercent(100); got != tc.want {
				t.Errorf("GC percent %d, want %d", got, tc.want)
			}
		})
	}
}

// BusConfig turns pulsar.compaction_threshold_mb into the bus's bytes.
func TestBusConfigCompactionThreshold(t *testing.T) {
	p := config.DefaultPulsar()
	if got := app.BusConfig(p).CompactionThresholdBytes; got != 64<<20 {
		t.Errorf("default: %d bytes, want 64 MiB", got)
	}
	p.CompactionThresholdMB = 3
	if got := app.BusConfig(p).CompactionThresholdBytes; got != 3<<20 {
		t.Errorf("3 MiB: %d bytes", got)
	}
}
