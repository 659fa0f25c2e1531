package main

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

// The test binary doubles as the command: with PULSAGA_TEST_MAIN set it
// runs main with the arguments in PULSAGA_TEST_ARGS.
func TestMain(m *testing.M) {
	if os.Getenv("PULSAGA_TEST_MAIN") == "1" {
		os.Args = append([]string{"orchestrator"}, strings.Fields(os.Getenv("PULSAGA_TEST_ARGS"))...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// The command line: help, bad flags and invalid values exit 2 before
// anything starts, naming the flag or key; a broker that cannot be reached
// exits 1 with the error logged.
func TestCommandLine(t *testing.T) {
	tests := []struct {
		name   string
		args   string
		code   int
		stdout string
		stderr string
	}{
		{name: "help", args: "--help", code: 0, stdout: "--pulsar-url"},
		{name: "unknown flag", args: "--no-such-flag", code: 2, stderr: "unknown flag: --no-such-flag"},
		{name: "invalid value names its key", args: "INVALID", code: 2, stderr: "INVALIDKEY"},
		{name: "unreachable broker", args: "--pulsar-url=pulsar://127.0.0.1:1 --pulsar-admin-url=http://127.0.0.1:1 --pulsar-connect-timeout=500ms --pulsar-operation-timeout=1s", code: 1, stderr: `"level":"error"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			args := strings.ReplaceAll(tc.args, "INVALID", invalidArgs)
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "PULSAGA_TEST_MAIN=1", "PULSAGA_TEST_ARGS="+args)
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
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, stdout.String(), stderr.String())
			}
			want := strings.ReplaceAll(tc.stderr, "INVALIDKEY", invalidKey)
			if tc.stdout != "" && !strings.Contains(stdout.String(), tc.stdout) {
				t.Errorf("stdout does not contain %q:\n%s", tc.stdout, stdout.String())
			}
			if want != "" && !strings.Contains(stderr.String(), want) {
				t.Errorf("stderr does not contain %q:\n%s", want, stderr.String())
			}
		})
	}
}

// invalidArgs makes a configuration that fails validation on invalidKey.
const invalidArgs, invalidKey = "--partitions=0", "partitions"
