package apiclient

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/moby/moby/api/types/container"
)

// pathStatHeader carries a path's stat on the archive endpoints: base64
// of a JSON container.PathStat.
const pathStatHeader = "X-Docker-Container-Path-Stat"

// ContainerStatPath is HEAD /containers/{id}/archive: what path is in the
// container. A missing path is the daemon's 404 (an *Error without a
// message: HEAD answers have no body).
func (c *Client) ContainerStatPath(ctx context.Context, id, path string) (container.PathStat, error) {
	p, err := containerPath(id)
	if err != nil {
		return container.PathStat{}, err
	}
	resp, err := c.Do(ctx, Request{Method: "HEAD", Path: p + "/archive", Query: url.Values{"path": {path}}})
	if err != nil {
		return container.PathStat{}, err
	}
	resp.Body.Close()
	return pathStat(resp.Header)
}

// CopyFromContainer is GET /containers/{id}/archive: a tar of path (a
// file or a directory tree, its top entry named after path's last
// element) and path's stat. The caller closes the tar.
func (c *Client) CopyFromContainer(ctx context.Context, id, path string) (io.ReadCloser, container.PathStat, error) {
	p, err := containerPath(id)
	if err != nil {
		return nil, container.PathStat{}, err
	}
	resp, err := c.Do(ctx, Request{Method: "GET", Path: p + "/archive", Query: url.Values{"path": {path}}})
	if err != nil {
		return nil, container.PathStat{}, err
	}
	st, err := pathStat(resp.Header)
	if err != nil {
		resp.Body.Close()
		return nil, st, fmt.Errorf("unable to get resource stat from response: %s", err)
	}
	return resp.Body, st, nil
}

func pathStat(h Header) (container.PathStat, error) {
	var st container.PathStat
	dec := json.NewDecoder(base64.NewDecoder(base64.StdEncoding, strings.NewReader(h.Get(pathStatHeader))))
	if err := dec.Decode(&st); err != nil {
		return st, fmt.Errorf("unable to decode container path stat header: %s", err)
	}
	return st, nil
}

// CopyToContainerOptions are the parameters of CopyToContainer.
type CopyToContainerOptions struct {
	// DestinationPath is the directory in the container the tar is
	// unpacked into.
	DestinationPath string
	// Content is the tar, streamed as the request's body.
	Content io.Reader
	// AllowOverwriteDirWithFile lets a file of the tar replace a
	// directory (and the reverse).
	AllowOverwriteDirWithFile bool
	// CopyUIDGID keeps the tar's owners (else the container's root).
	CopyUIDGID bool
}

// CopyToContainer is PUT /containers/{id}/archive.
func (c *Client) CopyToContainer(ctx context.Context, id string, o CopyToContainerOptions) error {
	p, err := containerPath(id)
	if err != nil {
		return err
	}
	q := url.Values{"path": {o.DestinationPath}}
	if !o.AllowOverwriteDirWithFile {
		q.Set("noOverwriteDirNonDir", "true")
	}
	if o.CopyUIDGID {
		q.Set("copyUIDGID", "true")
	}
	var body any // none: an empty PUT
	if o.Content != nil {
		body = o.Content
	}
	return c.call(ctx, Request{Method: "PUT", Path: p + "/archive", Query: q, Body: body}, nil)
}

// ContainerExport is GET /containers/{id}/export: the container's
// filesystem as a tar, for the caller to read and close.
func (c *Client) ContainerExport(ctx context.Context, id string) (io.ReadCloser, error) {
	p, err := containerPath(id)
	if err != nil {
		return nil, err
	}
	return c.stream(ctx, Request{Method: "GET", Path: p + "/export"})
}
