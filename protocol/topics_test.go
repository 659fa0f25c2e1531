package protocol

import (
	"encoding/json"
	"errors"
	"testing"
	"time"
)

func TestTopicsWithDefaults(t *testing.T) {
	got := Topics{Events: "ev", Partitions: 2}.WithDefaults()
	want := DefaultTopics()
	want.Events, want.Partitions = "ev", 2
	if got != want {
		t.Fatalf("WithDefaults = %+v, want %+v", got, want)
	}
	if (Topics{}).WithDefaults() != DefaultTopics() {
		t.Fatal("the zero Topics does not default to DefaultTopics")
	}
}

func TestTopicsSpecsNameEveryTopic(t *testing.T) {
	tp := DefaultTopics()
	names := map[string]bool{}
	for _, s := range tp.Specs() {
		if names[s.Name] {
			t.Errorf("%s specified twice", s.Name)
		}
		names[s.Name] = true
	}
	for _, n := range []string{tp.Events, tp.History, tp.Snapshots, tp.Status, tp.Definitions, tp.Decisions, tp.Starts, tp.Timers} {
		if !names[n] {
			t.Errorf("Specs lacks %s", n)
		}
	}
}

func TestJobTopics(t *testing.T) {
	tests := []struct {
		name, topic, service string
		ok                   bool
	}{
		{"short", "jobs.payments", "payments", true},
		{"full", "persistent://public/pulsaga/jobs.hotels", "hotels", true},
		{"no service", "jobs.", "", false},
		{"not a job queue", "events", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, ok := JobService(tc.topic)
			if s != tc.service || ok != tc.ok {
				t.Fatalf("JobService(%q) = %q, %v; want %q, %v", tc.topic, s, ok, tc.service, tc.ok)
			}
		})
	}
	if JobTopic("x") != "jobs.x" || JobTopicSpec("x").Name != "jobs.x" {
		t.Fatal("JobTopic is not jobs.<service>")
	}
	if DeadLetterTopic("persistent://t/n/timers", TimerRelaySubscription) != "timers-timer-relay-DLQ" {
		t.Fatalf("DeadLetterTopic = %s", DeadLetterTopic("persistent://t/n/timers", TimerRelaySubscription))
	}
}

func TestStartRequestValidate(t *testing.T) {
	tests := []struct {
		name string
		req  StartRequest
		ok   bool
	}{
		{"valid", StartRequest{ProcessID: "p", Definition: "d", Input: json.RawMessage(`{"a":1}`)}, true},
		{"no input", StartRequest{ProcessID: "p", Definition: "d"}, true},
		{"no process id", StartRequest{Definition: "d"}, false},
		{"no definition", StartRequest{ProcessID: "p"}, false},
		{"negative version", StartRequest{ProcessID: "p", Definition: "d", Version: -1}, false},
		{"input not JSON", StartRequest{ProcessID: "p", Definition: "d", Input: json.RawMessage(`{`)}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.req.Validate()
			if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrInvalid)) {
				t.Fatalf("Validate() = %v, want ok=%v", err, tc.ok)
			}
		})
	}
	if err := (&DecisionTask{TaskID: "t", ProcessID: "p", Now: time.Now()}).Validate(); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a task without reply_to: %v", err)
	}
}
