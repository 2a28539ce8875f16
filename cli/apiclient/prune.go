package apiclient

import (
	"context"
	"errors"
	"net/url"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/volume"
)

// ContainerPrune is POST /containers/prune.
func (c *Client) ContainerPrune(ctx context.Context, f Filters) (container.PruneReport, error) {
	var r container.PruneReport
	err := c.prune(ctx, "/containers/prune", f, &r)
	return r, err
}

// ImagePrune is POST /images/prune.
func (c *Client) ImagePrune(ctx context.Context, f Filters) (image.PruneReport, error) {
	var r image.PruneReport
	err := c.prune(ctx, "/images/prune", f, &r)
	return r, err
}

// NetworkPrune is POST /networks/prune.
func (c *Client) NetworkPrune(ctx context.Context, f Filters) (network.PruneReport, error) {
	var r network.PruneReport
	err := c.prune(ctx, "/networks/prune", f, &r)
	return r, err
}

// VolumePrune is POST /volumes/prune; all removes named volumes too
// (the "all" filter).
func (c *Client) VolumePrune(ctx context.Context, all bool, f Filters) (volume.PruneReport, error) {
	if all {
		if _, ok := f["all"]; ok {
			return volume.PruneReport{}, errors.New(`conflicting options: cannot specify both "all" and "all" filter`)
		}
		f = f.Clone().Add("all", "true")
	}
	var r volume.PruneReport
	err := c.prune(ctx, "/volumes/prune", f, &r)
	return r, err
}

func (c *Client) prune(ctx context.Context, p string, f Filters, out any) error {
	q := url.Values{}
	setFilters(q, f)
	return c.post(ctx, p, q, nil, out)
}
