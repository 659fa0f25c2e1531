package protocol

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
)

// FuzzWireTypes: the payload decoders of the relays and the engine
// (bus.JSON over each wire type with a Validate) never panic, and what
// they accept is valid again after a JSON round trip.
func FuzzWireTypes(f *testing.F) {
	for _, s := range []string{
		`{"timer_id":"t","process_id":"p","kind":"sleep","fire_at":"2026-12-03T00:00:00Z","target":"events","hops":2}`,
		`{"timer_id":"t","process_id":"p","fire_at":"tomorrow","target":"events"}`,
		`{"process_id":"p","definition":"d","version":1,"input":{"x":[1,2]}}`,
		`{"task_id":"t","process_id":"p","definition":"d","events":[],"now":"2026-12-03T00:00:00Z","reply_to":"events"}`,
		`{"command_id":"c","process_id":"p","step":"s","attempt":1,"service":"x","command":"Do","reply_to":"events","idempotency_key":"k"}`,
		`{"command_id":"c","process_id":"p","step":"s","attempt":1,"status":"failed","error":{"type":"T","message":"m"}}`,
		`null`, `[]`, `{"fire_at":1}`, `{}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		env := &bus.Envelope{V: bus.EnvelopeVersion, Type: "x", ID: "1", Time: time.Unix(0, 0), Payload: payload}
		check := func(name string, v any, err error) {
			if err != nil {
				return
			}
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatalf("%s: marshal accepted %+v: %v", name, v, err)
			}
			if _, err := bus.JSON[json.RawMessage](&bus.Envelope{Type: "x", Payload: b}); err != nil {
				t.Fatalf("%s: %s is not JSON again: %v", name, b, err)
			}
		}
		tm, err := bus.JSON[Timer](env)
		check("timer", tm, err)
		if err == nil {
			if _, err := json.Marshal(tm); err != nil || tm.Validate() != nil {
				t.Fatalf("accepted timer %+v invalid", tm)
			}
		}
		st, err := bus.JSON[StartRequest](env)
		check("start", st, err)
		if err == nil && st.Validate() != nil {
			t.Fatalf("accepted start %+v invalid", st)
		}
		dt, err := bus.JSON[DecisionTask](env)
		check("decision task", dt, err)
		cmd, err := bus.JSON[Command](env)
		check("command", cmd, err)
		res, err := bus.JSON[Result](env)
		check("result", res, err)
	})
}
