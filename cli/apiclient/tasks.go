package apiclient

import (
	"context"
	"io"
	"net/url"
	"time"

	"github.com/moby/moby/api/types/swarm"
)

// TaskList is GET /tasks.
func (c *Client) TaskList(ctx context.Context, f Filters) ([]swarm.Task, error) {
	q := url.Values{}
	setFilters(q, f)
	var out []swarm.Task
	err := c.get(ctx, "/tasks", q, &out)
	return out, err
}

// TaskInspect is GET /tasks/{id}. It returns the answer's JSON too.
func (c *Client) TaskInspect(ctx context.Context, id string) (swarm.Task, []byte, error) {
	var t swarm.Task
	p, err := idPath("task", "/tasks", id)
	if err != nil {
		return t, nil, err
	}
	raw, err := c.getWithRaw(ctx, p, nil, &t)
	return t, raw, err
}

// TaskLogs is GET /tasks/{id}/logs: the task's lines, multiplexed
// (stdcopy) unless its container has a TTY. Unlike ServiceLogs it sends
// tail as given ("all" too), as the moby client does. The caller closes
// the stream; cancelling ctx ends it.
func (c *Client) TaskLogs(ctx context.Context, id string, o ServiceLogsOptions) (io.ReadCloser, error) {
	q, err := o.query(time.Now())
	if err != nil {
		return nil, err
	}
	return c.stream(ctx, Request{Method: "GET", Path: "/tasks/" + esc(id) + "/logs", Query: q})
}
