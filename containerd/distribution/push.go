package distribution

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/shoal-project/shoal/containerd/images"
)

// PushOptions tune a push.
type PushOptions struct {
	Auth     Auth
	Progress func(Progress)
}

// PushResult is what a push made: the manifest's digest and size.
type PushResult struct {
	Tag    string
	Digest digest.Digest
	Size   int
}

// Push uploads image ref (name[:tag]) to its registry: each layer unless
// the registry has it (HEAD) or can mount it from another repository, then
// the config and a Docker schema 2 manifest under the tag.
func (c *Client) Push(ctx context.Context, refStr string, opts PushOptions) (PushResult, error) {
	ref, err := images.ParseReference(refStr)
	if err != nil {
		return PushResult{}, err
	}
	if ref.Digest != "" {
		return PushResult{}, fmt.Errorf("push %s: cannot push a digest reference", refStr)
	}
	img, cfgRaw, err := c.store.ConfigOf(ref.String())
	if err != nil {
		return PushResult{}, fmt.Errorf("push %s: %w", ref, err)
	}
	prog := newProgress(opts.Progress)
	host, repo := registryHost(ref.Domain), remotePath(ref)
	prog.send(Progress{Status: "The push refers to repository [" + host + "/" + repo + "]"})
	s, err := c.open(ctx, host, repo, opts.Auth, true)
	if err != nil {
		return PushResult{}, fmt.Errorf("push %s: %w", ref, err)
	}
	diffIDs := img.Config.RootFS.DiffIDs
	layers := make([]ocispec.Descriptor, len(diffIDs))
	oci := false
	// docker lists layers top first.
	for i := len(diffIDs) - 1; i >= 0; i-- {
		d, err := c.pushLayer(ctx, s, diffIDs[i], prog)
		if err != nil {
			return PushResult{}, fmt.Errorf("push %s: layer %s: %w", ref, shortID(diffIDs[i]), err)
		}
		if d.MediaType != mediaDockerLayer {
			oci = true
		}
		layers[i] = d
	}
	cfgDesc := ocispec.Descriptor{MediaType: mediaDockerConfig, Digest: digest.FromBytes(cfgRaw), Size: int64(len(cfgRaw))}
	if err := s.uploadIfMissing(ctx, cfgDesc.Digest, func() (io.Reader, error) { return bytes.NewReader(cfgRaw), nil }); err != nil {
		return PushResult{}, fmt.Errorf("push %s: config: %w", ref, err)
	}
	m := manifest{SchemaVersion: 2, MediaType: mediaDockerManifest, Config: &cfgDesc, Layers: layers}
	if oci {
		m.MediaType, m.Config.MediaType = ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageConfig
		for i := range m.Layers {
			if m.Layers[i].MediaType == mediaDockerLayer {
				m.Layers[i].MediaType = ocispec.MediaTypeImageLayerGzip
			}
		}
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return PushResult{}, err
	}
	resp, err := s.call(ctx, http.MethodPut, s.base+"/v2/"+repo+"/manifests/"+ref.Tag,
		http.Header{"Content-Type": {m.MediaType}}, bytes.NewReader(raw), http.StatusCreated, http.StatusOK, http.StatusAccepted)
	if err != nil {
		return PushResult{}, fmt.Errorf("push %s: manifest: %w", ref, err)
	}
	resp.Body.Close()
	md := digest.FromBytes(raw)
	if err := c.store.AddRepoDigest(img.ID, ref.Name()+"@"+string(md)); err != nil {
		return PushResult{}, fmt.Errorf("push %s: %w", ref, err)
	}
	prog.send(Progress{Status: fmt.Sprintf("%s: digest: %s size: %d", ref.Tag, md, len(raw))})
	return PushResult{Tag: ref.Tag, Digest: md, Size: len(raw)}, nil
}

// pushLayer makes sure the registry's repository holds a compressed form
// of layer diffID and returns its descriptor.
func (c *Client) pushLayer(ctx context.Context, s *session, diffID digest.Digest, prog *progress) (ocispec.Descriptor, error) {
	id := shortID(diffID)
	prog.send(Progress{ID: id, Status: "Preparing"})
	// A compressed form the registry may hold already: ours, then a mount.
	for _, b := range c.meta.get(diffID) {
		if b.Host != s.host {
			continue
		}
		desc := ocispec.Descriptor{MediaType: b.MediaType, Digest: b.Digest, Size: b.Size}
		if s.exists(ctx, b.Digest) {
			prog.send(Progress{ID: id, Status: "Layer already exists"})
			return desc, nil
		}
		if b.Repo != s.repo && s.mount(ctx, b.Digest, b.Repo) {
			prog.send(Progress{ID: id, Status: "Mounted from " + b.Repo})
			c.meta.add(diffID, blobRef{Digest: b.Digest, Size: b.Size, MediaType: b.MediaType, Host: s.host, Repo: s.repo})
			return desc, nil
		}
	}
	// Compress into a temporary file: the digest must be known for the HEAD
	// check, and gzip with fixed settings gives the same bytes every time.
	src, err := c.store.Content().Open(diffID)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer src.Close()
	tmp, err := os.CreateTemp(ingestDir(c.opts.Root), "push-")
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	h := digest.SHA256.Digester()
	zw, _ := gzip.NewWriterLevel(io.MultiWriter(tmp, h.Hash()), gzip.DefaultCompression)
	if _, err := io.Copy(zw, src); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("compress: %w", err)
	}
	if err := zw.Close(); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("compress: %w", err)
	}
	st, err := tmp.Stat()
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	desc := ocispec.Descriptor{MediaType: mediaDockerLayer, Digest: h.Digest(), Size: st.Size()}
	if s.exists(ctx, desc.Digest) {
		prog.send(Progress{ID: id, Status: "Layer already exists"})
	} else {
		prog.send(Progress{ID: id, Status: "Pushing", Current: 0, Total: desc.Size})
		err := s.upload(ctx, desc.Digest, func() (io.Reader, error) {
			if _, err := tmp.Seek(0, io.SeekStart); err != nil {
				return nil, err
			}
			return &pushReader{r: tmp, id: id, total: desc.Size, prog: prog}, nil
		})
		if err != nil {
			return ocispec.Descriptor{}, err
		}
		prog.send(Progress{ID: id, Status: "Pushed"})
	}
	c.meta.add(diffID, blobRef{Digest: desc.Digest, Size: desc.Size, MediaType: desc.MediaType, Host: s.host, Repo: s.repo})
	return desc, nil
}

