package app_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/config"
	"github.com/pulsaga/pulsaga/internal/app"
	"github.com/pulsaga/pulsaga/protocol"
)

// cmd/worker in bridge mode serves any command of its one service through
// the HTTP endpoint or the program it is configured with.
func TestRunWorkerBridge(t *testing.T) {
	t.Parallel()
	pc := pulsarConfig(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var c protocol.Command
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &c); err != nil || r.Header.Get("Idempotency-Key") != c.IdempotencyKey {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		_, _ = io.WriteString(w, `{"via":"http","command":"`+c.Command+`"}`)
	}))
	defer srv.Close()
	script := filepath.Join(t.TempDir(), "my service.sh") // a blank in the path, quoted in bridge_exec
	if err := os.WriteFile(script, []byte(`printf '"exec-%s"' "$PULSAGA_COMMAND"`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		service string
		set     func(c *config.Worker)
		want    string
	}{
		{"http", "hotels", func(c *config.Worker) { c.BridgeURL = srv.URL }, `{"via":"http","command":"BookHotel"}`},
		{"exec", "flights", func(c *config.Worker) { c.BridgeExec = `sh "` + script + `"` }, `"exec-BookHotel"`},
	}
	b := connect(t, pc)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := b.EnsureTopic(ctx, bus.TopicSpec{Name: "replies"}); err != nil {
		t.Fatal(err)
	}
	replies := subscribe(t, b, "replies")
	for _, tc := range tests {
		cfg := config.DefaultWorker()
		cfg.Pulsar, cfg.Name, cfg.Mode, cfg.Services = pc, "bridge-"+tc.name, "bridge", []string{tc.service}
		tc.set(&cfg)
		if err := cfg.Validate(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		background(t, "bridge worker "+tc.name, func(ctx context.Context) error { return app.RunWorker(ctx, cfg, testLogger(t)) })
		c := protocol.Command{CommandID: tc.name + "/hotel/1", ProcessID: tc.name, Step: "hotel", Attempt: 1, Service: tc.service,
			Command: "BookHotel", IdempotencyKey: tc.name + "/hotel/1", ReplyTo: "replies"}
		p, err := b.Producer(ctx, bus.ProducerOptions{Topic: protocol.JobTopic(tc.service)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Send(ctx, &bus.OutMessage{Key: c.ProcessID, Payload: encode(t, protocol.TypeCommand, c.CommandID, c.ProcessID, c)}); err != nil {
			t.Fatal(err)
		}
		_ = p.Close()
	}
	got := map[string]protocol.Result{}
	for _, m := range receiveAll(t, replies, len(tests), "results") {
		env, err := bus.DecodeEnvelope(m.Payload)
		if err != nil {
			t.Fatal(err)
		}
		var r protocol.Result
		if err := env.DecodePayload(&r); err != nil {
			t.Fatal(err)
		}
		got[r.ProcessID] = r
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := got[tc.name]
			if r.Status != protocol.StatusCompleted || string(r.Output) != tc.want {
				t.Errorf("result %+v (error %+v), want completed with %s", r, r.Error, tc.want)
			}
			if r.Worker != "bridge-"+tc.name+"-"+tc.service {
				t.Errorf("worker %q", r.Worker)
			}
		})
	}
}
