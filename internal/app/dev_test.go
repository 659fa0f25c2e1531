package app_test

import (
	"bytes"
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/internal/app"
)

// pulsaga dev on the embedded bus runs the mix of trip sagas to the end,
// each to the status its id asks for, and reports the commands run.
func TestRunDev(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	err := app.RunDev(ctx, app.DevOptions{Definitions: "../../testdata/trip-booking.yaml", Sagas: 8, ExitWhenDone: true}, &out, testLogger(t))
	if err != nil {
		t.Fatalf("RunDev: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "all 8 sagas finished") {
		t.Fatalf("no summary:\n%s", out.String())
	}
	row := regexp.MustCompile(`(?m)^(trip-\d+-\d+-(\S+))\s+(\S+)\s+(.*)$`)
	rows := row.FindAllStringSubmatch(out.String(), -1)
	if len(rows) != 8 {
		t.Fatalf("%d saga rows in the summary, want 8:\n%s", len(rows), out.String())
	}
	tests := []struct {
		scenario string
		status   string
		commands string
	}{
		{"ok", "completed", "NotifyCustomer"},
		{"flaky-BookFlight", "completed", "BookFlight✗"},
		{"fail-BookHotel", "compensated", "↩RefundPayment"},
		{"fail-NotifyCustomer", "compensated", "↩CancelHotel"},
		{"flaky-BookHotel", "completed", "BookHotel✗"},
		{"fail-BookFlight", "compensated", "↩CancelHotel"},
		{"fail-ProcessPayment", "compensated", "ProcessPayment✗"},
	}
	for _, tc := range tests {
		t.Run(tc.scenario, func(t *testing.T) {
			n := 0
			for _, r := range rows {
				if r[2] != tc.scenario {
					continue
				}
				n++
				if r[3] != tc.status || !strings.Contains(r[4], tc.commands) {
					t.Errorf("%s: %s with %s, want %s with %s", r[1], r[3], r[4], tc.status, tc.commands)
				}
			}
			if n == 0 {
				t.Errorf("no saga of scenario %s", tc.scenario)
			}
		})
	}
}

// Without ExitWhenDone, RunDev runs until its context ends and returns nil.
func TestRunDevStopsWithItsContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- app.RunDev(ctx, app.DevOptions{Definitions: "../../testdata/trip-booking.yaml"}, out, testLogger(t))
	}()
	deadline := time.Now().Add(wait)
	for !strings.Contains(out.String(), "registered trip-booking") {
		if time.Now().After(deadline) {
			t.Fatalf("dev never registered the definition:\n%s", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("RunDev: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("RunDev did not return after its context ended")
	}
}

func TestRunDevBadDefinitions(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	err := app.RunDev(ctx, app.DevOptions{Definitions: missing, Sagas: 1, ExitWhenDone: true}, &bytes.Buffer{}, testLogger(t))
	if err == nil || !strings.Contains(err.Error(), "nope.yaml") {
		t.Fatalf("want an error naming the missing file, got %v", err)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
