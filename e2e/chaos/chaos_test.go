//go:build chaos

package chaos

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// The kit's runs on the real binaries and a private broker: `make chaos`
// (the short run, then the frozen owner) and the test command. They are
// behind the chaos build tag: each takes minutes and kills its own broker.

func runKit(t *testing.T, cfg Config) {
	t.Helper()
	if testing.Short() {
		t.Skip("the chaos kit needs minutes and a broker of its own; run it with make chaos")
	}
	cfg.Broker = BrokerFromEnv(cfg.Broker)
	cfg.Progress = &testWriter{t: t}
	if dl, ok := t.Deadline(); ok && time.Until(dl) < cfg.Duration+cfg.Drain+5*time.Minute {
		t.Fatalf("the test binary's -timeout leaves %s; the run needs about %s", time.Until(dl).Round(time.Second), cfg.Duration+cfg.Drain+5*time.Minute)
	}
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	rep.Write(&out, 40)
	t.Log(out.String())
	if rep.Failed() {
		t.Errorf("the run found: %s (logs of every component kept in %s)", strings.Join(rep.Problems(), "; "), rep.Dir+"/logs")
		return
	}
	os.RemoveAll(rep.Dir)
}

type testWriter struct{ t *testing.T }

func (w *testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// TestChaosShort is the short run of the test command.
func TestChaosShort(t *testing.T) {
	runKit(t, DefaultConfig())
}

// TestFrozenOwner freezes an owner (SIGSTOP) for longer than the broker
// takes to give its partitions to the standby, checks that the standby
// took them over and made progress, resumes the old owner (SIGCONT) and
// checks that nothing it wrote took effect: every event stream dense with
// one record per number, no status going back, every saga right with each
// effect once.
func TestFrozenOwner(t *testing.T) {
	cfg := FrozenOwnerConfig()
	runKit(t, cfg)
}
