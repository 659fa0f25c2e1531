package pulsarbus

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
)

func TestConfigDefaults(t *testing.T) {
	c := Config{}.WithDefaults()
	want := Config{
		ServiceURL: DefaultServiceURL, AdminURL: DefaultAdminURL, Namespace: bus.DefaultNamespace,
		ConnectionTimeout: DefaultConnectionTimeout, OperationTimeout: DefaultOperationTimeout,
		RetentionTime: DefaultRetentionTime, RetentionSizeMB: DefaultRetentionSizeMB,
		CompactionThresholdBytes: DefaultCompactionThresholdBytes,
	}
	if c != want {
		t.Fatalf("defaults %+v, want %+v", c, want)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	kept := Config{ServiceURL: "pulsar://h:1", RetentionTime: -1, RetentionSizeMB: 10}.WithDefaults()
	if kept.ServiceURL != "pulsar://h:1" || kept.RetentionTime != -1 || kept.RetentionSizeMB != 10 {
		t.Fatalf("WithDefaults overwrote set fields: %+v", kept)
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(*Config)
		field string // in the error; "" means valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"ssl URLs", func(c *Config) { c.ServiceURL, c.AdminURL = "pulsar+ssl://h:6651", "https://h:8443" }, ""},
		{"several hosts", func(c *Config) { c.ServiceURL = "pulsar://a:6650,b:6650" }, ""},
		{"forever retention", func(c *Config) { c.RetentionTime, c.RetentionSizeMB = -1, -1 }, ""},
		{"http service URL", func(c *Config) { c.ServiceURL = "http://h:6650" }, "ServiceURL"},
		{"service URL without host", func(c *Config) { c.ServiceURL = "pulsar://" }, "ServiceURL"},
		{"pulsar admin URL", func(c *Config) { c.AdminURL = "pulsar://h:8080" }, "AdminURL"},
		{"bad namespace", func(c *Config) { c.Namespace.Namespace = "a/b" }, "Namespace"},
		{"negative connection timeout", func(c *Config) { c.ConnectionTimeout = -time.Second }, "ConnectionTimeout"},
		{"negative operation timeout", func(c *Config) { c.OperationTimeout = -1 }, "OperationTimeout"},
		{"retention in seconds", func(c *Config) { c.RetentionTime = 30 * time.Second }, "RetentionTime"},
		{"negative retention", func(c *Config) { c.RetentionTime = -time.Hour }, "RetentionTime"},
		{"negative retention size", func(c *Config) { c.RetentionSizeMB = -5 }, "RetentionSizeMB"},
		{"negative compaction threshold", func(c *Config) { c.CompactionThresholdBytes = -1 }, "CompactionThresholdBytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{}.WithDefaults()
			tc.edit(&c)
			err := c.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("got %v, want valid", err)
				}
				return
			}
			if !errors.Is(err, bus.ErrBadOptions) || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("got %v, want bus.ErrBadOptions naming %s", err, tc.field)
			}
		})
	}
}

func TestRetentionMinutes(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want int
	}{{-1, -1}, {time.Minute, 1}, {90 * time.Second, 2}, {7 * 24 * time.Hour, 7 * 24 * 60}} {
		if got := retentionMinutes(tc.d); got != tc.want {
			t.Errorf("retentionMinutes(%s) = %d, want %d", tc.d, got, tc.want)
		}
	}
}
