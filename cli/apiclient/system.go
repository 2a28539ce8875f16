package apiclient

import (
	"context"
	"net/url"

	"github.com/moby/moby/api/types/system"
)

// Info is GET /info.
func (c *Client) Info(ctx context.Context) (system.Info, error) {
	var info system.Info
	err := c.get(ctx, "/info", nil, &info)
	return info, err
}

// ServerVersion is GET /version.
func (c *Client) ServerVersion(ctx context.Context) (system.VersionResponse, error) {
	var v system.VersionResponse
	err := c.get(ctx, "/version", nil, &v)
	return v, err
}

// DiskUsage is GET /system/df for the kinds of objects named (containers,
// images, volumes, build-cache; none: all).
func (c *Client) DiskUsage(ctx context.Context, kinds ...system.DiskUsageObject) (system.DiskUsage, error) {
	q := url.Values{}
	for _, k := range kinds {
		q.Add("type", string(k))
	}
	var du system.DiskUsage
	err := c.get(ctx, "/system/df", q, &du)
	return du, err
}
