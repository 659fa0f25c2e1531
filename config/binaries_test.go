package config

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestBinaryDefaultsAreValid(t *testing.T) {
	o, d, w := DefaultOrchestrator(), DefaultDecider(), DefaultWorker()
	for _, tc := range []struct {
		name string
		cfg  Validator
	}{
		{"orchestrator", &o},
		{"decider", &d},
		{"worker", &w},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.Validate(); err != nil {
				t.Fatalf("defaults are invalid: %v", err)
			}
		})
	}
}

// checkInvalid checks err is a configuration error naming every key, each
// as a *FieldError, and no other key.
func checkInvalid(t *testing.T, err error, keys ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want an error naming %v, got none", keys)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("error does not wrap ErrInvalid: %v", err)
	}
	var got []string
	var walk func(error)
	walk = func(e error) {
		var fe *FieldError
		switch x := e.(type) {
		case interface{ Unwrap() []error }:
			for _, inner := range x.Unwrap() {
				walk(inner)
			}
		default:
			if errors.As(e, &fe) {
				got = append(got, fe.Key)
			}
		}
	}
	walk(err)
	slices.Sort(got)
	want := slices.Clone(keys)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("error names keys %v, want %v: %v", got, want, err)
	}
	for _, k := range keys {
		if !strings.Contains(err.Error(), k) || !strings.Contains(err.Error(), "--"+FlagName(k)) || !strings.Contains(err.Error(), EnvName(k)) {
			t.Errorf("error does not tell how to set %s: %v", k, err)
		}
	}
}

func TestOrchestratorValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(c *Orchestrator)
		keys   []string // nil: valid
	}{
		{"history kept forever", func(c *Orchestrator) { c.HistoryRetention = -time.Second }, nil},
		{"existing definitions directory", func(c *Orchestrator) { c.Definitions = t.TempDir() }, nil},
		{"no name", func(c *Orchestrator) { c.Name = "" }, []string{"name"}},
		{"zero partitions", func(c *Orchestrator) { c.Partitions = 0 }, []string{"partitions"}},
		{"too many partitions", func(c *Orchestrator) { c.Partitions = 1025 }, []string{"partitions"}},
		{"zero batch", func(c *Orchestrator) { c.BatchSize = 0 }, []string{"batch_size"}},
		{"one command an entry", func(c *Orchestrator) { c.JobBatchMessages = 1 }, nil},
		{"zero commands an entry", func(c *Orchestrator) { c.JobBatchMessages = 0 }, []string{"job_batch_messages"}},
		{"more commands an entry than a batch holds", func(c *Orchestrator) { c.JobBatchMessages = 1001 }, []string{"job_batch_messages"}},
		{"no batch spacing", func(c *Orchestrator) { c.BatchSpacing = 0 }, nil},
		{"negative batch spacing", func(c *Orchestrator) { c.BatchSpacing = -time.Millisecond }, []string{"batch_spacing"}},
		{"batch spacing too long", func(c *Orchestrator) { c.BatchSpacing = 2 * time.Second }, []string{"batch_spacing"}},
		{"Go's own GC target", func(c *Orchestrator) { c.GCPercent = 100 }, nil},
		{"GC target too low", func(c *Orchestrator) { c.GCPercent = 9 }, []string{"gc_percent"}},
		{"GC off", func(c *Orchestrator) { c.GCPercent = -1 }, []string{"gc_percent"}},
		{"GC target too high", func(c *Orchestrator) { c.GCPercent = 10001 }, []string{"gc_percent"}},
		{"no decision in flight", func(c *Orchestrator) { c.MaxOutstanding = 0 }, []string{"max_outstanding"}},
		{"one decision in flight", func(c *Orchestrator) { c.MaxOutstanding = 1 }, nil},
		{"remote decider", func(c *Orchestrator) { c.Decider = "remote" }, nil},
		{"unknown decider mode", func(c *Orchestrator) { c.Decider = "elsewhere" }, []string{"decider"}},
		{"missing definitions", func(c *Orchestrator) { c.Definitions = filepath.Join(t.TempDir(), "nope.yaml") }, []string{"definitions"}},
		{"zero decision timeout", func(c *Orchestrator) { c.DecisionTimeout = 0 }, []string{"decision_timeout"}},
		{"negative retention", func(c *Orchestrator) { c.Retention = -time.Hour }, []string{"retention"}},
		{"zero history retention", func(c *Orchestrator) { c.HistoryRetention = 0 }, []string{"history_retention"}},
		{"history retention below -1s", func(c *Orchestrator) { c.HistoryRetention = -time.Hour }, []string{"history_retention"}},
		{"shared sections too, all at once", func(c *Orchestrator) {
			c.Pulsar.URL, c.Pulsar.AdminURL, c.Log.Level, c.BatchSize = "localhost:6650", "pulsar://x:8080", "loud", -1
		}, []string{"pulsar.url", "pulsar.admin_url", "log.level", "batch_size"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultOrchestrator()
			tc.change(&c)
			err := c.Validate()
			if tc.keys == nil {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			checkInvalid(t, err, tc.keys...)
		})
	}
}

func TestDeciderValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(c *Decider)
		keys   []string
	}{
		{"one of everything", func(c *Decider) { c.Concurrency, c.Partitions = 1, 1 }, nil},
		{"no name", func(c *Decider) { c.Name = "" }, []string{"name"}},
		{"zero concurrency", func(c *Decider) { c.Concurrency = 0 }, []string{"concurrency"}},
		{"GC target too low", func(c *Decider) { c.GCPercent = 0 }, []string{"gc_percent"}},
		{"Go's own GC target", func(c *Decider) { c.GCPercent = 100 }, nil},
		{"batches of one, no wait to speak of", func(c *Decider) { c.MaxBatch, c.BatchWait = 1, time.Microsecond }, nil},
		{"largest batch, longest wait", func(c *Decider) { c.MaxBatch, c.BatchWait = 1000, time.Second }, nil},
		{"zero max batch", func(c *Decider) { c.MaxBatch = 0 }, []string{"max_batch"}},
		{"max batch too large", func(c *Decider) { c.MaxBatch = 1001 }, []string{"max_batch"}},
		{"zero batch wait", func(c *Decider) { c.BatchWait = 0 }, []string{"batch_wait"}},
		{"negative batch wait", func(c *Decider) { c.BatchWait = -time.Millisecond }, []string{"batch_wait"}},
		{"batch wait too long", func(c *Decider) { c.BatchWait = 2 * time.Second }, []string{"batch_wait"}},
		{"zero partitions", func(c *Decider) { c.Partitions = 0 }, []string{"partitions"}},
		{"too many partitions (as the orchestrator)", func(c *Decider) { c.Partitions = 2000 }, []string{"partitions"}},
		{"bad namespace", func(c *Decider) { c.Pulsar.Namespace = "a/b" }, []string{"pulsar.namespace"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultDecider()
			tc.change(&c)
			err := c.Validate()
			if tc.keys == nil {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			checkInvalid(t, err, tc.keys...)
		})
	}
}

