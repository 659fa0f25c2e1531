package pulsartest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// holdLock holds a lock file from another process for d, as a test of
// another package would.
func holdLock(t *testing.T, path, mode string, d time.Duration) {
	t.Helper()
	flock, err := exec.LookPath("flock")
	if err != nil {
		t.Fatalf("the lock tests need util-linux's flock: %v", err)
	}
	cmd := exec.Command(flock, mode, path, "sleep", strings.TrimSuffix(d.String(), "s"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	// Wait until it holds the lock: a non-blocking exclusive attempt fails.
	deadline := time.Now().Add(5 * time.Second)
	for {
		probe := exec.Command(flock, "-n", "-x", path, "true")
		if err := probe.Run(); err != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the helper process did not take the lock")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLockExclusiveWaitsForOtherProcesses(t *testing.T) {
	home := t.TempDir()
	holdLock(t, filepath.Join(home, brokerLock), "-s", 1500*time.Millisecond)
	start := time.Now()
	release, err := lockExclusive(home, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < time.Second {
		t.Fatalf("got the exclusive lock after %s while another process held it shared", el)
	}
	release()
	if held.f != nil || held.exclusive {
		t.Fatalf("release left the lock held: %+v", held.f)
	}
}

func TestLockExclusiveGivesUp(t *testing.T) {
	home := t.TempDir()
	holdLock(t, filepath.Join(home, brokerLock), "-s", 10*time.Second)
	_, err := lockExclusive(home, 300*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "kept using the broker") {
		t.Fatalf("got %v, want an error saying the broker stayed in use", err)
	}
	if held.f != nil {
		t.Fatal("a failed exclusive lock left a file open")
	}
}

func TestSharedUsersWaitForStop(t *testing.T) {
	home := t.TempDir()
	// Another process stopping the broker holds the gate exclusively.
	holdLock(t, filepath.Join(home, gateLock), "-x", 1500*time.Millisecond)
	start := time.Now()
	release, err := lockShared(home)
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < time.Second {
		t.Fatalf("a new user got in after %s while the broker was being stopped", el)
	}
	// A second user of this process shares the hold; the exclusive lock of
	// this process converts it and gives it back.
	release2, err := lockShared(home)
	if err != nil {
		t.Fatal(err)
	}
	if held.users != 2 {
		t.Fatalf("users = %d, want 2", held.users)
	}
	ex, err := lockExclusive(home, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ex()
	if held.f == nil || held.exclusive {
		t.Fatal("the shared hold was not given back after the exclusive one")
	}
	release()
	release()
	release2()
	if held.users != 0 || held.f != nil {
		t.Fatalf("after every release: users %d, file %v", held.users, held.f)
	}
}

func TestRepoRootAndHome(t *testing.T) {
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "scripts", "pulsar", "pulsar.sh")); err != nil {
		t.Fatalf("repo root %s has no scripts/pulsar/pulsar.sh: %v", root, err)
	}
	t.Setenv("PULSAGA_PULSAR_HOME", "")
	home, err := brokerHome()
	if err != nil || home != filepath.Join(root, ".pulsar") {
		t.Fatalf("brokerHome() = %q, %v", home, err)
	}
	t.Setenv("PULSAGA_PULSAR_HOME", "/elsewhere")
	if home, _ := brokerHome(); home != "/elsewhere" {
		t.Fatalf("brokerHome() = %q with PULSAGA_PULSAR_HOME set", home)
	}
}

func TestSameAsScript(t *testing.T) {
	t.Setenv("PULSAGA_PULSAR_PORT", "")
	home := t.TempDir() // no ports file: the default ports
	t.Setenv("PULSAGA_PULSAR_HOME", home)
	for _, tc := range []struct {
		url  string
		want bool
	}{
		{"pulsar://127.0.0.1:6650", true},
		{"pulsar://localhost:6650/", true},
		{"pulsar://127.0.0.1:6651", false},
		{"pulsar://broker.example:6650", false},
	} {
		if got := sameAsScript(tc.url); got != tc.want {
			t.Errorf("sameAsScript(%q) = %v, want %v", tc.url, got, tc.want)
		}
	}
	// pulsar.sh picked other ports (the defaults were taken) and recorded them.
	if err := os.WriteFile(filepath.Join(home, "ports"), []byte("16651 18081 13182\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for url, want := range map[string]bool{"pulsar://127.0.0.1:16651": true, "pulsar://127.0.0.1:6650": false} {
		if got := sameAsScript(url); got != want {
			t.Errorf("with the ports file: sameAsScript(%q) = %v, want %v", url, got, want)
		}
	}
	t.Setenv("PULSAGA_PULSAR_PORT", "6650") // the environment wins over the file
	if !sameAsScript("pulsar://127.0.0.1:6650") {
		t.Error("PULSAGA_PULSAR_PORT=6650 with a ports file of 16651: sameAsScript(6650) = false, want true")
	}
}
