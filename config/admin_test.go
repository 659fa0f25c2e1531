package config

import (
	"strings"
	"testing"
)

func TestOrchestratorAdminValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(c *Orchestrator)
		keys   []string // nil: valid
	}{
		{"off", func(c *Orchestrator) { c.AdminListen = "" }, nil},
		{"off ignores tokens' shape", func(c *Orchestrator) { c.AdminTokens = []string{"ops"} }, nil},
		{"loopback without tokens", func(c *Orchestrator) { c.AdminListen = "localhost:9000" }, nil},
		{"every interface with tokens", func(c *Orchestrator) {
			c.AdminListen, c.AdminTokens = ":8088", []string{"ops:operator:0123456789", "grafana:read:abcdefgh"}
		}, nil},
		{"every interface without tokens", func(c *Orchestrator) { c.AdminListen = ":8088" }, []string{"admin_tokens"}},
		{"not host:port", func(c *Orchestrator) { c.AdminListen = "8088" }, []string{"admin_listen"}},
		{"token without role", func(c *Orchestrator) { c.AdminListen, c.AdminTokens = ":1", []string{"ops"} }, []string{"admin_tokens"}},
		{"unknown role", func(c *Orchestrator) { c.AdminListen, c.AdminTokens = ":1", []string{"ops:admin:0123456789"} }, []string{"admin_tokens"}},
		{"short secret", func(c *Orchestrator) { c.AdminListen, c.AdminTokens = ":1", []string{"ops:read:short"} }, []string{"admin_tokens"}},
		{"duplicate names", func(c *Orchestrator) {
			c.AdminListen, c.AdminTokens = ":1", []string{"ops:read:0123456789", "ops:operator:9876543210"}
		}, []string{"admin_tokens"}},
		{"zero stuck threshold", func(c *Orchestrator) { c.AdminStuckAfter = 0 }, []string{"admin_stuck_after"}},
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
			if strings.Contains(err.Error(), "0123456789") {
				t.Errorf("the error shows a secret: %v", err)
			}
		})
	}
}
