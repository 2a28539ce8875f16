package images

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/shoal-project/shoal/containerd/archive"
)

// dockerManifest is one item of a docker-save manifest.json.
type dockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// Annotation Docker and containerd put on index.json entries: the full image name.
const annotationImageName = "io.containerd.image.name"

// fullName is the fully qualified form of a familiar reference.
func fullName(r Reference) string {
	if r.Domain != "" {
		return r.String()
	}
	p := r.Path
	if !strings.Contains(p, "/") {
		p = "library/" + p
	}
	return "docker.io/" + p + ":" + r.Tag
}

// Save writes the images named by refs (references or IDs) to w as a
// `docker save` archive (manifest.json, repositories) that is also an OCI
// image layout (oci-layout, index.json, blobs/sha256). Layers are stored
// uncompressed. An image named by ID is saved without tags.
func (s *Store) Save(ctx context.Context, w io.Writer, refs []string) error {
	type item struct {
		e    *entry
		tags []string
	}
	var items []*item
	byID := map[string]*item{}
	s.mu.Lock()
	for _, r := range refs {
		e, byRef, err := s.lookupLocked(r)
		if err != nil {
			s.mu.Unlock()
			return err
		}
		it := byID[e.id]
		if it == nil {
			it = &item{e: e}
			byID[e.id] = it
			items = append(items, it)
		}
		if byRef != "" && !contains(it.tags, byRef) {
			it.tags = append(it.tags, byRef)
		}
	}
	s.mu.Unlock()
	if len(items) == 0 {
		return fmt.Errorf("images: save: %w: no image named", ErrInvalid)
	}
	s.useStore()
	defer s.doneWithStore()

	tw := tar.NewWriter(w)
	epoch := time.Unix(0, 0)
	writeFile := func(name string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o444, Size: int64(len(b)), ModTime: epoch, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Name: d, Mode: 0o755, ModTime: epoch, Typeflag: tar.TypeDir}); err != nil {
			return fmt.Errorf("images: save: %w", err)
		}
	}
	written := map[digest.Digest]bool{}
	writeBlob := func(d digest.Digest) (int64, error) {
		info, err := s.content.Info(d)
		if err != nil {
			return 0, err
		}
		if written[d] {
			return info.Size, nil
		}
		f, err := s.content.Open(d)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		if err := tw.WriteHeader(&tar.Header{Name: "blobs/sha256/" + d.Encoded(), Mode: 0o444, Size: info.Size, ModTime: epoch, Typeflag: tar.TypeReg}); err != nil {
			return 0, err
		}
		if _, err := io.Copy(tw, &ctxReader{ctx, f}); err != nil {
			return 0, err
		}
		written[d] = true
		return info.Size, nil
	}

	index := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{}}
	var manifests []dockerManifest
	repos := map[string]map[string]string{}
	for _, it := range items {
		cfgSize, err := writeBlob(digest.Digest(it.e.id))
		if err != nil {
			return fmt.Errorf("images: save %s: %w", short(it.e.id), err)
		}
		m := ocispec.Manifest{
			Versioned: specs.Versioned{SchemaVersion: 2},
			MediaType: ocispec.MediaTypeImageManifest,
			Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.Digest(it.e.id), Size: cfgSize},
			Layers:    []ocispec.Descriptor{},
		}
		dm := dockerManifest{Config: "blobs/sha256/" + digest.Digest(it.e.id).Encoded(), RepoTags: it.tags, Layers: []string{}}
		for _, l := range it.e.config.RootFS.DiffIDs {
			n, err := writeBlob(l)
			if err != nil {
				return fmt.Errorf("images: save %s: layer: %w", short(it.e.id), err)
			}
			m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: l, Size: n})
			dm.Layers = append(dm.Layers, "blobs/sha256/"+l.Encoded())
		}
		mb, _ := json.Marshal(m)
		md := digest.FromBytes(mb)
		if !written[md] {
			if err := writeFile("blobs/sha256/"+md.Encoded(), mb); err != nil {
				return fmt.Errorf("images: save: %w", err)
			}
			written[md] = true
		}
		desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: md, Size: int64(len(mb))}
		if len(it.tags) == 0 {
			index.Manifests = append(index.Manifests, desc)
		}
		for _, t := range it.tags {
			ref, _ := ParseReference(t)
			d := desc
			d.Annotations = map[string]string{annotationImageName: fullName(ref), ocispec.AnnotationRefName: ref.Tag}
			index.Manifests = append(index.Manifests, d)
			if repos[ref.Name()] == nil {
				repos[ref.Name()] = map[string]string{}
			}
			repos[ref.Name()][ref.Tag] = digest.Digest(it.e.id).Encoded()
		}
		manifests = append(manifests, dm)
	}
	layout, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	ib, _ := json.Marshal(index)
	mfb, _ := json.Marshal(manifests)
	files := []struct {
		name string
		b    []byte
	}{{ocispec.ImageLayoutFile, layout}, {"index.json", ib}, {"manifest.json", mfb}}
	if len(repos) > 0 {
		rb, _ := json.Marshal(repos)
		files = append(files, struct {
			name string
			b    []byte
		}{"repositories", rb})
	}
	for _, f := range files {
		if err := writeFile(f.name, f.b); err != nil {
			return fmt.Errorf("images: save: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("images: save: %w", err)
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// loadItem is one image found in an archive.
type loadItem struct {
	raw    []byte
	tags   []string
	layers []string // archive names of the layer tars, bottom first
}

// extracted is an archive unpacked into a temporary directory: files by
// their cleaned archive name, with their digests, and links between names.
type extracted struct {
	dir   string
	files map[string]extractedFile
	links map[string]string
}

type extractedFile struct {
	path   string
	digest digest.Digest
}

const maxJSON = 32 << 20

// Load reads an image archive from r: a `docker save` archive (manifest.json)
// or an OCI image layout (index.json), as a tar, possibly gzip-compressed,
// with plain or gzip layers. All images of the archive are added, or none:
// a bad archive leaves no image, blob or snapshot behind. It returns the
// loaded references, or the image ID of an image loaded without tags.
func (s *Store) Load(ctx context.Context, r io.Reader) ([]string, error) {
	loaded, err := s.load(ctx, r)
	if err != nil {
		// load is done with the store: collect deletes what the failed load
		// left (nothing registered uses it), now or when the last writer is done.
		s.collect()
		return nil, fmt.Errorf("images: load: %w", err)
	}
	return loaded, nil
}

func (s *Store) load(ctx context.Context, r io.Reader) ([]string, error) {
	s.useStore()
	defer s.doneWithStore()
	tmp, err := os.MkdirTemp(filepath.Join(s.root, "tmp"), "load-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	x, err := extract(ctx, r, tmp)
	if err != nil {
		return nil, err
	}
	var items []loadItem
	if _, ok := x.files["manifest.json"]; ok {
		items, err = x.dockerItems()
	} else if _, ok := x.files["index.json"]; ok {
		items, err = x.ociItems()
	} else {
		err = fmt.Errorf("%w: not an image archive (no manifest.json or index.json)", ErrInvalid)
	}
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return nil, fmt.Errorf("%w: the archive holds no image", ErrInvalid)
	}

	type ready struct {
		e    *entry
		tags []string
	}
	var all []ready
	for _, it := range items {
		id := digest.FromBytes(it.raw).String()
		e, err := newEntry(id, record{Added: time.Now().UTC()}, it.raw)
		if err != nil {
			return nil, err
		}
		if e.config.RootFS.Type != "layers" || len(e.config.RootFS.DiffIDs) != len(it.layers) {
			return nil, fmt.Errorf("%w: image %s: config lists %d layers, manifest %d", ErrInvalid, short(id), len(e.config.RootFS.DiffIDs), len(it.layers))
		}
		var tags []string
		for _, t := range it.tags {
			ref, err := parseTagged(t)
			if err != nil {
				return nil, fmt.Errorf("image %s: %w", short(id), err)
			}
			tags = append(tags, ref.String())
		}
		var parent digest.Digest
		for i, name := range it.layers {
			want := e.config.RootFS.DiffIDs[i]
			if err := want.Validate(); err != nil {
				return nil, fmt.Errorf("%w: image %s: bad diff_id %q", ErrInvalid, short(id), want)
			}
			if err := s.loadLayer(ctx, x, name, parent, want); err != nil {
				return nil, fmt.Errorf("image %s: layer %d: %w", short(id), i+1, err)
			}
			parent = chainOf(parent, want)
		}
		if _, _, err := s.content.Put(strings.NewReader(string(it.raw)), digest.Digest(id)); err != nil {
			return nil, fmt.Errorf("image %s: store config: %w", short(id), err)
		}
		all = append(all, ready{e, tags})
	}

	// Everything is on disk: add all images in one step.
	var out []string
	s.mu.Lock()
	for _, r := range all {
		if s.images[r.e.id] == nil {
			s.images[r.e.id] = r.e
		}
		for _, t := range r.tags {
			s.refs[t] = r.e.id
			out = append(out, t)
		}
		if len(r.tags) == 0 {
			out = append(out, r.e.id)
		}
	}
	s.mu.Unlock()
	if err := s.persist(); err != nil {
		return nil, err
	}
	return out, nil
}

func (s *Store) loadLayer(ctx context.Context, x *extracted, name string, parent, want digest.Digest) error {
	f, err := x.open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := archive.Decompress(f)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	defer zr.Close()
	_, err = s.addLayer(ctx, zr, parent, want)
	return err
}

// extract unpacks the archive's regular files into dir under numbered names;
// archive names are only map keys, so no name can write anywhere.
func extract(ctx context.Context, r io.Reader, dir string) (*extracted, error) {
	zr, err := archive.Decompress(r)
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	x := &extracted{dir: dir, files: map[string]extractedFile{}, links: map[string]string{}}
	tr := tar.NewReader(&ctxReader{ctx, zr})
	for n := 0; ; n++ {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("%w: truncated or corrupt archive: %v", ErrInvalid, err)
		}
		name, err := archive.CleanName(hdr.Name)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeRegA:
			p := filepath.Join(dir, strconv.Itoa(n))
			f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return nil, err
			}
			h := digest.SHA256.Digester()
			_, err = io.Copy(io.MultiWriter(f, h.Hash()), tr)
			f.Close()
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				return nil, fmt.Errorf("%w: truncated or corrupt archive at %s: %v", ErrInvalid, hdr.Name, err)
			}
			x.files[name] = extractedFile{path: p, digest: h.Digest()}
		case tar.TypeSymlink:
			// Old docker save archives link duplicate layers to the first copy.
			x.links[name] = path.Join(path.Dir(name), hdr.Linkname)
		case tar.TypeLink:
			target, err := archive.CleanName(hdr.Linkname)
			if err != nil {
				return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
			}
			x.links[name] = target
		}
	}
	return x, nil
}

