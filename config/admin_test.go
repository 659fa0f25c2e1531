package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func tokensFile(t *testing.T, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(p, []byte("ops:operator:0123456789\n"), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

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
		{"every interface with a tokens file", func(c *Orchestrator) { c.AdminListen, c.AdminTokensFile = ":8088", tokensFile(t, 0o600) }, nil},
		{"tokens file readable by others", func(c *Orchestrator) { c.AdminListen, c.AdminTokensFile = ":8088", tokensFile(t, 0o644) }, []string{"admin_tokens_file"}},
		{"tokens file missing", func(c *Orchestrator) { c.AdminListen, c.AdminTokensFile = ":8088", "/nonexistent/tokens" }, []string{"admin_tokens_file"}},
		{"IPv6 loopback without tokens", func(c *Orchestrator) { c.AdminListen = "[::1]:8088" }, nil},
		{"a LAN address without tokens", func(c *Orchestrator) { c.AdminListen = "192.168.1.5:8088" }, []string{"admin_tokens"}},
		{"pprof on the admin listener", func(c *Orchestrator) { c.AdminListen, c.DebugPprof = "127.0.0.1:8088", true }, nil},
		{"pprof without admin listener", func(c *Orchestrator) { c.AdminListen, c.DebugPprof = "", true }, []string{"debug_pprof"}},
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
