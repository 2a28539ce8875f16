package apiclient

import (
	"context"
	"net/url"
	"strconv"

	"github.com/moby/moby/api/types/swarm"
)

// Swarm secrets and configs: /secrets and /configs, as the moby client
// sends them. A secret's data goes only in its create request: inspect
// never returns it; a config's comes back with inspect.

// SecretList is GET /secrets (filters id, name (a prefix), names, label).
func (c *Client) SecretList(ctx context.Context, f Filters) ([]swarm.Secret, error) {
	q := url.Values{}
	setFilters(q, f)
	var out []swarm.Secret
	err := c.get(ctx, "/secrets", q, &out)
	return out, err
}

// SecretCreate is POST /secrets/create; it returns the new secret's ID.
func (c *Client) SecretCreate(ctx context.Context, spec swarm.SecretSpec) (string, error) {
	var r swarm.SecretCreateResponse
	err := c.post(ctx, "/secrets/create", nil, spec, &r)
	return r.ID, err
}

// SecretInspect is GET /secrets/{id} (a name, an ID or an ID prefix); it
// returns the answer's JSON too.
func (c *Client) SecretInspect(ctx context.Context, ref string) (swarm.Secret, []byte, error) {
	var s swarm.Secret
	p, err := idPath("secret", "/secrets", ref)
	if err != nil {
		return s, nil, err
	}
	raw, err := c.getWithRaw(ctx, p, nil, &s)
	return s, raw, err
}

// SecretUpdate is POST /secrets/{id}/update of the secret at version (the
// one read with SecretInspect). Only the labels can change.
func (c *Client) SecretUpdate(ctx context.Context, id string, version swarm.Version, spec swarm.SecretSpec) error {
	p, err := idPath("secret", "/secrets", id)
	if err != nil {
		return err
	}
	return c.call(ctx, Request{Method: "POST", Path: p + "/update", Query: versionQuery(version), Body: spec}, nil)
}

// SecretRemove is DELETE /secrets/{id}.
func (c *Client) SecretRemove(ctx context.Context, ref string) error {
	p, err := idPath("secret", "/secrets", ref)
	if err != nil {
		return err
	}
	return c.del(ctx, p, nil, nil)
}

// ConfigList is GET /configs (filters id, name (a prefix), names, label).
func (c *Client) ConfigList(ctx context.Context, f Filters) ([]swarm.Config, error) {
	q := url.Values{}
	setFilters(q, f)
	var out []swarm.Config
	err := c.get(ctx, "/configs", q, &out)
	return out, err
}

// ConfigCreate is POST /configs/create; it returns the new config's ID.
func (c *Client) ConfigCreate(ctx context.Context, spec swarm.ConfigSpec) (string, error) {
	var r swarm.ConfigCreateResponse
	err := c.post(ctx, "/configs/create", nil, spec, &r)
	return r.ID, err
}

// ConfigInspect is GET /configs/{id} (a name, an ID or an ID prefix), the
// config's data included; it returns the answer's JSON too.
func (c *Client) ConfigInspect(ctx context.Context, ref string) (swarm.Config, []byte, error) {
	var cfg swarm.Config
	p, err := idPath("config", "/configs", ref)
	if err != nil {
		return cfg, nil, err
	}
	raw, err := c.getWithRaw(ctx, p, nil, &cfg)
	return cfg, raw, err
}

// ConfigUpdate is POST /configs/{id}/update of the config at version.
// Only the labels can change.
func (c *Client) ConfigUpdate(ctx context.Context, id string, version swarm.Version, spec swarm.ConfigSpec) error {
	p, err := idPath("config", "/configs", id)
	if err != nil {
		return err
	}
	return c.call(ctx, Request{Method: "POST", Path: p + "/update", Query: versionQuery(version), Body: spec}, nil)
}

// ConfigRemove is DELETE /configs/{id}.
func (c *Client) ConfigRemove(ctx context.Context, ref string) error {
	p, err := idPath("config", "/configs", ref)
	if err != nil {
		return err
	}
	return c.del(ctx, p, nil, nil)
}

// versionQuery is the ?version= of an update.
func versionQuery(v swarm.Version) url.Values {
	return url.Values{"version": {strconv.FormatUint(v.Index, 10)}}
}
