package bus_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
)

// chanConsumer hands out the messages of a channel and records what
// becomes of them.
type chanConsumer struct {
	bus.Consumer
	in chan *bus.Message

	mu          sync.Mutex
	deadLetters map[string]string // payload -> reason
	nacks       []string
	acks        []string
	dlErr       error
}

func newChanConsumer(msgs ...*bus.Message) *chanConsumer {
	c := &chanConsumer{in: make(chan *bus.Message, 1000), deadLetters: map[string]string{}}
	for _, m := range msgs {
		c.in <- m
	}
	return c
}

func (c *chanConsumer) Receive(ctx context.Context) (*bus.Message, error) {
	select {
	case m := <-c.in:
		return m, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *chanConsumer) DeadLetter(_ context.Context, m *bus.Message, reason string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dlErr != nil {
		return c.dlErr
	}
	c.deadLetters[string(m.Payload)] = reason
	return nil
}

func (c *chanConsumer) Nack(m *bus.Message, _ error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nacks = append(c.nacks, string(m.Payload))
}

func (c *chanConsumer) Ack(_ context.Context, m *bus.Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.acks = append(c.acks, string(m.Payload))
	return nil
}

type item struct {
	N int `json:"n"`
}

func (i *item) Validate() error {
	if i.N < 0 {
		return fmt.Errorf("n is %d, want 0 or more", i.N)
	}
	return nil
}

func envMsg(t *testing.T, typ string, payload any) *bus.Message {
	t.Helper()
	e, err := bus.NewEnvelope(typ, fmt.Sprintf("id-%v", payload), "p", time.Now(), payload)
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return &bus.Message{Topic: "persistent://t/n/things-partition-1", Payload: b}
}

func TestConsume(t *testing.T) {
	good := []*bus.Message{envMsg(t, "item", item{1}), envMsg(t, "item", item{2}), envMsg(t, "item", item{3})}
	bad := []struct {
		name   string
		m      *bus.Message
		reason string
	}{
		{"garbage", &bus.Message{Topic: "things", Payload: []byte("{")}, "not a JSON envelope"},
		{"empty", &bus.Message{Topic: "things", Payload: nil}, "empty payload"},
		{"other type", envMsg(t, "thing", item{1}), `unexpected message type "thing" on the things topic, want "item"`},
		{"invalid", envMsg(t, "item", item{-1}), "n is -1"},
		{"wrong shape", envMsg(t, "item", []int{1}), "item payload: json: cannot unmarshal array"},
	}
	msgs := []*bus.Message{good[0]}
	for _, b := range bad {
		msgs = append(msgs, b.m)
	}
	msgs = append(msgs, good[1:]...)
	c := newChanConsumer(msgs...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []int
	var dropped int
	err := bus.Consume(ctx, c, bus.ConsumeOptions{BatchSize: 4, BatchWait: 20 * time.Millisecond, Types: []string{"item"},
		OnDrop: func(_ *bus.Message, _ string, err error) {
			if err != nil {
				t.Errorf("dead-lettering failed: %v", err)
			}
			dropped++
		}},
		bus.JSON[item], func(_ context.Context, batch []bus.Inbound[item]) error {
			if len(batch) > 4 {
				t.Errorf("batch of %d, want at most 4", len(batch))
			}
			for _, in := range batch {
				got = append(got, in.Value.N)
				if in.Env == nil || in.Env.Type != "item" {
					t.Errorf("envelope %+v", in.Env)
				}
			}
			if len(got) == len(good) {
				cancel()
			}
			return nil
		})
	if err != nil {
		t.Fatalf("Consume: %v", err)
	}
	if fmt.Sprint(got) != "[1 2 3]" {
		t.Fatalf("handled %v, want [1 2 3] in order", got)
	}
	if dropped != len(bad) {
		t.Fatalf("OnDrop called %d times, want %d", dropped, len(bad))
	}
	for _, b := range bad {
		t.Run(b.name, func(t *testing.T) {
			if r := c.deadLetters[string(b.m.Payload)]; !strings.Contains(r, b.reason) {
				t.Fatalf("reason %q, want one containing %q", r, b.reason)
			}
		})
	}
}

// A message that cannot be dead-lettered is nacked (it comes again); a
// decoder that panics dead-letters its message instead of crashing; a
// handler's error stops the loop and is returned.
func TestConsumeFailures(t *testing.T) {
	t.Run("dead-letter fails", func(t *testing.T) {
		c := newChanConsumer(&bus.Message{Payload: []byte("x")})
		c.dlErr = bus.ErrUnavailable
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var dropErr error
		_ = bus.Consume(ctx, c, bus.ConsumeOptions{BatchWait: -1, OnDrop: func(_ *bus.Message, _ string, err error) { dropErr = err; cancel() }},
			bus.JSON[item], func(context.Context, []bus.Inbound[item]) error { return nil })
		if !errors.Is(dropErr, bus.ErrUnavailable) || len(c.nacks) != 1 {
			t.Fatalf("drop error %v, nacks %v", dropErr, c.nacks)
		}
	})
	t.Run("decoder panics", func(t *testing.T) {
		m := envMsg(t, "item", item{1})
		c := newChanConsumer(m)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = bus.Consume(ctx, c, bus.ConsumeOptions{OnDrop: func(*bus.Message, string, error) { cancel() }},
			func(*bus.Envelope) (item, error) { panic("boom") },
			func(context.Context, []bus.Inbound[item]) error { return nil })
		if r := c.deadLetters[string(m.Payload)]; !strings.Contains(r, "boom") {
			t.Fatalf("reason %q", r)
		}
	})
	t.Run("handler fails", func(t *testing.T) {
		c := newChanConsumer(envMsg(t, "item", item{1}))
		boom := errors.New("boom")
		err := bus.Consume(context.Background(), c, bus.ConsumeOptions{Receivers: 3}, bus.JSON[item],
			func(context.Context, []bus.Inbound[item]) error { return boom })
		if !errors.Is(err, boom) {
			t.Fatalf("Consume: %v, want the handler's error", err)
		}
	})
	t.Run("receive fails", func(t *testing.T) {
		c := &failingReceiver{err: bus.ErrClosed}
		err := bus.Consume(context.Background(), c, bus.ConsumeOptions{}, bus.JSON[item],
			func(context.Context, []bus.Inbound[item]) error { return nil })
		if !errors.Is(err, bus.ErrClosed) {
			t.Fatalf("Consume: %v, want the receive error", err)
		}
	})
}

type failingReceiver struct {
	bus.Consumer
	err error
}

func (f *failingReceiver) Receive(context.Context) (*bus.Message, error) { return nil, f.err }
