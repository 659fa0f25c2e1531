package bustest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
)

// RunBacklogs runs the conformance tests of bus.Backlogs (listing topics,
// showing and removing a subscription's backlog, in and out of
// transactions) on a bus that implements it. The admin API's dead-letter
// replay and purge rely on exactly this.
func RunBacklogs(t *testing.T, newBus func(t *testing.T) bus.Bus, opts Options) {
	s := &suite{newBus: newBus, o: opts.withDefaults()}
	for _, tc := range backlogTests {
		t.Run(tc.name, func(t *testing.T) {
			if why, ok := s.o.Skip["Backlogs/"+tc.name]; ok {
				t.Skip(why)
			}
			t.Parallel()
			tc.fn(t, s)
		})
	}
}

var backlogTests = []test{
	{"Topics", testBacklogTopics},
	{"RemoveOne", testBacklogRemoveOne},
	{"Transaction", testBacklogTx},
	{"BadOptions", testBacklogBadOptions},
}

func backlogs(t *testing.T, b bus.Bus) bus.Backlogs {
	t.Helper()
	bl, ok := b.(bus.Backlogs)
	if !ok {
		t.Fatalf("%T does not implement bus.Backlogs", b)
	}
	return bl
}

// backlogIs waits until the backlog of sub on topic holds exactly the
// payloads want, in order (acknowledgements in a transaction may take
// effect a little after the commit returns on a real broker).
func (s *suite) backlogIs(t *testing.T, bl bus.Backlogs, topic, sub string, want ...string) []*bus.Message {
	t.Helper()
	deadline := time.Now().Add(s.o.Wait)
	for {
		msgs, n, err := bl.Backlog(s.ctx(t), topic, sub, len(want)+10)
		if err != nil {
			t.Fatalf("backlog of %s on %s: %v", sub, topic, err)
		}
		var got []string
		for _, m := range msgs {
			got = append(got, string(m.Payload))
		}
		if n == len(want) && slices.Equal(got, want) {
			return msgs
		}
		if time.Now().After(deadline) {
			t.Fatalf("backlog of %s on %s: %d messages %q, want %d %q", sub, topic, n, got, len(want), want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func testBacklogTopics(t *testing.T, s *suite) {
	b := s.bus(t)
	plain, parted := unique("bl-plain")+bus.DeadLetterSuffix, unique("bl-parted")
	send(t, s.producer(t, b, plain), &bus.OutMessage{Payload: []byte("x")})
	s.ensure(t, b, bus.TopicSpec{Name: parted, Partitions: 2})
	names, err := backlogs(t, b).Topics(s.ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	count := func(name string) int {
		n := 0
		for _, x := range names {
			if x == name {
				n++
			}
		}
		return n
	}
	if count(plain) != 1 || count(parted) != 1 {
		t.Errorf("topics %q: want %s and %s once each", names, plain, parted)
	}
	for _, x := range names {
		if strings.Contains(x, "/") || strings.HasPrefix(x, parted+"-partition-") {
			t.Errorf("topics: %q is not a short topic name", x)
		}
	}
	if !slices.IsSorted(names) {
		t.Errorf("topics not sorted: %q", names)
	}
	if !bus.IsDeadLetterTopic(plain) || bus.IsDeadLetterTopic(parted) {
		t.Errorf("IsDeadLetterTopic: %s should be one, %s not", plain, parted)
	}
}

func testBacklogRemoveOne(t *testing.T, s *suite) {
	b := s.bus(t)
	bl := backlogs(t, b)
	topic, sub, other := unique("bl-one"), unique("admin"), unique("other")
	p := s.producer(t, b, topic)
	var want []string
	for i := range 5 {
		send(t, p, &bus.OutMessage{Key: fmt.Sprintf("k%d", i), Payload: payload("m", i), Properties: map[string]string{"n": fmt.Sprint(i)}})
		want = append(want, string(payload("m", i)))
	}
	// Messages sent before the subscription existed are in its backlog.
	msgs := s.backlogIs(t, bl, topic, sub, want...)
	for i, m := range msgs {
		if m.Key != fmt.Sprintf("k%d", i) || m.Properties["n"] != fmt.Sprint(i) || len(m.ID) == 0 {
			t.Errorf("message %d: key %q properties %v id %x", i, m.Key, m.Properties, m.ID)
		}
	}
	some, n, err := bl.Backlog(s.ctx(t), topic, sub, 2)
	if err != nil || n != 5 || len(some) != 2 || string(some[1].Payload) != want[1] {
		t.Fatalf("backlog limited to 2: %d of %d, %v", len(some), n, err)
	}
	if none, n, err := bl.Backlog(s.ctx(t), topic, sub, 0); err != nil || n != 5 || len(none) != 0 {
		t.Fatalf("backlog count only: %d messages, count %d, %v", len(none), n, err)
	}
	s.backlogIs(t, bl, topic, other, want...)

	// Removing the middle one keeps those before and after it.
	if err := bl.Acknowledge(s.ctx(t), topic, sub, nil, msgs[2].ID); err != nil {
		t.Fatalf("acknowledge: %v", err)
	}
	rest := []string{want[0], want[1], want[3], want[4]}
	s.backlogIs(t, bl, topic, sub, rest...)
	if err := bl.Acknowledge(s.ctx(t), topic, sub, nil, msgs[2].ID); err != nil {
		t.Errorf("acknowledging a removed message again: %v", err)
	}
	s.backlogIs(t, bl, topic, other, want...)
	// The subscription is durable: another connection sees the same.
	s.backlogIs(t, backlogs(t, s.bus(t)), topic, sub, rest...)

	send(t, p, &bus.OutMessage{Key: "k5", Payload: payload("m", 5)})
	rest = append(rest, string(payload("m", 5)))
	all := s.backlogIs(t, bl, topic, sub, rest...)
	var ids []bus.MessageID
	for _, m := range all {
		ids = append(ids, m.ID)
	}
	if err := bl.Acknowledge(s.ctx(t), topic, sub, nil, ids...); err != nil {
		t.Fatalf("acknowledge all: %v", err)
	}
	s.backlogIs(t, bl, topic, sub)
}

func testBacklogTx(t *testing.T, s *suite) {
	b := s.bus(t)
	bl := backlogs(t, b)
	dlq, target, sub := unique("bl-tx-DLQ"), unique("bl-tx-target"), unique("admin")
	p := s.producer(t, b, dlq)
	for i := range 3 {
		send(t, p, &bus.OutMessage{Key: "k", Payload: payload("d", i)})
	}
	msgs := s.backlogIs(t, bl, dlq, sub, string(payload("d", 0)), string(payload("d", 1)), string(payload("d", 2)))
	s.backlogIs(t, bl, target, "watch")
	replay := s.producer(t, b, target)

	move := func(commit bool) {
		t.Helper()
		ctx := s.ctx(t)
		tx, err := b.BeginTx(ctx, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := replay.Send(ctx, &bus.OutMessage{Key: "k", Payload: msgs[1].Payload, Tx: tx}); err != nil {
			t.Fatalf("send in transaction: %v", err)
		}
		if err := bl.Acknowledge(ctx, dlq, sub, tx, msgs[1].ID); err != nil {
			t.Fatalf("acknowledge in transaction: %v", err)
		}
		if commit {
			err = tx.Commit(ctx)
		} else {
			err = tx.Abort(ctx)
		}
		if err != nil {
			t.Fatalf("end transaction (commit %v): %v", commit, err)
		}
	}
	move(false)
	time.Sleep(s.o.Quiet)
	s.backlogIs(t, bl, dlq, sub, string(payload("d", 0)), string(payload("d", 1)), string(payload("d", 2)))
	s.backlogIs(t, bl, target, "watch")

	move(true)
	s.backlogIs(t, bl, dlq, sub, string(payload("d", 0)), string(payload("d", 2)))
	s.backlogIs(t, bl, target, "watch", string(payload("d", 1)))

	// Removing it again in a transaction fails the transaction: someone
	// else handled the message, so what goes with it must not commit.
	ctx := s.ctx(t)
	tx, err := b.BeginTx(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := bl.Acknowledge(ctx, dlq, sub, tx, msgs[1].ID); !errors.Is(err, bus.ErrTxFailed) {
		t.Errorf("acknowledging a removed message in a transaction: %v, want bus.ErrTxFailed", err)
	}
	_ = tx.Abort(ctx)
	s.backlogIs(t, bl, dlq, sub, string(payload("d", 0)), string(payload("d", 2)))
}

func testBacklogBadOptions(t *testing.T, s *suite) {
	b := s.bus(t)
	bl := backlogs(t, b)
	parted := unique("bl-bad")
	s.ensure(t, b, bus.TopicSpec{Name: parted, Partitions: 2})
	ctx, cancel := context.WithTimeout(context.Background(), s.o.Wait)
	defer cancel()
	tests := []struct {
		name string
		call func() error
	}{
		{"partitioned topic", func() error { _, _, err := bl.Backlog(ctx, parted, "admin", 1); return err }},
		{"negative limit", func() error { _, _, err := bl.Backlog(ctx, unique("bl-bad"), "admin", -1); return err }},
		{"no subscription", func() error { _, _, err := bl.Backlog(ctx, unique("bl-bad"), "", 1); return err }},
		{"foreign id", func() error { return bl.Acknowledge(ctx, unique("bl-bad"), "admin", nil, bus.MessageID("nonsense")) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); !errors.Is(err, bus.ErrBadOptions) {
				t.Errorf("got %v, want bus.ErrBadOptions", err)
			}
		})
	}
}
