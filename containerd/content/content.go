// Package content is the local engine's content-addressed blob store.
//
// Blobs live under ROOT/blobs/sha256/<hex>, named by the sha256 of their bytes.
// A blob is written to ROOT/ingest first, hashed while it is written, checked
// against the digest the caller expects, fsync'd and only then renamed into
// place: a blob that is visible is always complete and correct, so readers
// need no locks. Writing the same blob twice is harmless (the rename replaces
// identical bytes).
package content

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-project/shoal/containerd/atomicfile"
)

var (
	// ErrNotFound is returned when no blob has the digest asked for.
	ErrNotFound = errors.New("content: blob not found")
	// ErrInvalidDigest is returned for a digest that is malformed or not sha256.
	ErrInvalidDigest = errors.New("content: invalid digest")
	// ErrDigestMismatch is returned when written bytes do not hash to the expected digest.
	ErrDigestMismatch = errors.New("content: digest mismatch")
)

// Info describes one stored blob.
type Info struct {
	Digest  digest.Digest
	Size    int64
	ModTime time.Time
}

// Store is a blob store rooted at one directory. It is safe for concurrent use.
type Store struct {
	root string
}

// Open opens (creating if needed) the store under root and removes ingest
// files left by a crashed writer.
func Open(root string) (*Store, error) {
	s := &Store{root: root}
	for _, d := range []string{s.blobDir(), s.ingestDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("content: open %s: %w", root, err)
		}
	}
	// Nothing writes before Open returns, so every ingest file is a leftover.
	ents, err := os.ReadDir(s.ingestDir())
	if err != nil {
		return nil, fmt.Errorf("content: open %s: %w", root, err)
	}
	for _, e := range ents {
		os.RemoveAll(filepath.Join(s.ingestDir(), e.Name()))
	}
	return s, nil
}

func (s *Store) blobDir() string   { return filepath.Join(s.root, "blobs", "sha256") }
func (s *Store) ingestDir() string { return filepath.Join(s.root, "ingest") }

// Path returns where the blob with digest d lives (whether or not it exists).
// The digest is validated so that it can never name a path outside the store.
func (s *Store) Path(d digest.Digest) (string, error) {
	if err := validate(d); err != nil {
		return "", err
	}
	return filepath.Join(s.blobDir(), d.Encoded()), nil
}

func validate(d digest.Digest) error {
	// Validate first: Algorithm panics on a digest without a colon.
	if err := d.Validate(); err != nil {
		return fmt.Errorf("%w: %q: %v", ErrInvalidDigest, string(d), err)
	}
	if d.Algorithm() != digest.SHA256 {
		return fmt.Errorf("%w: %q is not sha256", ErrInvalidDigest, string(d))
	}
	return nil
}

// Open opens the blob with digest d for reading.
func (s *Store) Open(d digest.Digest) (*os.File, error) {
	p, err := s.Path(d)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, d)
	}
	return f, err
}

// ReadAll returns the whole blob d; meant for small blobs (configs, manifests).
func (s *Store) ReadAll(d digest.Digest) ([]byte, error) {
	f, err := s.Open(d)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("content: read %s: %w", d, err)
	}
	return b, nil
}

// Info returns the size and time of blob d.
func (s *Store) Info(d digest.Digest) (Info, error) {
	p, err := s.Path(d)
	if err != nil {
		return Info{}, err
	}
	st, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return Info{}, fmt.Errorf("%w: %s", ErrNotFound, d)
	}
	if err != nil {
		return Info{}, fmt.Errorf("content: stat %s: %w", d, err)
	}
	return Info{Digest: d, Size: st.Size(), ModTime: st.ModTime()}, nil
}

// Delete removes blob d. Deleting a missing blob returns ErrNotFound.
func (s *Store) Delete(d digest.Digest) error {
	p, err := s.Path(d)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: %s", ErrNotFound, d)
		}
		return fmt.Errorf("content: delete %s: %w", d, err)
	}
	return nil
}

// Walk calls fn for every stored blob, in name order. An error from fn stops the walk
// and is returned.
func (s *Store) Walk(fn func(Info) error) error {
	ents, err := os.ReadDir(s.blobDir())
	if err != nil {
		return fmt.Errorf("content: walk: %w", err)
	}
	for _, e := range ents {
		d := digest.NewDigestFromEncoded(digest.SHA256, e.Name())
		if !e.Type().IsRegular() || d.Validate() != nil {
			continue // not ours; never hand out a name that is not a digest
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed while walking
		}
		if err := fn(Info{Digest: d, Size: fi.Size(), ModTime: fi.ModTime()}); err != nil {
			return err
		}
	}
	return nil
}

