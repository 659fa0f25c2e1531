package chaos

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/internal/testlog"
)

// runKit runs the kit on the real binaries and a private broker of its own
// (CHAOS_PULSAR_HOME, default <repo>/.pulsar-chaos; ports 6651/8081/3182 or
// CHAOS_PULSAR_PORT/HTTP_PORT/BOOKIE_PORT: never the shared broker of the
// other tests, 6650/8080/3181, nor TestSecureBroker's 6652/8082/3183) and
// fails on anything the run found: a saga wrong or unfinished, an effect or
// a compensation not exactly once by key, a broken event stream, a dead
// letter, a panic.
func runKit(t *testing.T, cfg Config) {
	t.Helper()
	if testing.Short() {
		t.Skip("the chaos kit runs the binaries on a broker of its own for minutes; run it without -short (make test, make chaos)")
	}
	cfg.Broker = BrokerFromEnv(cfg.Broker)
	cfg.Progress = testlog.Writer(t)
	need := cfg.Duration + cfg.Drain + 5*time.Minute
	if dl, ok := t.Deadline(); ok && time.Until(dl) < need {
		t.Fatalf("the test binary's -timeout leaves %s; the run needs up to %s", time.Until(dl).Round(time.Second), need)
	}
	t0 := time.Now()
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	rep.Write(&out, 40)
	t.Log(out.String())
	t.Logf("the whole run took %s", time.Since(t0).Round(time.Second))
	if rep.Failed() {
		t.Errorf("the run found: %s (logs of every component kept in %s)", strings.Join(rep.Problems(), "; "), rep.Dir+"/logs")
		return
	}
	os.RemoveAll(rep.Dir)
}

// TestChaosShort is the kit's short run, part of the test command
// (ShortConfig: 150 sagas with known outcomes over a minute, kill -9 of a
// random component every 3 to 5s, the broker killed and restarted, an
// owner frozen; about three minutes on two cores). It fails when a single
// saga ends wrong or does not end.
func TestChaosShort(t *testing.T) {
	runKit(t, ShortConfig())
}
