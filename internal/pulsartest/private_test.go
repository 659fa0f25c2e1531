package pulsartest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestDieWith: the watchdog kills the process of the broker's pid file
// once the watched process is gone, and only a process whose command line
// names the broker's home.
func TestDieWith(t *testing.T) {
	home := t.TempDir()
	type proc struct {
		cmd  *exec.Cmd
		done chan struct{}
	}
	start := func(args ...string) proc {
		p := proc{cmd: exec.Command(args[0], args[1:]...), done: make(chan struct{})}
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { _ = p.cmd.Wait(); close(p.done) }()
		t.Cleanup(func() { _ = p.cmd.Process.Kill(); <-p.done })
		return p
	}
	exited := func(p proc, within time.Duration) bool {
		select {
		case <-p.done:
			return true
		case <-time.After(within):
			return false
		}
	}
	for _, tt := range []struct {
		name     string
		names    bool // the fake broker's command line names home
		wantDead bool
	}{
		{"the broker goes with the watched process", true, true},
		{"a stranger in the pid file is left alone", false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			arg := "stranger"
			if tt.names {
				arg = home
			}
			broker := start("sh", "-c", "sleep 600; true", arg)
			if err := os.WriteFile(filepath.Join(home, "pid"), []byte(strconv.Itoa(broker.cmd.Process.Pid)), 0o644); err != nil {
				t.Fatal(err)
			}
			watched := start("sleep", "1")
			p := &Private{Home: home}
			stop, err := p.DieWith(watched.cmd.Process.Pid)
			if err != nil {
				t.Fatal(err)
			}
			defer stop()
			if exited(broker, 500*time.Millisecond) {
				t.Fatal("the broker died while the watched process lived")
			}
			<-watched.done
			if got := exited(broker, 4*time.Second); got != tt.wantDead {
				t.Errorf("broker dead %v, want %v", got, tt.wantDead)
			}
		})
	}
}
