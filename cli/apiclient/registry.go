package apiclient

import (
	"context"

	"github.com/moby/moby/api/types/registry"
)

// RegistryLogin is POST /auth: the daemon checks auth (user name,
// password, server address) against the registry.
func (c *Client) RegistryLogin(ctx context.Context, auth registry.AuthConfig) (registry.AuthResponse, error) {
	var r registry.AuthResponse
	err := c.post(ctx, "/auth", nil, auth, &r)
	return r, err
}

// DistributionInspect is GET /distribution/{ref}/json: the image's
// manifest descriptor and platforms, as the registry (through the daemon)
// knows them, with auth as the X-Registry-Auth header ("": none).
func (c *Client) DistributionInspect(ctx context.Context, ref, auth string) (registry.DistributionInspect, error) {
	var d registry.DistributionInspect
	if ref == "" {
		return d, emptyRefError("distribution")
	}
	err := c.call(ctx, Request{Method: "GET", Path: "/distribution/" + esc(ref) + "/json", Header: registryAuthHeader(auth)}, &d)
	return d, err
}
