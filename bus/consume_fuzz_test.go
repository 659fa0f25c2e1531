package bus_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/protocol"
)

// FuzzConsumeStart: whatever bytes arrive, Consume either hands the
// message on as a valid start request (its Validate passes, it survives a
// JSON round trip) or dead-letters it with a reason, exactly one of the two;
// it never panics.
func FuzzConsumeStart(f *testing.F) {
	for _, s := range []string{
		`{"v":1,"type":"start","id":"s1","process_id":"p","time":"2026-12-03T00:00:00Z","payload":{"process_id":"p","definition":"d","input":{"a":1}}}`,
		`{"v":1,"type":"start","id":"s1","process_id":"p","time":"2026-12-03T00:00:00Z","payload":{"definition":"d"}}`,
		`{"v":1,"type":"start","id":"s1","time":"2026-12-03T00:00:00Z","payload":{"process_id":"a b","definition":"d"}}`,
		`{"v":1,"type":"start","id":"s1","time":"2026-12-03T00:00:00Z","payload":{"process_id":"p","definition":"d","version":-3}}`,
		`{"v":1,"type":"signal","id":"s1","time":"2026-12-03T00:00:00Z","payload":{}}`,
		`{"v":1,"type":"start","id":"s1","time":"2026-12-03T00:00:00Z","payload":[1]}`,
		`{"v":9,"type":"start","id":"s1"}`,
		`not json`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		m := &bus.Message{Topic: "persistent://t/n/starts", Key: "k", Payload: payload}
		c := newChanConsumer(m)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		handed, dropped := 0, 0
		err := bus.Consume(ctx, c, bus.ConsumeOptions{BatchWait: -1, Types: []string{protocol.TypeStart},
			OnDrop: func(_ *bus.Message, reason string, err error) {
				if reason == "" || err != nil {
					t.Errorf("dropped with reason %q, error %v", reason, err)
				}
				dropped++
				cancel()
			}},
			bus.JSON[protocol.StartRequest], func(_ context.Context, in []bus.Inbound[protocol.StartRequest]) error {
				for _, x := range in {
					handed++
					if err := x.Value.Validate(); err != nil {
						t.Errorf("handed on an invalid request %+v: %v", x.Value, err)
					}
					b, err := json.Marshal(x.Value)
					if err != nil {
						t.Fatalf("marshal %+v: %v", x.Value, err)
					}
					var back protocol.StartRequest
					if err := json.Unmarshal(b, &back); err != nil || back.Validate() != nil {
						t.Fatalf("%s does not round-trip: %v", b, err)
					}
				}
				cancel()
				return nil
			})
		if err != nil {
			t.Fatalf("Consume: %v", err)
		}
		if handed+dropped != 1 {
			t.Fatalf("handed %d, dead-lettered %d: want exactly one of them", handed, dropped)
		}
		if dropped == 1 && len(c.deadLetters) != 1 {
			t.Fatalf("OnDrop told but %d dead letters", len(c.deadLetters))
		}
	})
}
