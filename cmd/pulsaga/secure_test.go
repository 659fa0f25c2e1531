package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/admin"
	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/pulsarbus"
	"github.com/pulsaga/pulsaga/config"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/internal/app"
	"github.com/pulsaga/pulsaga/internal/pulsartest"
)

// The broker of this test: token authentication on every port, TLS on two
// more (issue #10: "hardening auth broker 6652/8082/3183").
const (
	securePort, secureHTTPPort, secureBookiePort = 6652, 8082, 3183
	secureTLSPort, secureTLSHTTPPort             = 6662, 8092
)

// TestSecureBroker runs against a broker of its own that demands a token
// on every connection and serves TLS with a certificate of an authority
// the test makes: the bus connects with a token (from a string, from a
// file, from an OAuth2 issuer) over plain text and over TLS, and is
// refused, with a message that says what to set, without credentials,
// with a token signed by another key or expired, without the authority's
// certificate, and for a host name the broker's certificate does not
// name. Then the orchestrator, decider and worker binaries and the CLI,
// configured only through their PULSAGA_PULSAR_* variables, run a saga to
// its end over TLS with a token. Last, with the broker killed, the API
// answers 503 within seconds and the CLI says the server is up but the
// broker is not (issue #10, problem 8: `pulsaga list` hung 91 s).
func TestSecureBroker(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker of its own with token authentication and TLS")
	}
	for _, p := range []int{secureTLSPort, secureTLSHTTPPort} {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p), time.Second); err == nil {
			c.Close()
			t.Fatalf("port %d is taken: the secure broker of this test needs 6652, 8082, 3183, 6662 and 8092", p)
		}
	}
	sec := pulsartest.NewSecrets(t, secureTLSPort, secureTLSHTTPPort)
	home := os.Getenv("PULSAGA_SECURE_BROKER_HOME") // keep it between runs to look at its logs
	if home == "" {
		home = filepath.Join(t.TempDir(), "broker")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	started := time.Now()
	broker, err := pulsartest.StartPrivate(ctx, pulsartest.PrivateOptions{
		Home: home, Port: securePort, HTTPPort: secureHTTPPort, BookiePort: secureBookiePort, Fresh: true,
		ConfExtra: sec.ConfFile, AdminTokenFile: sec.AdminTokenFile, Log: testLog{t},
		// A standalone that starts from nothing takes 40 s on a quiet
		// machine, more than five minutes on a loaded one.
		StartTimeout: 9 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	// Killed with this test binary too, whatever its end (a panic, go
	// test's -timeout): it would hold the five ports for the next run.
	stopWatch, err := broker.DieWith(os.Getpid())
	if err != nil {
		_ = broker.Kill()
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = broker.Kill(); stopWatch() })
	t.Logf("secure broker ready in %s", time.Since(started).Round(time.Second))

	tlsURL, tlsAdmin := fmt.Sprintf("pulsar+ssl://localhost:%d", secureTLSPort), fmt.Sprintf("https://localhost:%d", secureTLSHTTPPort)
	plainURL, plainAdmin := broker.ServiceURL, broker.AdminURL
	tokenFile := sec.TokenFile(t, "pulsaga", "pulsaga", time.Hour)
	issuer := sec.NewIssuer(t, "pulsaga-app", "s3cret-s3cret")
	wrongCreds := filepath.Join(sec.Dir, "wrong.json")
	if err := os.WriteFile(wrongCreds, []byte(`{"type":"client_credentials","client_id":"pulsaga-app","client_secret":"guess"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	ns := bus.Namespace{Tenant: "public", Namespace: fmt.Sprintf("secure-%d", time.Now().UnixNano())}
	base := pulsarbus.Config{Namespace: ns, ConnectionTimeout: 30 * time.Second, OperationTimeout: 30 * time.Second} // a first TLS handshake with a JVM on a loaded machine takes seconds
	with := func(svc, adm string, auth pulsarbus.Auth, tls pulsarbus.TLS) pulsarbus.Config {
		c := base
		c.ServiceURL, c.AdminURL, c.Auth, c.TLS = svc, adm, auth, tls
		return c
	}
	trust := pulsarbus.TLS{TrustCertsFile: sec.CAFile}

	t.Run("connects", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			cfg  pulsarbus.Config
		}{
			{"token over TLS", with(tlsURL, tlsAdmin, pulsarbus.Auth{Token: sec.Token(t, "pulsaga", time.Hour)}, trust)},
			{"token file over TLS", with(tlsURL, tlsAdmin, pulsarbus.Auth{TokenFile: tokenFile}, trust)},
			{"token file over plain text", with(plainURL, plainAdmin, pulsarbus.Auth{TokenFile: tokenFile}, pulsarbus.TLS{})},
			{"OAuth2 client credentials over TLS", with(tlsURL, tlsAdmin, pulsarbus.Auth{OAuth2: &pulsarbus.OAuth2{IssuerURL: issuer.URL, CredentialsFile: issuer.CredentialsFile, Audience: "pulsar"}}, trust)},
		} {
			t.Run(tc.name, func(t *testing.T) { roundTrip(t, tc.cfg) })
		}
		if issuer.Issued.Load() == 0 {
			t.Error("the OAuth2 issuer handed out no token")
		}
	})

	t.Run("refused", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			cfg  pulsarbus.Config
			want string
		}{
			{"no credentials", with(plainURL, plainAdmin, pulsarbus.Auth{}, pulsarbus.TLS{}), "the broker requires authentication: set pulsar.auth_token_file"},
			{"a token of another key", with(plainURL, plainAdmin, pulsarbus.Auth{Token: pulsartest.ForeignToken(t, "pulsaga")}, pulsarbus.TLS{}), "the broker refused the token credentials"},
			{"an expired token", with(plainURL, plainAdmin, pulsarbus.Auth{Token: sec.Token(t, "pulsaga", -time.Minute)}, pulsarbus.TLS{}), "the broker refused the token credentials"},
			{"OAuth2 with a wrong secret", with(tlsURL, tlsAdmin, pulsarbus.Auth{OAuth2: &pulsarbus.OAuth2{IssuerURL: issuer.URL, CredentialsFile: wrongCreds}}, trust), "invalid_client"},
			{"TLS without the authority", with(tlsURL, tlsAdmin, pulsarbus.Auth{TokenFile: tokenFile}, pulsarbus.TLS{}), "set pulsar.tls_trust_certs_file to its CA's PEM file"},
			{"TLS to a name the certificate does not have", with(fmt.Sprintf("pulsar+ssl://127.0.0.1:%d", secureTLSPort), fmt.Sprintf("https://127.0.0.1:%d", secureTLSHTTPPort), pulsarbus.Auth{TokenFile: tokenFile}, trust), "does not name the host of the URL"},
			{"TLS on the plain port", with(fmt.Sprintf("pulsar+ssl://localhost:%d", securePort), fmt.Sprintf("https://localhost:%d", secureHTTPPort), pulsarbus.Auth{TokenFile: tokenFile}, trust), "TLS and plain text are mixed up"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				cctx, ccancel := context.WithTimeout(ctx, time.Minute)
				defer ccancel()
				b, err := pulsarbus.New(cctx, tc.cfg, zerolog.Nop())
				if err == nil {
					b.Close()
					t.Fatal("connected")
				}
				if !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("%v\nwant it to say %q", err, tc.want)
				}
			})
		}
	})

	// Issue #10, problem 2: one message of maxMessageSize bytes (5,242,988
	// framed) made the dev broker refuse every write (NotEnoughBookies) for
	// about ten minutes. This broker runs the dev broker's configuration.
	t.Run("a message of the broker's maximum size does no harm", func(t *testing.T) {
		cfg := with(plainURL, plainAdmin, pulsarbus.Auth{TokenFile: tokenFile}, pulsarbus.TLS{})
		b, err := pulsarbus.New(ctx, cfg, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		topic := fmt.Sprintf("largest-%d", time.Now().UnixNano())
		if err := b.EnsureTopic(ctx, bus.TopicSpec{Name: topic}); err != nil {
			t.Fatal(err)
		}
		cons, err := b.Subscribe(ctx, bus.SubscribeOptions{Topic: topic, Subscription: "s", Type: bus.Exclusive})
		if err != nil {
			t.Fatal(err)
		}
		defer cons.Close()
		sctx, scancel := context.WithTimeout(ctx, 2*time.Minute)
		defer scancel()
		if err := pulsartest.SendLargest(sctx, plainURL, tokenFile, ns.Topic(topic)); err != nil {
			t.Fatalf("the largest message the broker takes: %v", err)
		}
		// and the broker still writes, at once
		p, err := b.Producer(ctx, bus.ProducerOptions{Topic: topic})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
		defer wcancel()
		for i := range 3 {
			if _, err := p.Send(wctx, &bus.OutMessage{Key: "small", Payload: []byte(fmt.Sprint(i))}); err != nil {
				t.Fatalf("a small message after the largest: %v", err)
			}
		}
		for i := range 4 {
			m, err := cons.Receive(wctx)
			if err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
			if i == 0 && len(m.Payload) < pulsartest.BrokerMaxMessageSize-1024 {
				t.Errorf("first message: %d bytes", len(m.Payload))
			}
			_ = cons.Ack(wctx, m)
		}
	})

	// The binaries and the CLI, configured through the environment only.
	t.Setenv("PULSAGA_PULSAR_URL", tlsURL)
	t.Setenv("PULSAGA_PULSAR_ADMIN_URL", tlsAdmin)
	t.Setenv("PULSAGA_PULSAR_AUTH_TOKEN_FILE", tokenFile)
	t.Setenv("PULSAGA_PULSAR_TLS_TRUST_CERTS_FILE", sec.CAFile)
	t.Setenv("PULSAGA_PULSAR_NAMESPACE", ns.Namespace+"-engine")
	t.Setenv("PULSAGA_PARTITIONS", "2")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adminAddr := ln.Addr().String()
	ln.Close()
	var orch config.Orchestrator
	var dec config.Decider
	var wrk config.Worker
	for _, c := range []struct {
		cfg  config.Validator
		dflt func()
	}{
		{&orch, func() { orch = config.DefaultOrchestrator() }},
		{&dec, func() { dec = config.DefaultDecider() }},
		{&wrk, func() { wrk = config.DefaultWorker() }},
	} {
		c.dflt()
		if err := config.Load(c.cfg, "", nil); err != nil {
			t.Fatal(err)
		}
	}
	orch.Definitions, orch.AdminListen, orch.Name = "../../testdata/trip-booking.yaml", adminAddr, "secure-orchestrator"
	if orch.Pulsar.URL != tlsURL || orch.Pulsar.AuthTokenFile != tokenFile || dec.Pulsar.TLSTrustCertsFile != sec.CAFile || wrk.Pulsar.URL != tlsURL {
		t.Fatalf("the PULSAGA_PULSAR_* variables did not reach the configs: %+v", orch.Pulsar)
	}
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	rctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	run := func(name string, f func(context.Context) error) {
		wg.Go(func() {
			if err := f(rctx); err != nil && rctx.Err() == nil {
				t.Errorf("%s: %v", name, err)
			}
		})
	}
	run("orchestrator", func(c context.Context) error { return app.RunOrchestrator(c, orch, log) })
	run("decider", func(c context.Context) error { return app.RunDecider(c, dec, log) })
	run("worker", func(c context.Context) error { return app.RunWorker(c, wrk, log) })
	stopBinaries := func() {
		stop()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(time.Minute):
			var dump strings.Builder
			_ = pprof.Lookup("goroutine").WriteTo(&dump, 1)
			t.Errorf("the binaries did not stop within a minute:\n%s", dump.String())
		}
	}
	defer stop()
	server := "http://" + adminAddr

	t.Run("a saga over TLS with a token", func(t *testing.T) {
		in := `{"customer":"ann","amount":120}`
		deadline := time.Now().Add(2 * time.Minute)
		for {
			// the CLI's direct mode: to Pulsar itself, as configured by the environment
			out, _, err := runCLI("start", "trip-booking", "--id", "secure-1", "--input", in, "--partitions", "2")
			if err == nil {
				if strings.TrimSpace(out) != "secure-1" {
					t.Fatalf("start: %s", out)
				}
				break
			}
			if time.Now().After(deadline) || !strings.Contains(err.Error(), "unknown definition") {
				t.Fatalf("start: %v", err)
			}
			time.Sleep(time.Second) // the orchestrator registers the definition
		}
		for {
			out, _, err := runCLI("--server", server, "get", "secure-1", "-o", "json")
			if err == nil {
				var d admin.ProcessDetail
				if err := json.Unmarshal([]byte(out), &d); err != nil {
					t.Fatal(err)
				}
				if d.Process.Status == "completed" {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("secure-1 did not complete: %v %.500s", err, out)
			}
			time.Sleep(500 * time.Millisecond)
		}
		out, _, err := runCLI("start", "trip-booking", "--id", "secure-1", "--input", in, "--partitions", "2")
		if err != nil || !strings.Contains(out, "secure-1 exists already (trip-booking v1, completed") {
			t.Errorf("second start: %v %s", err, out)
		}
		// the CLI refuses to send with a token the broker does not take
		t.Setenv("PULSAGA_PULSAR_AUTH_TOKEN_FILE", "")
		t.Setenv("PULSAGA_PULSAR_AUTH_TOKEN", pulsartest.ForeignToken(t, "pulsaga"))
		if _, _, err := runCLI("signal", "secure-1", "go", "--partitions", "2"); err == nil || !strings.Contains(err.Error(), "refused the token credentials") {
			t.Errorf("signal with a foreign token: %v", err)
		}
	})

	stopBinaries()

	t.Run("broker down: the API answers 503 at once and the CLI says so", func(t *testing.T) {
		// An admin server as the orchestrator runs it, on the secure broker.
		b, err := app.Connect(ctx, orch.Pulsar, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		topics := app.Topics(2, 0)
		reg := engine.NewRegistry(b, topics.Definitions, nil)
		srv, err := admin.New(admin.Options{Bus: b, Topics: topics, Registry: reg}, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewServer(srv.Handler())
		defer hs.Close()
		server := hs.URL
		if out, _, err := runCLI("--server", server, "list"); err != nil || !strings.Contains(out, "secure-1") {
			t.Fatalf("list with the broker up: %v %s", err, out)
		}
		if err := broker.Kill(); err != nil {
			t.Fatal(err)
		}
		defer func() { go func() { _ = srv.Close(); _ = reg.Close(); _ = b.Close() }() }()
		start := time.Now()
		_, _, err = runCLI("--server", server, "list")
		took := time.Since(start)
		if err == nil || !strings.Contains(err.Error(), "the pulsaga server at "+server+" is up, but cannot do this now") || !strings.Contains(err.Error(), "broker") {
			t.Errorf("list with the broker down: %v", err)
		}
		if took > 15*time.Second {
			t.Errorf("list with the broker down took %s", took)
		}
		_, _, err = runCLI("--server", "http://127.0.0.1:1", "list")
		if err == nil || !strings.Contains(err.Error(), "cannot reach the pulsaga server at http://127.0.0.1:1") {
			t.Errorf("list without a server: %v", err)
		}
		var ae *admin.APIError
		c, _ := admin.NewClient(server, "")
		if _, err := c.List(context.Background(), nil); !errors.As(err, &ae) || ae.Status != 503 {
			t.Errorf("GET /api/v1/processes with the broker down: %v", err)
		}
		if _, err := c.Get(context.Background(), "secure-1"); !errors.As(err, &ae) || ae.Status != 503 {
			t.Errorf("GET /api/v1/processes/secure-1 with the broker down: %v", err)
		}
	})
}

// roundTrip connects a bus and sends and receives one message in a
// transaction on it.
func roundTrip(t *testing.T, cfg pulsarbus.Config) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b, err := pulsarbus.New(ctx, cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// the admin REST API with the bus's credentials and TLS
	resp, err := b.AdminHTTP().Get(cfg.AdminURL + "/admin/v2/clusters")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /admin/v2/clusters through AdminHTTP: %s", resp.Status)
	}
	topic := fmt.Sprintf("secure-%d", time.Now().UnixNano())
	if err := b.EnsureTopic(ctx, bus.TopicSpec{Name: topic}); err != nil {
		t.Fatal(err)
	}
	cons, err := b.Subscribe(ctx, bus.SubscribeOptions{Topic: topic, Subscription: "s", Type: bus.Exclusive})
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	p, err := b.Producer(ctx, bus.ProducerOptions{Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	tx, err := b.BeginTx(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Send(ctx, &bus.OutMessage{Key: "k", Payload: []byte("secret"), Tx: tx}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	m, err := cons.Receive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Payload) != "secret" {
		t.Fatalf("received %q", m.Payload)
	}
	if err := cons.Ack(ctx, m); err != nil {
		t.Fatal(err)
	}
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Logf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
