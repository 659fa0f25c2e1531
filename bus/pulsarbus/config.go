package pulsarbus

import (
	"fmt"
	"net/url"
	"time"

	"github.com/pulsaga/pulsaga/bus"
)

// Defaults applied by Config.WithDefaults to zero fields.
const (
	DefaultServiceURL        = "pulsar://127.0.0.1:6650"
	DefaultAdminURL          = "http://127.0.0.1:8080"
	DefaultConnectionTimeout = 5 * time.Second
	DefaultOperationTimeout  = 15 * time.Second
	// DefaultRetentionTime is the namespace retention set at start-up: how
	// long acknowledged messages of topics without their own retention are
	// kept. Topics holding state the engine must keep set their own
	// (TopicSpec.RetentionTime).
	DefaultRetentionTime = 7 * 24 * time.Hour
	// DefaultRetentionSizeMB is the namespace retention size (-1: no limit,
	// the time limit alone applies).
	DefaultRetentionSizeMB = -1
	// DefaultCompactionThresholdBytes is the backlog size above which the
	// broker compacts a compacted topic by itself (topic policy). Each
	// compaction reads the topic since the last one and rewrites every key
	// it keeps, and on a busy broker everything waits meanwhile: at 1 MiB
	// the status and snapshot topics of an engine running 580 sagas/s were
	// compacted every minute, each time longer as the kept keys grew, and
	// the p99 of four minutes rose to 2.3–3.4 s (bursts of 1–4 s once a
	// minute); at 64 MiB it was 0.69–1.3 s, the bursts as long but rarer
	// (docs/benchmarks.md, session 9).
	DefaultCompactionThresholdBytes = 64 << 20
)

// Config connects a Bus to a Pulsar cluster.
type Config struct {
	// ServiceURL is the binary protocol URL, pulsar://host:6650 (or
	// pulsar+ssl://). Default DefaultServiceURL.
	ServiceURL string
	// AdminURL is the admin REST URL, http://host:8080. Default
	// DefaultAdminURL.
	AdminURL string
	// Namespace is where short topic names live; it is created when missing.
	// Default bus.DefaultNamespace.
	Namespace bus.Namespace
	// ConnectionTimeout bounds opening a TCP connection to the broker and the
	// start-up probes of both URLs. Default 5s.
	ConnectionTimeout time.Duration
	// OperationTimeout bounds broker requests that are not sends: lookups,
	// creating producers and consumers, transaction operations, admin calls.
	// Default 15s.
	OperationTimeout time.Duration
	// RetentionTime and RetentionSizeMB are the namespace retention policy the
	// bus sets at start-up (so nothing depends on the broker's defaults).
	// Zero means the defaults: 7 days, no size limit. -1 means forever /
	// unlimited.
	RetentionTime   time.Duration
	RetentionSizeMB int64
	// CompactionThresholdBytes is set on every compacted topic: the broker
	// compacts it when its backlog exceeds this size. Default
	// DefaultCompactionThresholdBytes (64 MiB).
	CompactionThresholdBytes int64
	// Auth authenticates the bus (binary protocol and admin API); zero: no
	// authentication.
	Auth Auth
	// TLS configures pulsar+ssl:// and https:// (security.go).
	TLS TLS
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.ServiceURL == "" {
		c.ServiceURL = DefaultServiceURL
	}
	if c.AdminURL == "" {
		c.AdminURL = DefaultAdminURL
	}
	if c.Namespace == (bus.Namespace{}) {
		c.Namespace = bus.DefaultNamespace
	}
	if c.ConnectionTimeout == 0 {
		c.ConnectionTimeout = DefaultConnectionTimeout
	}
	if c.OperationTimeout == 0 {
		c.OperationTimeout = DefaultOperationTimeout
	}
	if c.RetentionTime == 0 {
		c.RetentionTime = DefaultRetentionTime
	}
	if c.RetentionSizeMB == 0 {
		c.RetentionSizeMB = DefaultRetentionSizeMB
	}
	if c.CompactionThresholdBytes == 0 {
		c.CompactionThresholdBytes = DefaultCompactionThresholdBytes
	}
	return c
}

// Validate checks a config after WithDefaults. Errors wrap bus.ErrBadOptions
// and name the field.
func (c Config) Validate() error {
	if err := checkURL("ServiceURL", c.ServiceURL, "pulsar", "pulsar+ssl"); err != nil {
		return err
	}
	if err := checkURL("AdminURL", c.AdminURL, "http", "https"); err != nil {
		return err
	}
	if err := c.Namespace.Validate(); err != nil {
		return fmt.Errorf("pulsarbus: Namespace: %w", err)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"ConnectionTimeout", c.ConnectionTimeout}, {"OperationTimeout", c.OperationTimeout}} {
		if d.v <= 0 {
			return fmt.Errorf("%w: pulsarbus: %s must be positive, got %s", bus.ErrBadOptions, d.name, d.v)
		}
	}
	if c.RetentionTime < 0 && c.RetentionTime != -1 {
		return fmt.Errorf("%w: pulsarbus: RetentionTime must be positive or -1 (forever), got %s", bus.ErrBadOptions, c.RetentionTime)
	}
	if c.RetentionTime > 0 && c.RetentionTime < time.Minute {
		return fmt.Errorf("%w: pulsarbus: RetentionTime is kept in minutes, got %s", bus.ErrBadOptions, c.RetentionTime)
	}
	if c.RetentionSizeMB < -1 {
		return fmt.Errorf("%w: pulsarbus: RetentionSizeMB must be positive or -1 (unlimited), got %d", bus.ErrBadOptions, c.RetentionSizeMB)
	}
	if c.CompactionThresholdBytes <= 0 {
		return fmt.Errorf("%w: pulsarbus: CompactionThresholdBytes must be positive, got %d", bus.ErrBadOptions, c.CompactionThresholdBytes)
	}
	return c.validateSecurity()
}

func checkURL(field, raw string, schemes ...string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: pulsarbus: %s %q: %v", bus.ErrBadOptions, field, raw, err)
	}
	for _, s := range schemes {
		if u.Scheme == s {
			if u.Host == "" {
				return fmt.Errorf("%w: pulsarbus: %s %q has no host", bus.ErrBadOptions, field, raw)
			}
			return nil
		}
	}
	return fmt.Errorf("%w: pulsarbus: %s %q must start with %s://", bus.ErrBadOptions, field, raw, schemes[0])
}

// retentionMinutes converts a retention duration to Pulsar's minutes
// (-1 stays -1).
func retentionMinutes(d time.Duration) int {
	if d < 0 {
		return -1
	}
	return int((d + time.Minute - 1) / time.Minute)
}
