package protocol

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
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
	cmdSchema, resSchema, progSchema := compile(t, "command.schema.json"), compile(t, "result.schema.json"), compile(t, "progress.schema.json")
	item := 2
	cmd := &Command{
		CommandID: "p1/flight/2", ProcessID: "p1", Definition: "trip-booking", Version: 1, Step: "flight", Item: &item,
		Attempt: 2, Service: "flights", Command: "BookFlight", Input: json.RawMessage(`{"seat":"12A"}`),
		IdempotencyKey: "p1/flight[2]", Deadline: time.Date(2026, 1, 1, 0, 0, 30, 0, time.UTC), ReplyTo: "persistent://public/pulsaga/events",
		TimeoutMS: 30000, ScheduleTimeoutMS: 300000, HeartbeatTimeoutMS: 10000,
	}
	comp := *cmd
	comp.CommandID, comp.Command, comp.Compensation, comp.IdempotencyKey = "p1/flight[2]/compensate/1", "CancelFlight", true, "p1/flight[2]/compensate"
	comp.Compensates, comp.OutcomeUnknown = "p1/flight[2]", true
	started := ProgressFor(cmd, "w-1", time.Date(2026, 1, 1, 0, 0, 1, 0, time.UTC))
	started.Delivery = 1
	beat := ProgressFor(&comp, "w-1", time.Date(2026, 1, 1, 0, 0, 2, 0, time.UTC))
	noAttempt := &Progress{CommandID: "x", ProcessID: "p", Step: "s"}
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
		{"compensation of an unknown outcome", cmdSchema, asJSON(t, &comp), true, comp.Validate},
		{"started", progSchema, asJSON(t, started), true, started.Validate},
		{"heartbeat of a compensation", progSchema, asJSON(t, beat), true, beat.Validate},
		{"progress without an attempt", progSchema, asJSON(t, noAttempt), false, noAttempt.Validate},
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

// Every field the Go types write is documented in their schema, and the
// schema documents no field the code does not have.
func TestSchemasNameEveryField(t *testing.T) {
	for _, tc := range []struct {
		schema string
		typ    any
	}{
		{"command.schema.json", Command{}},
		{"result.schema.json", Result{}},
		{"progress.schema.json", Progress{}},
	} {
		t.Run(tc.schema, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("..", "docs", "schemas", tc.schema))
			if err != nil {
				t.Fatal(err)
			}
			var doc struct {
				Properties map[string]json.RawMessage `json:"properties"`
			}
			if err := json.Unmarshal(raw, &doc); err != nil {
				t.Fatal(err)
			}
			fields := map[string]bool{}
			rt := reflect.TypeOf(tc.typ)
			for i := range rt.NumField() {
				name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
				if name == "" || name == "-" {
					continue
				}
				fields[name] = true
				if _, ok := doc.Properties[name]; !ok {
					t.Errorf("field %s of %s is not in the schema", name, rt.Name())
				}
			}
			for name := range doc.Properties {
				if !fields[name] {
					t.Errorf("the schema documents %s, which %s does not have", name, rt.Name())
				}
			}
		})
	}
}
