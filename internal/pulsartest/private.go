package pulsartest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Private is a broker of its own for a test or a tool that kills, freezes
// or restarts it (the chaos kit, broker-restart tests): a Pulsar standalone
// started from scripts/pulsar/pulsar.sh with its own folder, ports and
// data, never the shared broker of the other tests. It always runs from
// the script, Docker or not, so that it can be killed with SIGKILL and
// started again on the same data.
type Private struct {
	// Home holds the broker's jars, data, logs and pid file.
	Home string
	// Ports of the broker (binary protocol), its admin API and its bookie.
	Port, HTTPPort, BookiePort int
	// ServiceURL and AdminURL reach it.
	ServiceURL, AdminURL string

	script       string
	log          io.Writer
	startTimeout time.Duration
	confExtra    string
	tokenFile    string
	fastStart    bool
}

// PrivateOptions describe a private broker.
type PrivateOptions struct {
	// Home is the broker's folder. Its lib/ (the broker's jars, downloaded
	// by the script) is kept between runs; when it has none and the
	// repository's default broker (<repo>/.pulsar) has them, they are
	// linked instead of downloaded again.
	Home string
	// Port, HTTPPort and BookiePort must be free (no other program may
	// listen on them); the shared test broker uses 6650/8080/3181.
	Port, HTTPPort, BookiePort int
	// Fresh stops a broker left running in Home and deletes its data
	// before starting: the broker starts empty.
	Fresh bool
	// Log receives the script's output (default: discarded).
	Log io.Writer
	// StartTimeout bounds each start (default 10 minutes: a standalone
	// on a busy two-core machine has taken more than four).
	StartTimeout time.Duration
	// ConfExtra, when set, is a file of key=value lines that replace or
	// add to the keys of the broker's standalone.conf (authentication, TLS
	// ports: PULSAGA_PULSAR_CONF_EXTRA of pulsar.sh).
	ConfExtra string
	// AdminTokenFile holds the token the readiness checks send to a broker
	// that wants one.
	AdminTokenFile string
	// FastStart starts the JVM for a quick start rather than peak speed
	// (pulsar.sh's PULSAGA_PULSAR_FAST_START: C1 JIT only, serial GC):
	// about half the CPU to become ready, for a broker that is killed and
	// started again during a test.
	FastStart bool
}

// StartPrivate starts a private broker and waits until it is ready (admin
// API up, a transaction commits).
func StartPrivate(ctx context.Context, opts PrivateOptions) (*Private, error) {
	if opts.Home == "" || opts.Port == 0 || opts.HTTPPort == 0 || opts.BookiePort == 0 {
		return nil, errors.New("pulsartest: a private broker needs a home and three ports")
	}
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	home, err := filepath.Abs(opts.Home)
	if err != nil {
		return nil, err
	}
	p := &Private{
		Home: home, Port: opts.Port, HTTPPort: opts.HTTPPort, BookiePort: opts.BookiePort,
		ServiceURL: fmt.Sprintf("pulsar://127.0.0.1:%d", opts.Port),
		AdminURL:   fmt.Sprintf("http://127.0.0.1:%d", opts.HTTPPort),
		script:     filepath.Join(root, "scripts", "pulsar", "pulsar.sh"), log: opts.Log,
		startTimeout: opts.StartTimeout, confExtra: opts.ConfExtra, tokenFile: opts.AdminTokenFile,
		fastStart: opts.FastStart,
	}
	if p.startTimeout <= 0 {
		p.startTimeout = 10 * time.Minute
	}
	if p.log == nil {
		p.log = io.Discard
	}
	if shared := filepath.Join(root, ".pulsar"); home == shared {
		return nil, fmt.Errorf("pulsartest: %s is the shared test broker's folder; give the private broker its own", home)
	}
	if err := os.MkdirAll(home, 0o755); err != nil {
		return nil, err
	}
	if opts.Fresh {
		if err := p.Kill(); err != nil {
			return nil, err
		}
		if err := os.RemoveAll(filepath.Join(home, "data")); err != nil {
			return nil, fmt.Errorf("pulsartest: wipe the private broker's data: %w", err)
		}
	}
	p.linkJars(root)
	if err := p.Start(ctx); err != nil {
		_ = p.Kill() // a broker still starting when we gave up
		return nil, err
	}
	return p, nil
}