// Put writes r as a blob. If expected is not empty the bytes must hash to it.
func (s *Store) Put(r io.Reader, expected digest.Digest) (digest.Digest, int64, error) {
	w, err := s.Writer()
	if err != nil {
		return "", 0, err
	}
	defer w.Close()
	if _, err := io.Copy(w, r); err != nil {
		return "", 0, fmt.Errorf("content: write: %w", err)
	}
	d, err := w.Commit(expected)
	return d, w.Size(), err
}

// Adopt makes the file at path, on the store's file system, blob expected,
// for a caller that hashed the file's bytes to expected as it wrote them
// (the registry hashes an upload while its chunks arrive): the file is
// checked to be size bytes, synced and renamed into place, so the blob is
// neither written a second time nor read again. The caller vouches for the
// content. On any error nothing is stored and the file stays where it was;
// a file on another file system is copied in (Put, which hashes) and left
// there.
func (s *Store) Adopt(path string, expected digest.Digest, size int64) error {
	if err := validate(expected); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("content: adopt: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("content: adopt %s: %w", path, err)
	}
	if st.Size() != size {
		return fmt.Errorf("%w: got %d bytes, want %d", ErrDigestMismatch, st.Size(), size)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("content: sync %s: %w", expected, err)
	}
	// Blobs are read-only once committed.
	if err := f.Chmod(0o444); err != nil {
		return fmt.Errorf("content: adopt %s: %w", expected, err)
	}
	err = os.Rename(path, filepath.Join(s.blobDir(), expected.Encoded()))
	if errors.Is(err, syscall.EXDEV) {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("content: adopt %s: %w", expected, err)
		}
		_, _, err = s.Put(f, expected)
		return err
	}
	if err != nil {
		f.Chmod(0o600)
		return fmt.Errorf("content: adopt %s: %w", expected, err)
	}
	if err := atomicfile.SyncDir(s.blobDir()); err != nil {
		return fmt.Errorf("content: adopt %s: %w", expected, err)
	}
	return nil
}

// Writer starts a new blob. Write the bytes, then Commit; Close without
// Commit discards them. A Writer is not safe for concurrent use.
func (s *Store) Writer() (*Writer, error) {
	f, err := os.CreateTemp(s.ingestDir(), "blob-")
	if err != nil {
		return nil, fmt.Errorf("content: new writer: %w", err)
	}
	return &Writer{s: s, f: f, h: digest.SHA256.Digester()}, nil
}

// Writer streams one blob into the store.
type Writer struct {
	s    *Store
	f    *os.File
	h    digest.Digester
	n    int64
	done bool
}

// Write appends p to the blob.
func (w *Writer) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.h.Hash().Write(p[:n])
	w.n += int64(n)
	return n, err
}

// Size is the number of bytes written so far.
func (w *Writer) Size() int64 { return w.n }

// Digest is the digest of the bytes written so far.
func (w *Writer) Digest() digest.Digest { return w.h.Digest() }

// Commit makes the blob visible under its digest, after checking it against
// expected (if not empty) and syncing it to disk.
func (w *Writer) Commit(expected digest.Digest) (digest.Digest, error) {
	if w.done {
		return "", errors.New("content: writer already closed")
	}
	d := w.h.Digest()
	if expected != "" && expected != d {
		return "", fmt.Errorf("%w: got %s, want %s", ErrDigestMismatch, d, expected)
	}
	if err := w.f.Sync(); err != nil {
		return "", fmt.Errorf("content: sync %s: %w", d, err)
	}
	if err := w.f.Close(); err != nil {
		return "", fmt.Errorf("content: close %s: %w", d, err)
	}
	// Blobs are read-only once committed.
	os.Chmod(w.f.Name(), 0o444)
	dst := filepath.Join(w.s.blobDir(), d.Encoded())
	if err := os.Rename(w.f.Name(), dst); err != nil {
		os.Remove(w.f.Name())
		return "", fmt.Errorf("content: commit %s: %w", d, err)
	}
	w.done = true
	if err := atomicfile.SyncDir(w.s.blobDir()); err != nil {
		return "", fmt.Errorf("content: commit %s: %w", d, err)
	}
	return d, nil
}

// Close discards the blob unless it was committed.
func (w *Writer) Close() error {
	if w.done {
		return nil
	}
	w.done = true
	w.f.Close()
	if err := os.Remove(w.f.Name()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("content: discard: %w", err)
	}
	return nil
}

// IsDigest reports whether s is a well-formed sha256 digest ("sha256:<64 hex>").
func IsDigest(s string) bool {
	return strings.HasPrefix(s, "sha256:") && validate(digest.Digest(s)) == nil
}
