// Package config loads the typed configuration of pulsaga's binaries from a
// YAML file, PULSAGA_* environment variables and command-line flags (in
// rising order of precedence), and validates it with errors that name the
// key at fault. Viper is used here and nowhere else.
//
// Each binary has one config struct: it embeds the shared sections below,
// carries `mapstructure` tags naming its keys, a Defaults function and a
// Validate method. Keys are dotted paths ("pulsar.url"); the environment
// variable of a key is PULSAGA_ plus the key upper-cased with dots turned
// into underscores (PULSAGA_PULSAR_URL); the flag of a key is its path
// with dots turned into dashes (--pulsar-url).
package config

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// Pulsar is how to reach the broker.
type Pulsar struct {
	// URL is the broker's binary protocol address (pulsar:// or pulsar+ssl://).
	// The PULSAR_URL environment variable is honoured as well.
	URL string `mapstructure:"url" usage:"Pulsar service URL (pulsar:// or pulsar+ssl://)"`
	// AdminURL is the broker's HTTP admin address (http:// or https://).
	// The PULSAR_ADMIN_URL environment variable is honoured as well.
	AdminURL string `mapstructure:"admin_url" usage:"Pulsar admin URL (http:// or https://)"`
	// Tenant and Namespace hold every topic of this installation.
	Tenant    string `mapstructure:"tenant" usage:"Pulsar tenant of every topic"`
	Namespace string `mapstructure:"namespace" usage:"Pulsar namespace of every topic"`
	// ConnectTimeout bounds connecting to the broker.
	ConnectTimeout time.Duration `mapstructure:"connect_timeout" usage:"how long to wait for the broker connection"`
	// OperationTimeout bounds one broker operation (lookup, create, send).
	OperationTimeout time.Duration `mapstructure:"operation_timeout" usage:"how long one broker operation may take"`
}

// DefaultPulsar is a broker on loopback, as `make pulsar` starts it.
func DefaultPulsar() Pulsar {
	return Pulsar{
		URL:              "pulsar://127.0.0.1:6650",
		AdminURL:         "http://127.0.0.1:8080",
		Tenant:           "public",
		Namespace:        "pulsaga",
		ConnectTimeout:   10 * time.Second,
		OperationTimeout: 30 * time.Second,
	}
}

// Validate checks the section; prefix is its key ("pulsar").
func (p Pulsar) Validate(prefix string) error {
	var errs []error
	if err := checkURL(p.URL, "pulsar", "pulsar+ssl"); err != nil {
		errs = append(errs, &FieldError{Key: prefix + ".url", Value: p.URL, Problem: err.Error()})
	}
	if err := checkURL(p.AdminURL, "http", "https"); err != nil {
		errs = append(errs, &FieldError{Key: prefix + ".admin_url", Value: p.AdminURL, Problem: err.Error()})
	}
	for _, f := range []struct{ key, v string }{{"tenant", p.Tenant}, {"namespace", p.Namespace}} {
		if f.v == "" || strings.ContainsAny(f.v, "/: ") {
			errs = append(errs, &FieldError{Key: prefix + "." + f.key, Value: f.v,
				Problem: "must be a non-empty name without '/', ':' or spaces"})
		}
	}
	errs = append(errs, positive(prefix+".connect_timeout", p.ConnectTimeout), positive(prefix+".operation_timeout", p.OperationTimeout))
	return errors.Join(errs...)
}

// Log is how a binary logs.
type Log struct {
	// Level is one of trace, debug, info, warn, error.
	Level string `mapstructure:"level" usage:"log level: trace, debug, info, warn, error"`
	// Format is json (for machines) or console (for people).
	Format string `mapstructure:"format" usage:"log format: json or console"`
}

// DefaultLog is JSON at info level.
func DefaultLog() Log { return Log{Level: "info", Format: "json"} }

// Validate checks the section; prefix is its key ("log").
func (l Log) Validate(prefix string) error {
	var errs []error
	if _, err := zerolog.ParseLevel(l.Level); err != nil || l.Level == "" {
		errs = append(errs, &FieldError{Key: prefix + ".level", Value: l.Level, Problem: "must be one of trace, debug, info, warn, error"})
	}
	if l.Format != "json" && l.Format != "console" {
		errs = append(errs, &FieldError{Key: prefix + ".format", Value: l.Format, Problem: "must be json or console"})
	}
	return errors.Join(errs...)
}

// FieldError says which key is wrong and how.
type FieldError struct {
	Key     string
	Value   any
	Problem string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("config: %s = %q: %s (set it in the config file, with --%s or with %s)",
		e.Key, fmt.Sprint(e.Value), e.Problem, FlagName(e.Key), EnvName(e.Key))
}

// ErrInvalid is wrapped by every configuration error.
var ErrInvalid = errors.New("invalid configuration")

// Is makes errors.Is(err, ErrInvalid) true for a FieldError.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

// EnvName is the environment variable of a key.
func EnvName(key string) string {
	return EnvPrefix + "_" + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(key))
}

// FlagName is the command-line flag of a key.
func FlagName(key string) string { return strings.NewReplacer(".", "-", "_", "-").Replace(key) }

func positive(key string, d time.Duration) error {
	if d <= 0 {
		return &FieldError{Key: key, Value: d.String(), Problem: "must be a positive duration such as 500ms, 10s or 1m"}
	}
	return nil
}

func checkURL(raw string, schemes ...string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("must be a URL such as %s://127.0.0.1:PORT", schemes[0])
	}
	for _, s := range schemes {
		if u.Scheme == s {
			return nil
		}
	}
	return fmt.Errorf("scheme must be %s", strings.Join(schemes, " or "))
}

// Base holds the sections every binary shares.
type Base struct {
	Pulsar  Pulsar  `mapstructure:"pulsar"`
	Log     Log     `mapstructure:"log"`
	Tracing Tracing `mapstructure:"tracing"`
}

// DefaultBase is the defaults of the shared sections.
func DefaultBase() Base {
	return Base{Pulsar: DefaultPulsar(), Log: DefaultLog(), Tracing: DefaultTracing()}
}

// Validate checks both sections.
func (b Base) Validate() error {
	return errors.Join(b.Pulsar.Validate("pulsar"), b.Log.Validate("log"), b.Tracing.Validate("tracing"))
}
