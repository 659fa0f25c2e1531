package bus_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/pulsaga/pulsaga/bus"
)

// FuzzDecodeEnvelope: DecodeEnvelope never panics, fails only with a
// *DecodeError under one of its sentinels, and whatever it accepts
// round-trips through Encode.
func FuzzDecodeEnvelope(f *testing.F) {
	for _, s := range []string{
		`{"v":1,"type":"step.completed","id":"e1","process_id":"p","causation_id":"c","time":"2026-11-25T19:00:00Z","traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","payload":{"a":[1,2,{"b":null}]}}`,
		`{"v":1,"type":"x","id":"1","time":"2026-11-25T20:00:00.123456789+01:00","payload":null}`,
		`{"v":1,"type":"x","id":"1"}`,
		`{"v":2,"type":"x","id":"1"}`,
		`{"v":0}`,
		`{"v":1,"type":"x","id":"1"} {}`,
		`{"v":1,"type":"x","id":"\ud800","payload":  [ 1 , "x" ] }`,
		"\x00garbage",
		``,
		`null`,
		`[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := bus.DecodeEnvelope(b)
		if err != nil {
			var de *bus.DecodeError
			if !errors.As(err, &de) || de.Reason == "" {
				t.Fatalf("error %v (%T) is not a *DecodeError with a reason", err, err)
			}
			if !errors.Is(err, bus.ErrUndecodable) && !errors.Is(err, bus.ErrUnknownVersion) {
				t.Fatalf("error %v wraps neither ErrUndecodable nor ErrUnknownVersion", err)
			}
			if e != nil {
				t.Fatal("an envelope returned with an error")
			}
			return
		}
		out, err := e.Encode()
		if err != nil {
			t.Fatalf("accepted envelope %+v does not encode: %v", e, err)
		}
		e2, err := bus.DecodeEnvelope(out)
		if err != nil {
			t.Fatalf("encoded %s does not decode: %v", out, err)
		}
		if e2.V != e.V || e2.Type != e.Type || e2.ID != e.ID || e2.ProcessID != e.ProcessID ||
			e2.CausationID != e.CausationID || e2.Traceparent != e.Traceparent || !e2.Time.Equal(e.Time) {
			t.Fatalf("round trip changed the envelope:\n%+v\n%+v", e, e2)
		}
		if !samePayload(e.Payload, e2.Payload) {
			t.Fatalf("round trip changed the payload: %s -> %s", e.Payload, e2.Payload)
		}
		out2, err := e2.Encode()
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("encoding is not stable: %s then %s (%v)", out, out2, err)
		}
	})
}

func samePayload(a, b json.RawMessage) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	var ca, cb bytes.Buffer
	if json.Compact(&ca, a) != nil || json.Compact(&cb, b) != nil {
		return false
	}
	return bytes.Equal(ca.Bytes(), cb.Bytes())
}
