package pulsarbus

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	plog "github.com/apache/pulsar-client-go/pulsar/log"
	"github.com/rs/zerolog"
)

func TestClientLogger(t *testing.T) {
	var buf bytes.Buffer
	l := newClientLogger(zerolog.New(&buf).Level(zerolog.DebugLevel))
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
	newClientLogger(zerolog.New(&buf).Level(zerolog.InfoLevel)).Info("chatty")
	if buf.Len() != 0 {
		t.Fatalf("client Info logged at Info: %s", buf.String())
	}
}

type testError struct{}

func (testError) Error() string { return "test error" }

var errTest = testError{}