func (x *extracted) lookup(name string) (extractedFile, error) {
	name = path.Clean(name)
	for range 16 {
		if f, ok := x.files[name]; ok {
			return f, nil
		}
		t, ok := x.links[name]
		if !ok {
			break
		}
		name = t
	}
	return extractedFile{}, fmt.Errorf("%w: %q is missing from the archive", ErrInvalid, name)
}

func (x *extracted) open(name string) (*os.File, error) {
	f, err := x.lookup(name)
	if err != nil {
		return nil, err
	}
	return os.Open(f.path)
}

func (x *extracted) readJSON(name string, v any) ([]byte, error) {
	f, err := x.open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxJSON+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxJSON {
		return nil, fmt.Errorf("%w: %s is too large", ErrInvalid, name)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, name, err)
	}
	return b, nil
}

func (x *extracted) dockerItems() ([]loadItem, error) {
	var mf []dockerManifest
	if _, err := x.readJSON("manifest.json", &mf); err != nil {
		return nil, err
	}
	var items []loadItem
	for _, m := range mf {
		var cfg map[string]any
		raw, err := x.readJSON(m.Config, &cfg)
		if err != nil {
			return nil, err
		}
		items = append(items, loadItem{raw: raw, tags: m.RepoTags, layers: m.Layers})
	}
	return items, nil
}

