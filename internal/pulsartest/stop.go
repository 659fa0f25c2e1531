package pulsartest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Lock files in the broker's folder. Users take the gate shared, then the
// broker lock shared, and let go of the gate; StopBroker takes the gate
// exclusively first, so that new users queue behind it instead of starving
// it, then the broker lock exclusively once the running tests are done.
const (
	gateLock   = "test-gate.lock"
	brokerLock = "test-broker.lock"
)

// exclusiveWait bounds how long StopBroker waits for the tests of other
// packages to finish with the broker (less when the test binary's -timeout
// is nearer).
const exclusiveWait = 10 * time.Minute

func openLock(home, name string) (*os.File, error) {
	if err := os.MkdirAll(home, 0o755); err != nil {
		return nil, err
	}
	return os.OpenFile(filepath.Join(home, name), os.O_CREATE|os.O_RDWR, 0o644)
}

func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// held is this process's hold on the broker lock: one file descriptor
// shared by every test of the process (flock locks belong to the open
// file, so a second descriptor would wait for the first).
var held struct {
	sync.Mutex
	f         *os.File
	users     int
	exclusive bool
}

// lockShared holds the broker lock shared until release is called. Every
// new user passes the gate, even when this process already holds the lock,
// so that a waiting StopBroker only waits for the tests already running.
func lockShared(home string) (release func(), err error) {
	gate, err := openLock(home, gateLock)
	if err != nil {
		return nil, fmt.Errorf("broker lock: %w", err)
	}
	defer gate.Close()
	if err := flock(gate, unix.LOCK_SH); err != nil {
		return nil, fmt.Errorf("broker gate lock %s: %w", gate.Name(), err)
	}
	held.Lock()
	defer held.Unlock()
	if held.f == nil {
		f, err := openLock(home, brokerLock)
		if err != nil {
			return nil, fmt.Errorf("broker lock: %w", err)
		}
		if err := flock(f, unix.LOCK_SH); err != nil {
			f.Close()
			return nil, fmt.Errorf("broker lock %s: %w", f.Name(), err)
		}
		held.f = f
	}
	held.users++
	var once sync.Once
	return func() {
		once.Do(func() {
			held.Lock()
			defer held.Unlock()
			held.users--
			if held.users == 0 && !held.exclusive {
				held.f.Close()
				held.f = nil
			}
		})
	}, nil
}

// gateHold is how long StopBroker keeps new users out while it waits for
// the running ones; then it lets them in for gatePause and tries again, so
// that a long test elsewhere does not hold every other test up for minutes.
const (
	gateHold  = 30 * time.Second
	gatePause = 2 * time.Second
)

