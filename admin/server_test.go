package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/workflow"
)

// TestAPI drives the API against a live engine on the embedded bus: one
// paused process, then requests that must fail with a precise answer, then
// the actions that take the process to its end.
func TestAPI(t *testing.T) {
	h := newHarness(t)
	h.startPaused("car-1")

	errorCases := []struct {
		name, method, path, secret, body string
		want                             int
		msg                              string
	}{
		{"no token", "GET", "/api/v1/processes", "", "", 401, "unauthenticated"},
		{"wrong token", "GET", "/api/v1/processes", "nope-nope-nope", "", 401, "unauthenticated"},
		{"read-only token acting", "POST", "/api/v1/processes/car-1/retry", readSecret, `{}`, 403, "this token (viewer) is read-only"},
		{"read-only token registering", "POST", "/api/v1/definitions", readSecret, "name: x", 403, "forbidden"},
		{"unknown process", "GET", "/api/v1/processes/nope", readSecret, "", 404, "no process nope"},
		{"action on unknown process", "POST", "/api/v1/processes/nope/cancel", opSecret, `{}`, 404, "no process nope"},
		{"unknown status filter", "GET", "/api/v1/processes?status=sleeping", readSecret, "", 400, `status "sleeping" is not one of`},
		{"unknown filter", "GET", "/api/v1/processes?colour=red", readSecret, "", 400, `unknown query parameter "colour"`},
		{"bad time", "GET", "/api/v1/processes?started_after=yesterday", readSecret, "", 400, "not an RFC 3339 time"},
		{"bad limit", "GET", "/api/v1/processes?limit=0", readSecret, "", 400, "limit \"0\" must be between 1 and 1000"},
		{"bad cursor", "GET", "/api/v1/processes?cursor=xyz", readSecret, "", 400, "cursor \"xyz\" is not one this server gave"},
		{"version without definition", "GET", "/api/v1/processes?version=2", readSecret, "", 400, "version needs definition"},
		{"malformed body", "POST", "/api/v1/processes/car-1/retry", opSecret, `{"step_id":`, 400, "body:"},
		{"unknown body field", "POST", "/api/v1/processes/car-1/retry", opSecret, `{"stepid":"repair"}`, 400, `unknown field "stepid"`},
		{"skip without step", "POST", "/api/v1/processes/car-1/skip", opSecret, `{}`, 400, "skip needs step_id"},
		{"skip of an unknown step", "POST", "/api/v1/processes/car-1/skip", opSecret, `{"step_id":"paint"}`, 404, `has no step "paint"`},
		{"skip of a completed step", "POST", "/api/v1/processes/car-1/skip", opSecret, `{"step_id":"inspect"}`, 409, "cannot skip step inspect of process car-1: the step is completed and the process paused"},
		{"retry of a completed step", "POST", "/api/v1/processes/car-1/retry", opSecret, `{"step_id":"polish"}`, 409, "cannot retry step polish"},
		{"output on cancel", "POST", "/api/v1/processes/car-1/cancel", opSecret, `{"output":1}`, 400, "output is for skip only"},
		{"step on terminate", "POST", "/api/v1/processes/car-1/terminate", opSecret, `{"step_id":"repair"}`, 400, "remove step_id"},
		{"bad idempotency key", "POST", "/api/v1/processes/car-1/cancel", opSecret, `{}`, 400, "Idempotency-Key must be"},
		{"start of an unknown definition", "POST", "/api/v1/processes", opSecret, `{"definition":"nope"}`, 404, "unknown definition"},
		{"start without definition", "POST", "/api/v1/processes", opSecret, `{"process_id":"x"}`, 400, "definition is required"},
		{"start with input against the schema", "POST", "/api/v1/processes", opSecret, `{"definition":"repair","input":{"ticket":7}}`, 400, "does not match the input schema"},
		{"start with a slashed id", "POST", "/api/v1/processes", opSecret, `{"definition":"repair","process_id":"a/b"}`, 400, `invalid process id: "a/b" has "/"`},
		{"start with id ..", "POST", "/api/v1/processes", opSecret, `{"definition":"repair","process_id":".."}`, 400, `invalid process id: ".." has "." at the start`},
		{"start with a URL-like id", "POST", "/api/v1/processes", opSecret, `{"definition":"repair","process_id":"q?x=1#frag"}`, 400, `"q?x=1#frag" has "?"`},
		{"start with a NUL in the id", "POST", "/api/v1/processes", opSecret, `{"definition":"repair","process_id":"a\u0000b"}`, 400, "control character 0x00"},
		{"start with a control character in the id", "POST", "/api/v1/processes", opSecret, `{"definition":"repair","process_id":"a\u001bb"}`, 400, "control character 0x1b"},
		{"start with a too long id", "POST", "/api/v1/processes", opSecret, `{"definition":"repair","process_id":"` + strings.Repeat("x", 129) + `"}`, 400, "129 bytes, longer than 128"},
		{"get with a URL-like id", "GET", "/api/v1/processes/q%3Fx=1%23frag", readSecret, "", 400, `has "?"`},
		{"get with a NUL in the id", "GET", "/api/v1/processes/a%00b", readSecret, "", 400, "control character 0x00"},
		{"action with a bad id", "POST", "/api/v1/processes/%2Dx/terminate", opSecret, `{}`, 400, `"-" at the start`},
		{"start input over the limit", "POST", "/api/v1/processes", opSecret, `{"definition":"repair","input":"` + strings.Repeat("x", workflow.MaxPayloadBytes) + `"}`, 413, "the input is 262146 bytes, over the limit max_payload_bytes = 262144 bytes"},
		{"signal data over the limit", "POST", "/api/v1/processes/car-1/signals", opSecret, `{"name":"approve","data":"` + strings.Repeat("x", workflow.MaxPayloadBytes) + `"}`, 413, "over the limit max_payload_bytes"},
		{"signal nobody waits for", "POST", "/api/v1/processes/car-1/signals", opSecret, `{"name":"aprove"}`, 409, `process car-1 (repair v1) has no step that waits for signal "aprove"; it takes approve (step approval pending)`},
		{"signal without name", "POST", "/api/v1/processes/car-1/signals", opSecret, `{}`, 400, "name is required"},
		{"invalid definition", "POST", "/api/v1/definitions/validate?file=x.yaml", readSecret, "name: x\nversion: 1\nsteps: []\nbogus: 1\n", 422, "x.yaml:4:1"},
		{"unknown definition", "GET", "/api/v1/definitions/nope", readSecret, "", 404, "unknown definition"},
		{"not a DLQ topic", "GET", "/api/v1/dlq/events", readSecret, "", 400, "is not a dead-letter topic"},
		{"unknown route", "GET", "/api/v1/nothing", readSecret, "", 404, "no API route"},
	}
	for _, tc := range errorCases {
		t.Run(tc.name, func(t *testing.T) {
			var hdr []string
			if tc.name == "bad idempotency key" {
				hdr = []string{IdempotencyHeader, "has spaces in it"}
			}
			code, body, _ := h.do(tc.method, tc.path, tc.secret, tc.body, hdr...)
			msg := string(body)
			if code >= 400 && !strings.HasPrefix(tc.path, "/api/v1/definitions/validate") {
				msg = decode[ErrorBody](t, body).Error.Message
			}
			if code != tc.want || !strings.Contains(msg, tc.msg) {
				t.Errorf("%s %s: %d %s\nwant %d with %q", tc.method, tc.path, code, body, tc.want, tc.msg)
			}
		})
	}

	t.Run("list filters", func(t *testing.T) {
		h.startPaused("car-2")
		tests := []struct {
			name, query string
			want        []string
		}{
			{"all", "", []string{"car-2", "car-1"}},
			{"paused", "?status=paused", []string{"car-2", "car-1"}},
			{"running or completed", "?status=running,completed", nil},
			{"definition", "?definition=repair&version=1", []string{"car-2", "car-1"}},
			{"other version", "?definition=repair&version=2", nil},
			{"stuck", "?stuck=true", []string{"car-2", "car-1"}},
			{"search", "?q=r-1", []string{"car-1"}},
			{"started in the future", "?started_after=2999-01-01T00:00:00Z", nil},
			{"updated before now", "?updated_before=2999-01-01T00:00:00Z", []string{"car-2", "car-1"}},
			{"first page", "?limit=1", []string{"car-2"}},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				code, body, _ := h.do("GET", "/api/v1/processes"+tc.query, readSecret, "")
				if code != 200 {
					t.Fatalf("%d %s", code, body)
				}
				l := decode[ProcessList](t, body)
				var got []string
				for _, p := range l.Processes {
					got = append(got, p.ProcessID)
				}
				if strings.Join(got, ",") != strings.Join(tc.want, ",") {
					t.Errorf("got %v, want %v", got, tc.want)
				}
			})
		}
		code, body, _ := h.do("GET", "/api/v1/processes?limit=1", readSecret, "")
		l := decode[ProcessList](t, body)
		if code != 200 || l.Total != 2 || l.NextCursor == "" || l.Processes[0].Stuck == "" {
			t.Fatalf("first page: %d %s", code, body)
		}
		_, body, _ = h.do("GET", "/api/v1/processes?limit=1&cursor="+l.NextCursor, readSecret, "")
		l = decode[ProcessList](t, body)
		if len(l.Processes) != 1 || l.Processes[0].ProcessID != "car-1" || l.NextCursor != "" {
			t.Fatalf("second page: %s", body)
		}
	})

	t.Run("get", func(t *testing.T) {
		code, body, _ := h.do("GET", "/api/v1/processes/car-1", readSecret, "")
		if code != 200 {
			t.Fatalf("%d %s", code, body)
		}
		d := decode[ProcessDetail](t, body)
		if d.Process.Status != workflow.StatusPaused || d.State == nil || len(d.Records) == 0 || d.Definition == nil || len(d.Definition.Steps) != 5 {
			t.Fatalf("detail: %s", body)
		}
		if !strings.Contains(d.Process.LastError, "NoParts") {
			t.Errorf("last error %q lacks the failure", d.Process.LastError)
		}
	})

	t.Run("retry once with an idempotency key", func(t *testing.T) {
		hdr := []string{IdempotencyHeader, "retry-car-1"}
		code, body, _ := h.do("POST", "/api/v1/processes/car-1/retry", opSecret, `{"step_id":"repair","reason":"part arrived"}`, hdr...)
		if code != http.StatusAccepted {
			t.Fatalf("retry: %d %s", code, body)
		}
		first := decode[ActionResult](t, body)
		if first.Actor != "alice" || first.RequestID != "retry:retry-car-1" {
			t.Errorf("result %+v", first)
		}
		// The client did not hear the answer and sends it again.
		code, body2, resp := h.do("POST", "/api/v1/processes/car-1/retry", opSecret, `{"step_id":"repair","reason":"part arrived"}`, hdr...)
		if code != http.StatusAccepted || string(body2) != string(body) || resp.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("replayed retry: %d %s", code, body2)
		}
		h.waitStep("car-1", "approval", workflow.StepWaiting)
		// Another instance (no memory of the key) sends it too: the
		// orchestrator drops the duplicate envelope.
		if err := h.stack.Client.Admin(context.Background(), protocol.AdminRequest{ProcessID: "car-1", Action: "retry", StepID: "repair", Actor: "alice"}, first.RequestID); err != nil {
			t.Fatal(err)
		}
		code, body, _ = h.do("POST", "/api/v1/processes/car-1/signals", opSecret, `{"name":"approve","data":{"ok":true}}`)
		if code != http.StatusAccepted {
			t.Fatalf("signal: %d %s", code, body)
		}
		h.waitStatus("car-1", workflow.StatusCompleted)
		_, body, _ = h.do("GET", "/api/v1/processes/car-1", readSecret, "")
		d := decode[ProcessDetail](t, body)
		retries := 0
		for _, r := range d.Records {
			if r.Event != nil && r.Event.Type == workflow.EventRetry {
				retries++
				if r.Event.Actor != "alice" || r.Event.Reason != "part arrived" {
					t.Errorf("retry recorded as by %q for %q", r.Event.Actor, r.Event.Reason)
				}
			}
		}
		if retries != 1 {
			t.Errorf("%d retry events in the stream, want 1", retries)
		}
		if got := strings.Join(h.garage.ran("car-1"), ","); got != "Inspect,Repair,Polish,Repair,Deliver" && got != "Inspect,Polish,Repair,Repair,Deliver" {
			t.Errorf("commands run: %s", got)
		}
		code, body, _ = h.do("POST", "/api/v1/processes/car-1/cancel", opSecret, `{}`)
		if code != 409 || !strings.Contains(string(body), "process car-1 is completed") {
			t.Errorf("cancel of a completed process: %d %s", code, body)
		}
	})

	t.Run("skip with an output, then cancel", func(t *testing.T) {
		code, body, _ := h.do("POST", "/api/v1/processes/car-2/skip", opSecret, `{"step_id":"repair","output":{"by":"hand"},"reason":"fixed by hand"}`)
		if code != http.StatusAccepted {
			t.Fatalf("skip: %d %s", code, body)
		}
		h.waitStep("car-2", "approval", workflow.StepWaiting)
		code, body, _ = h.do("POST", "/api/v1/processes/car-2/cancel", opSecret, `{"reason":"customer left"}`)
		if code != http.StatusAccepted {
			t.Fatalf("cancel: %d %s", code, body)
		}
		h.waitStatus("car-2", workflow.StatusCompensated)
	})

	t.Run("start twice, then terminate", func(t *testing.T) {
		code, body, _ := h.do("POST", "/api/v1/processes", opSecret, `{"process_id":"car-3","definition":"repair","input":{}}`)
		if code != http.StatusAccepted || !strings.Contains(string(body), `"created": true`) {
			t.Fatalf("start: %d %s", code, body)
		}
		h.waitStatus("car-3", workflow.StatusPaused)
		code, body, _ = h.do("POST", "/api/v1/processes", opSecret, `{"process_id":"car-3","definition":"repair","input":{}}`)
		if code != http.StatusOK || !strings.Contains(string(body), `"created": false`) {
			t.Fatalf("second start: %d %s", code, body)
		}
		code, body, _ = h.do("POST", "/api/v1/processes/car-3/terminate", opSecret, `{"reason":"test"}`)
		if code != http.StatusAccepted {
			t.Fatalf("terminate: %d %s", code, body)
		}
		h.waitStatus("car-3", workflow.StatusTerminated)
	})

	t.Run("definitions", func(t *testing.T) {
		src := "name: wash\nversion: 1\nsteps:\n  - id: soap\n    service: garage\n    command: Polish\n"
		code, body, _ := h.do("POST", "/api/v1/definitions/validate", readSecret, src)
		if code != 200 || !strings.Contains(string(body), `"valid": true`) {
			t.Fatalf("validate: %d %s", code, body)
		}
		code, body, _ = h.do("POST", "/api/v1/definitions?file=wash.yaml", opSecret, src)
		if code != 201 {
			t.Fatalf("register: %d %s", code, body)
		}
		code, body, _ = h.do("POST", "/api/v1/definitions?file=wash.yaml", opSecret, src+"description: changed\n")
		if code != 409 || !strings.Contains(string(body), "bump version") {
			t.Fatalf("register another source as the same version: %d %s", code, body)
		}
		code, body, _ = h.do("GET", "/api/v1/definitions", readSecret, "")
		if code != 200 || !strings.Contains(string(body), `"name": "wash"`) || !strings.Contains(string(body), `"name": "repair"`) {
			t.Fatalf("list: %d %s", code, body)
		}
		code, body, _ = h.do("GET", "/api/v1/definitions/repair?version=1", readSecret, "")
		info := decode[DefinitionInfo](t, body)
		if code != 200 || len(info.Steps) != 5 || !strings.Contains(info.Source, "name: repair") {
			t.Fatalf("get: %d %s", code, body)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		code, body, _ := h.do("GET", "/metrics", "", "")
		if code != 200 {
			t.Fatalf("%d %s", code, body)
		}
		for _, want := range []string{
			`pulsaga_processes{definition="repair",status="completed"} 1`,
			`pulsaga_processes{definition="repair",status="compensated"} 1`,
			`pulsaga_processes{definition="repair",status="terminated"} 1`,
			`pulsaga_steps_failed_total{definition="repair",pulsaga_instance="test-1",step="repair"} 3`,
			`pulsaga_step_retries_total{definition="repair",pulsaga_instance="test-1",step="repair"} 1`,
			`pulsaga_steps_completed_total{definition="repair",pulsaga_instance="test-1",step="deliver"} 1`,
			`pulsaga_commands_sent_total{definition="repair",kind="retry",pulsaga_instance="test-1"} 1`,
			`pulsaga_process_transitions_total{definition="repair",pulsaga_instance="test-1",status="paused"} 3`,
			"pulsaga_decision_latency_seconds_count",
			"pulsaga_event_to_command_latency_seconds_count",
		} {
			if !strings.Contains(string(body), want) {
				t.Errorf("metrics lack %s", want)
			}
		}
	})

	t.Run("health", func(t *testing.T) {
		for _, p := range []string{"/healthz", "/readyz"} {
			if code, body, _ := h.do("GET", p, "", ""); code != 200 {
				t.Errorf("%s: %d %s", p, code, body)
			}
		}
	})

	t.Run("dashboard files with security headers", func(t *testing.T) {
		for _, p := range []string{"/ui/", "/ui/app.js", "/ui/style.css"} {
			code, body, hdr := h.do("GET", p, "", "")
			if code != 200 || len(body) == 0 || !strings.Contains(hdr.Get("Content-Security-Policy"), "default-src 'self'") || hdr.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("%s: %d %v", p, code, hdr)
			}
		}
		if code, _, hdr := h.do("GET", "/", "", ""); code != 200 || hdr.Get("Content-Type") != "text/html; charset=utf-8" {
			t.Errorf("/ does not lead to the dashboard: %d %v", code, hdr)
		}
	})
}