func TestWorkerValidate(t *testing.T) {
	bridge := func(c *Worker) { c.Mode, c.Services = "bridge", []string{"hotels"} }
	tests := []struct {
		name   string
		change func(c *Worker)
		keys   []string
	}{
		{"bridge to HTTP", func(c *Worker) { bridge(c); c.BridgeURL = "http://127.0.0.1:9000/run" }, nil},
		{"bridge to HTTPS", func(c *Worker) { bridge(c); c.BridgeURL = "https://hotels.internal/run" }, nil},
		{"bridge to a program", func(c *Worker) { bridge(c); c.BridgeExec = "python3 hotel.py" }, nil},
		{"demo with faults", func(c *Worker) { c.FailProbability, c.FailCommand, c.Latency = 0.5, "BookHotel", time.Millisecond }, nil},
		{"no name", func(c *Worker) { c.Name = "" }, []string{"name"}},
		{"unknown mode", func(c *Worker) { c.Mode = "proxy" }, []string{"mode"}},
		{"no services", func(c *Worker) { c.Services = nil }, []string{"services"}},
		{"an empty service name", func(c *Worker) { c.Services = []string{"payments", ""} }, []string{"services"}},
		{"a service name with a slash", func(c *Worker) { c.Services = []string{"pay/ments"} }, []string{"services"}},
		{"zero concurrency", func(c *Worker) { c.Concurrency = 0 }, []string{"concurrency"}},
		{"probability above 1", func(c *Worker) { c.FailProbability = 1.5 }, []string{"fail_probability"}},
		{"negative probability", func(c *Worker) { c.FailProbability = -0.1 }, []string{"fail_probability"}},
		{"negative latency", func(c *Worker) { c.Latency = -time.Second }, []string{"latency"}},
		{"bridge serves one service", func(c *Worker) {
			bridge(c)
			c.Services, c.BridgeURL = []string{"a", "b"}, "http://x"
		}, []string{"services"}},
		{"bridge with neither URL nor program", bridge, []string{"bridge_url"}},
		{"bridge with both URL and program", func(c *Worker) { bridge(c); c.BridgeURL, c.BridgeExec = "http://x", "prog" }, []string{"bridge_url"}},
		{"bridge URL without a scheme", func(c *Worker) { bridge(c); c.BridgeURL = "localhost:9000" }, []string{"bridge_url"}},
		{"bridge URL of another scheme", func(c *Worker) { bridge(c); c.BridgeURL = "ftp://x/run" }, []string{"bridge_url"}},
		{"bridge program of blanks", func(c *Worker) { bridge(c); c.BridgeExec = "   " }, []string{"bridge_exec"}},
		{"bridge program with an open quote", func(c *Worker) { bridge(c); c.BridgeExec = `python3 "my service.py` }, []string{"bridge_exec"}},
		{"bridge program with quoted words", func(c *Worker) { bridge(c); c.BridgeExec = `python3 "/srv/my service.py" --name 'a b'` }, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultWorker()
			tc.change(&c)
			err := c.Validate()
			if tc.keys == nil {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			checkInvalid(t, err, tc.keys...)
		})
	}
}

// FromArgs: flags, environment and file reach the binaries' configs, with
// the binaries' own keys.
func TestFromArgs(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "worker.yaml")
	if err := os.WriteFile(file, []byte("mode: bridge\nservices: [hotels]\nbridge_url: http://127.0.0.1:9000\nconcurrency: 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		binary  string
		args    []string
		env     map[string]string
		check   func(t *testing.T, cfg Validator)
		wantErr []string
	}{
		{name: "orchestrator flags", binary: "orchestrator",
			args: []string{"--name=o-1", "--partitions=8", "--batch-size=64", "--decision-timeout=5s", "--timer-relay=false", "--history-retention=-1s"},
			check: func(t *testing.T, cfg Validator) {
				c := cfg.(*Orchestrator)
				if c.Name != "o-1" || c.Partitions != 8 || c.BatchSize != 64 || c.DecisionTimeout != 5*time.Second || c.TimerRelay || c.HistoryRetention != -time.Second {
					t.Errorf("flags not applied: %+v", c)
				}
			}},
		{name: "decider environment", binary: "decider",
			env: map[string]string{"PULSAGA_CONCURRENCY": "9", "PULSAGA_NAME": "d-1", "PULSAGA_PULSAR_NAMESPACE": "prod", "PULSAGA_MAX_BATCH": "32"},
			check: func(t *testing.T, cfg Validator) {
				c := cfg.(*Decider)
				if c.Concurrency != 9 || c.Name != "d-1" || c.Pulsar.Namespace != "prod" || c.MaxBatch != 32 {
					t.Errorf("environment not applied: %+v", c)
				}
			}},
		{name: "decider batch flags", binary: "decider", args: []string{"--max-batch=128", "--batch-wait=10ms"},
			check: func(t *testing.T, cfg Validator) {
				c := cfg.(*Decider)
				if c.MaxBatch != 128 || c.BatchWait != 10*time.Millisecond {
					t.Errorf("flags not applied: %+v", c)
				}
			}},
		{name: "decider batch wait out of range", binary: "decider", args: []string{"--batch-wait=5s"},
			wantErr: []string{"batch_wait", "--batch-wait", "PULSAGA_BATCH_WAIT"}},
		{name: "worker services as a comma list in the environment", binary: "worker",
			env: map[string]string{"PULSAGA_SERVICES": "payments,hotels"},
			check: func(t *testing.T, cfg Validator) {
				if c := cfg.(*Worker); !reflect.DeepEqual(c.Services, []string{"payments", "hotels"}) {
					t.Errorf("services %q", c.Services)
				}
			}},
		{name: "worker services as a flag", binary: "worker", args: []string{"--services=flights,notifications", "--fail-probability=0.2"},
			check: func(t *testing.T, cfg Validator) {
				c := cfg.(*Worker)
				if !reflect.DeepEqual(c.Services, []string{"flights", "notifications"}) || c.FailProbability != 0.2 {
					t.Errorf("flags not applied: %+v", c)
				}
			}},
		{name: "worker file, flag over it", binary: "worker", args: []string{"--config", file, "--concurrency=5"},
			check: func(t *testing.T, cfg Validator) {
				c := cfg.(*Worker)
				if c.Mode != "bridge" || !reflect.DeepEqual(c.Services, []string{"hotels"}) || c.BridgeURL != "http://127.0.0.1:9000" || c.Concurrency != 5 {
					t.Errorf("file and flags not applied: %+v", c)
				}
			}},
		{name: "invalid values name their keys", binary: "worker", args: []string{"--mode=bridge", "--services=hotels", "--concurrency=0"},
			wantErr: []string{"bridge_url", "concurrency", "--concurrency", "PULSAGA_CONCURRENCY"}},
		{name: "invalid environment names its key", binary: "orchestrator", env: map[string]string{"PULSAGA_PARTITIONS": "0"},
			wantErr: []string{"partitions", "between 1 and 1024"}},
		{name: "a key of another binary in the file", binary: "decider", args: []string{"--config", file},
			wantErr: []string{"mode", "unknown key"}},
		{name: "unknown flag", binary: "decider", args: []string{"--bridge-url=http://x"}, wantErr: []string{"decider", "unknown flag: --bridge-url"}},
		{name: "a duration that does not parse", binary: "orchestrator", args: []string{"--decision-timeout=soon"}, wantErr: []string{"decision-timeout"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var cfg Validator
			switch tc.binary {
			case "orchestrator":
				c := DefaultOrchestrator()
				cfg = &c
			case "decider":
				c := DefaultDecider()
				cfg = &c
			case "worker":
				c := DefaultWorker()
				cfg = &c
			}
			err := FromArgs(tc.binary, tc.args, cfg)
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatalf("want an error containing %q, got none", tc.wantErr)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("FromArgs: %v", err)
			}
			tc.check(t, cfg)
		})
	}
}

