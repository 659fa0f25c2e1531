package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Build compiles the engine's real binaries (cmd/orchestrator, cmd/decider,
// cmd/pulsaga) of the module at root into dir and returns their paths by
// name. The benchmarks run the engine as these separate processes so that
// its CPU time can be read from /proc apart from the workers and the load
// generator, which stay in the benchmark's process.
func Build(ctx context.Context, root, dir string) (map[string]string, error) {
	cmds := []string{"orchestrator", "decider", "pulsaga"}
	args := []string{"build", "-o", dir + string(os.PathSeparator)}
	for _, c := range cmds {
		args = append(args, "./cmd/"+c)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build of the engine binaries: %w\n%s", err, out)
	}
	bins := map[string]string{}
	for _, c := range cmds {
		bins[c] = filepath.Join(dir, c)
	}
	return bins, nil
}

// Proc is a running binary of the engine.
type Proc struct {
	Name string
	PID  int
	Log  string // file holding its stdout and stderr

	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	err  error // how it ended, once done
	stop bool  // Stop or Kill was called
}

// StartProc starts bin with args and the environment env (added to the
// benchmark's own), its output appended to logPath.
func StartProc(name, bin string, args, env []string, logPath string) (*Proc, error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = lf, lf
	// Its own process group: a Ctrl-C of the benchmark does not reach it
	// before the benchmark stops it. Killed when the benchmark's process
	// dies (a timeout, a kill): no engine is left running on the shared
	// broker.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, PID: cmd.Process.Pid, Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		_ = lf.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// CPU is the CPU time the process has used so far.
func (p *Proc) CPU() (time.Duration, error) { return ProcCPU(p.PID) }

// Alive returns an error when the process ended without being stopped.
func (p *Proc) Alive() error {
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.stop {
			return nil
		}
		return fmt.Errorf("%s (pid %d) exited: %v; its log: %s%s", p.Name, p.PID, p.err, p.Log, tail(p.Log, 2000))
	default:
		return nil
	}
}

// Stop sends SIGTERM and waits for the process to end (SIGKILL after
// grace); it returns an error when it had ended on its own before, or did
// not end cleanly.
func (p *Proc) Stop(grace time.Duration) error {
	if err := p.Alive(); err != nil {
		return err
	}
	p.mu.Lock()
	p.stop = true
	p.mu.Unlock()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s (pid %d) did not stop within %s of SIGTERM; killed", p.Name, p.PID, grace)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var ee *exec.ExitError
	if p.err != nil && !(errors.As(p.err, &ee) && ee.ExitCode() == 0) {
		return fmt.Errorf("%s (pid %d) ended with %v after SIGTERM; its log: %s", p.Name, p.PID, p.err, p.Log)
	}
	return nil
}

// Kill ends the process with SIGKILL and waits for it.
func (p *Proc) Kill() {
	p.mu.Lock()
	p.stop = true
	p.mu.Unlock()
	_ = p.cmd.Process.Kill()
	<-p.done
}

// tail is the end of a file, for error messages.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(st.Size()-n, 0)
	b := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(b, off); err != nil {
		return ""
	}
	return "\n…" + string(b)
}

// FreePort is a TCP port of the loopback interface free at the moment.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// WaitHTTP polls url until it answers 200 or ctx ends; alive is checked
// between polls (a process that died is not waited for).
func WaitHTTP(ctx context.Context, url string, alive func() error) error {
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if err := alive(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			last := "no answer"
			if resp != nil {
				last = resp.Status
			} else if err != nil {
				last = err.Error()
			}
			return fmt.Errorf("waiting for %s: %w (last: %s)", url, ctx.Err(), strings.TrimSpace(last))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// FetchCPUProfile saves a CPU profile of d from the Go pprof endpoint
// under api (/debug/pprof/profile) to out.
func FetchCPUProfile(api string, d time.Duration, out string) error {
	secs := max(int(d.Seconds()), 1)
	resp, err := (&http.Client{Timeout: d + time.Minute}).Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", api, secs))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /debug/pprof/profile: %s (is pprof on in the orchestrator's configuration?)", resp.Status)
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// LiveHeap is the live heap of a Go process after a forced collection, from
// its pprof endpoint under api (/debug/pprof/heap?gc=1&debug=1 ends with
// the runtime's MemStats; HeapAlloc right after a collection is the live
// heap).
func LiveHeap(api string) (int64, error) {
	resp, err := (&http.Client{Timeout: time.Minute}).Get(api + "/debug/pprof/heap?gc=1&debug=1")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET /debug/pprof/heap: %s", resp.Status)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, "# HeapAlloc = "); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, errors.New("GET /debug/pprof/heap: no HeapAlloc line")
}
