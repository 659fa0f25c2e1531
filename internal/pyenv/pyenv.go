// Package pyenv gives tests the Python interpreter of the project's
// virtual environment (scripts/python-env.sh: pulsar-client, pytest,
// OpenTelemetry, mypy and the SDK of sdk/python), made or refreshed once
// per test binary. The Python SDK's tests and the plain-pulsar-client
// worker tests use it.
package pyenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	once   sync.Once
	python string
	errOf  error
)

// provisionTimeout bounds making the environment (a first pip install
// downloads about 60 MB).
const provisionTimeout = 10 * time.Minute

// Python returns the path of the virtual environment's interpreter. Under
// -short the test is skipped; otherwise a failure to make the environment
// fails the test with pip's output.
func Python(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the Python virtual environment (scripts/python-env.sh); run without -short")
	}
	once.Do(func() { python, errOf = provision() })
	if errOf != nil {
		t.Fatal(errOf)
	}
	return python
}

// Root is the repository's root folder (the one holding go.mod).
func Root() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("pyenv: no go.mod above the working directory")
		}
		dir = parent
	}
}

func provision() (string, error) {
	root, err := Root()
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), provisionTimeout)
	defer cancel()
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, filepath.Join(root, "scripts", "python-env.sh"))
	cmd.Dir, cmd.Stdout, cmd.Stderr = root, &out, &errOut
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("pyenv: scripts/python-env.sh: %v\n%s", err, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	py := strings.TrimSpace(lines[len(lines)-1])
	if _, err := os.Stat(py); err != nil {
		return "", fmt.Errorf("pyenv: scripts/python-env.sh named %q: %v", py, err)
	}
	return py, nil
}
