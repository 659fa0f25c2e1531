// Package cmdtest runs a binary's main from its own test binary, so that
// the command line of cmd/orchestrator, cmd/decider and cmd/worker (help,
// bad flags, invalid values, an unreachable broker) is tested as a user
// meets it: exit code, stdout and stderr.
package cmdtest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

const (
	envMain = "PULSAGA_TEST_MAIN"
	envArgs = "PULSAGA_TEST_ARGS"
)

// Main is a TestMain: with PULSAGA_TEST_MAIN set the test binary doubles
// as the command and runs main with the arguments in PULSAGA_TEST_ARGS
// (os.Args[0] is name); otherwise it runs the tests.
func Main(m *testing.M, name string, main func()) {
	if os.Getenv(envMain) == "1" {
		os.Args = append([]string{name}, strings.Fields(os.Getenv(envArgs))...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// Case is one run of the command: its arguments, and the exit code and
// the text its stdout and stderr must contain ("" checks nothing).
type Case struct {
	Name   string
	Args   string
	Code   int
	Stdout string
	Stderr string
}

// Standard are the cases every binary passes: help, an unknown flag, a
// value that fails validation (invalidArgs; stderr names invalidKey) and an
// unreachable broker (exit 1, the error logged).
func Standard(invalidArgs, invalidKey string) []Case {
	return []Case{
		{Name: "help", Args: "--help", Code: 0, Stdout: "--pulsar-url"},
		{Name: "unknown flag", Args: "--no-such-flag", Code: 2, Stderr: "unknown flag: --no-such-flag"},
		{Name: "invalid value names its key", Args: invalidArgs, Code: 2, Stderr: invalidKey},
		{Name: "unreachable broker", Args: "--pulsar-url=pulsar://127.0.0.1:1 --pulsar-admin-url=http://127.0.0.1:1 " +
			"--pulsar-connect-timeout=500ms --pulsar-operation-timeout=1s", Code: 1, Stderr: `"level":"error"`},
	}
}

// Run runs each case as a subtest: the test binary again, as the command
// (see Main).
func Run(t *testing.T, cases []Case) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), envMain+"=1", envArgs+"="+tc.Args)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.Code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.Code, stdout.String(), stderr.String())
			}
			if tc.Stdout != "" && !strings.Contains(stdout.String(), tc.Stdout) {
				t.Errorf("stdout does not contain %q:\n%s", tc.Stdout, stdout.String())
			}
			if tc.Stderr != "" && !strings.Contains(stderr.String(), tc.Stderr) {
				t.Errorf("stderr does not contain %q:\n%s", tc.Stderr, stderr.String())
			}
		})
	}
}
