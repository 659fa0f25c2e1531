package pulsarbus_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/pulsarbus"
	"github.com/pulsaga/pulsaga/internal/pulsartest"
)

// TestFencingMeetsClose: an owner closing its fencing producer while the
// next owner's fencing producer takes the topic, over and over, as
// orchestrators hand partitions over. Pulsar's broker deadlocks two of its
// IO threads when a client's CLOSE_PRODUCER meets the fencing of that
// producer (the producer's monitor against the topic's lock), after which
// every connection those threads take never gets its handshake answered:
// the wedge that failed a CI run and a chaos run. With graceful closes a
// loop like this one wedged a 4.0.7 standalone after ~30 s (8 clients);
// pulsarbus closes fencing producers on the client only
// (third_party/pulsar-client-go/PULSAGA.md), and the loop must run its
// course with the broker answering. The race is rare (the same loop ran
// 73,000 hand-overs in 90 s without it through pulsarbus with graceful
// closes): what the test pins down for sure is that a closed fencing
// producer sends no CLOSE_PRODUCER — the broker still lists it until the
// next owner fences it out.
func TestFencingMeetsClose(t *testing.T) {
	const owners = 6
	buses := make([]*pulsarbus.Bus, owners)
	for i := range buses {
		buses[i] = newBus(t)
	}
	ctx := ctxFor(t, 3*time.Minute)
	topic := topicName(t)
	open := func(b *pulsarbus.Bus) (bus.Producer, error) {
		return b.Producer(ctx, bus.ProducerOptions{Topic: topic, AccessMode: bus.AccessExclusiveWithFencing, SendTimeout: 10 * time.Second})
	}
	cur, err := open(buses[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cur.Send(ctx, &bus.OutMessage{Key: "k", Payload: []byte("first")}); err != nil {
		t.Fatal(err)
	}
	_ = cur.Close()
	if n := publishers(t, topic); n != 1 {
		t.Fatalf("a closed fencing producer: the broker lists %d producers on the topic, want 1 (no CLOSE_PRODUCER sent)", n)
	}
	if cur, err = open(buses[1]); err != nil {
		t.Fatal(err)
	}
	if n := publishers(t, topic); n != 1 {
		t.Fatalf("after the next owner fenced: the broker lists %d producers, want 1 (the new one)", n)
	}
	run := 10 * time.Second
	start, i := time.Now(), 0
	for ; time.Since(start) < run; i++ {
		var next bus.Producer
		var nerr error
		var wg sync.WaitGroup
		wg.Go(func() { _ = cur.Close() })
		wg.Go(func() { next, nerr = open(buses[(i*5+1)%owners]) })
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_, adm := pulsartest.URLs(t)
			t.Fatalf("hand-over %d: a close and a fencing producer did not finish within 30 s: the broker is stuck (%s: pulsar.sh health)", i, adm)
		}
		if nerr != nil {
			t.Fatalf("hand-over %d: open the next owner's producer: %v", i, nerr)
		}
		cur = next
	}
	// The last owner writes; the broker answers new connections.
	if _, err := cur.Send(ctx, &bus.OutMessage{Key: "k", Payload: []byte(fmt.Sprint(i))}); err != nil {
		t.Fatalf("after %d hand-overs, the last owner's send: %v", i, err)
	}
	_ = newBus(t)
	t.Logf("%d hand-overs in %s", i, run)
}

// publishers is how many producers the broker lists on a topic of the
// test namespace.
func publishers(t *testing.T, topic string) int {
	t.Helper()
	_, adm := pulsartest.URLs(t)
	resp, err := http.Get(adm + "/admin/v2/persistent/public/pulsarbus-test/" + topic + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Publishers []json.RawMessage `json:"publishers"`
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("topic stats of %s: %s", topic, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return len(st.Publishers)
}
