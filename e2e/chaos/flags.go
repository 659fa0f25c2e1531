package chaos

import (
	"flag"
	"os"
	"path/filepath"
	"strconv"
)

// BrokerFromEnv is def with the settings of CHAOS_PULSAR_HOME (default
// <repo>/.pulsar-chaos), CHAOS_PULSAR_PORT, CHAOS_PULSAR_HTTP_PORT and
// CHAOS_PULSAR_BOOKIE_PORT when set.
func BrokerFromEnv(def BrokerConfig) BrokerConfig {
	b := def
	b.Home = os.Getenv("CHAOS_PULSAR_HOME")
	if b.Home == "" {
		b.Home = filepath.Join(repoRoot(), ".pulsar-chaos")
	}
	port := func(env string, p *int) {
		if v, err := strconv.Atoi(os.Getenv(env)); err == nil && v > 0 {
			*p = v
		}
	}
	port("CHAOS_PULSAR_PORT", &b.Port)
	port("CHAOS_PULSAR_HTTP_PORT", &b.HTTPPort)
	port("CHAOS_PULSAR_BOOKIE_PORT", &b.BookiePort)
	return b
}

// Flags registers the run's settings on fs (defaults from cfg; the
// broker's from CHAOS_PULSAR_HOME, CHAOS_PULSAR_PORT,
// CHAOS_PULSAR_HTTP_PORT and CHAOS_PULSAR_BOOKIE_PORT when set, else
// <repo>/.pulsar-chaos and 6651/8081/3182).
func Flags(fs *flag.FlagSet, cfg *Config) {
	b := BrokerFromEnv(cfg.Broker)
	fs.StringVar(&cfg.Dir, "dir", cfg.Dir, "run folder: binaries, logs, ledger (default: a new temporary folder)")
	fs.StringVar(&cfg.Broker.Home, "broker-home", b.Home, "private broker's folder (its data is wiped at start)")
	fs.IntVar(&cfg.Broker.Port, "broker-port", b.Port, "private broker's port")
	fs.IntVar(&cfg.Broker.HTTPPort, "broker-http-port", b.HTTPPort, "private broker's admin port")
	fs.IntVar(&cfg.Broker.BookiePort, "broker-bookie-port", b.BookiePort, "private broker's bookie port")
	fs.IntVar(&cfg.Sagas, "sagas", cfg.Sagas, "sagas started over the chaos phase")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "chaos phase: starts, kills, freeze, broker restart")
	fs.DurationVar(&cfg.Drain, "drain", cfg.Drain, "most time after the chaos phase for the sagas to settle")
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of the sagas and the kills")
	fs.IntVar(&cfg.Partitions, "partitions", cfg.Partitions, "partitions of the process-keyed topics")
	fs.IntVar(&cfg.Orchestrators, "orchestrators", cfg.Orchestrators, "orchestrator instances")
	fs.IntVar(&cfg.Deciders, "deciders", cfg.Deciders, "decider instances (remote mode)")
	fs.StringVar(&cfg.DeciderMode, "decider-mode", cfg.DeciderMode, "inline (in the orchestrators), remote (cmd/decider instances) or auto (the binary's default)")
	fs.IntVar(&cfg.Services, "services", cfg.Services, "chaos service instances")
	fs.DurationVar(&cfg.KillMin, "kill-min", cfg.KillMin, "least time between two kill -9")
	fs.DurationVar(&cfg.KillMax, "kill-max", cfg.KillMax, "most time between two kill -9")
	fs.DurationVar(&cfg.RestartMin, "restart-min", cfg.RestartMin, "least time a killed component stays down")
	fs.DurationVar(&cfg.RestartMax, "restart-max", cfg.RestartMax, "most time a killed component stays down")
	fs.Float64Var(&cfg.BrokerRestartAt, "broker-restart-at", cfg.BrokerRestartAt, "when the broker is killed and restarted, as a fraction of the chaos phase (negative: never)")
	fs.DurationVar(&cfg.BrokerDownFor, "broker-down-for", cfg.BrokerDownFor, "how long the killed broker stays down before it is started again")
	fs.BoolVar(&cfg.ReplayTimers, "replay-timers", cfg.ReplayTimers, "probe the timers topic and send every timer acknowledged before the broker's kill again after its restart (apache/pulsar#20638)")
	fs.BoolVar(&cfg.ExactAttempts, "exact-attempts", cfg.ExactAttempts, "fail when a unit gets an attempt its scripts do not use")
	fs.Float64Var(&cfg.FreezeAt, "freeze-at", cfg.FreezeAt, "when an owner is frozen, as a fraction of the chaos phase (negative: never)")
	fs.DurationVar(&cfg.FreezeFor, "freeze-for", cfg.FreezeFor, "how long the owner stays frozen")
	fs.DurationVar(&cfg.Latency, "latency", cfg.Latency, "most a service attempt waits before acting")
	fs.DurationVar(&cfg.AttemptTimeout, "attempt-timeout", cfg.AttemptTimeout, "attempt timeout of the definitions (0: theirs, 30s trip / 20s orders)")
	fs.Float64Var(&cfg.Mix.Lost, "lost", cfg.Mix.Lost, "share of sagas whose scripts may lose attempts (each costs an attempt timeout)")
	fs.BoolVar(&cfg.Race, "race", cfg.Race, "build the binaries with the race detector")
	fs.StringVar(&cfg.EngineBin, "engine-bin", cfg.EngineBin, "folder with orchestrator and decider binaries (and a chaos-service, optionally) to run instead of this tree's")
}
