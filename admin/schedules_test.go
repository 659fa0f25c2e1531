package admin

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/pulsaga/pulsaga/schedule"
	"github.com/pulsaga/pulsaga/trigger"
)

func TestScheduleRoutes(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- schedule.NewScheduler(h.bus, schedule.Options{Topics: h.topics, Registry: h.stack.Registry}, testLogger(t)).Run(ctx)
	}()
	defer func() { cancel(); <-done }()

	tests := []struct {
		name, method, path, secret, body string
		code                             int
		has                              string
	}{
		{"invalid spec", "POST", "/api/v1/schedules", opSecret, `{"name":"n","definition":"repair","cron":"99 * * * *"}`, http.StatusBadRequest, `cron \"99 * * * *\"`},
		{"unknown field", "POST", "/api/v1/schedules", opSecret, `{"name":"n","definition":"repair","every":"1h","overlapp":"skip"}`, http.StatusBadRequest, "unknown field"},
		{"unknown definition", "POST", "/api/v1/schedules", opSecret, `{"name":"n","definition":"nope","every":"1h"}`, http.StatusBadRequest, "register it first"},
		{"a viewer cannot create", "POST", "/api/v1/schedules", readSecret, `{"name":"n","definition":"repair","every":"1h"}`, http.StatusForbidden, "forbidden"},
		{"create", "POST", "/api/v1/schedules", opSecret, `{"name":"hourly","definition":"repair","every":"1h","input":{"ticket":"${{ schedule.time }}"}}`, http.StatusCreated, `"applied": true`},
		{"list", "GET", "/api/v1/schedules", readSecret, "", http.StatusOK, `"name": "hourly"`},
		{"get", "GET", "/api/v1/schedules/hourly", readSecret, "", http.StatusOK, `"overlap": "skip"`},
		{"get unknown", "GET", "/api/v1/schedules/nope", readSecret, "", http.StatusNotFound, "no schedule"},
		{"pause", "POST", "/api/v1/schedules/hourly/pause", opSecret, "", http.StatusOK, `"paused": true`},
		{"resume", "POST", "/api/v1/schedules/hourly/resume", opSecret, "", http.StatusOK, `"armed_id"`},
		{"pause unknown", "POST", "/api/v1/schedules/nope/pause", opSecret, "", http.StatusNotFound, "no schedule"},
		{"delete", "DELETE", "/api/v1/schedules/hourly", opSecret, "", http.StatusOK, `"applied": true`},
		{"gone", "GET", "/api/v1/schedules/hourly", readSecret, "", http.StatusNotFound, "no schedule"},
		{"triggers", "GET", "/api/v1/triggers", readSecret, "", http.StatusOK, `"triggers": []`},
	}
	for _, tt := range tests {
		code, body, _ := h.do(tt.method, tt.path, tt.secret, tt.body)
		if code != tt.code || !strings.Contains(string(body), tt.has) {
			t.Fatalf("%s: %d %s, want %d with %q", tt.name, code, body, tt.code, tt.has)
		}
	}
	// the client the CLI uses
	c, err := NewClient(h.http.URL, opSecret)
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.PutSchedule(ctx, schedule.Spec{Name: "daily", Definition: "repair", Cron: "0 2 * * *", Timezone: "Europe/Paris"}, NewKey())
	if err != nil || !res.Applied || res.Schedule.State.ArmedAt.Hour() != 1 {
		t.Fatalf("put: %+v %v", res, err)
	}
	list, err := c.Schedules(ctx)
	if err != nil || len(list) != 1 || list[0].Spec.Name != "daily" {
		t.Fatalf("list: %+v %v", list, err)
	}
	if res, err := c.ScheduleAction(ctx, "daily", schedule.OpDelete, NewKey()); err != nil || !res.Applied {
		t.Fatalf("delete: %+v %v", res, err)
	}
	var trs []trigger.Info
	if trs, err = c.Triggers(ctx); err != nil || len(trs) != 0 {
		t.Fatalf("triggers: %+v %v", trs, err)
	}
}
