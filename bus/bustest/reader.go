package bustest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
)

var readerTests = []test{
	{"Earliest", testReaderEarliest},
	{"FromID", testReaderFromID},
	{"Latest", testReaderLatest},
	{"Partition", testReaderPartition},
	{"Compacted", testReaderCompacted},
}

func (s *suite) reader(t *testing.T, b bus.Bus, o bus.ReaderOptions) bus.Reader {
	t.Helper()
	r, err := b.Reader(s.ctx(t), o)
	if err != nil {
		t.Fatalf("reader %+v: %v", o, err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func (s *suite) next1(t *testing.T, r bus.Reader, what string) *bus.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), s.o.Wait)
	defer cancel()
	m, err := r.Next(ctx)
	if err != nil {
		t.Fatalf("next %s: %v", what, err)
	}
	return m
}

func (s *suite) hasNext(t *testing.T, r bus.Reader) bool {
	t.Helper()
	ok, err := r.HasNext(s.waitCtx(t))
	if err != nil {
		t.Fatalf("has next: %v", err)
	}
	return ok
}

// fill sends n messages and returns their ids.
func fill(t *testing.T, p bus.Producer, n int) []bus.MessageID {
	ids := make([]bus.MessageID, n)
	for i := range ids {
		ids[i] = send(t, p, &bus.OutMessage{Key: fmt.Sprintf("k%d", i%3), Payload: payload("m", i)})
	}
	return ids
}

func testReaderEarliest(t *testing.T, s *suite) {
	topic := unique("read")
	b := s.bus(t)
	ids := fill(t, s.producer(t, b, topic), 10)
	r := s.reader(t, b, bus.ReaderOptions{Topic: topic})
	for i, id := range ids {
		if !s.hasNext(t, r) {
			t.Fatalf("HasNext false before message %d of %d", i+1, len(ids))
		}
		m := s.next1(t, r, fmt.Sprint(i))
		if string(m.Payload) != string(payload("m", i)) || !bytes.Equal(m.ID, id) {
			t.Fatalf("message %d is %q, want %q with the id Send returned", i, m.Payload, payload("m", i))
		}
	}
	if s.hasNext(t, r) {
		t.Fatal("HasNext true at the end of the topic")
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.o.Quiet)
	defer cancel()
	if m, err := r.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next at the end: got %v, %v; want to block until the context ends", m, err)
	}
	// A message sent later is read by the same reader.
	send(t, s.producer(t, b, topic), &bus.OutMessage{Key: "k", Payload: []byte("later")})
	if m := s.next1(t, r, "later"); string(m.Payload) != "later" {
		t.Fatalf("got %q, want \"later\"", m.Payload)
	}
}

func testReaderFromID(t *testing.T, s *suite) {
	topic := unique("readid")
	b := s.bus(t)
	ids := fill(t, s.producer(t, b, topic), 10)
	for _, tc := range []struct {
		name      string
		inclusive bool
		first     int
	}{
		{"inclusive", true, 4},
		{"exclusive", false, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The id is stored as bytes and given back, as the engine does.
			stored := append([]byte(nil), ids[4]...)
			r := s.reader(t, s.bus(t), bus.ReaderOptions{Topic: topic, StartID: stored, StartInclusive: tc.inclusive})
			for i := tc.first; i < len(ids); i++ {
				if m := s.next1(t, r, fmt.Sprint(i)); string(m.Payload) != string(payload("m", i)) {
					t.Fatalf("got %q, want %q", m.Payload, payload("m", i))
				}
			}
			if s.hasNext(t, r) {
				t.Fatal("HasNext true at the end of the topic")
			}
		})
	}
}

func testReaderLatest(t *testing.T, s *suite) {
	topic := unique("readlatest")
	b := s.bus(t)
	p := s.producer(t, b, topic)
	fill(t, p, 3)
	r := s.reader(t, b, bus.ReaderOptions{Topic: topic, StartLatest: true})
	if s.hasNext(t, r) {
		t.Fatal("HasNext true on a reader from Latest before anything new")
	}
	send(t, p, &bus.OutMessage{Key: "k", Payload: []byte("new")})
	if m := s.next1(t, r, "new"); string(m.Payload) != "new" {
		t.Fatalf("got %q, want \"new\"", m.Payload)
	}
}

func testReaderPartition(t *testing.T, s *suite) {
	topic := unique("readpart")
	b := s.bus(t)
	s.ensure(t, b, bus.TopicSpec{Name: topic, Partitions: s.o.Partitions})
	c := s.subscribe(t, b, bus.SubscribeOptions{Topic: topic, Subscription: unique("sub"), Type: bus.Exclusive})
	p := s.producer(t, b, topic)
	id := send(t, p, &bus.OutMessage{Key: "the-key", Payload: []byte("one")})
	m := s.receive(t, c, "the message")
	ack(t, c, m)
	r := s.reader(t, b, bus.ReaderOptions{Topic: b.Namespace().Partition(topic, m.Partition), StartID: id, StartInclusive: true})
	got := s.next1(t, r, "the message from its partition")
	if string(got.Payload) != "one" || got.Partition != m.Partition || got.Key != "the-key" {
		t.Fatalf("got %q from partition %d, want \"one\" from %d", got.Payload, got.Partition, m.Partition)
	}
}

