package pulsarbus_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/pulsarbus"
	"github.com/pulsaga/pulsaga/internal/pulsartest"
)

// closedPort is a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// silentPort accepts connections and never answers.
func silentPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

// TestNewFailsFast: a broker that cannot be reached fails New quickly with
// bus.ErrUnavailable and names the URL to check.
func TestNewFailsFast(t *testing.T) {
	t.Parallel()
	svc, adm := pulsartest.URLs(t)
	const connect, op = time.Second, 2 * time.Second
	cases := []struct {
		name       string
		service    string
		admin      string
		mention    string
		within     time.Duration
		wantClosed bool
	}{
		{"service port closed", "pulsar://" + closedPort(t), adm, "ServiceURL", connect + time.Second, true},
		{"admin port closed", svc, "http://" + closedPort(t), "AdminURL", connect + time.Second, true},
		{"admin port silent", svc, "http://" + silentPort(t), "AdminURL", connect + 2*time.Second, false},
		{"service port silent", "pulsar://" + silentPort(t), adm, "did not answer", connect + op + 3*time.Second, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			b, err := pulsarbus.New(context.Background(), pulsarbus.Config{
				ServiceURL: tc.service, AdminURL: tc.admin,
				Namespace:         bus.Namespace{Tenant: "public", Namespace: "pulsarbus-test"},
				ConnectionTimeout: connect, OperationTimeout: op,
			}, zerolog.Nop())
			el := time.Since(start)
			if err == nil {
				b.Close()
				t.Fatal("New succeeded against an unreachable broker")
			}
			if !errors.Is(err, bus.ErrUnavailable) || !bus.Retryable(err) {
				t.Fatalf("got %v, want an error wrapping bus.ErrUnavailable", err)
			}
			url := tc.service
			if tc.mention == "AdminURL" {
				url = tc.admin
			}
			if !strings.Contains(err.Error(), url) || !strings.Contains(err.Error(), tc.mention) {
				t.Fatalf("error %q should name %s (%s)", err, tc.mention, url)
			}
			if el > tc.within {
				t.Fatalf("New took %s to fail, want at most %s", el, tc.within)
			}
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	_, err := pulsarbus.New(context.Background(), pulsarbus.Config{ServiceURL: "http://x"}, zerolog.Nop())
	if !errors.Is(err, bus.ErrBadOptions) {
		t.Fatalf("got %v, want bus.ErrBadOptions", err)
	}
}

// TestClosedBus: everything of a closed bus says bus.ErrClosed.
func TestClosedBus(t *testing.T) {
	t.Parallel()
	b := newBus(t)
	ctx := ctxFor(t, time.Minute)
	topic := topicName(t)
	p, err := b.Producer(ctx, bus.ProducerOptions{Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	c, err := b.Subscribe(ctx, bus.SubscribeOptions{Topic: topic, Subscription: "s", Type: bus.Shared})
	if err != nil {
		t.Fatal(err)
	}
	received := make(chan error, 1)
	go func() {
		_, err := c.Receive(ctx)
		received <- err
	}()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-received:
		if !errors.Is(err, bus.ErrClosed) {
			t.Fatalf("blocked Receive ended with %v, want bus.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Receive still blocked after the bus closed")
	}
	checks := []struct {
		name string
		err  error
	}{
		{"send", func() error { _, err := p.Send(ctx, &bus.OutMessage{Payload: []byte("x")}); return err }()},
		{"producer", func() error { _, err := b.Producer(ctx, bus.ProducerOptions{Topic: topic}); return err }()},
		{"subscribe", func() error {
			_, err := b.Subscribe(ctx, bus.SubscribeOptions{Topic: topic, Subscription: "s", Type: bus.Shared})
			return err
		}()},
		{"reader", func() error { _, err := b.Reader(ctx, bus.ReaderOptions{Topic: topic}); return err }()},
		{"begin", func() error { _, err := b.BeginTx(ctx, time.Minute); return err }()},
		{"ensure", b.EnsureTopic(ctx, bus.TopicSpec{Name: topic})},
	}
	for _, ch := range checks {
		if !errors.Is(ch.err, bus.ErrClosed) {
			t.Errorf("%s on a closed bus: got %v, want bus.ErrClosed", ch.name, ch.err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
