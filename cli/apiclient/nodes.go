package apiclient

import (
	"context"
	"net/url"
	"strconv"

	"github.com/moby/moby/api/types/swarm"
)

// NodeList is GET /nodes.
func (c *Client) NodeList(ctx context.Context, f Filters) ([]swarm.Node, error) {
	q := url.Values{}
	setFilters(q, f)
	var out []swarm.Node
	err := c.get(ctx, "/nodes", q, &out)
	return out, err
}

// NodeInspect is GET /nodes/{id}. It returns the answer's JSON too (it has
// shoal's fields that swarm.Node lacks, such as the certificate's expiry).
func (c *Client) NodeInspect(ctx context.Context, id string) (swarm.Node, []byte, error) {
	var n swarm.Node
	p, err := idPath("node", "/nodes", id)
	if err != nil {
		return n, nil, err
	}
	raw, err := c.getWithRaw(ctx, p, nil, &n)
	return n, raw, err
}

// NodeUpdate is POST /nodes/{id}/update of the node at version (the one
// read with NodeInspect).
func (c *Client) NodeUpdate(ctx context.Context, id string, version swarm.Version, spec swarm.NodeSpec) error {
	p, err := idPath("node", "/nodes", id)
	if err != nil {
		return err
	}
	q := url.Values{}
	q.Set("version", strconv.FormatUint(version.Index, 10))
	return c.post(ctx, p+"/update", q, spec, nil)
}

// NodeRemove is DELETE /nodes/{id}; force removes a node that is not down
// yet.
func (c *Client) NodeRemove(ctx context.Context, id string, force bool) error {
	p, err := idPath("node", "/nodes", id)
	if err != nil {
		return err
	}
	q := url.Values{}
	if force {
		q.Set("force", "1")
	}
	return c.del(ctx, p, q, nil)
}