// testReaderCompacted folds a compacted read into a table: whether or not
// the broker has compacted yet, the table holds the latest value per key
// and no deleted key, and a key's values come in order.
func testReaderCompacted(t *testing.T, s *suite) {
	topic := unique("compacted")
	b := s.bus(t)
	s.ensure(t, b, bus.TopicSpec{Name: topic, Compacted: true, RetentionTime: -1, RetentionSizeMB: -1})
	p := s.producer(t, b, topic)
	writes := []struct{ key, value string }{
		{"a", "a1"}, {"b", "b1"}, {"a", "a2"}, {"c", "c1"}, {"c", ""}, {"b", "b2"}, {"a", "a3"}, {"d", ""},
	}
	for _, w := range writes {
		send(t, p, &bus.OutMessage{Key: w.key, Payload: []byte(w.value)})
	}
	r := s.reader(t, b, bus.ReaderOptions{Topic: topic, Compacted: true})
	table := map[string]string{}
	deadline := time.Now().Add(s.o.Wait)
	for s.hasNext(t, r) {
		if time.Now().After(deadline) {
			t.Fatal("compacted reader does not reach its end")
		}
		m := s.next1(t, r, "compacted")
		if prev, ok := table[m.Key]; ok && string(m.Payload) != "" && strings.Compare(prev, string(m.Payload)) > 0 {
			t.Fatalf("key %s: %q after %q", m.Key, m.Payload, prev)
		}
		if len(m.Payload) == 0 {
			delete(table, m.Key)
		} else {
			table[m.Key] = string(m.Payload)
		}
	}
	want := map[string]string{"a": "a3", "b": "b2"}
	if fmt.Sprint(table) != fmt.Sprint(want) {
		t.Fatalf("compacted table %v, want %v", table, want)
	}
	// Later writes reach a live compacted reader, deletions included.
	send(t, p, &bus.OutMessage{Key: "a", Payload: nil})
	if m := s.next1(t, r, "the deletion"); m.Key != "a" || len(m.Payload) != 0 {
		t.Fatalf("got %q=%q, want the deletion of a", m.Key, m.Payload)
	}
}

var decodeTests = []test{
	{"DecodeOrDeadLetter", testDecodeOrDeadLetter},
}

func testDecodeOrDeadLetter(t *testing.T, s *suite) {
	topic, sub := unique("decode"), unique("sub")
	b := s.bus(t)
	dlq := s.dlqConsumer(t, b, topic, sub)
	c := s.subscribe(t, b, bus.SubscribeOptions{Topic: topic, Subscription: sub, Type: bus.Failover})
	p := s.producer(t, b, topic)
	good, err := bus.NewEnvelope("step.completed", "evt-1", "proc-1", time.Now(), map[string]int{"n": 1})
	if err != nil {
		t.Fatal(err)
	}
	goodBytes, err := good.Encode()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		payload []byte
		want    error  // nil: decodes
		reason  string // part of the dead-letter reason
	}{
		{"valid", goodBytes, nil, ""},
		{"garbage", []byte("\x00\x01 not json"), bus.ErrUndecodable, "not a JSON envelope"},
		{"newer version", []byte(`{"v":99,"type":"x","id":"1","time":"2026-01-01T00:00:00Z"}`), bus.ErrUnknownVersion, "version 99"},
		{"no id", []byte(`{"v":1,"type":"x","time":"2026-01-01T00:00:00Z"}`), bus.ErrUndecodable, `no "id"`},
		{"valid again", goodBytes, nil, ""},
	}
	for _, tc := range cases {
		send(t, p, &bus.OutMessage{Key: "proc-1", Payload: tc.payload, Properties: map[string]string{"case": tc.name}})
	}
	for _, tc := range cases {
		m := s.receive(t, c, tc.name)
		if m.Properties["case"] != tc.name {
			t.Fatalf("got case %q, want %q", m.Properties["case"], tc.name)
		}
		env, err := bus.DecodeOrDeadLetter(s.ctx(t), c, m)
		if tc.want == nil {
			if err != nil || env == nil || env.ID != "evt-1" {
				t.Fatalf("%s: got %v, %v; want the envelope", tc.name, env, err)
			}
			ack(t, c, m)
			continue
		}
		var de *bus.DecodeError
		if !errors.Is(err, tc.want) || !errors.As(err, &de) || env != nil {
			t.Fatalf("%s: got %v, %v; want a *bus.DecodeError wrapping %v", tc.name, env, err, tc.want)
		}
		d := s.receive(t, dlq, "dead letter of "+tc.name)
		ack(t, dlq, d)
		checkDLQ(t, d, m, sub, tc.reason, 0)
		if d.Properties[bus.PropDLQReason] != de.Reason {
			t.Errorf("%s: dead letter reason %q, want the decode error's %q", tc.name, d.Properties[bus.PropDLQReason], de.Reason)
		}
	}
	s.none(t, dlq, "more dead letters than undecodable messages")
	s.gone(t, b, c, bus.SubscribeOptions{Topic: topic, Subscription: sub, Type: bus.Failover}, "a handled message")
}
