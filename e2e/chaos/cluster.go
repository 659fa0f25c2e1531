package chaos

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Kinds of components.
const (
	KindOrchestrator = "orchestrator"
	KindDecider      = "decider"
	KindService      = "service"
)

// component is one of the run's processes, kept running by its own
// supervisor goroutine as systemd would: started again after the kit
// kills it (after the kill's delay) or when it exits by itself (after a
// second).
type component struct {
	name, kind string
	bin        string
	args       []string
	log        string // log file

	mu        sync.Mutex
	cmd       *exec.Cmd
	running   bool
	frozen    bool
	killed    bool      // the current process was killed by the kit
	restartAt time.Time // when a killed component starts again
	starts    int
	kills     int
	crashes   int      // crash faults (the chaos service killing itself)
	exits     []string // exits the kit did not cause: "exit status 1", ...
	wake      chan struct{}
}

// cluster runs the components.
type cluster struct {
	env   []string
	comps []*component
	logf  func(format string, args ...any)

	mu       sync.Mutex
	stopping bool
	wg       sync.WaitGroup
}

func newCluster(env []string, logf func(string, ...any)) *cluster {
	return &cluster{env: env, logf: logf}
}

func (c *cluster) add(name, kind, bin, log string, args ...string) *component {
	comp := &component{name: name, kind: kind, bin: bin, args: args, log: log, wake: make(chan struct{}, 1)}
	c.comps = append(c.comps, comp)
	return comp
}

func (c *cluster) isStopping() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopping
}

// run starts every component under its supervisor.
func (c *cluster) run() {
	for _, comp := range c.comps {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.supervise(comp)
		}()
	}
}

func (c *cluster) supervise(comp *component) {
	backoff := time.Second // after exits the kit did not cause, doubling to 8s
	for !c.isStopping() {
		t0 := time.Now()
		if err := c.startOnce(comp); err != nil {
			c.logf("%s: cannot start: %v", comp.name, err)
			time.Sleep(time.Second)
			continue
		}
		err := comp.cmd.Wait()
		comp.mu.Lock()
		comp.running, comp.frozen = false, false
		killed := comp.killed
		comp.killed = false
		crashed := false
		if !killed && !c.isStopping() {
			msg := "exit status 0"
			if err != nil {
				msg = err.Error()
			}
			// The chaos service kills itself on a crash fault.
			if crashed = comp.kind == KindService && msg == "signal: killed"; crashed {
				comp.crashes++
			} else {
				comp.exits = append(comp.exits, msg)
			}
		}
		until := comp.restartAt
		comp.mu.Unlock()
		if c.isStopping() {
			return
		}
		if crashed {
			until = time.Now().Add(time.Second)
		} else if !killed {
			if time.Since(t0) > 30*time.Second {
				backoff = time.Second
			}
			if backoff == time.Second {
				c.logf("%s exited by itself (%v); starting it again", comp.name, err)
			}
			until = time.Now().Add(backoff)
			backoff = min(2*backoff, 8*time.Second)
		}
		t := time.NewTimer(time.Until(until))
		select {
		case <-t.C:
		case <-comp.wake:
			t.Stop()
		}
	}
}