// lockExclusive holds the gate and then the broker lock exclusively,
// waiting at most d; this process's shared hold, if any, is converted (so
// the caller must not run in parallel with other broker tests of its
// binary). release returns to the shared hold, or none.
func lockExclusive(home string, d time.Duration) (release func(), err error) {
	deadline := time.Now().Add(d)
	// try takes f exclusively, polling until until.
	try := func(f *os.File, until time.Time) (bool, error) {
		for {
			err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
			if err == nil {
				return true, nil
			}
			if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
				return false, fmt.Errorf("lock %s: %w", f.Name(), err)
			}
			if time.Now().After(until) {
				return false, nil
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	gate, err := openLock(home, gateLock)
	if err != nil {
		return nil, err
	}
	held.Lock()
	defer held.Unlock()
	if held.f == nil {
		if held.f, err = openLock(home, brokerLock); err != nil {
			gate.Close()
			return nil, err
		}
	}
	fail := func(err error) (func(), error) {
		if held.users == 0 {
			held.f.Close()
			held.f = nil
		}
		gate.Close()
		return nil, err
	}
	for {
		ok, err := try(gate, deadline)
		if err != nil {
			return fail(err)
		}
		if ok {
			until := time.Now().Add(gateHold)
			if until.After(deadline) {
				until = deadline
			}
			ok, err = try(held.f, until)
			if err != nil {
				return fail(err)
			}
			if ok {
				break
			}
			_ = unix.Flock(int(gate.Fd()), unix.LOCK_UN)
		}
		if time.Now().After(deadline) {
			return fail(fmt.Errorf("other tests kept using the broker (lock %s) for more than %s", held.f.Name(), d))
		}
		time.Sleep(gatePause)
	}
	held.exclusive = true
	return func() {
		held.Lock()
		defer held.Unlock()
		held.exclusive = false
		if held.users > 0 {
			_ = flock(held.f, unix.LOCK_SH)
		} else {
			held.f.Close()
			held.f = nil
		}
		gate.Close()
	}, nil
}

// signalFreeze stops and resumes the script broker's JVM with SIGSTOP and
// SIGCONT (its pid is in <home>/pid).
func signalFreeze(home string) func(ctx context.Context, stop bool) error {
	return func(ctx context.Context, stop bool) error {
		raw, err := os.ReadFile(filepath.Join(home, "pid"))
		if err != nil {
			return fmt.Errorf("broker pid: %w", err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
		if err != nil || pid <= 1 {
			return fmt.Errorf("broker pid file %s holds %q", filepath.Join(home, "pid"), raw)
		}
		sig := syscall.SIGCONT
		if stop {
			sig = syscall.SIGSTOP
		}
		if err := syscall.Kill(pid, sig); err != nil {
			return fmt.Errorf("signal %v to broker pid %d: %w", sig, pid, err)
		}
		return nil
	}
}

// StopBroker freezes the broker (SIGSTOP; a paused JVM in a container) for at
// most d and returns a function that resumes it; resuming also happens at
// the end of the test and, should this process die, by a watchdog process
// after d. It waits until no other test uses the broker and keeps them out
// until the broker runs again. The calling test must not be parallel with
// other broker tests of its own binary.
func StopBroker(t testing.TB, d time.Duration) (resume func()) {
	t.Helper()
	b, err := Start(context.Background())
	if err != nil {
		t.Fatalf("no Pulsar broker for the tests: %v", err)
	}
	if b.freeze == nil {
		t.Fatalf("pulsartest: cannot stop the broker at %s: it was not started by this repository (PULSAR_URL names a foreign broker); unset PULSAR_URL/PULSAR_ADMIN_URL to use the repository's broker", b.ServiceURL)
	}
	lockHome := b.Home
	if lockHome == "" {
		lockHome = filepath.Join(os.TempDir(), "pulsaga-pulsartest")
	}
	wait := exclusiveWait
	if tt, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		// Leave the rest of the test binary time to run before go test's
		// -timeout.
		if dl, ok := tt.Deadline(); ok {
			wait = max(min(wait, time.Until(dl)-4*time.Minute), 30*time.Second)
		}
	}
	release, err := lockExclusive(lockHome, wait)
	if err != nil {
		t.Fatalf("pulsartest: stop broker: %v", err)
	}
	var watchdog *exec.Cmd
	if b.Origin != "docker" {
		// Resumes the broker even if this test binary is killed meanwhile.
		raw, _ := os.ReadFile(filepath.Join(b.Home, "pid"))
		pid := strings.TrimSpace(string(raw))
		watchdog = exec.Command("sh", "-c", fmt.Sprintf("sleep %.1f; kill -CONT %s", d.Seconds()+1, pid))
		watchdog.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := watchdog.Start(); err != nil {
			release()
			t.Fatalf("pulsartest: start the resume watchdog: %v", err)
		}
	}
	if err := b.freeze(context.Background(), true); err != nil {
		release()
		t.Fatalf("pulsartest: stop broker: %v", err)
	}
	t.Logf("broker at %s stopped", b.ServiceURL)
	done := false
	resume = func() {
		if done {
			return
		}
		done = true
		if err := b.freeze(context.Background(), false); err != nil {
			t.Errorf("pulsartest: resume broker: %v", err)
		}
		if watchdog != nil {
			_ = watchdog.Process.Kill()
			_ = watchdog.Wait()
		}
		t.Logf("broker at %s resumed", b.ServiceURL)
		// Let other tests in only once it answers again.
		if err := waitReady(context.Background(), b.ServiceURL, b.AdminURL); err != nil {
			t.Errorf("pulsartest: broker not ready after resuming: %v", err)
		}
		release()
	}
	t.Cleanup(resume)
	return resume
}
