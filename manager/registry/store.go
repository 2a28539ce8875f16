package registry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/opencontainers/go-digest"
)

// ErrNotFound is what a store returns (wrapped) for a blob it does not hold.
var ErrNotFound = errors.New("not found")

// ErrDigestMismatch is what BlobStore.Ingest returns (wrapped) when the
// content does not hash to the digest it was announced with.
var ErrDigestMismatch = errors.New("content does not match its digest")

// ErrUnsupportedDigest is what a BlobStore returns (wrapped) for a digest
// algorithm it cannot store.
var ErrUnsupportedDigest = errors.New("digest algorithm not supported by this registry")

// BlobStore holds content-addressed blobs (layers, configs and the manifests
// themselves). The daemon fills it with the engine's content store.
type BlobStore interface {
	// Stat returns the size of blob d, or an error wrapping ErrNotFound.
	Stat(ctx context.Context, d digest.Digest) (int64, error)
	// Open returns blob d for reading (range reads seek) and its size.
	Open(ctx context.Context, d digest.Digest) (io.ReadSeekCloser, int64, error)
	// Ingest stores what r yields as blob d. It verifies the content hashes
	// to d (and is size bytes long when size >= 0) before the blob becomes
	// visible; on any error nothing is stored.
	Ingest(ctx context.Context, d digest.Digest, size int64, r io.Reader) error
}

// FileIngester is a BlobStore that can take a whole file as blob d by
// moving it into place (a rename on the same file system) instead of
// copying its bytes: the handler stores a finished upload session so, and
// a 200 MB push no longer writes every byte twice. On success the file is
// gone; on any error nothing is stored and the file stays where it was.
type FileIngester interface {
	IngestFile(ctx context.Context, d digest.Digest, size int64, path string) error
}

// TagStore holds each repository's tags, manifest records and blob links.
// The cluster keeps it in the raft store.
type TagStore interface {
	// View returns a copy of repository name; an unknown one is empty.
	View(ctx context.Context, name string) (*Repository, error)
	// Update applies fn to repository name atomically: fn sees the current
	// state, and its changes are kept only if it returns nil.
	Update(ctx context.Context, name string, fn func(*Repository) error) error
}

// Repository is what one repository holds. Blob content is in the BlobStore;
// the repository only links the blobs pushed or mounted into it, so a
// repository serves only what was pushed to it.
type Repository struct {
	Tags      map[string]digest.Digest   `json:"tags,omitempty"`
	Manifests map[digest.Digest]Manifest `json:"manifests,omitempty"`
	Blobs     map[digest.Digest]int64    `json:"blobs,omitempty"`
}

// Manifest is the record of a pushed manifest (its bytes are a blob).
type Manifest struct {
	MediaType    string            `json:"mediaType"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Subject      digest.Digest     `json:"subject,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	// Refs are the blobs and manifests it references, kept for garbage
	// collection.
	Refs []digest.Digest `json:"refs,omitempty"`
}

// Empty reports whether the repository holds nothing (so does not exist).
func (r *Repository) Empty() bool {
	return len(r.Tags) == 0 && len(r.Manifests) == 0 && len(r.Blobs) == 0
}

func (r *Repository) init() {
	if r.Tags == nil {
		r.Tags = map[string]digest.Digest{}
	}
	if r.Manifests == nil {
		r.Manifests = map[digest.Digest]Manifest{}
	}
	if r.Blobs == nil {
		r.Blobs = map[digest.Digest]int64{}
	}
}

// Clone returns a deep copy.
func (r *Repository) Clone() *Repository {
	c := &Repository{}
	c.init()
	for k, v := range r.Tags {
		c.Tags[k] = v
	}
	for k, v := range r.Manifests {
		c.Manifests[k] = v // Refs and Annotations are never modified in place
	}
	for k, v := range r.Blobs {
		c.Blobs[k] = v
	}
	return c
}

// MemTagStore is a TagStore in memory, for tests and single-node use.
type MemTagStore struct {
	mu    sync.Mutex
	repos map[string]*Repository
}

