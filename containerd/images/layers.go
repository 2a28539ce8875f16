package images

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/containerd/archive"
	"github.com/shoal-project/shoal/containerd/atomicfile"
)

// ImportOptions tune Import.
type ImportOptions struct {
	// Comment is the history comment; "Imported from -" when empty.
	Comment string
	// Config is the runtime config of the new image (what `import --change`
	// sets: Cmd, Entrypoint, Env, WorkingDir, User, ExposedPorts, ...).
	Config ocispec.ImageConfig
	// OS and Architecture default to linux and the daemon's architecture.
	OS, Architecture string
}

func (s *Store) snapshotDir(chain digest.Digest) string {
	return filepath.Join(s.root, "snapshots", chain.Encoded())
}

func (s *Store) snapshotFS(chain digest.Digest) string {
	return filepath.Join(s.snapshotDir(chain), "fs")
}

func chainOf(parent, diffID digest.Digest) digest.Digest {
	if parent == "" {
		return diffID
	}
	return identity.ChainID([]digest.Digest{parent, diffID})
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// addLayer reads the uncompressed layer tar r once: it stores it as a blob
// (its digest is the DiffID) and unpacks it as the snapshot above parent
// (a ChainID, empty for a base layer). With expected set, the tar must have
// that DiffID, and a layer already present is not read at all. The caller
// holds gcMu shared.
func (s *Store) addLayer(ctx context.Context, r io.Reader, parent, expected digest.Digest) (digest.Digest, error) {
	if expected != "" {
		s.mu.Lock()
		_, sized := s.layers[expected]
		s.mu.Unlock()
		if _, err := s.content.Info(expected); err == nil && sized && exists(s.snapshotDir(chainOf(parent, expected))) {
			return expected, nil
		}
	}
	w, err := s.content.Writer()
	if err != nil {
		return "", fmt.Errorf("images: add layer: %w", err)
	}
	defer w.Close()
	tmp, err := os.MkdirTemp(filepath.Join(s.root, "snapshots"), "tmp-")
	if err != nil {
		return "", fmt.Errorf("images: add layer: %w", err)
	}
	defer os.RemoveAll(tmp) // a no-op once renamed into place
	tee := io.TeeReader(r, w)
	size, err := archive.Apply(ctx, filepath.Join(tmp, "fs"), tee, archive.ApplyOptions{})
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err() // cancelled, not a bad layer
		}
		return "", fmt.Errorf("%w: layer: %w", ErrInvalid, err)
	}
	// The DiffID covers the whole stream, padding after the end-of-archive marker included.
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return "", fmt.Errorf("%w: layer: %w", ErrInvalid, err)
	}
	diffID := w.Digest()
	if expected != "" && diffID != expected {
		return "", fmt.Errorf("%w: layer content is %s, config says %s", ErrInvalid, diffID, expected)
	}
	if _, err := w.Commit(diffID); err != nil {
		return "", fmt.Errorf("images: add layer: %w", err)
	}
	if err := s.installSnapshot(tmp, chainOf(parent, diffID)); err != nil {
		return "", err
	}
	s.mu.Lock()
	s.layers[diffID] = size
	s.mu.Unlock()
	return diffID, nil
}

// installSnapshot makes the unpacked tmp directory the snapshot chain:
// synced first, so that a snapshot under its final name is always complete.
// If another unpack won the race, tmp is dropped.
func (s *Store) installSnapshot(tmp string, chain digest.Digest) error {
	fd, err := unix.Open(tmp, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("images: snapshot %s: %w", chain, err)
	}
	err = unix.Syncfs(fd)
	unix.Close(fd)
	if err != nil {
		return fmt.Errorf("images: snapshot %s: sync: %w", chain, err)
	}
	if err := os.Rename(tmp, s.snapshotDir(chain)); err != nil {
		if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY) {
			return os.RemoveAll(tmp)
		}
		return fmt.Errorf("images: snapshot %s: %w", chain, err)
	}
	// The rename itself is durable only once the parent directory is synced.
	if err := atomicfile.SyncDir(filepath.Dir(s.snapshotDir(chain))); err != nil {
		return fmt.Errorf("images: snapshot %s: %w", chain, err)
	}
	return nil
}

