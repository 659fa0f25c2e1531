package pulsarbus

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	plog "github.com/apache/pulsar-client-go/pulsar/log"
	"github.com/rs/zerolog"
)

func TestClientLogger(t *testing.T) {
	var buf bytes.Buffer
	l := newClientLogger(zerolog.New(&buf).Level(zerolog.DebugLevel), &logGate{})
	l.SubLogger(plog.Fields{"topic": "t1"}).WithField("producer", "p").Infof("connected %d", 1)
	l.WithFields(plog.Fields{"a": "b"}).Warn("careful")
	l.WithError(errTest).Error("broken")
	l.Errorf("plain %s", "error")
	var got []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		got = append(got, m)
	}
	want := []map[string]any{
		{"level": "debug", "message": "connected 1", "topic": "t1", "producer": "p", "lib": "pulsar-client-go"},
		{"level": "warn", "message": "careful", "a": "b"},
		{"level": "error", "message": "broken", "error": "test error"},
		{"level": "error", "message": "plain error"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d lines, want %d: %s", len(got), len(want), buf.String())
	}
	for i, w := range want {
		for k, v := range w {
			if got[i][k] != v {
				t.Errorf("line %d: %s = %v, want %v (%v)", i, k, got[i][k], v, got[i])
			}
		}
	}
	// Info lines stay out of a logger at Info level.
	buf.Reset()
	newClientLogger(zerolog.New(&buf).Level(zerolog.InfoLevel), &logGate{}).Info("chatty")
	if buf.Len() != 0 {
		t.Fatalf("client Info logged at Info: %s", buf.String())
	}
}

// TestClientLoggerShut: once the gate is shut (Bus.Close) the client's
// lines are dropped — sub-loggers made before included — and a line being
// written when it shuts is finished before close returns.
func TestClientLoggerShut(t *testing.T) {
	var buf bytes.Buffer
	gate := &logGate{}
	l := newClientLogger(zerolog.New(&buf), gate)
	sub := l.SubLogger(plog.Fields{"topic": "t1"})
	l.Warn("before")
	gate.close()
	l.Warn("after")
	sub.Errorf("after, %s", "formatted")
	sub.WithError(errTest).Warn("after, with an error")
	if got := strings.TrimSpace(buf.String()); strings.Count(got, "\n") != 0 || !strings.Contains(got, `"before"`) {
		t.Fatalf("want only the line before the gate shut, got:\n%s", got)
	}

	// A slow write in progress holds close back until it is written.
	slow := &slowWriter{started: make(chan struct{}), release: make(chan struct{})}
	gate = &logGate{}
	l = newClientLogger(zerolog.New(slow), gate)
	go l.Warn("in progress")
	<-slow.started
	closed := make(chan struct{})
	go func() { gate.close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("the gate shut while a line was being written")
	case <-time.After(50 * time.Millisecond):
	}
	close(slow.release)
	<-closed
	if slow.n.Load() != 1 {
		t.Fatalf("%d lines written, want the one in progress", slow.n.Load())
	}
}

type slowWriter struct {
	started, release chan struct{}
	n                atomic.Int32
}

func (w *slowWriter) Write(p []byte) (int, error) {
	if w.n.Add(1) == 1 {
		close(w.started)
	}
	<-w.release
	return len(p), nil
}

type testError struct{}

func (testError) Error() string { return "test error" }

var errTest = testError{}
