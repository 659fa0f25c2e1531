package pulsartest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/pulsaga/pulsaga/internal/pulsartest/threaddump"
)

// A broker can stop answering the binary protocol while its JVM lives and
// its admin API answers (io threads blocked: apache/pulsar#11246, #18988).
// Every later test then fails with "did not answer" and nothing says why.
// So when a test that used the script broker fails, or the broker does not
// become ready, the harness probes the binary port (pulsar.sh probe: a
// CONNECT, 5 s); a broker that does not answer gets ONE thread dump per
// broker process across all test processes (pulsar.sh threads: a lock and a
// marker file in <home>/logs), summarised in the test output — whole the
// first time in a test process, one line after. make test prints pulsar.sh
// health as its last lines when the tests fail.

// wedgeProbeEvery bounds how often one test process probes (a deaf broker
// makes each probe last its 5 s timeout).
const wedgeProbeEvery = 20 * time.Second

var wedge struct {
	sync.Mutex
	probedAt time.Time
	deaf     bool
	probe    string // pulsar.sh probe's answer
	dump     string // the dump's path, or why there is none
	summary  string
	told     bool
}

// pulsarScript runs scripts/pulsar/pulsar.sh with the broker's folder and
// URLs; out is its standard output, trimmed.
func pulsarScript(ctx context.Context, home, serviceURL, adminURL string, args ...string) (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "bash", append([]string{filepath.Join(root, "scripts", "pulsar", "pulsar.sh")}, args...)...)
	cmd.Env = append(os.Environ(), "PULSAGA_PULSAR_HOME="+home, "PULSAR_URL="+serviceURL, "PULSAR_ADMIN_URL="+adminURL)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil && stderr.Len() > 0 {
		err = fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), err
}

// checkWedge probes the broker's binary port (at most every
// wedgeProbeEvery in this process) and, when it does not answer, has its
// thread dump taken and summarised. It says whether the broker is deaf.
func checkWedge(home, serviceURL, adminURL string) bool {
	wedge.Lock()
	defer wedge.Unlock()
	if time.Since(wedge.probedAt) < wedgeProbeEvery {
		return wedge.deaf
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := pulsarScript(ctx, home, serviceURL, adminURL, "probe")
	wedge.probedAt, wedge.probe = time.Now(), out
	if err == nil || strings.HasPrefix(out, "REFUSED") {
		// Answering, or not running at all (the test says so itself).
		wedge.deaf = false
		return false
	}
	wedge.deaf = true
	if wedge.summary != "" {
		return true
	}
	path, err := pulsarScript(ctx, home, serviceURL, adminURL, "threads")
	if err != nil {
		wedge.dump = fmt.Sprintf("none (%v)", err)
		return true
	}
	wedge.dump = path
	if wedge.summary, err = threaddump.SummarizeFile(path); err != nil {
		wedge.summary = fmt.Sprintf("(no summary: %v)", err)
	}
	return true
}

// wedgeNote is what a failed test prints about a deaf broker: the probe,
// the dump's path and its summary the first time in this process, one line
// after; "" when the last probe had an answer.
func wedgeNote() string {
	wedge.Lock()
	defer wedge.Unlock()
	if !wedge.deaf {
		return ""
	}
	head := fmt.Sprintf("pulsartest: the broker's binary port: %s; thread dump: %s", wedge.probe, wedge.dump)
	if wedge.told || wedge.summary == "" {
		return head
	}
	wedge.told = true
	return head + "\n  " + strings.ReplaceAll(wedge.summary, "\n", "\n  ")
}

// diagnoseFailure is URLs' cleanup: a failed test against the script
// broker checks whether the broker went deaf.
func diagnoseFailure(t interface {
	Failed() bool
	Log(...any)
}, b *Broker) {
	if !t.Failed() || b.Home == "" {
		return
	}
	if checkWedge(b.Home, b.ServiceURL, b.AdminURL) {
		t.Log(wedgeNote())
	}
}
