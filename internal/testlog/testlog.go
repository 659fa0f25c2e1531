// Package testlog gives tests a zerolog logger that writes to the test's
// log while the test runs and to stderr after it has ended (goroutines
// may still log while they stop; testing.T panics on a late Log).
package testlog

import (
	"io"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"
)

// EnvDebug names the environment variable that, when set, makes every
// test logger log everything (debug).
const EnvDebug = "PULSAGA_TEST_LOG"

// New returns a logger for t at level (debug with PULSAGA_TEST_LOG set),
// with timestamps.
func New(t testing.TB, level zerolog.Level) zerolog.Logger {
	if os.Getenv(EnvDebug) != "" {
		level = zerolog.DebugLevel
	}
	return zerolog.New(Writer(t)).Level(level).With().Timestamp().Logger()
}

// Writer returns a writer that logs each write to t (one line, without
// its trailing newline) while t runs and writes to stderr once t has
// ended.
func Writer(t testing.TB) io.Writer {
	w := &writer{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return w
}

type writer struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return os.Stderr.Write(p)
	}
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
