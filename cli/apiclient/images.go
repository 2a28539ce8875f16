package apiclient

import (
	"context"
	"io"
	"net/url"
	"path"

	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/registry"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ImageList is GET /images/json; all includes intermediate images.
func (c *Client) ImageList(ctx context.Context, all bool, f Filters) ([]image.Summary, error) {
	q := url.Values{}
	setFilters(q, f)
	if all {
		q.Set("all", "1")
	}
	var images []image.Summary
	err := c.get(ctx, "/images/json", q, &images)
	return images, err
}

// emptyRefError is the error of an inspect of the empty name, answered
// without a request, in the words of the moby client.
type emptyRefError string

func (k emptyRefError) Error() string { return "Error: No such " + string(k) + ": " }

// ImageInspect is GET /images/{ref}/json. It returns the document both
// decoded and as the daemon sent it (`image inspect` prints the latter).
func (c *Client) ImageInspect(ctx context.Context, ref string) (image.InspectResponse, []byte, error) {
	if ref == "" {
		return image.InspectResponse{}, nil, emptyRefError("image")
	}
	var img image.InspectResponse
	raw, err := c.getWithRaw(ctx, "/images/"+esc(ref)+"/json", nil, &img)
	return img, raw, err
}

// ImageHistory is GET /images/{ref}/history: the image's layers, newest
// first.
func (c *Client) ImageHistory(ctx context.Context, ref string) ([]image.HistoryResponseItem, error) {
	var items []image.HistoryResponseItem
	err := c.get(ctx, "/images/"+esc(ref)+"/history", nil, &items)
	return items, err
}

// ImageImport is POST /images/create?fromSrc=- with src (a root file
// system's tar, sent as is) as the body: an image named repo ("": none),
// with message as its comment and changes (Dockerfile instructions) applied.
// The answer is a stream of JSON progress messages for the caller to read
// and close.
func (c *Client) ImageImport(ctx context.Context, src io.Reader, repo, message string, changes []string) (io.ReadCloser, error) {
	q := url.Values{}
	q.Set("fromSrc", "-")
	if repo != "" {
		q.Set("repo", repo)
	}
	if message != "" {
		q.Set("message", message)
	}
	for _, ch := range changes {
		q.Add("changes", ch)
	}
	return c.stream(ctx, Request{Method: "POST", Path: "/images/create", Query: q, Body: src})
}

// ImageLoad is POST /images/load with an archive of images (docker save's
// tar) as the body. The answer is a stream of JSON messages ("Loaded image:
// …"; with quiet, no progress) for the caller to read and close.
func (c *Client) ImageLoad(ctx context.Context, src io.Reader, quiet bool) (io.ReadCloser, error) {
	q := url.Values{}
	q.Set("quiet", "0")
	if quiet {
		q.Set("quiet", "1")
	}
	h := Header{"Content-Type": {"application/x-tar"}}
	return c.stream(ctx, Request{Method: "POST", Path: "/images/load", Query: q, Header: h, Body: src})
}

// ImageSave is GET /images/get?names=…: the tar archive of the images
// named, for the caller to read and close.
func (c *Client) ImageSave(ctx context.Context, names []string) (io.ReadCloser, error) {
	q := url.Values{"names": names}
	return c.stream(ctx, Request{Method: "GET", Path: "/images/get", Query: q})
}

// ImagePullOptions are the parameters of ImagePull.
type ImagePullOptions struct {
	// Tag is the tag or digest to pull; "" pulls every tag of the
	// repository.
	Tag string
	// Platform, when set, is the platform to pull for.
	Platform *ocispec.Platform
	// RegistryAuth is the X-Registry-Auth header: base64url-encoded JSON
	// credentials ("": none).
	RegistryAuth string
}

// ImagePull is POST /images/create?fromImage=NAME: the daemon pulls the
// repository name (normalised: docker.io/library/busybox). The answer is a
// stream of JSON progress messages for the caller to read and close.
func (c *Client) ImagePull(ctx context.Context, name string, opts ImagePullOptions) (io.ReadCloser, error) {
	q := url.Values{}
	q.Set("fromImage", name)
	if opts.Tag != "" {
		q.Set("tag", opts.Tag)
	}
	if p := opts.Platform; p != nil {
		// os/arch[/variant]; "unknown" without an OS, as the moby client sends it.
		s := "unknown"
		if p.OS != "" {
			s = path.Join(p.OS, p.Architecture, p.Variant)
		}
		q.Set("platform", s)
	}
	return c.stream(ctx, Request{Method: "POST", Path: "/images/create", Query: q, Header: registryAuthHeader(opts.RegistryAuth)})
}

// ImagePush is POST /images/{name}/push?tag=TAG: the daemon pushes the
// repository name (normalised) at tag ("": every tag), with auth as the
// X-Registry-Auth header ("": none). The answer is a stream of JSON
// progress messages for the caller to read and close.
func (c *Client) ImagePush(ctx context.Context, name, tag, auth string) (io.ReadCloser, error) {
	q := url.Values{}
	if tag != "" {
		q.Set("tag", tag)
	}
	return c.stream(ctx, Request{Method: "POST", Path: "/images/" + esc(name) + "/push", Query: q, Header: registryAuthHeader(auth)})
}

// registryAuthHeader is the X-Registry-Auth header of auth (nil: none).
func registryAuthHeader(auth string) Header {
	if auth == "" {
		return nil
	}
	return Header{registry.AuthHeader: {auth}}
}

// ImageRemove is DELETE /images/{ref}: force removes an image that
// containers use or that has several names; noPrune keeps its untagged
// parents.
func (c *Client) ImageRemove(ctx context.Context, ref string, force, noPrune bool) ([]image.DeleteResponse, error) {
	q := url.Values{}
	if force {
		q.Set("force", "1")
	}
	if noPrune {
		q.Set("noprune", "1")
	}
	var items []image.DeleteResponse
	err := c.del(ctx, "/images/"+esc(ref), q, &items)
	return items, err
}

// ImageTag is POST /images/{source}/tag?repo=REPO&tag=TAG: source gets the
// name repo:tag. The caller checks and normalises the target (repo is a
// full name: docker.io/library/busybox).
func (c *Client) ImageTag(ctx context.Context, source, repo, tag string) error {
	q := url.Values{}
	q.Set("repo", repo)
	if tag != "" {
		q.Set("tag", tag)
	}
	return c.post(ctx, "/images/"+esc(source)+"/tag", q, nil, nil)
}
