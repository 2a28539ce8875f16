package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-project/shoal/containerd/content"
	"github.com/shoal-project/shoal/manager/registry"
)

// registryBlobs fills the cluster registry's BlobStore with a content store
// of the engine's kind (its own, under <data-root>/swarm/registry: the image
// store's collection would delete what no local image uses), so blobs are
// verified and stored as a pull stores them.
type registryBlobs struct {
	cs *content.Store

	// gc orders garbage collection's removals (writers) with ingests and
	// Touch: a blob written or touched after the sweep looked at it stays.
	gc sync.RWMutex
}

var (
	_ registry.BlobStore    = (*registryBlobs)(nil)
	_ registry.Sweeper      = (*registryBlobs)(nil)
	_ registry.FileIngester = (*registryBlobs)(nil)
)

// storeErr maps the content store's errors onto the registry's.
func storeErr(d digest.Digest, err error) error {
	switch {
	case errors.Is(err, content.ErrNotFound):
		return fmt.Errorf("blob %s: %w", d, registry.ErrNotFound)
	case errors.Is(err, content.ErrInvalidDigest):
		return fmt.Errorf("blob %s: %w (the engine stores sha256 only)", d, registry.ErrUnsupportedDigest)
	case errors.Is(err, content.ErrDigestMismatch):
		return fmt.Errorf("blob %s: %w", d, registry.ErrDigestMismatch)
	}
	return fmt.Errorf("blob %s: %w", d, err)
}

// Stat implements registry.BlobStore.
func (b *registryBlobs) Stat(_ context.Context, d digest.Digest) (int64, error) {
	info, err := b.cs.Info(d)
	if err != nil {
		return 0, storeErr(d, err)
	}
	return info.Size, nil
}

// Open implements registry.BlobStore.
func (b *registryBlobs) Open(_ context.Context, d digest.Digest) (io.ReadSeekCloser, int64, error) {
	f, err := b.cs.Open(d)
	if err != nil {
		return nil, 0, storeErr(d, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, storeErr(d, err)
	}
	return f, fi.Size(), nil
}

// Touch marks blob d as just used, so that garbage collection leaves it for
// another grace period: another manager's copy check calls it, since that
// manager then skips the copy of a blob this one may hold unreferenced
// (its replica not yet showing the push's links). Ordered with the sweep.
func (b *registryBlobs) Touch(d digest.Digest) {
	b.gc.RLock()
	defer b.gc.RUnlock()
	if p, err := b.cs.Path(d); err == nil {
		now := time.Now()
		_ = os.Chtimes(p, now, now) // a missing blob is the copy's to send
	}
}

// IngestFile implements registry.FileIngester: the content store adopts the
// upload session's file (synced and renamed; the handler hashed it) instead
// of copying it.
func (b *registryBlobs) IngestFile(_ context.Context, d digest.Digest, size int64, path string) error {
	if d.Algorithm() != digest.SHA256 {
		return storeErr(d, content.ErrInvalidDigest)
	}
	b.gc.RLock()
	defer b.gc.RUnlock()
	if err := b.cs.Adopt(path, d, size); err != nil {
		return storeErr(d, err)
	}
	return nil
}

// Ingest implements registry.BlobStore: the content store hashes while it
// writes and renames the blob into place only when it matches d.
func (b *registryBlobs) Ingest(_ context.Context, d digest.Digest, size int64, r io.Reader) error {
	if d.Algorithm() != digest.SHA256 {
		return storeErr(d, content.ErrInvalidDigest)
	}
	w, err := b.cs.Writer()
	if err != nil {
		return storeErr(d, err)
	}
	defer w.Close()
	if _, err := io.Copy(w, r); err != nil {
		return storeErr(d, err)
	}
	if size >= 0 && w.Size() != size {
		return fmt.Errorf("blob %s: %w: got %d bytes, want %d", d, registry.ErrDigestMismatch, w.Size(), size)
	}
	b.gc.RLock()
	defer b.gc.RUnlock()
	if _, err := w.Commit(d); err != nil {
		return storeErr(d, err)
	}
	return nil
}

// Sweep implements registry.Sweeper.
func (b *registryBlobs) Sweep(ctx context.Context, keep func(digest.Digest) bool, cutoff time.Time) (n int, size int64, err error) {
	var old []digest.Digest
	err = b.cs.Walk(func(info content.Info) error {
		if !keep(info.Digest) && info.ModTime.Before(cutoff) {
			old = append(old, info.Digest)
		}
		return ctx.Err()
	})
	if err != nil {
		return 0, 0, fmt.Errorf("sweep: %w", err)
	}
	for _, d := range old {
		removed, bytes, err := b.remove(d, cutoff)
		if err != nil {
			return n, size, err
		}
		if removed {
			n++
			size += bytes
		}
	}
	return n, size, nil
}

// remove deletes blob d if nothing wrote or read it since cutoff, checked
// and done while no ingest or read runs.
func (b *registryBlobs) remove(d digest.Digest, cutoff time.Time) (bool, int64, error) {
	b.gc.Lock()
	defer b.gc.Unlock()
	info, err := b.cs.Info(d)
	if err != nil || !info.ModTime.Before(cutoff) {
		return false, 0, nil
	}
	if err := b.cs.Delete(d); err != nil && !errors.Is(err, content.ErrNotFound) {
		return false, 0, fmt.Errorf("sweep %s: %w", d, err)
	}
	return true, info.Size, nil
}
