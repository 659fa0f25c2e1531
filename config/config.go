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
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
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
	// CompactionThresholdMB is the compaction threshold set on every
	// compacted topic (status, snapshots, definitions, ...): the broker
	// compacts one when this many MiB were written since its last
	// compaction. A compaction rewrites every key the topic keeps and slows
	// the broker while it runs: small values compact often (1 MiB: once a
	// minute at 580 sagas/s, with bursts of 1–4 s of latency), large ones
	// leave more for readers to skip when they load. Give every binary the
	// same value: whichever ensures the topics sets it. Default 64.
	CompactionThresholdMB int64 `mapstructure:"compaction_threshold_mb" usage:"MiB written to a compacted topic before the broker compacts it (same value on every binary)"`

	// Authentication: at most one of a token (AuthToken or AuthTokenFile)
	// and OAuth2. docs/operations.md, "Pulsar authentication and TLS".

	// AuthToken is a JWT for the broker's token authentication. Prefer
	// AuthTokenFile or the environment (PULSAGA_PULSAR_AUTH_TOKEN): a flag
	// shows in ps, a config file is easy to leak.
	AuthToken string `mapstructure:"auth_token" usage:"Pulsar JWT (prefer PULSAGA_PULSAR_AUTH_TOKEN or --pulsar-auth-token-file: flags show in ps)"`
	// AuthTokenFile is a file holding the token, read again at each
	// connection, so a rotated token is picked up without a restart.
	AuthTokenFile string `mapstructure:"auth_token_file" usage:"file holding the Pulsar JWT (read again on reconnect)"`
	// OAuth2IssuerURL, OAuth2CredentialsFile, OAuth2Audience and
	// OAuth2Scope configure OAuth2's client credentials flow: the client
	// takes an access token from the issuer (found through its
	// /.well-known/openid-configuration) with the client id and secret of
	// the credentials file, a JSON key file as Pulsar's own clients read it
	// ({"type": "client_credentials", "client_id": ..., "client_secret":
	// ...}), and sends it as its token.
	OAuth2IssuerURL       string `mapstructure:"oauth2_issuer_url" usage:"OAuth2 issuer URL (client credentials flow)"`
	OAuth2CredentialsFile string `mapstructure:"oauth2_credentials_file" usage:"OAuth2 credentials JSON key file (client_id, client_secret)"`
	OAuth2Audience        string `mapstructure:"oauth2_audience" usage:"OAuth2 audience"`
	OAuth2Scope           string `mapstructure:"oauth2_scope" usage:"OAuth2 scope"`

	// TLSTrustCertsFile is a PEM file of the certificates (a CA) that sign
	// the broker's, for pulsar+ssl:// and https:// URLs (default: the
	// system's roots). The broker's name is always checked against its
	// certificate.
	TLSTrustCertsFile string `mapstructure:"tls_trust_certs_file" usage:"PEM file of the CA certificates the broker's certificate must chain to"`
	// TLSAllowInsecure accepts any certificate, unchecked: for a test
	// broker only, never with credentials worth keeping.
	TLSAllowInsecure bool `mapstructure:"tls_allow_insecure" usage:"accept any broker certificate unchecked (tests only)"`
}

// AuthMethod names the configured authentication: "token", "oauth2" or
// "" (none).
func (p Pulsar) AuthMethod() string {
	switch {
	case p.AuthToken != "" || p.AuthTokenFile != "":
		return "token"
	case p.OAuth2IssuerURL != "" || p.OAuth2CredentialsFile != "":
		return "oauth2"
	}
	return ""
}

// DefaultPulsar is a broker on loopback, as `make pulsar` starts it.
func DefaultPulsar() Pulsar {
	return Pulsar{
		URL:                   "pulsar://127.0.0.1:6650",
		AdminURL:              "http://127.0.0.1:8080",
		Tenant:                "public",
		Namespace:             "pulsaga",
		ConnectTimeout:        10 * time.Second,
		OperationTimeout:      30 * time.Second,
		CompactionThresholdMB: 64,
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
	if p.CompactionThresholdMB < 1 || p.CompactionThresholdMB > 1<<20 {
		errs = append(errs, &FieldError{Key: prefix + ".compaction_threshold_mb", Value: p.CompactionThresholdMB, Problem: "must be between 1 and 1048576 (MiB)"})
	}
	errs = append(errs, p.validateSecurity(prefix))
	return errors.Join(errs...)
}

func (p Pulsar) validateSecurity(prefix string) error {
	var errs []error
	if p.AuthToken != "" && p.AuthTokenFile != "" {
		errs = append(errs, &FieldError{Key: prefix + ".auth_token_file", Value: p.AuthTokenFile, Problem: "set auth_token or auth_token_file, not both"})
	}
	if p.AuthTokenFile != "" {
		if err := readable(p.AuthTokenFile); err != nil {
			errs = append(errs, &FieldError{Key: prefix + ".auth_token_file", Value: p.AuthTokenFile, Problem: err.Error()})
		}
	}
	if p.AuthMethod() == "token" && (p.OAuth2IssuerURL != "" || p.OAuth2CredentialsFile != "") {
		errs = append(errs, &FieldError{Key: prefix + ".oauth2_issuer_url", Value: p.OAuth2IssuerURL, Problem: "a token and OAuth2 are both set: choose one"})
	}
	if p.AuthMethod() == "oauth2" {
		if err := checkURL(p.OAuth2IssuerURL, "https", "http"); err != nil {
			errs = append(errs, &FieldError{Key: prefix + ".oauth2_issuer_url", Value: p.OAuth2IssuerURL, Problem: err.Error()})
		}
		if p.OAuth2CredentialsFile == "" {
			errs = append(errs, &FieldError{Key: prefix + ".oauth2_credentials_file", Value: "", Problem: "is required with oauth2_issuer_url (a JSON key file with client_id and client_secret)"})
		} else if err := readable(p.OAuth2CredentialsFile); err != nil {
			errs = append(errs, &FieldError{Key: prefix + ".oauth2_credentials_file", Value: p.OAuth2CredentialsFile, Problem: err.Error()})
		}
	}
	if p.TLSTrustCertsFile != "" {
		if b, err := os.ReadFile(p.TLSTrustCertsFile); err != nil {
			errs = append(errs, &FieldError{Key: prefix + ".tls_trust_certs_file", Value: p.TLSTrustCertsFile, Problem: "cannot be read: " + err.Error()})
		} else if !x509.NewCertPool().AppendCertsFromPEM(b) {
			errs = append(errs, &FieldError{Key: prefix + ".tls_trust_certs_file", Value: p.TLSTrustCertsFile, Problem: "holds no PEM certificate"})
		}
	}
	tls := strings.HasPrefix(p.URL, "pulsar+ssl://")
	if (p.TLSTrustCertsFile != "" || p.TLSAllowInsecure) && !tls && !strings.HasPrefix(p.AdminURL, "https://") {
		errs = append(errs, &FieldError{Key: prefix + ".url", Value: p.URL, Problem: "TLS is configured but the URLs are plain text: use pulsar+ssl:// (and https:// for admin_url)"})
	}
	return errors.Join(errs...)
}

func readable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("cannot be read: %v", err)
	}
	return f.Close()
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
