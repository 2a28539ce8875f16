package distribution

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/shoal-project/shoal/containerd/images"
)

// Progress is one line of a pull's or push's progress, as docker shows it:
// ID is a short layer digest (or empty), Current/Total the bytes so far.
type Progress struct {
	ID, Status     string
	Current, Total int64
}

// PullOptions tune a pull.
type PullOptions struct {
	// Platform is os/arch[/variant]; empty for the node's.
	Platform string
	Auth     Auth
	// Progress, if set, is called from several goroutines, one call at a time.
	Progress func(Progress)
}

// stallTimeout is how long a download may go without receiving a byte.
var stallTimeout = 60 * time.Second

var errStalled = errors.New("the registry stopped sending data")

// concurrentDownloads is dockerd's max-concurrent-downloads default.
const concurrentDownloads = 3

// Pull fetches ref (name[:tag] or name@digest) and adds it to the store,
// tagged ref when ref has a tag. It returns the image.
func (c *Client) Pull(ctx context.Context, refStr string, opts PullOptions) (images.Image, error) {
	ref, err := images.ParseReference(refStr)
	if err != nil {
		return images.Image{}, err
	}
	plat, err := ParsePlatform(opts.Platform)
	if err != nil {
		return images.Image{}, err
	}
	prog := newProgress(opts.Progress)
	host, repo := registryHost(ref.Domain), remotePath(ref)
	s, err := c.open(ctx, host, repo, opts.Auth, false)
	if err != nil {
		return images.Image{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	if ref.Tag != "" && ref.Digest == "" {
		prog.send(Progress{ID: ref.Tag, Status: "Pulling from " + repo})
	} else {
		prog.send(Progress{ID: string(ref.Digest), Status: "Pulling from " + repo})
	}
	want := ref.Tag
	if ref.Digest != "" {
		want = string(ref.Digest)
	}
	_, mdigest, m, err := s.fetchManifest(ctx, want, ref.Digest)
	if err != nil {
		return images.Image{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	if m.isIndex() {
		d, err := m.pick(plat)
		if err != nil {
			return images.Image{}, fmt.Errorf("pull %s: %w", ref, err)
		}
		// The image is still known by the index's digest, as docker records it.
		if _, _, m, err = s.fetchManifest(ctx, string(d.Digest), d.Digest); err != nil {
			return images.Image{}, fmt.Errorf("pull %s: %w", ref, err)
		}
		if m.isIndex() {
			return images.Image{}, fmt.Errorf("pull %s: an index that points to another index is not supported", ref)
		}
	}
	cfgRaw, err := s.fetchSmallBlob(ctx, *m.Config, maxConfig)
	if err != nil {
		return images.Image{}, fmt.Errorf("pull %s: config: %w", ref, err)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(cfgRaw, &cfg); err != nil {
		return images.Image{}, fmt.Errorf("pull %s: malformed image config: %w", ref, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return images.Image{}, fmt.Errorf("pull %s: the config lists %d layers, the manifest %d", ref, len(cfg.RootFS.DiffIDs), len(m.Layers))
	}
	for _, d := range cfg.RootFS.DiffIDs {
		if err := d.Validate(); err != nil || d.Algorithm() != digest.SHA256 {
			return images.Image{}, fmt.Errorf("pull %s: malformed image config: bad diff_id %q", ref, d)
		}
	}
	if ref.Digest == "" && ref.Tag != "" {
		// A tag is checked against the platform we are on; a digest is taken as asked.
		if cfg.OS != "" && cfg.OS != plat.OS || cfg.Architecture != "" && cfg.Architecture != plat.Architecture {
			if opts.Platform != "" {
				return images.Image{}, fmt.Errorf("pull %s: image is for %s/%s, not %s", ref, cfg.OS, cfg.Architecture, plat)
			}
		}
	}

	in := c.store.BeginIngest()
	ok := false
	defer func() { in.Close(!ok && ctx.Err() != nil) }()
	chains := identity.ChainIDs(append([]digest.Digest(nil), cfg.RootFS.DiffIDs...))
	type job struct {
		desc   ocispec.Descriptor
		diffID digest.Digest
		parent digest.Digest
		file   string
		done   chan error
	}
	jobs := make([]*job, len(m.Layers))
	sem := make(chan struct{}, concurrentDownloads)
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for i, l := range m.Layers {
		j := &job{desc: l, diffID: cfg.RootFS.DiffIDs[i], done: make(chan error, 1)}
		if i > 0 {
			j.parent = chains[i-1]
		}
		jobs[i] = j
		id := shortID(l.Digest)
		if in.HasLayer(j.parent, j.diffID) {
			prog.send(Progress{ID: id, Status: "Already exists"})
			j.done <- nil
			continue
		}
		prog.send(Progress{ID: id, Status: "Pulling fs layer"})
	}
	for _, j := range jobs {
		if len(j.done) > 0 {
			continue
		}
		go func(j *job) {
			select {
			case sem <- struct{}{}:
			default:
				prog.send(Progress{ID: shortID(j.desc.Digest), Status: "Waiting"})
				select {
				case sem <- struct{}{}:
				case <-dctx.Done():
					j.done <- dctx.Err()
					return
				}
			}
			defer func() { <-sem }()
			f, err := s.download(dctx, ingestDir(c.opts.Root), j.desc, prog)
			j.file = f
			j.done <- err
		}(j)
	}
	// Extract in order, as dockerd shows it; downloads run ahead.
	var firstErr error
	for _, j := range jobs {
		err := <-j.done
		if err == nil && j.file != "" && firstErr == nil {
			err = c.extract(ctx, in, j.desc, j.file, j.parent, j.diffID, prog)
		}
		if j.file != "" {
			os.Remove(j.file)
		}
		if err != nil && firstErr == nil {
			firstErr = err
			cancel()
		}
		if err == nil && j.file != "" && firstErr == nil {
			c.meta.add(j.diffID, blobRef{Digest: j.desc.Digest, Size: j.desc.Size, MediaType: j.desc.MediaType, Host: host, Repo: repo})
		}
	}
	if firstErr != nil {
		if ctx.Err() != nil {
			return images.Image{}, fmt.Errorf("pull %s: %w", ref, ctx.Err())
		}
		return images.Image{}, fmt.Errorf("pull %s: %w", ref, firstErr)
	}
	var tags []string
	if ref.Tag != "" && ref.Digest == "" {
		tags = []string{ref.String()}
	}
	img, err := in.Register(cfgRaw, tags, ref.Name()+"@"+string(mdigest))
	if err != nil {
		return images.Image{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	ok = true
	prog.send(Progress{Status: "Digest: " + string(mdigest)})
	return img, nil
}

// fetchManifest gets a manifest or index by tag or digest; with want set
// its bytes must hash to it.
func (s *session) fetchManifest(ctx context.Context, tagOrDigest string, want digest.Digest) ([]byte, digest.Digest, *manifest, error) {
	hdr := http.Header{"Accept": {acceptManifests}}
	resp, err := s.call(ctx, http.MethodGet, s.base+"/v2/"+s.repo+"/manifests/"+tagOrDigest, hdr, nil, http.StatusOK)
	if err != nil {
		if isStatus(err, http.StatusNotFound) {
			return nil, "", nil, fmt.Errorf("manifest unknown: %s:%s not found in registry %s", s.repo, tagOrDigest, s.host)
		}
		return nil, "", nil, fmt.Errorf("manifest %s: %w", tagOrDigest, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxManifest+1))
	if err != nil {
		return nil, "", nil, fmt.Errorf("manifest %s: %w", tagOrDigest, err)
	}
	if len(b) > maxManifest {
		return nil, "", nil, fmt.Errorf("manifest %s: larger than %d bytes", tagOrDigest, maxManifest)
	}
	got := digest.FromBytes(b)
	if want != "" && got != want {
		return nil, "", nil, fmt.Errorf("manifest digest mismatch: registry sent %s for %s", got, want)
	}
	// For a tag there is nothing to check against but what the registry
	// says it sent; a registry that says so must be right.
	if h := digest.Digest(resp.Header.Get("Docker-Content-Digest")); h != "" && h.Validate() == nil && h.Algorithm() == digest.SHA256 && h != got {
		return nil, "", nil, fmt.Errorf("manifest digest mismatch: registry sent %s, says %s", got, h)
	}
	m, err := parseManifest(b, resp.Header.Get("Content-Type"))
	if err != nil {
		return nil, "", nil, err
	}
	return b, got, m, nil
}

// fetchSmallBlob gets a blob (a config) into memory, checking its digest.
func (s *session) fetchSmallBlob(ctx context.Context, d ocispec.Descriptor, limit int64) ([]byte, error) {
	resp, err := s.call(ctx, http.MethodGet, s.base+"/v2/"+s.repo+"/blobs/"+string(d.Digest), nil, nil, http.StatusOK)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", d.Digest, err)
	}
	defer resp.Body.Close()
	limit = min(limit, d.Size)
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", d.Digest, err)
	}
	if int64(len(b)) != d.Size {
		return nil, fmt.Errorf("blob %s: got %d bytes, the manifest says %d", d.Digest, len(b), d.Size)
	}
	if got := digest.FromBytes(b); got != d.Digest {
		return nil, fmt.Errorf("digest mismatch for blob %s: got %s", d.Digest, got)
	}
	return b, nil
}

// download streams one layer blob into a file of dir, hashing it as it
// comes; the file is returned only if the bytes match the descriptor.
func (s *session) download(ctx context.Context, dir string, d ocispec.Descriptor, prog *progress) (string, error) {
	id := shortID(d.Digest)
	// A registry that stops sending must not hold the pull forever: the
	// request ends after stallTimeout without a byte.
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stall := time.AfterFunc(stallTimeout, func() { cancel(errStalled) })
	defer stall.Stop()
	resp, err := s.call(rctx, http.MethodGet, s.base+"/v2/"+s.repo+"/blobs/"+string(d.Digest), nil, nil, http.StatusOK)
	if err != nil {
		if context.Cause(rctx) == errStalled {
			err = errStalled
		}
		if isStatus(err, http.StatusNotFound) {
			return "", fmt.Errorf("layer %s: blob unknown to registry %s (the manifest references a missing blob)", d.Digest, s.host)
		}
		return "", fmt.Errorf("layer %s: %w", d.Digest, err)
	}
	defer resp.Body.Close()
	f, err := os.CreateTemp(dir, "layer-")
	if err != nil {
		return "", fmt.Errorf("layer %s: %w", d.Digest, err)
	}
	name := f.Name()
	fail := func(err error) (string, error) {
		f.Close()
		os.Remove(name)
		return "", fmt.Errorf("layer %s: %w", d.Digest, err)
	}
	h := digest.SHA256.Digester()
	buf := make([]byte, 256<<10)
	var n int64
	last := time.Time{}
	for {
		k, rerr := resp.Body.Read(buf)
		stall.Reset(stallTimeout)
		if k > 0 {
			n += int64(k)
			if n > d.Size {
				return fail(fmt.Errorf("registry sent more than the %d bytes the manifest says", d.Size))
			}
			h.Hash().Write(buf[:k])
			if _, err := f.Write(buf[:k]); err != nil {
				return fail(fmt.Errorf("write: %w", err))
			}
			if time.Since(last) > 100*time.Millisecond {
				prog.send(Progress{ID: id, Status: "Downloading", Current: n, Total: d.Size})
				last = time.Now()
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			if context.Cause(rctx) == errStalled {
				rerr = errStalled
			}
			return fail(fmt.Errorf("download: %w", rerr))
		}
	}
	prog.send(Progress{ID: id, Status: "Verifying Checksum"})
	if n < d.Size {
		return fail(fmt.Errorf("truncated blob: got %d of %d bytes", n, d.Size))
	}
	if got := h.Digest(); got != d.Digest {
		return fail(fmt.Errorf("digest mismatch: the registry sent bytes hashing to %s", got))
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	prog.send(Progress{ID: id, Status: "Download complete"})
	return name, nil
}

// extract decompresses a downloaded layer into the store.
func (c *Client) extract(ctx context.Context, in *images.Ingest, d ocispec.Descriptor, file string, parent, diffID digest.Digest, prog *progress) error {
	id := shortID(d.Digest)
	comp, err := layerCompression(d.MediaType)
	if err != nil {
		return err
	}
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	cr := &countingReader{r: f}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				prog.send(Progress{ID: id, Status: "Extracting", Current: cr.n.Load(), Total: d.Size})
			case <-stop:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	prog.send(Progress{ID: id, Status: "Extracting", Current: 0, Total: d.Size})
	var r io.Reader = cr
	switch comp {
	case compGzip:
		zr, err := gzip.NewReader(cr)
		if err != nil {
			return fmt.Errorf("layer %s: gzip: %w", d.Digest, err)
		}
		defer zr.Close()
		r = zr
	case compZstd:
		zr, err := zstd.NewReader(cr)
		if err != nil {
			return fmt.Errorf("layer %s: zstd: %w", d.Digest, err)
		}
		defer zr.Close()
		r = zr
	}
	if err := in.AddLayer(ctx, r, parent, diffID); err != nil {
		return fmt.Errorf("layer %s: %w", d.Digest, err)
	}
	prog.send(Progress{ID: id, Status: "Pull complete"})
	return nil
}

func shortID(d digest.Digest) string {
	e := d.Encoded()
	if len(e) > 12 {
		return e[:12]
	}
	return e
}

// progress serialises calls of a Progress callback.
type progress struct {
	mu sync.Mutex
	fn func(Progress)
}

func newProgress(fn func(Progress)) *progress { return &progress{fn: fn} }

func (p *progress) send(m Progress) {
	if p.fn == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fn(m)
}

// countingReader counts the bytes read through it, for progress.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// Tags lists the tags of repository name (no tag or digest), following the
// registry's pagination, as `pull --all-tags` needs them.
func (c *Client) Tags(ctx context.Context, name string, auth Auth) ([]string, error) {
	ref, err := images.ParseReference(name)
	if err != nil {
		return nil, err
	}
	host, repo := registryHost(ref.Domain), remotePath(ref)
	s, err := c.open(ctx, host, repo, auth, false)
	if err != nil {
		return nil, fmt.Errorf("list tags of %s: %w", ref.Name(), err)
	}
	var tags []string
	next := s.base + "/v2/" + repo + "/tags/list"
	for pages := 0; next != "" && pages < 1000; pages++ {
		resp, err := s.call(ctx, http.MethodGet, next, nil, nil, http.StatusOK)
		if err != nil {
			return nil, fmt.Errorf("list tags of %s: %w", ref.Name(), err)
		}
		var page struct {
			Tags []string `json:"tags"`
		}
		err = json.NewDecoder(io.LimitReader(resp.Body, maxManifest)).Decode(&page)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("list tags of %s: malformed answer: %w", ref.Name(), err)
		}
		tags = append(tags, page.Tags...)
		next = ""
		// Link: </v2/name/tags/list?n=100&last=x>; rel="next"
		if l := resp.Header.Get("Link"); strings.Contains(l, `rel="next"`) {
			if i, j := strings.IndexByte(l, '<'), strings.IndexByte(l, '>'); i >= 0 && j > i {
				if next, err = s.resolveURL(l[i+1 : j]); err != nil {
					return nil, err
				}
			}
		}
	}
	return tags, nil
}
