package worker_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/memory"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/worker"
)

// subscribeSpy is a bus that remembers the options of its subscriptions.
type subscribeSpy struct {
	bus.Bus
	mu   sync.Mutex
	opts []bus.SubscribeOptions
	subd chan struct{}
}

func (s *subscribeSpy) Subscribe(ctx context.Context, o bus.SubscribeOptions) (bus.Consumer, error) {
	s.mu.Lock()
	s.opts = append(s.opts, o)
	s.mu.Unlock()
	c, err := s.Bus.Subscribe(ctx, o)
	select {
	case s.subd <- struct{}{}:
	default:
	}
	return c, err
}

// The job queue counts deliveries to instances that die holding a command
// (CountDeliveriesDurably) unless the worker turns it off, with lazy
// records and a crash window of DefaultCrashWindow unless told otherwise.
func TestJobQueueCountsDeliveriesDurably(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   worker.Options
		want   bool
		lazy   bool
		window time.Duration
	}{
		{"ByDefault", worker.Options{}, true, true, worker.DefaultCrashWindow},
		{"Disabled", worker.Options{DisableDurableDeliveryCount: true}, false, true, worker.DefaultCrashWindow},
		{"Eager", worker.Options{EagerDeliveryRecords: true}, true, false, worker.DefaultCrashWindow},
		{"NoCrashWindow", worker.Options{CrashWindow: -1}, true, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spy := &subscribeSpy{Bus: memory.New(memory.Options{}), subd: make(chan struct{}, 1)}
			t.Cleanup(func() { _ = spy.Close() })
			wo := tc.opts
			wo.Service = "svc"
			w, err := worker.New(spy, wo, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- w.Run(ctx) }()
			select {
			case <-spy.subd:
			case err := <-done:
				cancel()
				t.Fatalf("Run ended before subscribing: %v", err)
			case <-time.After(30 * time.Second):
				cancel()
				t.Fatal("the worker did not subscribe")
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("Run: %v", err)
			}
			spy.mu.Lock()
			defer spy.mu.Unlock()
			if len(spy.opts) != 1 {
				t.Fatalf("%d subscriptions, want 1", len(spy.opts))
			}
			o := spy.opts[0]
			if o.Topic != protocol.JobTopic("svc") || o.MaxDeliveries <= 0 {
				t.Fatalf("subscribed %+v, want the job queue with MaxDeliveries", o)
			}
			if o.CountDeliveriesDurably != tc.want {
				t.Fatalf("CountDeliveriesDurably = %v, want %v", o.CountDeliveriesDurably, tc.want)
			}
			if o.LazyDeliveryRecords != tc.lazy || o.CrashWindow != tc.window {
				t.Fatalf("LazyDeliveryRecords = %v, CrashWindow = %s; want %v, %s", o.LazyDeliveryRecords, o.CrashWindow, tc.lazy, tc.window)
			}
		})
	}
}