// linkJars points Home/lib at the default broker's jars when Home has none.
func (p *Private) linkJars(root string) {
	lib := filepath.Join(p.Home, "lib")
	if _, err := os.Lstat(lib); err == nil {
		return
	}
	shared := filepath.Join(root, ".pulsar", "lib")
	if m, _ := filepath.Glob(filepath.Join(shared, ".complete-*")); len(m) > 0 {
		_ = os.Symlink(shared, lib)
	}
}

func (p *Private) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "PULSAR_URL", "PULSAR_ADMIN_URL", "PULSAGA_PULSAR_HOME", "PULSAGA_PULSAR_PORT",
			"PULSAGA_PULSAR_HTTP_PORT", "PULSAGA_PULSAR_BOOKIE_PORT", "PULSAGA_PULSAR_START_TIMEOUT",
			"PULSAGA_PULSAR_CONF_EXTRA", "PULSAGA_PULSAR_ADMIN_TOKEN_FILE", "PULSAGA_PULSAR_FAST_START":
			continue
		}
		env = append(env, kv)
	}
	if p.confExtra != "" {
		env = append(env, "PULSAGA_PULSAR_CONF_EXTRA="+p.confExtra)
	}
	if p.tokenFile != "" {
		env = append(env, "PULSAGA_PULSAR_ADMIN_TOKEN_FILE="+p.tokenFile)
	}
	if p.fastStart {
		env = append(env, "PULSAGA_PULSAR_FAST_START=1")
	}
	return append(env, "PULSAGA_PULSAR_HOME="+p.Home,
		"PULSAGA_PULSAR_PORT="+strconv.Itoa(p.Port),
		"PULSAGA_PULSAR_HTTP_PORT="+strconv.Itoa(p.HTTPPort),
		"PULSAGA_PULSAR_BOOKIE_PORT="+strconv.Itoa(p.BookiePort),
		"PULSAGA_PULSAR_START_TIMEOUT="+strconv.Itoa(int(p.startTimeout.Seconds())))
}

// Start starts the broker on its data (after Kill or Stop) and waits until
// it is ready. It refuses ports taken by another program.
func (p *Private) Start(ctx context.Context) error {
	if _, running := p.PID(); !running {
		_ = os.Remove(filepath.Join(p.Home, "pid"))
		for _, port := range []int{p.Port, p.HTTPPort, p.BookiePort} {
			if portBusy(port) {
				return fmt.Errorf("pulsartest: port %d is taken by another program; the private broker in %s needs it free", port, p.Home)
			}
		}
	}
	cmd := exec.CommandContext(ctx, "bash", p.script, "start")
	cmd.Env = p.env()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.MultiWriter(&out, p.log), io.MultiWriter(&out, p.log)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("pulsartest: private broker start failed (%v):\n%s", err, strings.TrimSpace(out.String()))
	}
	return waitReadyAs(ctx, p.ServiceURL, p.AdminURL, p.tokenFile)
}

func portBusy(port int) bool {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// PID returns the broker's process id and whether it runs.
func (p *Private) PID() (int, bool) {
	raw, err := os.ReadFile(filepath.Join(p.Home, "pid"))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || pid <= 1 {
		return 0, false
	}
	return pid, alive(pid)
}

// alive says whether pid runs (a zombie, killed but not reaped by its
// adoptive parent, does not).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true // no procfs: trust kill(0)
	}
	// pid (comm) state ...: comm may hold spaces and parentheses.
	s := string(stat)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