// View implements TagStore.
func (m *MemTagStore) View(_ context.Context, name string) (*Repository, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r, ok := m.repos[name]; ok {
		return r.Clone(), nil
	}
	return (&Repository{}).Clone(), nil
}

// Update implements TagStore.
func (m *MemTagStore) Update(_ context.Context, name string, fn func(*Repository) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := &Repository{}
	if cur, ok := m.repos[name]; ok {
		r = cur
	}
	c := r.Clone()
	if err := fn(c); err != nil {
		return err
	}
	if m.repos == nil {
		m.repos = map[string]*Repository{}
	}
	if c.Empty() {
		delete(m.repos, name)
	} else {
		m.repos[name] = c
	}
	return nil
}

// DirBlobStore is a BlobStore in a directory: <dir>/<algorithm>/<hex>.
type DirBlobStore struct {
	Dir string
}

func (s DirBlobStore) path(d digest.Digest) string {
	return filepath.Join(s.Dir, string(d.Algorithm()), d.Encoded())
}

// Stat implements BlobStore.
func (s DirBlobStore) Stat(_ context.Context, d digest.Digest) (int64, error) {
	fi, err := os.Stat(s.path(d))
	if errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("blob %s: %w", d, ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("blob %s: %w", d, err)
	}
	return fi.Size(), nil
}

// Open implements BlobStore.
func (s DirBlobStore) Open(_ context.Context, d digest.Digest) (io.ReadSeekCloser, int64, error) {
	f, err := os.Open(s.path(d))
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, fmt.Errorf("blob %s: %w", d, ErrNotFound)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("blob %s: %w", d, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("blob %s: %w", d, err)
	}
	return f, fi.Size(), nil
}

// Ingest implements BlobStore: the content goes to a temporary file, is
// verified, synced and renamed into place, so a blob is whole or absent.
func (s DirBlobStore) Ingest(_ context.Context, d digest.Digest, size int64, r io.Reader) error {
	dir := filepath.Join(s.Dir, string(d.Algorithm()))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("ingest %s: %w", d, err)
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(dir, ".ingest-"+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("ingest %s: %w", d, err)
	}
	defer os.Remove(tmp)
	err = copyVerified(f, r, d, size)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("ingest %s: %w", d, err)
	}
	if err := os.Rename(tmp, s.path(d)); err != nil {
		return fmt.Errorf("ingest %s: %w", d, err)
	}
	return nil
}

// IngestFile implements FileIngester: the file is read once to verify it
// (size bytes hashing to d), synced and renamed into place. A file on
// another file system is copied in (Ingest) and left there.
func (s DirBlobStore) IngestFile(ctx context.Context, d digest.Digest, size int64, path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("ingest %s: %w", d, err)
	}
	defer f.Close()
	if err := copyVerified(io.Discard, f, d, size); err != nil {
		return fmt.Errorf("ingest %s: %w", d, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("ingest %s: %w", d, err)
	}
	if err := os.MkdirAll(filepath.Join(s.Dir, string(d.Algorithm())), 0o700); err != nil {
		return fmt.Errorf("ingest %s: %w", d, err)
	}
	err = os.Rename(path, s.path(d))
	if errors.Is(err, syscall.EXDEV) {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("ingest %s: %w", d, err)
		}
		return s.Ingest(ctx, d, size, f)
	}
	if err != nil {
		return fmt.Errorf("ingest %s: %w", d, err)
	}
	return nil
}

// copyVerified copies r to w and checks that it is size bytes (when size >=
// 0) hashing to d.
func copyVerified(w io.Writer, r io.Reader, d digest.Digest, size int64) error {
	v := d.Verifier()
	n, err := io.Copy(io.MultiWriter(w, v), r)
	if err != nil {
		return err
	}
	if size >= 0 && n != size {
		return fmt.Errorf("%w: got %d bytes, want %d", ErrDigestMismatch, n, size)
	}
	if !v.Verified() {
		return ErrDigestMismatch
	}
	return nil
}
