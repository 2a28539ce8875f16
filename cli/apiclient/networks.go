package apiclient

import (
	"context"
	"net/url"

	"github.com/moby/moby/api/types/network"
)

// NetworkInspect is GET /networks/{id}; scope "swarm" or "local" narrows
// the lookup ("": any).
func (c *Client) NetworkInspect(ctx context.Context, ref, scope string) (network.Inspect, error) {
	q := url.Values{}
	if scope != "" {
		q.Set("scope", scope)
	}
	var n network.Inspect
	err := c.get(ctx, "/networks/"+esc(ref), q, &n)
	return n, err
}

// NetworkInspectWithRaw is NetworkInspect with the answer's JSON as the
// daemon sent it (inspect prints that).
func (c *Client) NetworkInspectWithRaw(ctx context.Context, ref string) (network.Inspect, []byte, error) {
	var n network.Inspect
	raw, err := c.getWithRaw(ctx, "/networks/"+esc(ref), nil, &n)
	return n, raw, err
}

// NetworkCreate is POST /networks/create; r.Name names the network.
func (c *Client) NetworkCreate(ctx context.Context, r network.CreateRequest) (network.CreateResponse, error) {
	var out network.CreateResponse
	err := c.post(ctx, "/networks/create", nil, r, &out)
	return out, err
}

// NetworkList is GET /networks.
func (c *Client) NetworkList(ctx context.Context, f Filters) ([]network.Summary, error) {
	q := url.Values{}
	setFilters(q, f)
	var out []network.Summary
	err := c.get(ctx, "/networks", q, &out)
	return out, err
}

// NetworkRemove is DELETE /networks/{id}.
func (c *Client) NetworkRemove(ctx context.Context, ref string) error {
	return c.del(ctx, "/networks/"+esc(ref), nil, nil)
}

// NetworkConnect is POST /networks/{id}/connect.
func (c *Client) NetworkConnect(ctx context.Context, ref, container string, es *network.EndpointSettings) error {
	return c.post(ctx, "/networks/"+esc(ref)+"/connect", nil, network.ConnectRequest{Container: container, EndpointConfig: es}, nil)
}

// NetworkDisconnect is POST /networks/{id}/disconnect.
func (c *Client) NetworkDisconnect(ctx context.Context, ref, container string, force bool) error {
	return c.post(ctx, "/networks/"+esc(ref)+"/disconnect", nil, network.DisconnectRequest{Container: container, Force: force}, nil)
}
