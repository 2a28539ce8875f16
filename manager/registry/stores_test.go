package registry

// Stores for the tests of this package: the daemon fills the handler with
// the raft store and the engine's content store, which this package may not
// import (tests/imports_test.go).

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

// MemTagStore is a TagStore in memory, for the handler's tests (the daemon
// keeps tags in raft: RaftTagStore).
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

// DirBlobStore is a BlobStore in a directory, <dir>/<algorithm>/<hex>, for the
// handler's tests and the conformance suite (the daemon fills the handler with
// a content store: daemon/registry.go; this package may not import it).
type DirBlobStore struct {
	Dir string

	// gc orders Sweep's removals (writers) with ingests.
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
