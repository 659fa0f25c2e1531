// Package pulsartest gives tests, benchmarks and tools a real Pulsar broker:
//
//  1. PULSAR_URL and PULSAR_ADMIN_URL, when both are set, name an existing
//     broker;
//  2. else, when a Docker engine answers, a container started once per test
//     binary with testcontainers-go's pulsar module;
//  3. else the repository's standalone broker, started (or reused) once per
//     test binary with scripts/pulsar/pulsar.sh start.
//
// Either way the broker is ready when its admin API answers and a
// transaction can be opened and committed (the transaction coordinator loads
// lazily). There is no skipping: when no broker can be had, the test fails
// with the reason.
//
// Tests that stop the broker (StopBroker) hold a cross-process lock
// exclusively; every URLs caller holds it shared for the length of its test,
// so a stopped broker never surprises the tests of another package running
// at the same time.
package pulsartest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus/pulsarbus"
)

// Broker is a running broker.
type Broker struct {
	ServiceURL string
	AdminURL   string
	// Origin says where it came from: "env", "docker" or "script".
	Origin string
	// Home is the broker's folder (pid file, locks) for a script broker.
	Home string

	freeze func(ctx context.Context, stop bool) error
}

var (
	once   sync.Once
	broker *Broker
	errOf  error
)

// readyTimeout bounds waiting for a broker's transaction coordinator.
const readyTimeout = 3 * time.Minute

// Start returns the broker, starting it the first time it is called in this
// process. It is for benchmarks and commands; tests use URLs.
func Start(ctx context.Context) (*Broker, error) {
	once.Do(func() { broker, errOf = start(ctx) })
	return broker, errOf
}

func start(ctx context.Context) (*Broker, error) {
	svc, adm := os.Getenv("PULSAR_URL"), os.Getenv("PULSAR_ADMIN_URL")
	var b *Broker
	switch {
	case svc != "" || adm != "":
		if svc == "" || adm == "" {
			return nil, errors.New("pulsartest: set both PULSAR_URL and PULSAR_ADMIN_URL, or neither")
		}
		b = &Broker{ServiceURL: svc, AdminURL: adm, Origin: "env"}
		if home, err := brokerHome(); err == nil && sameAsScript(svc) {
			// The URLs name the repository's own broker (pulsar.sh env).
			b.Home = home
			b.freeze = signalFreeze(home)
		}
	case dockerAvailable(ctx):
		var err error
		if b, err = startContainer(ctx); err != nil {
			return nil, err
		}
	default:
		var err error
		if b, err = startScript(ctx); err != nil {
			return nil, err
		}
	}
	if err := waitReady(ctx, b.ServiceURL, b.AdminURL); err != nil {
		if b.Home != "" {
			// URLs prints what it finds (wedgeNote).
			checkWedge(b.Home, b.ServiceURL, b.AdminURL)
		}
		return nil, err
	}
	return b, nil
}

// URLs returns the broker's service and admin URLs, starting it if needed,
// and holds the broker lock shared until the test ends.
func URLs(t testing.TB) (serviceURL, adminURL string) {
	t.Helper()
	b, err := Start(context.Background())
	if err != nil {
		if note := wedgeNote(); note != "" {
			t.Fatalf("no Pulsar broker for the tests: %v\n%s", err, note)
		}
		t.Fatalf("no Pulsar broker for the tests: %v", err)
	}
	if b.Home != "" {
		release, err := lockShared(b.Home)
		if err != nil {
			t.Fatalf("pulsartest: %v", err)
		}
		t.Cleanup(release)
		// Runs before release (cleanups run last first): the broker
		// cannot be stopped by another test while it is probed.
		t.Cleanup(func() { diagnoseFailure(t, b) })
	}
	return b.ServiceURL, b.AdminURL
}

// repoRoot finds the repository root from the working directory (a package
// folder under go test).
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil &&
			bytes.Contains(b, []byte("module github.com/pulsaga/pulsaga\n")) {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("pulsartest: no pulsaga go.mod above %s", dir)
		}
	}
}