// ensureSnapshot unpacks layer diffID from the content store as snapshot
// chain unless that snapshot exists. The caller holds gcMu shared.
func (s *Store) ensureSnapshot(ctx context.Context, diffID, chain digest.Digest) error {
	if exists(s.snapshotDir(chain)) {
		return nil
	}
	f, err := s.content.Open(diffID)
	if err != nil {
		return fmt.Errorf("images: layer %s: %w", diffID, err)
	}
	defer f.Close()
	tmp, err := os.MkdirTemp(filepath.Join(s.root, "snapshots"), "tmp-")
	if err != nil {
		return fmt.Errorf("images: unpack %s: %w", diffID, err)
	}
	defer os.RemoveAll(tmp)
	if _, err := archive.Apply(ctx, filepath.Join(tmp, "fs"), f, archive.ApplyOptions{}); err != nil {
		return fmt.Errorf("%w: layer %s: %w", ErrInvalid, diffID, err)
	}
	return s.installSnapshot(tmp, chain)
}

// Import makes a one-layer image from a root filesystem tar (plain or
// gzip), tagged ref if ref is not empty. A bad archive leaves nothing behind.
func (s *Store) Import(ctx context.Context, r io.Reader, ref string, opts ImportOptions) (Image, error) {
	var tags []string
	if ref != "" {
		t, err := parseTagged(ref)
		if err != nil {
			return Image{}, err
		}
		tags = append(tags, t.String())
	}
	s.useStore()
	defer s.doneWithStore()
	zr, err := archive.Decompress(r)
	if err != nil {
		return Image{}, fmt.Errorf("%w: import: %w", ErrInvalid, err)
	}
	defer zr.Close()
	diffID, err := s.addLayer(ctx, zr, "", "")
	if err != nil {
		return Image{}, fmt.Errorf("images: import: %w", err)
	}
	now := time.Now().UTC()
	comment := opts.Comment
	if comment == "" {
		comment = "Imported from -"
	}
	cfg := ocispec.Image{
		Created:  &now,
		Platform: ocispec.Platform{OS: orDefault(opts.OS, "linux"), Architecture: orDefault(opts.Architecture, runtime.GOARCH)},
		Config:   opts.Config,
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{diffID}},
		History:  []ocispec.History{{Created: &now, Comment: comment}},
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		return Image{}, fmt.Errorf("images: import: %w", err)
	}
	return s.register(raw, "", tags)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// register stores a config and adds its image, tagged tags (moved from any
// image that had them). The layers must be in the store. The caller holds gcMu shared.
func (s *Store) register(raw []byte, parent string, tags []string) (Image, error) {
	d, _, err := s.content.Put(bytes.NewReader(raw), "")
	if err != nil {
		return Image{}, fmt.Errorf("images: store config: %w", err)
	}
	id := d.String()
	e, err := newEntry(id, record{Parent: parent, Added: time.Now().UTC()}, raw)
	if err != nil {
		return Image{}, err
	}
	s.mu.Lock()
	if old := s.images[id]; old != nil {
		e.rec = old.rec
	} else {
		s.images[id] = e
	}
	for _, t := range tags {
		s.refs[t] = id
	}
	if len(tags) > 0 {
		s.images[id].rec.LastTag = time.Now().UTC()
	}
	s.mu.Unlock()
	if err := s.persist(); err != nil {
		return Image{}, err
	}
	return s.Get(id)
}

// Commit turns a container's overlay upperdir into a new layer on top of
// parent (the zero Image for none) and registers the image with runtime
// config cfg, tagged ref if not empty; its history entry's CreatedBy is the
// config's entrypoint and command, as `docker commit` records. The upperdir
// must not be written to meanwhile (pause or stop the container).
func (s *Store) Commit(ctx context.Context, upperdir string, parent Image, cfg ocispec.ImageConfig, ref, comment, author string) (Image, error) {
	return s.CommitWithOptions(ctx, upperdir, parent, CommitOptions{
		Config: cfg, Ref: ref, Comment: comment, Author: author,
		CreatedBy: strings.Join(append(append([]string(nil), cfg.Entrypoint...), cfg.Cmd...), " "),
	})
}

