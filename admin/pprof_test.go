package admin

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus/memory"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/protocol"
)

// TestPprofOperatorsOnly: the profiler is off by default and, when on,
// answers operators only.
func TestPprofOperatorsOnly(t *testing.T) {
	tests := []struct {
		name   string
		pprof  bool
		path   string
		secret string
		want   int
	}{
		{"off by default", false, "/debug/pprof/", opSecret, http.StatusNotFound},
		{"operator: index", true, "/debug/pprof/", opSecret, http.StatusOK},
		{"operator: heap", true, "/debug/pprof/heap?debug=1", opSecret, http.StatusOK},
		{"operator: goroutines", true, "/debug/pprof/goroutine?debug=1", opSecret, http.StatusOK},
		{"operator: cmdline", true, "/debug/pprof/cmdline", opSecret, http.StatusOK},
		{"reader refused", true, "/debug/pprof/heap?debug=1", readSecret, http.StatusForbidden},
		{"no token refused", true, "/debug/pprof/", "", http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := memory.New(memory.Options{})
			t.Cleanup(func() { _ = b.Close() })
			topics := protocol.DefaultTopics()
			reg := engine.NewRegistry(b, topics.Definitions, time.Now)
			t.Cleanup(func() { _ = reg.Close() })
			srv, err := New(Options{
				Bus: b, Topics: topics, Registry: reg, Pprof: tt.pprof,
				Tokens: []Token{{Name: "viewer", Role: RoleRead, Secret: readSecret}, {Name: "alice", Role: RoleOperator, Secret: opSecret}},
			}, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = srv.Close() })
			hs := httptest.NewServer(srv.Handler())
			t.Cleanup(hs.Close)
			req, _ := http.NewRequest("GET", hs.URL+tt.path, nil)
			if tt.secret != "" {
				req.Header.Set("Authorization", "Bearer "+tt.secret)
			}
			resp, err := hs.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("GET %s: %d, want %d", tt.path, resp.StatusCode, tt.want)
			}
		})
	}
}
