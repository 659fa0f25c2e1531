package protocol

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

func compile(t *testing.T, name string) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	s, err := c.Compile(filepath.Join("..", "docs", "schemas", name))
	if err != nil {
		t.Fatalf("compile %s: %v", name, err)
	}
	return s
}

func asJSON(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// The documented schemas accept what the Go code writes and reject what
// the engine refuses.
func TestSchemasMatchTheCode(t *testing.T) {
	cmdSchema, resSchema := compile(t, "command.schema.json"), compile(t, "result.schema.json")
	item := 2
	cmd := &Command{
		CommandID: "p1/flight/2", ProcessID: "p1", Definition: "trip-booking", Version: 1, Step: "flight", Item: &item,
		Attempt: 2, Service: "flights", Command: "BookFlight", Input: json.RawMessage(`{"seat":"12A"}`),
		IdempotencyKey: "p1/flight/2", Deadline: time.Date(2026, 1, 1, 0, 0, 30, 0, time.UTC), ReplyTo: "persistent://public/pulsaga/events",
	}
	ok := ResultFor(cmd)
	ok.Status, ok.Output = StatusCompleted, json.RawMessage(`{"booking":"F1"}`)
	failed := ResultFor(cmd)
	failed.Status, failed.Error = StatusFailed, &Error{Type: "NoSeats", Message: "full", Retryable: false}
	tests := []struct {
		name   string
		schema *jsonschema.Schema
		doc    any
		valid  bool
		code   func() error
	}{
		{"command", cmdSchema, asJSON(t, cmd), true, cmd.Validate},
		{"command without reply_to", cmdSchema, asJSON(t, &Command{CommandID: "x", ProcessID: "p", Step: "s", Attempt: 1, Service: "s", Command: "C", IdempotencyKey: "k"}), false,
			(&Command{CommandID: "x", ProcessID: "p", Step: "s", Attempt: 1, Service: "s", Command: "C", IdempotencyKey: "k"}).Validate},
		{"completed result", resSchema, asJSON(t, ok), true, ok.Validate},
		{"failed result", resSchema, asJSON(t, failed), true, failed.Validate},
		{"failed result without error", resSchema, asJSON(t, &Result{CommandID: "x", ProcessID: "p", Step: "s", Attempt: 1, Status: StatusFailed}), false,
			(&Result{CommandID: "x", ProcessID: "p", Step: "s", Attempt: 1, Status: StatusFailed}).Validate},
		{"result with an unknown status", resSchema, asJSON(t, &Result{CommandID: "x", ProcessID: "p", Step: "s", Attempt: 1, Status: "done"}), false,
			(&Result{CommandID: "x", ProcessID: "p", Step: "s", Attempt: 1, Status: "done"}).Validate},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.schema.Validate(tc.doc)
			if (err == nil) != tc.valid {
				t.Errorf("schema: valid=%v, want %v (%v)", err == nil, tc.valid, err)
			}
			if cerr := tc.code(); (cerr == nil) != tc.valid {
				t.Errorf("Validate(): valid=%v, want %v (%v)", cerr == nil, tc.valid, cerr)
			}
		})
	}
}
