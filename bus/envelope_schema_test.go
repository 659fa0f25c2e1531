package bus_test

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/pulsaga/pulsaga/bus"
)

const schemaPath = "../docs/schemas/envelope.schema.json"

func envelopeSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatalf("%s: %v", schemaPath, err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource(schemaPath, doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(schemaPath)
	if err != nil {
		t.Fatalf("compile %s: %v", schemaPath, err)
	}
	return sch
}

func validate(t *testing.T, sch *jsonschema.Schema, b []byte) error {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		return err
	}
	return sch.Validate(v)
}

// TestEnvelopeSchemaVersion keeps the schema's version in step with the
// code.
func TestEnvelopeSchemaVersion(t *testing.T) {
	raw, err := os.ReadFile(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Properties struct {
			V struct {
				Const int `json:"const"`
			} `json:"v"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	if s.Properties.V.Const != bus.EnvelopeVersion {
		t.Fatalf("schema describes envelope version %d, the code writes %d", s.Properties.V.Const, bus.EnvelopeVersion)
	}
}

// TestEnvelopeSchemaMatchesEncode: what Encode writes is valid.
func TestEnvelopeSchemaMatchesEncode(t *testing.T) {
	sch := envelopeSchema(t)
	at := time.Date(2026, 11, 25, 19, 0, 0, 123456789, time.UTC)
	full, err := bus.NewEnvelope("step.completed", "evt-1", "trip-42", at, map[string]any{"payment_id": "p-1", "amount": 12.5})
	if err != nil {
		t.Fatal(err)
	}
	full.CausationID = "cmd-7"
	full.Traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	cases := []struct {
		name string
		env  *bus.Envelope
	}{
		{"every field", full},
		{"only what is required", &bus.Envelope{Type: "process.start", ID: "s-1", Time: at}},
		{"zero time", &bus.Envelope{Type: "x", ID: "1"}},
		{"payload is an array", &bus.Envelope{Type: "x", ID: "1", Time: at, Payload: json.RawMessage(`[1,2]`)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.env.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if err := validate(t, sch, b); err != nil {
				t.Fatalf("Encode wrote %s, which the schema rejects: %v", b, err)
			}
		})
	}
}

// TestEnvelopeSchemaExamples checks hand-written envelopes, as a worker in
// another language would write them, against the schema and the decoder.
func TestEnvelopeSchemaExamples(t *testing.T) {
	sch := envelopeSchema(t)
	cases := []struct {
		name        string
		json        string
		schemaValid bool
		decodes     bool // DecodeEnvelope accepts it (it is more lenient)
	}{
		{"worker result", `{"v":1,"type":"step.completed","id":"r-1","process_id":"trip-42","causation_id":"cmd-7","time":"2026-11-25T19:00:00Z","payload":{"flight":"LH123"}}`, true, true},
		{"time with offset", `{"v":1,"type":"x","id":"1","time":"2026-11-25T20:00:00.5+01:00"}`, true, true},
		{"null payload", `{"v":1,"type":"x","id":"1","time":"2026-11-25T19:00:00Z","payload":null}`, true, true},
		{"missing id", `{"v":1,"type":"x","time":"2026-11-25T19:00:00Z"}`, false, false},
		{"empty type", `{"v":1,"type":"","id":"1","time":"2026-11-25T19:00:00Z"}`, false, false},
		{"missing version", `{"type":"x","id":"1","time":"2026-11-25T19:00:00Z"}`, false, false},
		{"newer version", `{"v":2,"type":"x","id":"1","time":"2026-11-25T19:00:00Z"}`, false, false},
		{"version as string", `{"v":"1","type":"x","id":"1","time":"2026-11-25T19:00:00Z"}`, false, false},
		{"id as number", `{"v":1,"type":"x","id":1,"time":"2026-11-25T19:00:00Z"}`, false, false},
		{"time not RFC 3339", `{"v":1,"type":"x","id":"1","time":"25/11/2026 19:00"}`, false, false},
		{"missing time", `{"v":1,"type":"x","id":"1"}`, false, true},
		{"misspelt field", `{"v":1,"type":"x","id":"1","time":"2026-11-25T19:00:00Z","processId":"p"}`, false, true},
		{"bad traceparent", `{"v":1,"type":"x","id":"1","time":"2026-11-25T19:00:00Z","traceparent":"abc"}`, false, true},
		{"not an object", `[1,2,3]`, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := validate(t, sch, []byte(tc.json))
			if (err == nil) != tc.schemaValid {
				t.Errorf("schema valid = %v (%v), want %v", err == nil, err, tc.schemaValid)
			}
			_, derr := bus.DecodeEnvelope([]byte(tc.json))
			if (derr == nil) != tc.decodes {
				t.Errorf("DecodeEnvelope error = %v, want accepted = %v", derr, tc.decodes)
			}
		})
	}
}