func TestFromArgsHelp(t *testing.T) {
	// Help goes to stdout; keep the test output readable.
	stdout := os.Stdout
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	os.Stdout = w
	c := DefaultWorker()
	err = FromArgs("worker", []string{"--help"}, &c)
	os.Stdout = stdout
	w.Close()
	out, _ := io.ReadAll(r)
	if !errors.Is(err, pflag.ErrHelp) {
		t.Fatalf("want pflag.ErrHelp, got %v", err)
	}
	for _, flag := range []string{"--bridge-url", "--services", "--pulsar-url", "--config"} {
		if !strings.Contains(string(out), flag) {
			t.Errorf("help does not list %s:\n%s", flag, out)
		}
	}
}

func TestSplitArgs(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr string
	}{
		{in: "prog", want: []string{"prog"}},
		{in: "  python3\tsvc.py  --fast \n", want: []string{"python3", "svc.py", "--fast"}},
		{in: `python3 "/srv/my service.py"`, want: []string{"python3", "/srv/my service.py"}},
		{in: `sh -c 'echo "$PULSAGA_COMMAND"; exit 2'`, want: []string{"sh", "-c", `echo "$PULSAGA_COMMAND"; exit 2`}},
		{in: `a"b c"'d e'f`, want: []string{"ab cd ef"}},
		{in: `say "a \"quoted\" \$word \n"`, want: []string{"say", `a "quoted" $word \n`}},
		{in: `a\ b c`, want: []string{"a b", "c"}},
		{in: `'' ""`, want: []string{"", ""}},
		{in: "", want: nil},
		{in: `say 'oops`, wantErr: "unterminated ' quote"},
		{in: `say "oops`, wantErr: `unterminated " quote`},
		{in: `say oops\`, wantErr: "backslash ends the line"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := SplitArgs(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("SplitArgs(%q) = %q, %v; want error %q", tc.in, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("SplitArgs(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}
