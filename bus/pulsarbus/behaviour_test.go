package pulsarbus_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/pulsarbus"
	"github.com/pulsaga/pulsaga/internal/pulsartest"
)

func mustProducer(t *testing.T, b bus.Bus, o bus.ProducerOptions) bus.Producer {
	t.Helper()
	p, err := b.Producer(ctxFor(t, time.Minute), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func mustSubscribe(t *testing.T, b bus.Bus, o bus.SubscribeOptions) bus.Consumer {
	t.Helper()
	c, err := b.Subscribe(ctxFor(t, time.Minute), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func receive(t *testing.T, c bus.Consumer, what string) *bus.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := c.Receive(ctx)
	if err != nil {
		t.Fatalf("receive %s: %v", what, err)
	}
	return m
}

func quiet(t *testing.T, c bus.Consumer, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if m, err := c.Receive(ctx); err == nil {
		t.Fatalf("%s: unexpected message %q (redelivery %d)", what, m.Payload, m.RedeliveryCount)
	} else if ctx.Err() == nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func mustAck(t *testing.T, c bus.Consumer, m *bus.Message) {
	t.Helper()
	if err := c.Ack(ctxFor(t, 30*time.Second), m); err != nil {
		t.Fatalf("ack %q: %v", m.Payload, err)
	}
}

// sendBatch sends n messages of one key with SendAsync so that they share
// one broker entry, and checks that they do.
func sendBatch(t *testing.T, p bus.Producer, key string, n int) {
	t.Helper()
	ctx := ctxFor(t, time.Minute)
	errs := make(chan error, n)
	ids := make([]bus.MessageID, n)
	for i := range n {
		p.SendAsync(ctx, &bus.OutMessage{Key: key, Payload: []byte(fmt.Sprint(i))}, func(id bus.MessageID, err error) {
			ids[i] = id
			errs <- err
		})
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	first, err := pulsar.DeserializeMessageID(ids[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, raw := range ids {
		id, err := pulsar.DeserializeMessageID(raw)
		if err != nil {
			t.Fatal(err)
		}
		if id.LedgerID() != first.LedgerID() || id.EntryID() != first.EntryID() || id.BatchSize() != int32(n) {
			t.Fatalf("messages were not batched into one entry: %s and %s (batch size %d)", first, id, id.BatchSize())
		}
	}
}

// TestBatchedEntryAcks: the messages of one batch (one broker entry) are
// acknowledged plainly, in committed and in aborted transactions. Only
// those whose acknowledgement did not hold come back, and once all are
// acknowledged nothing comes back to a new consumer.
func TestBatchedEntryAcks(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		steps []string // what happens to message i of the batch
		back  []int    // messages delivered again
	}{
		{"plain acks", []string{"ack", "ack", "ack", "ack"}, nil},
		{"commit in the middle, abort in the middle", []string{"ack", "commit", "abort", "ack"}, []int{2}},
		{"last acknowledged in a committed transaction", []string{"ack", "ack", "ack", "commit"}, nil},
		{"last acknowledged in an aborted transaction", []string{"ack", "commit", "ack", "abort"}, []int{3}},
		{"all in aborted transactions", []string{"abort", "abort", "abort", "abort"}, []int{0, 1, 2, 3}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newBus(t)
			ctx := ctxFor(t, 2*time.Minute)
			topic := topicName(t)
			o := bus.SubscribeOptions{Topic: topic, Subscription: "s", Type: bus.Shared, NackDelay: 100 * time.Millisecond}
			c := mustSubscribe(t, b, o)
			p := mustProducer(t, b, bus.ProducerOptions{Topic: topic, BatchingMaxDelay: 100 * time.Millisecond})
			sendBatch(t, p, "k", len(tc.steps))
			for i, how := range tc.steps {
				m := receive(t, c, fmt.Sprint("message ", i))
				if string(m.Payload) != fmt.Sprint(i) {
					t.Fatalf("got %q, want %d", m.Payload, i)
				}
				if how == "ack" {
					mustAck(t, c, m)
					continue
				}
				tx, err := b.BeginTx(ctx, time.Minute)
				if err != nil {
					t.Fatal(err)
				}
				if err := c.AckTx(ctx, m, tx); err != nil {
					t.Fatal(err)
				}
				if how == "commit" {
					err = tx.Commit(ctx)
				} else {
					err = tx.Abort(ctx)
				}
				if err != nil {
					t.Fatalf("%s: %v", how, err)
				}
			}
			for _, want := range tc.back {
				m := receive(t, c, fmt.Sprint("message ", want, " again"))
				if string(m.Payload) != fmt.Sprint(want) || m.RedeliveryCount < 1 {
					t.Fatalf("got %q (redelivery %d), want message %d again", m.Payload, m.RedeliveryCount, want)
				}
				mustAck(t, c, m)
			}
			quiet(t, c, "after the acknowledgements")
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			quiet(t, mustSubscribe(t, b, o), "on a new consumer")
		})
	}
}

// TestAbortRedeliversOnce: a message acknowledged in an aborted
// transaction comes back once to the same consumer.
func TestAbortRedeliversOnce(t *testing.T) {
	t.Parallel()
	for _, typ := range []bus.SubscriptionType{bus.Shared, bus.KeyShared, bus.Failover, bus.Exclusive} {
		t.Run(typ.String(), func(t *testing.T) {
			t.Parallel()
			b := newBus(t)
			ctx := ctxFor(t, time.Minute)
			topic := topicName(t)
			c := mustSubscribe(t, b, bus.SubscribeOptions{Topic: topic, Subscription: "s", Type: typ, NackDelay: 100 * time.Millisecond})
			p := mustProducer(t, b, bus.ProducerOptions{Topic: topic})
			if _, err := p.Send(ctx, &bus.OutMessage{Key: "k", Payload: []byte("in")}); err != nil {
				t.Fatal(err)
			}
			m := receive(t, c, "the input")
			tx, err := b.BeginTx(ctx, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.AckTx(ctx, m, tx); err != nil {
				t.Fatal(err)
			}
			if err := tx.Abort(ctx); err != nil {
				t.Fatal(err)
			}
			again := receive(t, c, "the input after the abort")
			if !bytes.Equal(again.ID, m.ID) || again.RedeliveryCount != 1 {
				t.Fatalf("got %q (redelivery %d), want the input with redelivery 1", again.Payload, again.RedeliveryCount)
			}
			mustAck(t, c, again)
			quiet(t, c, "after the redelivery")
			if err := tx.Commit(ctx); !errors.Is(err, bus.ErrTxFailed) {
				t.Fatalf("commit after abort: got %v, want bus.ErrTxFailed", err)
			}
		})
	}
}

// TestRedeliveryCounts: every subscription type counts deliveries (the
// broker counts only on Shared and KeyShared; the bus on the others), and
// MaxDeliveries dead-letters on each.
func TestRedeliveryCounts(t *testing.T) {
	t.Parallel()
	for _, typ := range []bus.SubscriptionType{bus.Exclusive, bus.Failover, bus.Shared, bus.KeyShared} {
		t.Run(typ.String(), func(t *testing.T) {
			t.Parallel()
			const max = 3
			b := newBus(t)
			topic := topicName(t)
			dlq := mustSubscribe(t, b, bus.SubscribeOptions{Topic: topic + "-s-DLQ", Subscription: "d", Type: bus.Exclusive})
			c := mustSubscribe(t, b, bus.SubscribeOptions{Topic: topic, Subscription: "s", Type: typ, NackDelay: 100 * time.Millisecond, MaxDeliveries: max})
			p := mustProducer(t, b, bus.ProducerOptions{Topic: topic})
			if _, err := p.Send(ctxFor(t, time.Minute), &bus.OutMessage{Key: "k", Payload: []byte("poison")}); err != nil {
				t.Fatal(err)
			}
			for i := range max {
				m := receive(t, c, fmt.Sprint("delivery ", i+1))
				if m.RedeliveryCount != i {
					t.Fatalf("delivery %d: RedeliveryCount %d, want %d", i+1, m.RedeliveryCount, i)
				}
				c.Nack(m, fmt.Errorf("failure %d", i+1))
			}
			d := receive(t, dlq, "the dead letter")
			if d.Properties[bus.PropDLQReason] != fmt.Sprint("failure ", max) || d.Properties[bus.PropDLQDeliveries] != fmt.Sprint(max) {
				t.Fatalf("dead letter properties %v", d.Properties)
			}
			quiet(t, c, "after dead-lettering")
		})
	}
}

// TestAckTimeoutDeadLetter: a message never acknowledged is delivered again
// after the ack timeout and, past MaxDeliveries, dead-lettered with a count
// as the reason.
func TestAckTimeoutDeadLetter(t *testing.T) {
	t.Parallel()
	b := newBus(t)
	topic := topicName(t)
	dlq := mustSubscribe(t, b, bus.SubscribeOptions{Topic: topic + "-s-DLQ", Subscription: "d", Type: bus.Exclusive})
	c := mustSubscribe(t, b, bus.SubscribeOptions{Topic: topic, Subscription: "s", Type: bus.Failover,
		AckTimeout: 500 * time.Millisecond, MaxDeliveries: 2})
	p := mustProducer(t, b, bus.ProducerOptions{Topic: topic})
	if _, err := p.Send(ctxFor(t, time.Minute), &bus.OutMessage{Key: "k", Payload: []byte("forgotten")}); err != nil {
		t.Fatal(err)
	}
	first := receive(t, c, "delivery 1")
	second := receive(t, c, "delivery 2 after the ack timeout")
	if !bytes.Equal(first.ID, second.ID) || second.RedeliveryCount != 1 {
		t.Fatalf("second delivery %q has redelivery count %d", second.Payload, second.RedeliveryCount)
	}
	// The third delivery is dead-lettered by the Receive that gets it.
	third := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		m, err := c.Receive(ctx)
		if err == nil {
			err = fmt.Errorf("the message came back a third time (redelivery %d)", m.RedeliveryCount)
		} else if ctx.Err() != nil {
			err = nil
		}
		third <- err
	}()
	d := receive(t, dlq, "the dead letter")
	if r := d.Properties[bus.PropDLQReason]; r != "not acknowledged after 2 deliveries" {
		t.Fatalf("dead letter reason %q", r)
	}
	if err := <-third; err != nil {
		t.Fatal(err)
	}
	quiet(t, c, "after dead-lettering")
}

// TestDeliverAt: the requested delivery time comes back on the message and
// the bus's own header does not leak into Properties. Which of the two
// messages arrives first is not asserted (on a loaded machine the sends can
// take longer than the delay); each is recognised by its payload.
func TestDeliverAt(t *testing.T) {
	t.Parallel()
	b := newBus(t)
	topic := topicName(t)
	c := mustSubscribe(t, b, bus.SubscribeOptions{Topic: topic, Subscription: "s", Type: bus.Shared})
	p := mustProducer(t, b, bus.ProducerOptions{Topic: topic})
	at := time.Now().Add(2 * time.Second).Round(time.Millisecond)
	ctx := ctxFor(t, time.Minute)
	if _, err := p.Send(ctx, &bus.OutMessage{Key: "k", Payload: []byte("later"), DeliverAt: at}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Send(ctx, &bus.OutMessage{Key: "k", Payload: []byte("now"), Properties: map[string]string{"a": "1"}}); err != nil {
		t.Fatal(err)
	}
	got := map[string]*bus.Message{}
	for range 2 {
		m := receive(t, c, "a message")
		if string(m.Payload) == "later" && time.Now().Before(at) {
			t.Fatal("delayed message delivered early")
		}
		got[string(m.Payload)] = m
	}
	now, later := got["now"], got["later"]
	if now == nil || later == nil {
		t.Fatalf("want the messages \"now\" and \"later\", got %v", got)
	}
	if !now.DeliverAt.IsZero() || len(now.Properties) != 1 || now.Properties["a"] != "1" {
		t.Fatalf("undelayed message: %+v", now)
	}
	if !later.DeliverAt.Equal(at) || later.Properties != nil {
		t.Fatalf("delayed message: DeliverAt %v (want %v), properties %v", later.DeliverAt, at, later.Properties)
	}
}

// adminGet reads an admin REST resource into v.
func adminGet(t *testing.T, path string, v any) int {
	t.Helper()
	_, adm := pulsartest.URLs(t)
	resp, err := http.Get(strings.TrimSuffix(adm, "/") + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK && v != nil {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
	}
	return resp.StatusCode
}

// deleteTopics deletes topics (full names, not partitioned) through the
// admin API, forced; a failure is only logged.
func deleteTopics(t testing.TB, topics ...string) {
	t.Helper()
	_, adm := pulsartest.URLs(t)
	for _, topic := range topics {
		req, err := http.NewRequest(http.MethodDelete, strings.TrimSuffix(adm, "/")+"/admin/v2/persistent/"+strings.TrimPrefix(topic, "persistent://")+"?force=true", nil)
		if err != nil {
			t.Logf("delete %s: %v", topic, err)
			continue
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Logf("delete %s: %v", topic, err)
			continue
		}
		_ = resp.Body.Close()
		if resp.StatusCode >= 300 && resp.StatusCode != http.StatusNotFound {
			t.Logf("delete %s: %s", topic, resp.Status)
		}
	}
}

// eventually polls check (topic policies propagate through a system topic).
func eventually(t *testing.T, what string, check func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, got := check()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: got %s", what, got)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestEnsureTopic(t *testing.T) {
	t.Parallel()
	b := newBus(t)
	ctx := ctxFor(t, 2*time.Minute)
	ns := b.Namespace()
	type retention struct {
		RetentionTimeInMinutes int   `json:"retentionTimeInMinutes"`
		RetentionSizeInMB      int64 `json:"retentionSizeInMB"`
	}
	t.Run("namespace policies", func(t *testing.T) {
		var r retention
		adminGet(t, "/admin/v2/namespaces/"+ns.String()+"/retention", &r)
		want := retention{int(pulsarbus.DefaultRetentionTime / time.Minute), pulsarbus.DefaultRetentionSizeMB}
		if r != want {
			t.Fatalf("namespace retention %+v, want %+v", r, want)
		}
		var policies struct {
			Dedup *bool `json:"deduplicationEnabled"`
		}
		adminGet(t, "/admin/v2/namespaces/"+ns.String(), &policies)
		if policies.Dedup == nil || !*policies.Dedup {
			t.Fatalf("namespace deduplication not turned on: %+v", policies)
		}
	})
	partitions := func(topic string) int {
		var md struct{ Partitions int }
		adminGet(t, "/admin/v2/persistent/"+ns.String()+"/"+topic+"/partitions", &md)
		return md.Partitions
	}
	plain, parted := topicName(t)+"-plain", topicName(t)+"-parted"
	steps := []struct {
		name       string
		spec       bus.TopicSpec
		bad        bool
		partitions int
	}{
		{"create plain", bus.TopicSpec{Name: plain}, false, 0},
		{"plain again", bus.TopicSpec{Name: plain}, false, 0},
		{"plain asked with partitions", bus.TopicSpec{Name: plain, Partitions: 2}, true, 0},
		{"create partitioned", bus.TopicSpec{Name: parted, Partitions: 2}, false, 2},
		{"partitioned again", bus.TopicSpec{Name: parted, Partitions: 2}, false, 2},
		{"grow", bus.TopicSpec{Name: parted, Partitions: 3}, false, 3},
		{"shrink", bus.TopicSpec{Name: parted, Partitions: 2}, true, 3},
		{"partitioned asked without", bus.TopicSpec{Name: parted}, true, 3},
		{"negative partitions", bus.TopicSpec{Name: parted, Partitions: -1}, true, 3},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			err := b.EnsureTopic(ctx, st.spec)
			if st.bad != errors.Is(err, bus.ErrBadOptions) || !st.bad && err != nil {
				t.Fatalf("EnsureTopic(%+v): %v (want bad options: %v)", st.spec, err, st.bad)
			}
			if got := partitions(st.spec.Name); got != st.partitions {
				t.Fatalf("%s has %d partitions, want %d", st.spec.Name, got, st.partitions)
			}
		})
	}
	if code := adminGet(t, "/admin/v2/persistent/"+ns.String()+"/"+plain+"/internalStats", nil); code != http.StatusOK {
		t.Fatalf("plain topic does not exist: %d", code)
	}
	policyCases := []struct {
		name       string
		spec       bus.TopicSpec
		retention  retention
		compaction int64 // 0: none set
	}{
		{"compacted keeps everything", bus.TopicSpec{Compacted: true}, retention{-1, -1}, pulsarbus.DefaultCompactionThresholdBytes},
		{"own retention", bus.TopicSpec{RetentionTime: 2 * time.Hour, RetentionSizeMB: 100}, retention{120, 100}, 0},
		{"own time, namespace size", bus.TopicSpec{RetentionTime: -1, Partitions: 2}, retention{-1, pulsarbus.DefaultRetentionSizeMB}, 0},
	}
	for _, tc := range policyCases {
		t.Run(tc.name, func(t *testing.T) {
			tc.spec.Name = topicName(t)
			for range 2 { // idempotent
				if err := b.EnsureTopic(ctx, tc.spec); err != nil {
					t.Fatal(err)
				}
			}
			base := "/admin/v2/persistent/" + ns.String() + "/" + tc.spec.Name
			eventually(t, "topic retention", func() (bool, string) {
				var r retention
				code := adminGet(t, base+"/retention", &r)
				return r == tc.retention, fmt.Sprintf("%d %+v, want %+v", code, r, tc.retention)
			})
			if tc.compaction != 0 {
				eventually(t, "compaction threshold", func() (bool, string) {
					var n int64
					code := adminGet(t, base+"/compactionThreshold", &n)
					return n == tc.compaction, fmt.Sprintf("%d %d", code, n)
				})
			}
		})
	}
}

// TestCompactionRuns: the compaction threshold EnsureTopic sets makes the
// broker compact the topic by itself (its compaction monitor runs every
// brokerServiceCompactionMonitorIntervalInSeconds, 60s on the test broker).
func TestCompactionRuns(t *testing.T) {
	t.Parallel()
	svc, adm := pulsartest.URLs(t)
	ctx := ctxFor(t, 4*time.Minute)
	b, err := pulsarbus.New(ctx, pulsarbus.Config{ServiceURL: svc, AdminURL: adm,
		Namespace: bus.Namespace{Tenant: "public", Namespace: "pulsarbus-test"}, CompactionThresholdBytes: 100}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	topic := topicName(t)
	if err := b.EnsureTopic(ctx, bus.TopicSpec{Name: topic}); err != nil {
		t.Fatal(err)
	}
	p := mustProducer(t, b, bus.ProducerOptions{Topic: topic})
	for i := range 40 {
		if _, err := p.Send(ctx, &bus.OutMessage{Key: fmt.Sprint("k", i%4), Payload: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	// Compaction turned on after the writes, so that it cannot run halfway
	// through them.
	if err := b.EnsureTopic(ctx, bus.TopicSpec{Name: topic, Compacted: true}); err != nil {
		t.Fatal(err)
	}
	path := "/admin/v2/persistent/" + b.Namespace().String() + "/" + topic + "/internalStats"
	deadline := time.Now().Add(3 * time.Minute)
	for {
		var st struct {
			CompactedLedger struct {
				LedgerID int64 `json:"ledgerId"`
				Entries  int64 `json:"entries"`
			} `json:"compactedLedger"`
		}
		adminGet(t, path, &st)
		if st.CompactedLedger.LedgerID > 0 && st.CompactedLedger.Entries > 0 {
			if st.CompactedLedger.Entries != 4 {
				t.Fatalf("compacted ledger has %d entries, want one per key (4)", st.CompactedLedger.Entries)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the broker did not compact %s within 3 minutes: %+v", topic, st)
		}
		time.Sleep(2 * time.Second)
	}
	r, err := b.Reader(ctx, bus.ReaderOptions{Topic: topic, Compacted: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var got []string
	for {
		ok, err := r.HasNext(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		m, err := r.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m.Key+"="+string(m.Payload))
	}
	if want := []string{"k0=36", "k1=37", "k2=38", "k3=39"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("compacted view %v, want %v", got, want)
	}
}

// TestNackOneOfHeld: on Exclusive and Failover subscriptions the broker
// answers a nack by redelivering everything unacknowledged (to keep order);
// the messages the application still holds are not delivered twice.
func TestNackOneOfHeld(t *testing.T) {
	t.Parallel()
	for _, typ := range []bus.SubscriptionType{bus.Exclusive, bus.Failover, bus.Shared} {
		t.Run(typ.String(), func(t *testing.T) {
			t.Parallel()
			b := newBus(t)
			topic := topicName(t)
			o := bus.SubscribeOptions{Topic: topic, Subscription: "s", Type: typ, NackDelay: 100 * time.Millisecond}
			c := mustSubscribe(t, b, o)
			p := mustProducer(t, b, bus.ProducerOptions{Topic: topic})
			ctx := ctxFor(t, time.Minute)
			for i := range 3 {
				if _, err := p.Send(ctx, &bus.OutMessage{Key: "k", Payload: []byte(fmt.Sprint(i))}); err != nil {
					t.Fatal(err)
				}
			}
			var held []*bus.Message
			for i := range 3 {
				held = append(held, receive(t, c, fmt.Sprint("message ", i)))
			}
			c.Nack(held[1], errors.New("retry"))
			again := receive(t, c, "the nacked message")
			if string(again.Payload) != "1" || again.RedeliveryCount != 1 {
				t.Fatalf("got %q (redelivery %d), want message 1 again", again.Payload, again.RedeliveryCount)
			}
			quiet(t, c, "after the redelivery")
			for _, m := range []*bus.Message{held[0], held[2], again} {
				mustAck(t, c, m)
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			quiet(t, mustSubscribe(t, b, o), "on a new consumer")
		})
	}
}

// TestSendInEndedTransaction: a transaction the broker ended behind the
// client's back makes the broker answer a send in it with NotAllowedError
// ("Transaction [(0,117)] has been ended"; the chaos kit saw it after a
// broker restart and under load). That send fails at once with
// bus.ErrTxFailed and the producer goes on: plain sends after it arrive.
// (The vendored client detached the producer from its connection on
// NotAllowedError: no receipt reached it any more and every later send
// timed out, the chaos kit's finding (B); see
// third_party/pulsar-client-go/PULSAGA.md.)
//
// How the test gets the broker to refuse: transaction A is aborted through
// the admin API (the client still thinks it open). A topic refuses a
// transaction at or below its low-water mark, which the coordinator passes
// along when a transaction that wrote to the topic ends: the lowest open
// transaction's id minus one. So short transactions B write to the topic
// and commit until every transaction older than A (other tests' too) has
// ended and a send in A is refused.
func TestSendInEndedTransaction(t *testing.T) {
	b := newBus(t)
	ctx := ctxFor(t, 4*time.Minute)
	topic := topicName(t)
	p, err := b.Producer(ctx, bus.ProducerOptions{Topic: topic, SendTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c, err := b.Subscribe(ctx, bus.SubscribeOptions{Topic: topic, Subscription: "s", Type: bus.Exclusive})
	if err != nil {
		t.Fatal(err)
	}
	tx, err := b.BeginTx(ctx, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Send(ctx, &bus.OutMessage{Key: "k", Payload: []byte("in the transaction"), Tx: tx}); err != nil {
		t.Fatal(err)
	}
	most, least := pulsarbus.TxID(tx)
	_, adm := pulsartest.URLs(t)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("%s/admin/v3/transactions/abortTransaction/%d/%d", adm, most, least), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("abort transaction (%d,%d) through the admin API: %s %s", most, least, resp.Status, body)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for round := 1; ; round++ {
		if time.Now().After(deadline) {
			t.Fatalf("the broker still accepted sends in the aborted transaction (%d,%d) after %d rounds: "+
				"a transaction older than it stayed open for 2 minutes; open for over a minute: %s",
				most, least, round, slowTransactions(ctx, adm, time.Minute))
		}
		later, err := b.BeginTx(ctx, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Send(ctx, &bus.OutMessage{Key: "later", Payload: []byte("later"), Tx: later}); err != nil {
			t.Fatal(err)
		}
		if err := later.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err = p.Send(ctx, &bus.OutMessage{Key: "k", Payload: []byte("after the abort"), Tx: tx})
		if err == nil {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		if !errors.Is(err, bus.ErrTxFailed) || !strings.Contains(err.Error(), "has been ended") || time.Since(start) > 8*time.Second {
			t.Fatalf("send in an aborted transaction: %v after %s, want bus.ErrTxFailed (NotAllowed: has been ended) at once", err, time.Since(start))
		}
		t.Logf("round %d: refused: %v", round, err)
		break
	}
	for i := range 3 {
		if _, err := p.Send(ctx, &bus.OutMessage{Key: "k", Payload: fmt.Appendf(nil, "plain %d", i)}); err != nil {
			t.Fatalf("plain send %d after the refused one: %v", i, err)
		}
	}
	for i := 0; i < 3; {
		rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		m, err := c.Receive(rctx)
		cancel()
		if err != nil {
			t.Fatalf("plain message %d: %v", i, err)
		}
		_ = c.Ack(ctx, m)
		switch string(m.Payload) {
		case "later": // the committed transactions B
		case fmt.Sprintf("plain %d", i):
			i++
		default:
			t.Fatalf("plain message %d: got %q (a message of the aborted transaction?)", i, m.Payload)
		}
	}
	// A transaction begun after the refusal writes to the topic too. A
	// broker whose transaction buffer chains every transactional write to
	// a topic on the one before it (Pulsar 3.2 to 4.0.7,
	// apache/pulsar#24945) refuses it, and every later one, until the
	// topic is unloaded: one deposed owner's late send would stop every
	// orchestrator's batches on a shared topic. The bus unloads such a
	// topic when the broker refuses a transactional send (txbuffer.go), so
	// a new transaction writes again within seconds.
	healed := time.Now()
	var fresh bus.Tx
	for try := 1; ; try++ {
		if fresh, err = b.BeginTx(ctx, time.Minute); err != nil {
			t.Fatal(err)
		}
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err = p.Send(sctx, &bus.OutMessage{Key: "k", Payload: []byte("fresh"), Tx: fresh})
		if err == nil {
			err = fresh.Commit(sctx)
		}
		cancel()
		if err == nil {
			t.Logf("a new transaction wrote after %d tries, %s (topics unloaded by the bus: %d)", try, time.Since(healed).Round(time.Millisecond), b.TxBufferUnloads())
			break
		}
		_ = fresh.Abort(ctx)
		if time.Since(healed) > time.Minute {
			t.Fatalf("a new transaction cannot write to the topic a minute after a send in an ended one was refused "+
				"(the broker's transaction buffer is stuck, apache/pulsar#24945, and the bus did not heal it: %d unloads): %v", b.TxBufferUnloads(), err)
		}
		t.Logf("try %d: %v", try, err)
		time.Sleep(500 * time.Millisecond)
	}
	for {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		m, err := c.Receive(rctx)
		cancel()
		if err != nil {
			t.Fatalf("the new transaction's message: %v", err)
		}
		_ = c.Ack(ctx, m)
		if string(m.Payload) == "fresh" {
			break
		}
		if string(m.Payload) != "later" {
			t.Fatalf("got %q, want the new transaction's message", m.Payload)
		}
	}
}

// TestReaderHasNextAfterCancelledCalls: HasNext calls whose context ends
// before the broker answers leave the client's HasNext running; the calls
// after them wait for it instead of running another at once (the client's
// HasNext is not safe for concurrent use: -race found it in the chaos kit's
// status watcher), and the answer is still right.
func TestReaderHasNextAfterCancelledCalls(t *testing.T) {
	b := newBus(t)
	ctx := ctxFor(t, time.Minute)
	topic := topicName(t)
	p, err := b.Producer(ctx, bus.ProducerOptions{Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Send(ctx, &bus.OutMessage{Key: "k", Payload: []byte("one")}); err != nil {
		t.Fatal(err)
	}
	r, err := b.Reader(ctx, bus.ReaderOptions{Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	done, cancel := context.WithCancel(ctx)
	cancel()
	for range 20 {
		if _, err := r.HasNext(done); err != nil && !errors.Is(err, context.Canceled) {
			t.Fatalf("has next with an ended context: %v", err)
		}
	}
	ok, err := r.HasNext(ctx)
	if err != nil || !ok {
		t.Fatalf("has next: %v, %v; want true (one message on the topic)", ok, err)
	}
	m, err := r.Next(ctx)
	if err != nil || string(m.Payload) != "one" {
		t.Fatalf("next: %v, %v", m, err)
	}
}

// slowTransactions is what the broker's admin API says of the transactions
// open for longer than d (their ids, timeouts and partitions), to name the
// one that holds a transaction coordinator's low-water mark back.
func slowTransactions(ctx context.Context, adminURL string, d time.Duration) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/admin/v3/transactions/slowTransactions/%d", adminURL, d.Milliseconds()), nil)
	if err != nil {
		return err.Error()
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.Status + " " + string(body)
}
