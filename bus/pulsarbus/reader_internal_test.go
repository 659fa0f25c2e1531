package pulsarbus

import (
	"context"
	"testing"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
)

// staleReader is a client reader whose broker says there is nothing more
// (a stale last message id) while a message was dispatched to it already:
// what Pulsar 4.0 does after a GetLastMessageId raced with a transaction
// commit (reader.HasNext). Only the methods HasNext and Next use exist.
type staleReader struct {
	pulsar.Reader
	queued chan pulsar.Message
}

func (r *staleReader) HasNext() bool { return false }

func (r *staleReader) Next(ctx context.Context) (pulsar.Message, error) {
	select {
	case m := <-r.queued:
		return m, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type queuedMessage struct {
	pulsar.Message
	id  pulsar.MessageID
	key string
}

func (m queuedMessage) ID() pulsar.MessageID          { return m.id }
func (m queuedMessage) Topic() string                 { return "persistent://public/default/status" }
func (m queuedMessage) Key() string                   { return m.key }
func (m queuedMessage) Payload() []byte               { return []byte("row") }
func (m queuedMessage) PublishTime() time.Time        { return time.Unix(1, 0) }
func (m queuedMessage) Properties() map[string]string { return nil }

func TestHasNextTakesADispatchedMessageTheBrokerDoesNotReport(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		queued []string
	}{
		{name: "nothing dispatched: the end"},
		{name: "one row dispatched after the stale last id", queued: []string{"p-2"}},
		{name: "two rows", queued: []string{"p-2", "p-3"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cr := &staleReader{queued: make(chan pulsar.Message, len(tc.queued))}
			for i, k := range tc.queued {
				cr.queued <- queuedMessage{id: pulsar.NewMessageID(7, int64(62+i), -1, 0), key: k}
			}
			r := &reader{topic: "status", r: cr}
			var got []string
			for {
				more, err := r.HasNext(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if !more {
					break
				}
				m, err := r.Next(ctx)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, m.Key)
				if len(got) > len(tc.queued) {
					t.Fatalf("read %v, more than the %d dispatched", got, len(tc.queued))
				}
			}
			if len(got) != len(tc.queued) {
				t.Fatalf("read %v, want %v", got, tc.queued)
			}
			for i := range got {
				if got[i] != tc.queued[i] {
					t.Fatalf("read %v, want %v in order", got, tc.queued)
				}
			}
		})
	}
}

func TestHasNextGivesUpWithItsContext(t *testing.T) {
	r := &reader{topic: "status", r: &staleReader{queued: make(chan pulsar.Message)}}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if more, err := r.HasNext(ctx); err == nil || more {
		t.Fatalf("HasNext with a done context = %v, %v; want an error", more, err)
	}
}
