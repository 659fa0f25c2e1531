package admin

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/pulsaga/pulsaga/workflow"
)

func TestBatchStart(t *testing.T) {
	h := newHarness(t)
	h.startPaused("car-0")
	starts := []string{
		`{"process_id":"car-1","definition":"repair","input":{"ticket":"T-1"}}`,
		`{"process_id":"car-2","definition":"repair","input":{"ticket":7}}`,     // against the schema
		`{"process_id":"car-3","definition":"nope"}`,                            // unknown definition
		`{"process_id":"car-0","definition":"repair","input":{"ticket":"T-1"}}`, // exists, same start: accepted, not created
		`{"definition":"repair","input":{"ticket":"T-4"}}`,                      // id generated
		`{"process_id":"car-1","definition":"repair","input":{"ticket":"T-1"}}`, // twice in one batch
		`{"process_id":"a b","definition":"repair"}`,                            // bad id
	}
	code, body, _ := h.do("POST", "/api/v1/processes/batch", opSecret, `{"starts":[`+strings.Join(starts, ",")+`]}`)
	if code != http.StatusOK {
		t.Fatalf("batch start: %d %s", code, body)
	}
	res := decode[BatchStartResult](t, body)
	type want struct {
		accepted bool
		created  bool
		errCode  string
		msg      string
	}
	wants := []want{
		{true, true, "", ""},
		{false, false, "bad_request", "does not match the input schema"},
		{false, false, "not_found", "unknown definition"},
		{true, false, "", ""},
		{true, true, "", ""},
		{false, false, "bad_request", "also start #1 of this batch"},
		{false, false, "bad_request", "process_id: invalid process id"},
	}
	if len(res.Results) != len(wants) || res.Accepted != 3 || res.Failed != 4 || res.Actor != "alice" {
		t.Fatalf("result %+v", res)
	}
	for i, w := range wants {
		got := res.Results[i]
		t.Run(fmt.Sprint(i+1), func(t *testing.T) {
			if got.Accepted != w.accepted || (got.Created != nil && *got.Created != w.created) || (w.accepted && got.Created == nil) {
				t.Fatalf("%+v, want %+v", got, w)
			}
			if w.errCode == "" {
				if got.Error != nil || got.ProcessID == "" {
					t.Fatalf("%+v", got)
				}
				return
			}
			if got.Error == nil || got.Error.Code != w.errCode || !strings.Contains(got.Error.Message, w.msg) {
				t.Fatalf("error %+v, want %s with %q", got.Error, w.errCode, w.msg)
			}
		})
	}
	// An existing id started with another input is a conflict.
	code, body, _ = h.do("POST", "/api/v1/processes/batch", opSecret, `{"starts":[{"process_id":"car-0","definition":"repair","input":{"ticket":"T-9"}}]}`)
	if res := decode[BatchStartResult](t, body); code != http.StatusOK || res.Failed != 1 || res.Results[0].Error == nil || res.Results[0].Error.Code != "conflict" {
		t.Fatalf("conflicting start of an existing id: %d %s", code, body)
	}
	// The accepted ones run (the repair saga pauses at its first attempt).
	h.waitStatus("car-1", workflow.StatusPaused)
	h.waitStatus(res.Results[4].ProcessID, workflow.StatusPaused)

	for _, tc := range []struct {
		name, body string
		code       int
		msg        string
	}{
		{"empty", `{"starts":[]}`, 400, "no starts"},
		{"too many", `{"starts":[` + strings.Repeat(`{"definition":"repair"},`, MaxBatchStarts) + `{"definition":"repair"}]}`, 400, "send at most 1000"},
		{"not a list", `{"starts":{}}`, 400, "body:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, _ := h.do("POST", "/api/v1/processes/batch", opSecret, tc.body)
			if code != tc.code || !strings.Contains(decode[ErrorBody](t, body).Error.Message, tc.msg) {
				t.Fatalf("%d %s, want %d with %q", code, body, tc.code, tc.msg)
			}
		})
	}
	if code, _, _ := h.do("POST", "/api/v1/processes/batch", readSecret, `{"starts":[{"definition":"repair"}]}`); code != http.StatusForbidden {
		t.Fatalf("a read-only token started processes: %d", code)
	}
}
