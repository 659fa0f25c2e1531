package admin

import (
	"context"
	"net/url"

	"github.com/pulsaga/pulsaga/schedule"
	"github.com/pulsaga/pulsaga/trigger"
)

// Schedules lists the schedules.
func (c *Client) Schedules(ctx context.Context) ([]*schedule.Record, error) {
	var out struct {
		Schedules []*schedule.Record `json:"schedules"`
	}
	return out.Schedules, c.do(ctx, call{method: "GET", path: "/api/v1/schedules"}, &out)
}

// Schedule reads one schedule.
func (c *Client) Schedule(ctx context.Context, name string) (*schedule.Record, error) {
	var out schedule.Record
	return &out, c.do(ctx, call{method: "GET", path: "/api/v1/schedules/" + url.PathEscape(name)}, &out)
}

// PutSchedule creates or replaces a schedule; key makes a resent request
// apply once.
func (c *Client) PutSchedule(ctx context.Context, spec schedule.Spec, key string) (*ScheduleAnswer, error) {
	cl, err := jsonCall("POST", "/api/v1/schedules", key, spec)
	if err != nil {
		return nil, err
	}
	var out ScheduleAnswer
	return &out, c.do(ctx, cl, &out)
}

// ScheduleAction pauses, resumes or deletes a schedule (op is
// schedule.OpPause, OpResume or OpDelete).
func (c *Client) ScheduleAction(ctx context.Context, name, op, key string) (*ScheduleAnswer, error) {
	cl := call{method: "POST", path: "/api/v1/schedules/" + url.PathEscape(name) + "/" + op, key: key}
	if op == schedule.OpDelete {
		cl = call{method: "DELETE", path: "/api/v1/schedules/" + url.PathEscape(name), key: key}
	}
	var out ScheduleAnswer
	return &out, c.do(ctx, cl, &out)
}

// Triggers lists the triggers of the latest version of each definition.
func (c *Client) Triggers(ctx context.Context) ([]trigger.Info, error) {
	var out struct {
		Triggers []trigger.Info `json:"triggers"`
	}
	return out.Triggers, c.do(ctx, call{method: "GET", path: "/api/v1/triggers"}, &out)
}