// brokerHome is the script broker's folder (PULSAGA_PULSAR_HOME, default
// <repo>/.pulsar).
func brokerHome() (string, error) {
	if h := os.Getenv("PULSAGA_PULSAR_HOME"); h != "" {
		return h, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, ".pulsar"), nil
}

func scriptPort() string {
	if p := os.Getenv("PULSAGA_PULSAR_PORT"); p != "" {
		return p
	}
	// pulsar.sh records the ports it picked when the defaults were taken.
	if home, err := brokerHome(); err == nil {
		if b, err := os.ReadFile(filepath.Join(home, "ports")); err == nil {
			if f := strings.Fields(string(b)); len(f) == 3 {
				return f[0]
			}
		}
	}
	return "6650"
}

// sameAsScript says whether a service URL is the script broker's.
func sameAsScript(serviceURL string) bool {
	for _, h := range []string{"127.0.0.1", "localhost"} {
		if strings.TrimSuffix(serviceURL, "/") == "pulsar://"+h+":"+scriptPort() {
			return true
		}
	}
	return false
}

func startScript(ctx context.Context) (*Broker, error) {
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	home, err := brokerHome()
	if err != nil {
		return nil, err
	}
	script := filepath.Join(root, "scripts", "pulsar", "pulsar.sh")
	cmd := exec.CommandContext(ctx, "bash", script, "start")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("pulsartest: %s start failed (%v):\n%s", script, err, strings.TrimSpace(out.String()))
	}
	cmd = exec.CommandContext(ctx, "bash", script, "env")
	env, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("pulsartest: %s env: %w", script, err)
	}
	b := &Broker{Origin: "script", Home: home, freeze: signalFreeze(home)}
	for _, line := range strings.Split(string(env), "\n") {
		k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		if !ok {
			continue
		}
		switch k {
		case "PULSAR_URL":
			b.ServiceURL = v
		case "PULSAR_ADMIN_URL":
			b.AdminURL = v
		}
	}
	if b.ServiceURL == "" || b.AdminURL == "" {
		return nil, fmt.Errorf("pulsartest: %s env printed no URLs: %q", script, env)
	}
	return b, nil
}

// waitReady waits until the admin API answers and a transaction can be
// opened and committed.
func waitReady(ctx context.Context, serviceURL, adminURL string) error {
	return waitReadyAs(ctx, serviceURL, adminURL, "")
}

// waitReadyAs is waitReady for a broker that wants a token (in tokenFile).
func waitReadyAs(ctx context.Context, serviceURL, adminURL, tokenFile string) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	var last error
	for {
		if last = readyOnce(ctx, serviceURL, adminURL, tokenFile); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pulsartest: the broker at %s (admin %s) is not ready after %s: %w", serviceURL, adminURL, readyTimeout, last)
		case <-time.After(time.Second):
		}
	}
}

func readyOnce(ctx context.Context, serviceURL, adminURL, tokenFile string) error {
	hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(hctx, http.MethodGet, strings.TrimSuffix(adminURL, "/")+"/admin/v2/clusters", nil)
	if err != nil {
		return err
	}
	if tokenFile != "" {
		tok, err := os.ReadFile(tokenFile)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("admin API: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("admin API: %s", resp.Status)
	}
	b, err := pulsarbus.New(ctx, pulsarbus.Config{
		ServiceURL: serviceURL, AdminURL: adminURL,
		ConnectionTimeout: 5 * time.Second, OperationTimeout: 10 * time.Second,
		Auth: pulsarbus.Auth{TokenFile: tokenFile},
	}, zerolog.Nop())
	if err != nil {
		return err
	}
	defer b.Close()
	tctx, cancel2 := context.WithTimeout(ctx, 15*time.Second)
	defer cancel2()
	tx, err := b.BeginTx(tctx, time.Minute)
	if err != nil {
		return fmt.Errorf("transaction coordinator: %w", err)
	}
	if err := tx.Commit(tctx); err != nil {
		return fmt.Errorf("transaction coordinator: %w", err)
	}
	return nil
}
