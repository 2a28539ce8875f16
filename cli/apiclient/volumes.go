package apiclient

import (
	"context"
	"net/url"

	"github.com/moby/moby/api/types/volume"
)

// VolumeCreate is POST /volumes/create.
func (c *Client) VolumeCreate(ctx context.Context, r volume.CreateRequest) (volume.Volume, error) {
	var v volume.Volume
	err := c.post(ctx, "/volumes/create", nil, r, &v)
	return v, err
}

// VolumeList is GET /volumes.
func (c *Client) VolumeList(ctx context.Context, f Filters) (volume.ListResponse, error) {
	q := url.Values{}
	setFilters(q, f)
	var out volume.ListResponse
	err := c.get(ctx, "/volumes", q, &out)
	return out, err
}

// VolumeInspect is GET /volumes/{name}.
func (c *Client) VolumeInspect(ctx context.Context, name string) (volume.Volume, error) {
	var v volume.Volume
	err := c.get(ctx, "/volumes/"+esc(name), nil, &v)
	return v, err
}

// VolumeInspectWithRaw is VolumeInspect with the answer's JSON as the
// daemon sent it.
func (c *Client) VolumeInspectWithRaw(ctx context.Context, name string) (volume.Volume, []byte, error) {
	var v volume.Volume
	raw, err := c.getWithRaw(ctx, "/volumes/"+esc(name), nil, &v)
	return v, raw, err
}

// VolumeRemove is DELETE /volumes/{name}.
func (c *Client) VolumeRemove(ctx context.Context, name string, force bool) error {
	q := url.Values{}
	if force {
		q.Set("force", "1")
	}
	return c.del(ctx, "/volumes/"+esc(name), q, nil)
}
