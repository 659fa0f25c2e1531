package protocol

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func validCommand() Command {
	return Command{
		CommandID: "p1/pay/1", ProcessID: "p1", Step: "pay", Attempt: 1, Service: "payments",
		Command: "ProcessPayment", IdempotencyKey: "p1/pay/1", ReplyTo: "events",
	}
}

func TestCommandValidate(t *testing.T) {
	tests := []struct {
		name    string
		change  func(c *Command)
		wantErr string
	}{
		{"valid", func(*Command) {}, ""},
		{"no command id", func(c *Command) { c.CommandID = "" }, "no command_id"},
		{"no process id", func(c *Command) { c.ProcessID = "" }, "no process_id"},
		{"no command name", func(c *Command) { c.Command = "" }, "no command name"},
		{"no reply topic", func(c *Command) { c.ReplyTo = "" }, "no reply_to"},
		{"attempt 0", func(c *Command) { c.Attempt = 0 }, "attempt 0"},
		{"negative attempt", func(c *Command) { c.Attempt = -2 }, "attempt -2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := validCommand()
			tc.change(&c)
			err := c.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestResultValidate(t *testing.T) {
	c := validCommand()
	tests := []struct {
		name    string
		change  func(r *Result)
		wantErr string
	}{
		{"completed", func(r *Result) { r.Status = StatusCompleted }, ""},
		{"failed with a typed error", func(r *Result) { r.Status, r.Error = StatusFailed, &Error{Type: "NoSeats"} }, ""},
		{"no step", func(r *Result) { r.Status, r.Step = StatusCompleted, "" }, "needs command_id, process_id and step"},
		{"attempt 0", func(r *Result) { r.Status, r.Attempt = StatusCompleted, 0 }, "attempt 0"},
		{"failed without error", func(r *Result) { r.Status = StatusFailed }, "needs an error with a type"},
		{"failed with an untyped error", func(r *Result) { r.Status, r.Error = StatusFailed, &Error{Message: "x"} }, "needs an error with a type"},
		{"no status", func(*Result) {}, `status ""`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := ResultFor(&c)
			tc.change(r)
			err := r.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// Times that are not set are left out of the JSON: a worker in another
// language must not read "0001-01-01T00:00:00Z" as a deadline long past
// and drop the command (docs/protocol.md, rule 3).
func TestUnsetTimesAreOmitted(t *testing.T) {
	c := validCommand()
	r := ResultFor(&c)
	r.Status = StatusCompleted
	tests := []struct {
		name   string
		v      any
		absent []string
	}{
		{"command without a deadline", c, []string{"deadline"}},
		{"result without timings", r, []string{"started_at", "finished_at"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(tc.v)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			for _, k := range tc.absent {
				if v, ok := m[k]; ok {
					t.Errorf("%s is written as %v: %s", k, v, b)
				}
			}
		})
	}
	// And a set deadline survives the round trip.
	c.Deadline = time.Date(2026, 11, 25, 10, 0, 30, 0, time.UTC)
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var back Command
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !back.Deadline.Equal(c.Deadline) {
		t.Fatalf("deadline %v after the round trip, want %v", back.Deadline, c.Deadline)
	}
}

func TestErrorString(t *testing.T) {
	if got := (&Error{Type: "NoSeats", Message: "flight full"}).Error(); got != "NoSeats: flight full" {
		t.Fatalf("Error() = %q", got)
	}
}
