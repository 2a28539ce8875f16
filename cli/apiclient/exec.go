package apiclient

import (
	"context"

	"github.com/moby/moby/api/types/container"
)

// ExecCreate is POST /containers/{id}/exec: a process to run in the
// container, started by ExecStart or ExecAttach.
func (c *Client) ExecCreate(ctx context.Context, containerID string, req container.ExecCreateRequest) (container.ExecCreateResponse, error) {
	var r container.ExecCreateResponse
	p, err := containerPath(containerID)
	if err != nil {
		return r, err
	}
	err = c.post(ctx, p+"/exec", nil, req, &r)
	return r, err
}

// ExecStart is POST /exec/{id}/start for a detached start (req.Detach):
// the daemon answers once the process runs. ExecAttach is the attached
// start.
func (c *Client) ExecStart(ctx context.Context, execID string, req container.ExecStartRequest) error {
	p, err := execPath(execID)
	if err != nil {
		return err
	}
	return c.post(ctx, p+"/start", nil, req, nil)
}

// ExecAttach is POST /exec/{id}/start, hijacked: the process's streams on
// one connection (multiplexed unless req.Tty). req.Detach is ignored.
func (c *Client) ExecAttach(ctx context.Context, execID string, req container.ExecStartRequest) (*Hijacked, error) {
	p, err := execPath(execID)
	if err != nil {
		return nil, err
	}
	req.Detach = false
	return c.hijack(ctx, p+"/start", nil, req)
}

// ExecInspect is GET /exec/{id}/json.
func (c *Client) ExecInspect(ctx context.Context, execID string) (container.ExecInspectResponse, error) {
	var r container.ExecInspectResponse
	p, err := execPath(execID)
	if err != nil {
		return r, err
	}
	err = c.get(ctx, p+"/json", nil, &r)
	return r, err
}

// ExecResize is POST /exec/{id}/resize: the size of the process's TTY.
func (c *Client) ExecResize(ctx context.Context, execID string, height, width uint) error {
	p, err := execPath(execID)
	if err != nil {
		return err
	}
	return c.post(ctx, p+"/resize", sizeQuery(height, width), nil, nil)
}

func execPath(id string) (string, error) { return idPath("exec", "/exec", id) }
