package testlog

import (
	"fmt"
	"io"
	"os"
	"testing"

	"github.com/rs/zerolog"
)

// A write after the test ended goes to stderr: t.Log would panic then.
func TestWriteAfterTheTestGoesToStderr(t *testing.T) {
	var w io.Writer
	t.Run("inner", func(t *testing.T) {
		w = Writer(t)
		fmt.Fprintln(w, "during the test")
	})
	r, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := os.Stderr
	os.Stderr = pw
	_, werr := w.Write([]byte("after the test\n"))
	os.Stderr = stderr
	pw.Close()
	got, _ := io.ReadAll(r)
	if werr != nil || string(got) != "after the test\n" {
		t.Fatalf("late write: %v, stderr got %q", werr, got)
	}
}

func TestLevel(t *testing.T) {
	tests := []struct {
		name  string
		debug bool
		level zerolog.Level
		want  zerolog.Level
	}{
		{"as asked", false, zerolog.WarnLevel, zerolog.WarnLevel},
		{"everything with PULSAGA_TEST_LOG", true, zerolog.ErrorLevel, zerolog.DebugLevel},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.debug {
				t.Setenv(EnvDebug, "1")
			} else {
				t.Setenv(EnvDebug, "")
			}
			if got := New(t, tc.level).GetLevel(); got != tc.want {
				t.Fatalf("level %s, want %s", got, tc.want)
			}
		})
	}
}
