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
	"time"

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

// TagLister is the part of a TagStore that garbage collection needs besides
// View and Update: every repository's name.
type TagLister interface {
	Names(ctx context.Context) ([]string, error)
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
	// LinkedAt is when each blob of Blobs was linked (unix milliseconds), so
	// that garbage collection leaves young links to the pushes that made
	// them. A link without a time gets one at the first collection.
	LinkedAt map[digest.Digest]int64 `json:"linkedAt,omitempty"`
	// Dropped holds the links that garbage collection removed, for a grace
	// period: a push that saw the link just before may still name the blob
	// in its manifest, and gets it linked again instead of an error.
	Dropped map[digest.Digest]DroppedLink `json:"dropped,omitempty"`
}

// DroppedLink is a blob link that garbage collection removed.
type DroppedLink struct {
	Size int64 `json:"size"`
	At   int64 `json:"at"` // unix milliseconds
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

// unused reports whether the store may forget the repository: empty, and
// no dropped link waiting out its grace period.
func (r *Repository) unused() bool { return r.Empty() && len(r.Dropped) == 0 }

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
	if r.LinkedAt == nil {
		r.LinkedAt = map[digest.Digest]int64{}
	}
	if r.Dropped == nil {
		r.Dropped = map[digest.Digest]DroppedLink{}
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
	for k, v := range r.LinkedAt {
		c.LinkedAt[k] = v
	}
	for k, v := range r.Dropped {
		c.Dropped[k] = v
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
	if c.unused() {
		delete(m.repos, name)
	} else {
		m.repos[name] = c
	}
	return nil
}

// Names implements TagLister.
func (m *MemTagStore) Names(context.Context) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	names := make([]string, 0, len(m.repos))
	for n := range m.repos {
		names = append(names, n)
	}
	return names, nil
}

// DirBlobStore is a BlobStore in a directory: <dir>/<algorithm>/<hex>.
type DirBlobStore struct {
	Dir string

	// gc orders Sweep's removals (writers) with ingests and reads.
	gc sync.RWMutex
}

func (s *DirBlobStore) path(d digest.Digest) string {
	return filepath.Join(s.Dir, string(d.Algorithm()), d.Encoded())
}

// Stat implements BlobStore.
func (s *DirBlobStore) Stat(_ context.Context, d digest.Digest) (int64, error) {
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
func (s *DirBlobStore) Open(_ context.Context, d digest.Digest) (io.ReadSeekCloser, int64, error) {
	s.gc.RLock()
	defer s.gc.RUnlock()
	now := time.Now()
	_ = os.Chtimes(s.path(d), now, now) // read now: not garbage yet
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
func (s *DirBlobStore) Ingest(_ context.Context, d digest.Digest, size int64, r io.Reader) error {
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
	s.gc.RLock()
	defer s.gc.RUnlock()
	if err := os.Rename(tmp, s.path(d)); err != nil {
		return fmt.Errorf("ingest %s: %w", d, err)
	}
	return nil
}

// Sweep implements Sweeper.
func (s *DirBlobStore) Sweep(ctx context.Context, keep func(digest.Digest) bool, cutoff time.Time) (n int, size int64, err error) {
	algs, err := os.ReadDir(s.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("sweep %s: %w", s.Dir, err)
	}
	for _, alg := range algs {
		files, err := os.ReadDir(filepath.Join(s.Dir, alg.Name()))
		if err != nil {
			return n, size, fmt.Errorf("sweep %s: %w", s.Dir, err)
		}
		for _, f := range files {
			d := digest.NewDigestFromEncoded(digest.Algorithm(alg.Name()), f.Name())
			if ctx.Err() != nil || d.Validate() != nil || keep(d) {
				continue // an ingest's temporary file, or in use
			}
			removed, bytes, err := s.remove(d, cutoff)
			if err != nil {
				return n, size, err
			}
			if removed {
				n++
				size += bytes
			}
		}
	}
	return n, size, ctx.Err()
}

// remove deletes blob d if nothing wrote or read it since cutoff, checked
// and done while no ingest or read runs.
func (s *DirBlobStore) remove(d digest.Digest, cutoff time.Time) (bool, int64, error) {
	s.gc.Lock()
	defer s.gc.Unlock()
	fi, err := os.Stat(s.path(d))
	if err != nil || !fi.ModTime().Before(cutoff) {
		return false, 0, nil
	}
	if err := os.Remove(s.path(d)); err != nil {
		return false, 0, fmt.Errorf("sweep %s: %w", d, err)
	}
	return true, fi.Size(), nil
}

// IngestFile implements FileIngester: the file is read once to verify it
// (size bytes hashing to d), synced and renamed into place. A file on
// another file system is copied in (Ingest) and left there.
func (s *DirBlobStore) IngestFile(ctx context.Context, d digest.Digest, size int64, path string) error {
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
	s.gc.RLock()
	err = os.Rename(path, s.path(d))
	s.gc.RUnlock()
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
