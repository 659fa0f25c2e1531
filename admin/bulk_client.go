package admin

import (
	"context"
	"net/url"
)

// BulkPreview runs req as a dry run: how many processes the filter
// selects, how many the action applies to, a sample.
func (c *Client) BulkPreview(ctx context.Context, req BulkRequest) (*BulkPreview, error) {
	req.DryRun = true
	cl, err := jsonCall("POST", "/api/v1/bulk", "", req)
	if err != nil {
		return nil, err
	}
	var out BulkPreview
	return &out, c.do(ctx, cl, &out)
}

// BulkStart queues req as a job; key makes a resent request make one job.
func (c *Client) BulkStart(ctx context.Context, req BulkRequest, key string) (*BulkJob, error) {
	req.DryRun = false
	cl, err := jsonCall("POST", "/api/v1/bulk", key, req)
	if err != nil {
		return nil, err
	}
	var out BulkJob
	return &out, c.do(ctx, cl, &out)
}

// BulkJobs lists the bulk jobs, newest first.
func (c *Client) BulkJobs(ctx context.Context) ([]BulkJob, error) {
	var out BulkJobList
	return out.Jobs, c.do(ctx, call{method: "GET", path: "/api/v1/bulk"}, &out)
}

// BulkJob reads one bulk job.
func (c *Client) BulkJob(ctx context.Context, id string) (*BulkJob, error) {
	var out BulkJob
	return &out, c.do(ctx, call{method: "GET", path: "/api/v1/bulk/" + url.PathEscape(id)}, &out)
}

// BulkCancel asks the runner to stop a job.
func (c *Client) BulkCancel(ctx context.Context, id, reason, key string) (*ActionResult, error) {
	cl, err := jsonCall("POST", "/api/v1/bulk/"+url.PathEscape(id)+"/cancel", key, BulkCancelRequest{Reason: reason})
	if err != nil {
		return nil, err
	}
	var out ActionResult
	return &out, c.do(ctx, cl, &out)
}