func (c *cluster) startOnce(comp *component) error {
	logf, err := os.OpenFile(comp.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "{\"kit\":\"start\",\"component\":%q,\"time\":%q}\n", comp.name, time.Now().UTC().Format(time.RFC3339Nano))
	cmd := exec.Command(comp.bin, comp.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = c.env
	// Its own process group: a Ctrl-C meant for the kit does not reach it
	// before the kit stops it. It dies with the kit (a test binary killed
	// by go test's -timeout leaves nothing running).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	comp.mu.Lock()
	defer comp.mu.Unlock()
	if c.isStopping() {
		logf.Close()
		return errors.New("stopping")
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	logf.Close() // the child has its own descriptor
	comp.cmd, comp.running, comp.frozen, comp.killed = cmd, true, false, false
	comp.starts++
	return nil
}

// kill sends SIGKILL to a running component (resuming it first if frozen
// is not needed: SIGKILL ends a stopped process) and has it started again
// after delay. It reports whether a process was killed.
func (c *cluster) kill(comp *component, delay time.Duration) bool {
	comp.mu.Lock()
	defer comp.mu.Unlock()
	if !comp.running || comp.killed {
		return false
	}
	if err := comp.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return false
	}
	comp.killed = true
	comp.kills++
	comp.restartAt = time.Now().Add(delay)
	return true
}

// freeze stops (SIGSTOP) or resumes (SIGCONT) a running component.
func (c *cluster) freeze(comp *component, stop bool) error {
	comp.mu.Lock()
	defer comp.mu.Unlock()
	if !comp.running {
		return fmt.Errorf("%s is not running", comp.name)
	}
	sig := syscall.SIGCONT
	if stop {
		sig = syscall.SIGSTOP
	}
	if err := comp.cmd.Process.Signal(sig); err != nil {
		return err
	}
	comp.frozen = stop
	return nil
}

// pick returns the running, unfrozen components of the kinds given (all
// when none).
func (c *cluster) pick(kinds ...string) []*component {
	var out []*component
	for _, comp := range c.comps {
		if len(kinds) > 0 && !contains(kinds, comp.kind) {
			continue
		}
		comp.mu.Lock()
		ok := comp.running && !comp.frozen && !comp.killed
		comp.mu.Unlock()
		if ok {
			out = append(out, comp)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// reviveAll resumes frozen components and starts killed ones now.
func (c *cluster) reviveAll() {
	for _, comp := range c.comps {
		comp.mu.Lock()
		if comp.frozen && comp.running {
			_ = comp.cmd.Process.Signal(syscall.SIGCONT)
			comp.frozen = false
		}
		comp.restartAt = time.Now()
		comp.mu.Unlock()
		select {
		case comp.wake <- struct{}{}:
		default:
		}
	}
}

// allRunning says whether every component runs.
func (c *cluster) allRunning() bool {
	for _, comp := range c.comps {
		comp.mu.Lock()
		ok := comp.running && !comp.frozen
		comp.mu.Unlock()
		if !ok {
			return false
		}
	}
	return true
}

// stop ends every component: SIGCONT, SIGTERM, then SIGKILL after grace.
func (c *cluster) stop(grace time.Duration) {
	c.mu.Lock()
	c.stopping = true
	c.mu.Unlock()
	for _, comp := range c.comps {
		comp.mu.Lock()
		if comp.running {
			_ = comp.cmd.Process.Signal(syscall.SIGCONT)
			_ = comp.cmd.Process.Signal(syscall.SIGTERM)
		}
		comp.mu.Unlock()
		select {
		case comp.wake <- struct{}{}:
		default:
		}
	}
	done := make(chan struct{})
	go func() { c.wg.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-time.After(grace):
	}
	for _, comp := range c.comps {
		comp.mu.Lock()
		if comp.running {
			c.logf("%s did not stop within %s of SIGTERM; killing it", comp.name, grace)
			_ = comp.cmd.Process.Signal(syscall.SIGKILL)
		}
		comp.mu.Unlock()
	}
	<-done
}

// ComponentStats are one component's counts over a run.
type ComponentStats struct {
	Name, Kind string
	Starts     int
	Kills      int
	// Crashes are the crash faults of the chaos service (it kills itself).
	Crashes int
	// Exits the kit did not cause (crashes, or the binary giving up while
	// the broker was away).
	Exits []string
	// Panics are the first lines of panics, fatal errors and data races
	// found in its log.
	Panics []string
}

func (c *cluster) stats() []ComponentStats {
	var out []ComponentStats
	for _, comp := range c.comps {
		comp.mu.Lock()
		s := ComponentStats{Name: comp.name, Kind: comp.kind, Starts: comp.starts, Kills: comp.kills, Crashes: comp.crashes, Exits: append([]string(nil), comp.exits...)}
		comp.mu.Unlock()
		s.Panics = scanPanics(comp.log)
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// scanPanics finds the lines that start a panic, a fatal runtime error or
// a race report in a log.
func scanPanics(path string) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		for _, p := range [][]byte{[]byte("panic: "), []byte("fatal error: "), []byte("WARNING: DATA RACE")} {
			if bytes.HasPrefix(line, p) {
				out = append(out, strings.TrimSpace(string(line)))
			}
		}
	}
	return out
}

func logPath(dir, name string) string { return filepath.Join(dir, name+".log") }
