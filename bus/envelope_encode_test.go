package bus_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
)

// TestEncodeEnvelopeSameBytes: EncodeEnvelope writes exactly what
// NewEnvelope(...).Encode() writes, payload appended without recompaction.
func TestEncodeEnvelopeSameBytes(t *testing.T) {
	type inner struct {
		Raw  json.RawMessage `json:"raw,omitempty"`
		Text string          `json:"text"`
		M    map[string]int  `json:"m"`
	}
	var nilMap map[string]int
	var nilPtr *inner
	at := time.Date(2026, 12, 4, 23, 0, 0, 123456789, time.FixedZone("x", 3600))
	tests := []struct {
		name    string
		payload any
	}{
		{"nil payload", nil},
		{"struct", inner{Text: "pay", M: map[string]int{"b": 2, "a": 1}}},
		{"HTML and unicode escaped", inner{Text: "<a href=\"x\">&é\u2028</a>"}},
		{"raw message with spaces", inner{Raw: json.RawMessage("{ \"b\" : [ 1 , 2 ] ,\n \"a\":\"<\" }")}},
		{"bare raw message", json.RawMessage(" [1, {\"x\": null}] ")},
		{"nil map", nilMap},
		{"nil pointer", nilPtr},
		{"string", "hello"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, err := bus.NewEnvelope("step.completed", "id-1", "trip-1", at, tt.payload)
			if err != nil {
				t.Fatal(err)
			}
			env.CausationID, env.Traceparent = "cmd-1", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
			want, err := env.Encode()
			if err != nil {
				t.Fatal(err)
			}
			got, err := bus.EncodeEnvelope(bus.Envelope{Type: "step.completed", ID: "id-1", ProcessID: "trip-1", Time: at,
				CausationID: env.CausationID, Traceparent: env.Traceparent, Payload: json.RawMessage(`"ignored"`)}, tt.payload)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("EncodeEnvelope\n%s\nEncode\n%s", got, want)
			}
			if _, err := bus.DecodeEnvelope(got); err != nil {
				t.Fatal(err)
			}
		})
	}
	if _, err := bus.EncodeEnvelope(bus.Envelope{ID: "id", Time: at}, nil); !errors.Is(err, bus.ErrBadOptions) {
		t.Errorf("no type: %v, want ErrBadOptions", err)
	}
	if _, err := bus.EncodeEnvelope(bus.Envelope{Type: "t", ID: "id", Time: at}, func() {}); err == nil {
		t.Error("an unmarshalable payload encoded")
	}
}