// pushReader reports upload progress, at most every 100 ms.
type pushReader struct {
	r     io.Reader
	id    string
	n     int64
	total int64
	prog  *progress
	last  time.Time
}

func (p *pushReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	if time.Since(p.last) > 100*time.Millisecond || err == io.EOF {
		p.prog.send(Progress{ID: p.id, Status: "Pushing", Current: p.n, Total: p.total})
		p.last = time.Now()
	}
	return n, err
}

// exists is the HEAD check of a blob.
func (s *session) exists(ctx context.Context, d digest.Digest) bool {
	resp, err := s.do(ctx, http.MethodHead, s.base+"/v2/"+s.repo+"/blobs/"+string(d), nil, nil)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// mount asks the registry to link blob d from repository from (201), which
// it may decline by starting an upload instead (202, cancelled here).
func (s *session) mount(ctx context.Context, d digest.Digest, from string) bool {
	u := s.base + "/v2/" + s.repo + "/blobs/uploads/?mount=" + url.QueryEscape(string(d)) + "&from=" + url.QueryEscape(from)
	resp, err := s.do(ctx, http.MethodPost, u, nil, nil)
	if err != nil {
		return false
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusAccepted {
		if loc, err := s.resolveURL(resp.Header.Get("Location")); err == nil {
			if r, err := s.do(ctx, http.MethodDelete, loc, nil, nil); err == nil {
				r.Body.Close()
			}
		}
	}
	return resp.StatusCode == http.StatusCreated
}

func (s *session) uploadIfMissing(ctx context.Context, d digest.Digest, body func() (io.Reader, error)) error {
	if s.exists(ctx, d) {
		return nil
	}
	return s.upload(ctx, d, body)
}

// upload sends a blob as docker does: POST to start the upload, one
// streaming PATCH with the bytes, PUT ?digest= to commit. A registry that
// refuses the PATCH gets the blob again in one monolithic PUT.
func (s *session) upload(ctx context.Context, d digest.Digest, body func() (io.Reader, error)) error {
	loc, err := s.startUpload(ctx)
	if err != nil {
		return err
	}
	r, err := body()
	if err != nil {
		return err
	}
	resp, err := s.call(ctx, http.MethodPatch, loc, http.Header{"Content-Type": {"application/octet-stream"}}, r, http.StatusAccepted, http.StatusNoContent)
	if err != nil {
		if !isStatus(err, http.StatusMethodNotAllowed) && !isStatus(err, http.StatusBadRequest) && !isStatus(err, http.StatusRequestedRangeNotSatisfiable) {
			return fmt.Errorf("upload: %w", err)
		}
		if loc, err = s.startUpload(ctx); err != nil {
			return err
		}
		if r, err = body(); err != nil {
			return err
		}
		return s.commitUpload(ctx, loc, d, r)
	}
	resp.Body.Close()
	if loc, err = s.resolveURL(resp.Header.Get("Location")); err != nil {
		return err
	}
	return s.commitUpload(ctx, loc, d, nil)
}

// startUpload opens an upload session and returns its location.
func (s *session) startUpload(ctx context.Context) (string, error) {
	resp, err := s.call(ctx, http.MethodPost, s.base+"/v2/"+s.repo+"/blobs/uploads/", nil, nil, http.StatusAccepted)
	if err != nil {
		return "", fmt.Errorf("start upload: %w", err)
	}
	resp.Body.Close()
	return s.resolveURL(resp.Header.Get("Location"))
}

// commitUpload ends an upload with PUT ?digest=, carrying body if not nil.
func (s *session) commitUpload(ctx context.Context, loc string, d digest.Digest, body io.Reader) error {
	u, err := url.Parse(loc)
	if err != nil {
		return fmt.Errorf("bad upload location %q", loc)
	}
	q := u.Query()
	q.Set("digest", string(d))
	u.RawQuery = q.Encode()
	var hdr http.Header
	if body != nil {
		hdr = http.Header{"Content-Type": {"application/octet-stream"}}
	}
	resp, err := s.call(ctx, http.MethodPut, u.String(), hdr, body, http.StatusCreated, http.StatusNoContent, http.StatusAccepted)
	if err != nil {
		return fmt.Errorf("commit upload: %w", err)
	}
	resp.Body.Close()
	return nil
}
