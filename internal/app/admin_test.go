package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/admin"
	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/memory"
	"github.com/pulsaga/pulsaga/config"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/protocol"
)

// The orchestrator's admin server: listens where configured, answers with
// the configured tokens, serves metrics and health, stops with its context.
func TestAdminServer(t *testing.T) {
	b := memory.New(memory.Options{})
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	topics := protocol.DefaultTopics()
	if err := engine.EnsureTopics(ctx, b, topics); err != nil {
		t.Fatal(err)
	}
	reg := engine.NewRegistry(b, topics.Definitions, nil)
	defer reg.Close()
	cfg := config.DefaultOrchestrator()
	cfg.AdminListen, cfg.AdminTokens = "127.0.0.1:0", []string{"ops:operator:0123456789"}
	a, err := newAdmin(cfg, b, topics, reg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()

	taken := cfg
	taken.AdminListen = a.Addr()
	if _, err := newAdmin(taken, b, topics, reg, zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "admin_listen "+a.Addr()) {
		t.Errorf("a taken port: %v", err)
	}
	bad := cfg
	bad.AdminTokens = []string{"ops:root:0123456789"}
	if _, err := newAdmin(bad, b, topics, reg, zerolog.Nop()); !errors.Is(err, config.ErrInvalid) {
		t.Errorf("a bad token: %v", err)
	}

	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.run(rctx) }()
	get := func(path, token string) (int, string) {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+a.Addr()+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	tests := []struct {
		name, path, token string
		code              int
		body              string
	}{
		{"health", "/healthz", "", 200, "ok"},
		{"not ready before an orchestrator runs", "/readyz", "", 503, "no orchestrator started yet"},
		{"metrics", "/metrics", "", 200, "go_goroutines"},
		{"api needs the token", "/api/v1/processes", "", 401, "unauthenticated"},
		{"api with the token", "/api/v1/whoami", "0123456789", 200, `"name": "ops"`},
		{"dashboard", "/ui/", "", 200, "<title>pulsaga"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := get(tc.path, tc.token)
			if code != tc.code || !strings.Contains(body, tc.body) {
				t.Errorf("GET %s: %d %s", tc.path, code, body)
			}
		})
	}

	// Readiness follows the orchestrator, liveness does not.
	orch := &fakeOrchestrator{err: fmt.Errorf("%w: partitions [2] of the events topic are owned but not loaded yet", engine.ErrNotReady)}
	a.watch(orch)
	ready := []struct {
		name      string
		err       error
		code      int
		body      string
		healthzOK bool
	}{
		{"a partition still loading", orch.err, 503, `"orchestrator": "orchestrator not ready: partitions [2]`, true},
		{"everything loaded", nil, 200, `"status": "ready"`, true},
	}
	for _, tc := range ready {
		t.Run(tc.name, func(t *testing.T) {
			orch.set(tc.err)
			code, body := get("/readyz", "")
			if code != tc.code || !strings.Contains(body, tc.body) || !strings.Contains(body, `"status_table": "ok"`) || !strings.Contains(body, `"bus": "ok"`) {
				t.Errorf("GET /readyz: %d %s", code, body)
			}
			if code, body := get("/healthz", ""); code != 200 {
				t.Errorf("GET /healthz: %d %s", code, body)
			}
		})
	}
	t.Run("the broker gone", func(t *testing.T) {
		b.Close()
		code, body := get("/readyz", "")
		if code != 503 || !strings.Contains(body, `"status": "not ready"`) || strings.Contains(body, `"bus": "ok"`) || strings.Contains(body, `"status_table": "ok"`) {
			t.Errorf("GET /readyz: %d %s", code, body)
		}
		if code, body := get("/healthz", ""); code != 200 {
			t.Errorf("GET /healthz (liveness only): %d %s", code, body)
		}
	})

	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the admin server did not stop with its context")
	}
	if c, err := net.DialTimeout("tcp", a.Addr(), time.Second); err == nil {
		c.Close()
		t.Error("still listening after stop")
	}
}

type fakeOrchestrator struct {
	mu  sync.Mutex
	err error
}

func (f *fakeOrchestrator) set(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *fakeOrchestrator) Ready() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// backlogSpy records which backlogs were looked at.
type backlogSpy struct {
	*memory.Bus
	mu   sync.Mutex
	seen map[string]bool
}

func (b *backlogSpy) Backlog(ctx context.Context, topic, sub string, limit int) ([]*bus.Message, int, error) {
	b.mu.Lock()
	b.seen[topic+" "+sub] = true
	b.mu.Unlock()
	return b.Bus.Backlog(ctx, topic, sub, limit)
}

func (b *backlogSpy) saw(key string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.seen[key]
}

// The admin server lists the dead-letter topics by itself, so a new one
// gets the admin subscription (and keeps its messages) without anybody
// opening the dashboard.
func TestAdminWatchesDeadLetters(t *testing.T) {
	b := &backlogSpy{Bus: memory.New(memory.Options{}), seen: map[string]bool{}}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	topics := protocol.DefaultTopics()
	if err := engine.EnsureTopics(ctx, b, topics); err != nil {
		t.Fatal(err)
	}
	reg := engine.NewRegistry(b, topics.Definitions, nil)
	defer reg.Close()
	dlq := bus.DeadLetterTopic("jobs.paint", "workers")
	p, err := b.Producer(ctx, bus.ProducerOptions{Topic: dlq})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.Send(ctx, &bus.OutMessage{Payload: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	cfg := config.DefaultOrchestrator()
	cfg.AdminListen = "127.0.0.1:0"
	a, err := newAdmin(cfg, b, topics, reg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = a.run(rctx) }()
	for !b.saw(dlq + " " + admin.DLQSubscription) {
		if ctx.Err() != nil {
			t.Fatalf("the admin server never looked at %s", dlq)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, n, err := b.Bus.Backlog(ctx, dlq, admin.DLQSubscription, 0); err != nil || n != 1 {
		t.Errorf("backlog of %s: %d, %v", dlq, n, err)
	}
}
