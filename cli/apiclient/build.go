package apiclient

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/url"

	"github.com/moby/moby/api/types/registry"
)

// ImageBuildOptions are the parameters of ImageBuild, sent as the query
// parameters the moby client sends for them.
type ImageBuildOptions struct {
	Tags           []string           // t, once per name
	SuppressOutput bool               // q=1: only the image ID
	NoCache        bool               // nocache=1
	Remove         bool               // false: rm=0, intermediate containers kept
	ForceRemove    bool               // forcerm=1
	PullParent     bool               // pull=1
	NetworkMode    string             // networkmode, unless "" or "default"
	Dockerfile     string             // the Dockerfile's path in the context
	Target         string             // the stage to build
	BuildArgs      map[string]*string // buildargs (JSON); a nil value: the name alone
	Labels         map[string]string  // labels (JSON)
	// AuthConfigs are the credentials of registries the build may pull
	// from: the X-Registry-Config header (base64url JSON; none: "null").
	AuthConfigs map[string]registry.AuthConfig
}

// ImageBuild is POST /build with body (the build context: a tar, plain or compressed) as
// the body: the classic builder. The answer is a stream of JSON messages
// (the build's output) for the caller to read and close.
func (c *Client) ImageBuild(ctx context.Context, body io.Reader, opts ImageBuildOptions) (io.ReadCloser, error) {
	q := url.Values{}
	if len(opts.Tags) > 0 {
		q["t"] = opts.Tags
	}
	if opts.SuppressOutput {
		q.Set("q", "1")
	}
	if opts.NoCache {
		q.Set("nocache", "1")
	}
	if !opts.Remove {
		q.Set("rm", "0")
	}
	if opts.ForceRemove {
		q.Set("forcerm", "1")
	}
	if opts.PullParent {
		q.Set("pull", "1")
	}
	if opts.NetworkMode != "" && opts.NetworkMode != "default" {
		q.Set("networkmode", opts.NetworkMode)
	}
	if opts.Dockerfile != "" {
		q.Set("dockerfile", opts.Dockerfile)
	}
	if opts.Target != "" {
		q.Set("target", opts.Target)
	}
	if len(opts.BuildArgs) > 0 {
		b, err := json.Marshal(opts.BuildArgs)
		if err != nil {
			return nil, err
		}
		q.Set("buildargs", string(b))
	}
	if len(opts.Labels) > 0 {
		b, err := json.Marshal(opts.Labels)
		if err != nil {
			return nil, err
		}
		q.Set("labels", string(b))
	}
	auths, err := json.Marshal(opts.AuthConfigs)
	if err != nil {
		return nil, err
	}
	h := Header{}
	h.Set("X-Registry-Config", base64.URLEncoding.EncodeToString(auths))
	h.Set("Content-Type", "application/x-tar")
	return c.stream(ctx, Request{Method: "POST", Path: "/build", Query: q, Header: h, Body: body})
}
