package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// testConfig is a binary's config as the binaries write theirs.
type testConfig struct {
	Base    `mapstructure:",squash"`
	Workers int           `mapstructure:"workers" usage:"worker count"`
	Tick    time.Duration `mapstructure:"tick" usage:"tick"`
}

func (c *testConfig) Validate() error {
	var errs []error
	errs = append(errs, c.Base.Validate())
	if c.Workers < 1 {
		errs = append(errs, &FieldError{Key: "workers", Value: c.Workers, Problem: "must be at least 1"})
	}
	return errors.Join(errs...)
}

func defaults() *testConfig {
	return &testConfig{Base: DefaultBase(), Workers: 4, Tick: time.Second}
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pulsaga.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		env     map[string]string
		flags   []string
		check   func(t *testing.T, c *testConfig)
		wantErr []string // substrings the error must contain
	}{
		{
			name: "defaults",
			check: func(t *testing.T, c *testConfig) {
				if c.Pulsar.URL != "pulsar://127.0.0.1:6650" || c.Workers != 4 || c.Log.Level != "info" {
					t.Fatalf("defaults not applied: %+v", c)
				}
			},
		},
		{
			name: "file overrides defaults",
			file: "pulsar:\n  url: pulsar://broker:6650\n  operation_timeout: 5s\nworkers: 9\n",
			check: func(t *testing.T, c *testConfig) {
				if c.Pulsar.URL != "pulsar://broker:6650" || c.Workers != 9 || c.Pulsar.OperationTimeout != 5*time.Second {
					t.Fatalf("file not applied: %+v", c)
				}
				if c.Pulsar.AdminURL != "http://127.0.0.1:8080" {
					t.Fatalf("unset key lost its default: %q", c.Pulsar.AdminURL)
				}
			},
		},
		{
			name: "environment overrides file",
			file: "workers: 9\n",
			env:  map[string]string{"PULSAGA_WORKERS": "12", "PULSAGA_PULSAR_CONNECT_TIMEOUT": "2s"},
			check: func(t *testing.T, c *testConfig) {
				if c.Workers != 12 || c.Pulsar.ConnectTimeout != 2*time.Second {
					t.Fatalf("env not applied: %+v", c)
				}
			},
		},
		{
			name:  "flags override environment",
			env:   map[string]string{"PULSAGA_WORKERS": "12"},
			flags: []string{"--workers=20", "--log-level=debug"},
			check: func(t *testing.T, c *testConfig) {
				if c.Workers != 20 || c.Log.Level != "debug" {
					t.Fatalf("flags not applied: %+v", c)
				}
			},
		},
		{
			name: "PULSAR_URL alias",
			env:  map[string]string{"PULSAR_URL": "pulsar://other:6651", "PULSAR_ADMIN_URL": "http://other:8081"},
			check: func(t *testing.T, c *testConfig) {
				if c.Pulsar.URL != "pulsar://other:6651" || c.Pulsar.AdminURL != "http://other:8081" {
					t.Fatalf("alias not applied: %+v", c.Pulsar)
				}
			},
		},
		{
			name:    "unknown key with a suggestion",
			file:    "wrokers: 3\n",
			wantErr: []string{"wrokers", "unknown key", "did you mean workers?"},
		},
		{
			name:    "unknown nested key",
			file:    "pulsar:\n  ulr: x\n",
			wantErr: []string{"pulsar.ulr", "did you mean pulsar.url?"},
		},
		{
			name:    "invalid values name their keys, all at once",
			env:     map[string]string{"PULSAGA_PULSAR_URL": "http://nope", "PULSAGA_WORKERS": "0", "PULSAGA_LOG_FORMAT": "xml"},
			wantErr: []string{"pulsar.url", "scheme must be pulsar or pulsar+ssl", "workers", "must be at least 1", "log.format", "PULSAGA_LOG_FORMAT", "--log-format"},
		},
		{
			name:    "bad duration names the key",
			env:     map[string]string{"PULSAGA_PULSAR_OPERATION_TIMEOUT": "-1s"},
			wantErr: []string{"pulsar.operation_timeout", "positive duration"},
		},
		{
			name:    "compaction threshold below 1 MiB",
			env:     map[string]string{"PULSAGA_PULSAR_COMPACTION_THRESHOLD_MB": "0"},
			wantErr: []string{"pulsar.compaction_threshold_mb", "between 1 and 1048576"},
		},
		{
			name: "compaction threshold from the file",
			file: "pulsar:\n  compaction_threshold_mb: 256\n",
			check: func(t *testing.T, c *testConfig) {
				if c.Pulsar.CompactionThresholdMB != 256 {
					t.Errorf("compaction threshold %d MiB, want 256", c.Pulsar.CompactionThresholdMB)
				}
			},
		},
		{
			name:    "unparsable file",
			file:    "workers: [1,\n",
			wantErr: []string{"pulsaga.yaml"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			isolateEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			cfg := defaults()
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			AddFlags(fs, cfg)
			if err := fs.Parse(tc.flags); err != nil {
				t.Fatal(err)
			}
			file := ""
			if tc.file != "" {
				file = writeFile(t, tc.file)
			}
			err := Load(cfg, file, fs)
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatalf("want error containing %q, got none", tc.wantErr)
				}
				if !errors.Is(err, ErrInvalid) {
					t.Errorf("error does not wrap ErrInvalid: %v", err)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			tc.check(t, cfg)
		})
	}
}

// isolateEnv unsets, for the test, every variable the loader reads
// (PULSAGA_* and the PULSAR_URL / PULSAR_ADMIN_URL aliases): `make test`
// is documented to run with PULSAR_URL pointing at an existing broker,
// and the cases must not depend on the caller's environment.
func isolateEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "PULSAGA_") || k == "PULSAR_URL" || k == "PULSAR_ADMIN_URL" {
			t.Setenv(k, "") // restored after the test
			os.Unsetenv(k)
		}
	}
}

func TestFieldErrorAs(t *testing.T) {
	err := DefaultBase().Validate()
	if err != nil {
		t.Fatalf("defaults must be valid: %v", err)
	}
	b := DefaultBase()
	b.Pulsar.Tenant = "a/b"
	var fe *FieldError
	if err := b.Validate(); !errors.As(err, &fe) || fe.Key != "pulsar.tenant" {
		t.Fatalf("want a FieldError on pulsar.tenant, got %v", err)
	}
}

func TestNewLogger(t *testing.T) {
	var buf bytes.Buffer
	log := NewLogger(Log{Level: "warn", Format: "json"}, &buf, "orchestrator")
	log.Info().Msg("hidden")
	log.Warn().Str("process_id", "p1").Msg("shown")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("want one line at warn level, got %q", buf.String())
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	if rec["component"] != "orchestrator" || rec["process_id"] != "p1" || rec["message"] != "shown" || rec["time"] == nil {
		t.Fatalf("unexpected record %v", rec)
	}
}