// blob opens the blob desc of an OCI layout, checking its digest.
func (x *extracted) blobName(desc ocispec.Descriptor) (string, error) {
	if err := desc.Digest.Validate(); err != nil {
		return "", fmt.Errorf("%w: bad digest %q", ErrInvalid, desc.Digest)
	}
	name := path.Join("blobs", string(desc.Digest.Algorithm()), desc.Digest.Encoded())
	f, err := x.lookup(name)
	if err != nil {
		return "", err
	}
	if desc.Digest.Algorithm() == digest.SHA256 && f.digest != desc.Digest {
		return "", fmt.Errorf("%w: blob %s has digest %s", ErrInvalid, desc.Digest, f.digest)
	}
	return name, nil
}

const (
	dockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	dockerManifestV2   = "application/vnd.docker.distribution.manifest.v2+json"
)

func (x *extracted) ociItems() ([]loadItem, error) {
	var layout ocispec.ImageLayout
	if _, err := x.readJSON(ocispec.ImageLayoutFile, &layout); err != nil {
		return nil, err
	}
	var idx ocispec.Index
	if _, err := x.readJSON("index.json", &idx); err != nil {
		return nil, err
	}
	var items []loadItem
	for _, d := range idx.Manifests {
		var tags []string
		if n := d.Annotations[annotationImageName]; n != "" {
			tags = append(tags, n)
		} else if n := d.Annotations[ocispec.AnnotationRefName]; strings.Contains(n, ":") {
			tags = append(tags, n)
		}
		it, err := x.ociManifest(d, 0)
		if err != nil {
			return nil, err
		}
		it.tags = tags
		items = append(items, it)
	}
	// One manifest tagged twice is one image with two tags.
	merged := map[string]int{}
	var out []loadItem
	for _, it := range items {
		key := string(digest.FromBytes(it.raw))
		if i, ok := merged[key]; ok {
			out[i].tags = append(out[i].tags, it.tags...)
			continue
		}
		merged[key] = len(out)
		out = append(out, it)
	}
	return out, nil
}