// CommitOptions describe the image CommitWithOptions makes.
type CommitOptions struct {
	// Config is the new image's runtime config (it replaces the parent's).
	Config ocispec.ImageConfig
	// Ref tags the new image when not empty.
	Ref string
	// Comment, Author and CreatedBy go into the new history entry.
	Comment, Author, CreatedBy string
	// EmptyLayer records a metadata-only step (a build's ENV, CMD, ...):
	// no layer is added and the upperdir is not read.
	EmptyLayer bool
	// Docker is the config's Docker extensions (HEALTHCHECK, ONBUILD,
	// SHELL), for a build step; nil keeps the parent's.
	Docker *dockerspec.DockerOCIImageConfigExt
}

// CommitWithOptions is Commit with the history entry spelled out, for
// build: one call per Dockerfile step, EmptyLayer for the steps that change
// only the config.
func (s *Store) CommitWithOptions(ctx context.Context, upperdir string, parent Image, opts CommitOptions) (Image, error) {
	var tags []string
	if opts.Ref != "" {
		t, err := parseTagged(opts.Ref)
		if err != nil {
			return Image{}, err
		}
		tags = append(tags, t.String())
	}
	s.useStore()
	defer s.doneWithStore()
	// The parent's config is read with Docker's extensions, so that a
	// commit on an image with a HEALTHCHECK or ONBUILD keeps them.
	base := dockerspec.DockerOCIImage{Image: ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH}}}
	var parentChain digest.Digest
	if parent.ID != "" {
		s.mu.Lock()
		e := s.images[parent.ID]
		s.mu.Unlock()
		if e == nil {
			return Image{}, fmt.Errorf("%w: parent %s", ErrNotFound, parent.ID)
		}
		if err := json.Unmarshal(e.raw, &base); err != nil {
			return Image{}, fmt.Errorf("%w: parent config: %v", ErrInvalid, err)
		}
		if n := len(e.chain); n > 0 {
			parentChain = e.chain[n-1]
		}
	}

	var diffIDs []digest.Digest
	if !opts.EmptyLayer {
		d, err := s.diffLayer(ctx, upperdir, parentChain)
		if err != nil {
			return Image{}, err
		}
		diffIDs = append(diffIDs, d)
	}

	now := time.Now().UTC()
	base.Created = &now
	base.Author = opts.Author
	base.Config.ImageConfig = opts.Config
	if opts.Docker != nil {
		base.Config.DockerOCIImageConfigExt = *opts.Docker
	}
	base.RootFS.Type = "layers"
	base.RootFS.DiffIDs = append(base.RootFS.DiffIDs, diffIDs...)
	base.History = append(base.History, ocispec.History{
		Created: &now, Author: opts.Author, Comment: opts.Comment, CreatedBy: opts.CreatedBy, EmptyLayer: opts.EmptyLayer,
	})
	raw, err := json.Marshal(base)
	if err != nil {
		return Image{}, fmt.Errorf("images: commit: %w", err)
	}
	return s.register(raw, parent.ID, tags)
}

// diffLayer adds the upperdir's diff as the layer above parentChain.
func (s *Store) diffLayer(ctx context.Context, upperdir string, parentChain digest.Digest) (digest.Digest, error) {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := archive.Diff(ctx, upperdir, pw)
		pw.CloseWithError(err)
		done <- err
	}()
	diffID, err := s.addLayer(ctx, pr, parentChain, "")
	pr.CloseWithError(errors.New("commit aborted")) // unblocks Diff if addLayer stopped early
	if derr := <-done; derr != nil {
		return "", fmt.Errorf("images: commit: diff %s: %w", upperdir, derr)
	}
	if err != nil {
		return "", fmt.Errorf("images: commit: %w", err)
	}
	return diffID, nil
}
