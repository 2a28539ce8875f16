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
