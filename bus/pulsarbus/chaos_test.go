package pulsarbus_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/internal/pulsartest"
)

// TestBrokerStopped freezes the broker (SIGSTOP) mid-test: a send fails
// with bus.ErrUnavailable within its send timeout instead of hanging, and
// once the broker runs again a retry succeeds and the message arrives.
// pulsartest keeps other tests (of every package) off the broker meanwhile.
func TestBrokerStopped(t *testing.T) {
	const sendTimeout = 2 * time.Second
	b := newBus(t)
	ctx := ctxFor(t, time.Minute)
	topic := topicName(t)
	p, err := b.Producer(ctx, bus.ProducerOptions{Topic: topic, SendTimeout: sendTimeout})
	if err != nil {
		t.Fatal(err)
	}
	c, err := b.Subscribe(ctx, bus.SubscribeOptions{Topic: topic, Subscription: "s", Type: bus.Exclusive})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Send(ctx, &bus.OutMessage{Key: "k", Payload: []byte("before")}); err != nil {
		t.Fatal(err)
	}

	// StopBroker may wait for the tests of other packages to finish.
	resume := pulsartest.StopBroker(t, 30*time.Second)
	ctx = ctxFor(t, 2*time.Minute)
	start := time.Now()
	_, err = p.Send(ctx, &bus.OutMessage{Key: "k", Payload: []byte("while stopped")})
	el := time.Since(start)
	if !errors.Is(err, bus.ErrUnavailable) || !bus.Retryable(err) {
		resume()
		t.Fatalf("send to a stopped broker: got %v, want an error wrapping bus.ErrUnavailable", err)
	}
	if el > sendTimeout+2*time.Second {
		resume()
		t.Fatalf("send to a stopped broker failed after %s, the send timeout is %s", el, sendTimeout)
	}
	t.Logf("send failed after %s: %v", el, err)
	resume()

	// The same producer works again once the broker answers.
	retry := time.Now()
	for {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := p.Send(sctx, &bus.OutMessage{Key: "k", Payload: []byte("after")})
		cancel()
		if err == nil {
			break
		}
		if !bus.Retryable(err) || time.Since(retry) > time.Minute {
			t.Fatalf("send after the broker resumed: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	seen := map[string]bool{}
	for !seen["after"] {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		m, err := c.Receive(rctx)
		cancel()
		if err != nil {
			t.Fatalf("receive after the broker resumed (seen %v): %v", seen, err)
		}
		seen[string(m.Payload)] = true
		if err := c.Ack(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if !seen["before"] {
		t.Fatalf("the message sent before the stop was lost: seen %v", seen)
	}
}