// Kill stops the broker with SIGKILL (no shutdown code runs, as in a crash)
// and waits until it is gone. A broker that does not run is not an error.
func (p *Private) Kill() error {
	pid, running := p.PID()
	if running {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("pulsartest: kill the private broker (pid %d): %w", pid, err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for alive(pid) {
			if time.Now().After(deadline) {
				return fmt.Errorf("pulsartest: the private broker (pid %d) is still alive 30s after SIGKILL", pid)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	_ = os.Remove(filepath.Join(p.Home, "pid"))
	// The kernel may hold the ports a moment after the process is gone.
	deadline := time.Now().Add(10 * time.Second)
	for (portBusy(p.Port) || portBusy(p.HTTPPort) || portBusy(p.BookiePort)) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

// Stop stops the broker gracefully (SIGTERM, then SIGKILL after 30s).
func (p *Private) Stop() error {
	cmd := exec.Command("bash", p.script, "stop")
	cmd.Env = p.env()
	cmd.Stdout, cmd.Stderr = p.log, p.log
	return cmd.Run()
}

// Freeze stops (SIGSTOP) or resumes (SIGCONT) the broker's process.
func (p *Private) Freeze(stop bool) error {
	pid, running := p.PID()
	if !running {
		return fmt.Errorf("pulsartest: the private broker in %s does not run", p.Home)
	}
	sig := syscall.SIGCONT
	if stop {
		sig = syscall.SIGSTOP
	}
	return syscall.Kill(pid, sig)
}

// ActiveConsumers returns, for each partition of a partitioned topic (full
// name), the name of its subscription's active consumer (Failover): ""
// when it has none. It asks the admin API, as an operator would.
func (p *Private) ActiveConsumers(ctx context.Context, topic, subscription string) (map[int]string, error) {
	u, err := url.Parse(topic)
	if err != nil || u.Scheme != "persistent" {
		return nil, fmt.Errorf("pulsartest: %q is not a full persistent topic name", topic)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		p.AdminURL+"/admin/v2/persistent/"+u.Host+u.Path+"/partitioned-stats?perPartition=true", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("pulsartest: stats of %s: %s %s", topic, resp.Status, b)
	}
	var stats struct {
		Partitions map[string]struct {
			Subscriptions map[string]struct {
				ActiveConsumerName string `json:"activeConsumerName"`
			} `json:"subscriptions"`
		} `json:"partitions"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&stats); err != nil {
		return nil, fmt.Errorf("pulsartest: stats of %s: %w", topic, err)
	}
	out := map[int]string{}
	for name, st := range stats.Partitions {
		i := strings.LastIndex(name, "-partition-")
		if i < 0 {
			continue
		}
		n, err := strconv.Atoi(name[i+len("-partition-"):])
		if err != nil {
			continue
		}
		out[n] = st.Subscriptions[subscription].ActiveConsumerName
	}
	return out, nil
}

// DieWith has the broker killed (SIGKILL) as soon as the process pid is
// gone, whatever its end: a test binary that go test kills at its
// -timeout leaves no broker running behind it. The watchdog is a shell in
// a session of its own that checks every 2s; it kills only a process
// whose command line names this broker's home. stop ends the watchdog
// (call it once the broker has been stopped).
func (p *Private) DieWith(pid int) (stop func(), err error) {
	pidFile := filepath.Join(p.Home, "pid")
	script := fmt.Sprintf(`while kill -0 %d 2>/dev/null; do sleep 2; done
b=$(cat %s 2>/dev/null) && grep -qaF -- %s /proc/$b/cmdline 2>/dev/null && kill -9 "$b"`, pid, shellQuote(pidFile), shellQuote(p.Home))
	cmd := exec.Command("sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("pulsartest: start the broker's watchdog: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	return func() {
		_ = cmd.Process.Kill()
		<-done
	}, nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