// ociManifest follows desc (an index or a manifest) down to one image,
// picking this machine's platform from indexes.
func (x *extracted) ociManifest(desc ocispec.Descriptor, depth int) (loadItem, error) {
	if depth > 4 {
		return loadItem{}, fmt.Errorf("%w: indexes nested too deep", ErrInvalid)
	}
	name, err := x.blobName(desc)
	if err != nil {
		return loadItem{}, err
	}
	switch desc.MediaType {
	case ocispec.MediaTypeImageIndex, dockerManifestList:
		var idx ocispec.Index
		if _, err := x.readJSON(name, &idx); err != nil {
			return loadItem{}, err
		}
		var pick *ocispec.Descriptor
		for i, m := range idx.Manifests {
			p := m.Platform
			if p == nil || (p.OS == "linux" && p.Architecture == runtime.GOARCH) {
				pick = &idx.Manifests[i]
				break
			}
		}
		if pick == nil {
			return loadItem{}, fmt.Errorf("%w: no image for linux/%s in the index", ErrInvalid, runtime.GOARCH)
		}
		return x.ociManifest(*pick, depth+1)
	case ocispec.MediaTypeImageManifest, dockerManifestV2, "":
		var m ocispec.Manifest
		if _, err := x.readJSON(name, &m); err != nil {
			return loadItem{}, err
		}
		cname, err := x.blobName(m.Config)
		if err != nil {
			return loadItem{}, err
		}
		var cfg map[string]any
		raw, err := x.readJSON(cname, &cfg)
		if err != nil {
			return loadItem{}, err
		}
		it := loadItem{raw: raw}
		for _, l := range m.Layers {
			ln, err := x.blobName(l)
			if err != nil {
				return loadItem{}, err
			}
			it.layers = append(it.layers, ln)
		}
		return it, nil
	default:
		return loadItem{}, fmt.Errorf("%w: unsupported manifest media type %q", ErrInvalid, desc.MediaType)
	}
}

// ctxReader stops a long copy when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