// TestDeadLetters lists, inspects, replays and purges dead letters.
func TestDeadLetters(t *testing.T) {
	testDeadLetters(t, newHarness(t))
}

// testDeadLetters runs the dead-letter API on h's bus: topics listed from
// the broker (one of a service that exists only at run time), replay of
// one, purge of one and of all, each taking the message out of the topic's
// backlog for good, retried requests applying once, an audit record of
// each with who and why.
func testDeadLetters(t *testing.T, h *harness) {
	ctx := context.Background()
	// Garbage on the events topic: the orchestrator dead-letters it.
	p, err := h.bus.Producer(ctx, bus.ProducerOptions{Topic: h.topics.Events})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.Send(ctx, &bus.OutMessage{Key: "junk", Payload: []byte("not json")}); err != nil {
		t.Fatal(err)
	}
	// A start that was dead-lettered (say, its definition was registered
	// too late): replaying it starts the process.
	start, err := bus.NewEnvelope("start", "start:car-9", "car-9", time.Now(), protocol.StartRequest{ProcessID: "car-9", Definition: "repair", Input: []byte(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := start.Encode()
	dead := func(topic, key string, payload []byte, props map[string]string) {
		t.Helper()
		dp, err := h.bus.Producer(ctx, bus.ProducerOptions{Topic: topic})
		if err != nil {
			t.Fatal(err)
		}
		defer dp.Close()
		if _, err := dp.Send(ctx, &bus.OutMessage{Key: key, Payload: payload, Properties: props}); err != nil {
			t.Fatal(err)
		}
	}
	dead("events-orchestrator-DLQ", "car-9", payload, map[string]string{
		bus.PropDLQReason: "cannot start car-9: unknown definition", bus.PropDLQOriginTopic: h.bus.Namespace().Partition(h.topics.Events, 1),
	})
	// The job queue of a service no definition names yet.
	paint := bus.DeadLetterTopic("jobs.paint", "workers")
	for i := range 2 {
		dead(paint, fmt.Sprintf("bike-%d", i), []byte(`{"colour":"red"}`), map[string]string{bus.PropDLQReason: "no worker understands it", bus.PropDLQOriginTopic: "jobs.paint"})
	}

	const dlq = "/api/v1/dlq/events-orchestrator-DLQ"
	type inspected struct {
		Count    int          `json:"count"`
		Messages []DeadLetter `json:"messages"`
	}
	var letters inspected
	deadline := time.Now().Add(30 * time.Second)
	for letters.Count < 2 && time.Now().Before(deadline) {
		code, body, _ := h.do("GET", dlq, readSecret, "")
		if code == 200 {
			letters = decode[inspected](t, body)
		} else if code != 404 { // not dead-lettered yet
			t.Fatalf("inspect: %d %s", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if letters.Count != 2 {
		t.Fatalf("%d dead letters, want 2", letters.Count)
	}
	var junk, car string
	for _, m := range letters.Messages {
		switch m.Key {
		case "junk":
			junk = m.ID
			if m.Reason == "" || string(m.Payload) != `"not json"` {
				t.Errorf("junk letter %+v", m)
			}
		case "car-9":
			car = m.ID
		}
	}
	code, body, _ := h.do("GET", "/api/v1/dlq", readSecret, "")
	list := decode[struct {
		Topics []DLQInfo `json:"topics"`
	}](t, body)
	if code != 200 || !slices.Contains(list.Topics, DLQInfo{Topic: "events-orchestrator-DLQ", Count: 2}) || !slices.Contains(list.Topics, DLQInfo{Topic: paint, Count: 2}) {
		t.Fatalf("list: %d %s", code, body)
	}
	for _, ti := range list.Topics {
		if !strings.HasSuffix(ti.Topic, "-DLQ") {
			t.Errorf("list: %s is not a dead-letter topic", ti.Topic)
		}
	}
	if code, body, _ := h.do("GET", "/api/v1/dlq/jobs.nothing-workers-DLQ", readSecret, ""); code != 404 || !strings.Contains(string(body), "no dead-letter topic jobs.nothing-workers-DLQ") {
		t.Errorf("a dead-letter topic that does not exist: %d %s", code, body)
	}
	code, body, _ = h.do("POST", dlq+"/replay", readSecret, `{}`)
	if code != 403 {
		t.Fatalf("replay with a read-only token: %d %s", code, body)
	}
	if code, body, _ := h.do("POST", dlq+"/replay", opSecret, `{"ids":["not base64!"]}`); code != 400 || !strings.Contains(string(body), "is not a dead-letter id") {
		t.Errorf("replay of a malformed id: %d %s", code, body)
	}
	code, body, _ = h.do("POST", dlq+"/replay", opSecret, `{"ids":["`+car+`","Ym9ndXM="],"reason":"definition registered"}`)
	res := decode[DLQActionResult](t, body)
	if code != 200 || !slices.Equal(res.Done, []string{car}) || !slices.Equal(res.Skipped, []string{"Ym9ndXM="}) || res.Remaining != 1 {
		t.Fatalf("replay: %d %s", code, body)
	}
	h.waitStatus("car-9", workflow.StatusPaused)
	// The same replay again (no idempotency key): the message is gone from
	// the topic, nothing is sent twice.
	code, body, _ = h.do("POST", dlq+"/replay", opSecret, `{"ids":["`+car+`"]}`)
	if res := decode[DLQActionResult](t, body); code != 200 || len(res.Done) != 0 || !slices.Equal(res.Skipped, []string{car}) {
		t.Fatalf("second replay: %d %s", code, body)
	}
	// Purge one message by id.
	code, body, _ = h.do("POST", dlq+"/purge", opSecret, `{"ids":["`+junk+`"],"reason":"garbage"}`, IdempotencyHeader, "purge-junk")
	if res := decode[DLQActionResult](t, body); code != 200 || !slices.Equal(res.Done, []string{junk}) || res.Remaining != 0 {
		t.Fatalf("purge: %d %s", code, body)
	}
	if code, body, hdr := h.do("POST", dlq+"/purge", opSecret, `{"ids":["`+junk+`"],"reason":"garbage"}`, IdempotencyHeader, "purge-junk"); code != 200 || hdr.Get("Idempotent-Replayed") != "true" || !strings.Contains(string(body), junk) {
		t.Errorf("retried purge: %d %v %s", code, hdr, body)
	}
	code, body, _ = h.do("GET", dlq, readSecret, "")
	if letters := decode[inspected](t, body); code != 200 || letters.Count != 0 || len(letters.Messages) != 0 {
		t.Fatalf("after purge: %d %s", code, body)
	}
	// Purge all of a topic.
	code, body, _ = h.do("POST", "/api/v1/dlq/"+paint+"/purge", opSecret, `{"reason":"paint service retired"}`)
	if res := decode[DLQActionResult](t, body); code != 200 || len(res.Done) != 2 || res.Remaining != 0 {
		t.Fatalf("purge all: %d %s", code, body)
	}
	// Gone from the dead-letter topics' backlogs, not hidden: the bus says so.
	bl := h.bus.(bus.Backlogs)
	for _, topic := range []string{"events-orchestrator-DLQ", paint} {
		if _, n, err := bl.Backlog(ctx, topic, DLQSubscription, 0); err != nil || n != 0 {
			t.Errorf("backlog of %s after purge: %d, %v", topic, n, err)
		}
	}
	// Each action is in the audit log, with who and why.
	rd, err := h.bus.Reader(ctx, bus.ReaderOptions{Topic: HandledTopic, Compacted: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	got := map[string]DLQHandled{}
	for {
		more, err := rd.HasNext(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !more {
			break
		}
		m, err := rd.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var rec DLQHandled
		if err := json.Unmarshal(m.Payload, &rec); err != nil {
			t.Fatalf("audit record %s: %v", m.Payload, err)
		}
		got[rec.Topic+" "+rec.Action+" "+rec.ID] = rec
	}
	if r := got["events-orchestrator-DLQ replay "+car]; r.Actor != "alice" || r.Reason != "definition registered" || r.Topic != "events-orchestrator-DLQ" {
		t.Errorf("audit of the replay: %+v", r)
	}
	if r := got["events-orchestrator-DLQ purge "+junk]; r.Actor != "alice" || r.Reason != "garbage" {
		t.Errorf("audit of the purge: %+v", r)
	}
	if len(got) != 4 {
		t.Errorf("%d audit records, want 4: %v", len(got), got)
	}
}

// Two instances replaying the same dead letter at once: both read it, the
// first removes it; the second's transaction fails and sends nothing.
func TestDeadLetterReplayRaceAppliesOnce(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	topic := bus.DeadLetterTopic("jobs.paint", "workers")
	dp, err := h.bus.Producer(ctx, bus.ProducerOptions{Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	defer dp.Close()
	if _, err := dp.Send(ctx, &bus.OutMessage{Key: "bike-1", Payload: []byte(`{}`), Properties: map[string]string{bus.PropDLQOriginTopic: "jobs.paint"}}); err != nil {
		t.Fatal(err)
	}
	msgs, _, err := h.srv.pending(ctx, topic, 10)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("pending: %d, %v", len(msgs), err)
	}
	// The other instance's replay, seen by this one after it read the
	// message.
	other, err := New(Options{Bus: h.bus, Topics: h.topics, Registry: h.stack.Registry}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	hs := httptest.NewServer(other.Handler())
	defer hs.Close()
	resp, err := http.Post(hs.URL+"/api/v1/dlq/"+topic+"/replay", "application/json", strings.NewReader(`{}`))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("replay on the other instance: %v %v", resp, err)
	}
	resp.Body.Close()
	sent := 0
	_, err = h.srv.dlqChunk(ctx, topic, "replay", msgs, DLQHandled{Topic: topic, Action: "replay", Actor: "alice"}, func(ctx context.Context, m *bus.Message, tx bus.Tx) error {
		sent++
		p, err := h.bus.Producer(ctx, bus.ProducerOptions{Topic: "jobs.paint"})
		if err != nil {
			return err
		}
		defer p.Close()
		_, err = p.Send(ctx, &bus.OutMessage{Key: m.Key, Payload: m.Payload, Tx: tx})
		return err
	})
	if !errors.Is(err, bus.ErrTxFailed) || sent != 1 {
		t.Fatalf("the late replay: %v (sent in its transaction: %d)", err, sent)
	}
	// jobs.paint holds the one replay that committed.
	if _, n, err := h.bus.(bus.Backlogs).Backlog(ctx, "jobs.paint", "watch", 10); err != nil || n != 1 {
		t.Errorf("replays on jobs.paint: %d, %v", n, err)
	}
	if code, _ := statusOf(fmt.Errorf("%w: x", ErrConflict)); code != http.StatusConflict {
		t.Errorf("conflict answers %d", code)
	}
}
