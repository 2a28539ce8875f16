package registry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"
)

// DefaultGCGrace is how long a blob stays after nothing references it: the
// time a push may take between uploading a blob and putting the manifest
// that names it.
const DefaultGCGrace = time.Hour

// Sweeper is a BlobStore that can delete the blobs garbage collection found
// unreferenced.
type Sweeper interface {
	// Sweep deletes every blob that keep refuses and that was last written
	// (or marked used: another manager's copy check) before cutoff, and
	// returns how many and their bytes. The store orders removals with its
	// ingests and marks, so a blob written or marked after Sweep looked at
	// it stays.
	Sweep(ctx context.Context, keep func(digest.Digest) bool, cutoff time.Time) (int, int64, error)
}

// GCStats says what one collection did.
type GCStats struct {
	Unlinked int   // blob links no manifest needed, dropped
	Deleted  int   // blobs deleted from this store
	Bytes    int64 // their size
}

// Collect drops from r the links of blobs none of its manifests reference
// and that were linked before now-grace, keeping each in Dropped for grace,
// and forgets Dropped entries older than that. It reports whether r
// changed. Manifests stay, tagged or not: they are addressable by digest,
// and only a client's DELETE removes one.
func (r *Repository) Collect(now time.Time, grace time.Duration) (unlinked int, changed bool) {
	r.init()
	needed := map[digest.Digest]bool{}
	for _, m := range r.Manifests {
		for _, d := range m.Refs {
			needed[d] = true
		}
	}
	old := now.Add(-grace).UnixMilli()
	for d, size := range r.Blobs {
		at, ok := r.LinkedAt[d]
		switch {
		case needed[d]:
		case !ok:
			r.LinkedAt[d] = now.UnixMilli() // linked before links had times
			changed = true
		case at < old:
			delete(r.Blobs, d)
			delete(r.LinkedAt, d)
			r.Dropped[d] = DroppedLink{Size: size, At: now.UnixMilli()}
			unlinked++
			changed = true
		}
	}
	for d := range r.LinkedAt {
		if _, ok := r.Blobs[d]; !ok {
			delete(r.LinkedAt, d) // the link was deleted by a client
			changed = true
		}
	}
	for d, dl := range r.Dropped {
		if dl.At < old {
			delete(r.Dropped, d)
			changed = true
		}
	}
	return unlinked, changed
}

// holds adds to set every blob r needs kept: linked, dropped within the
// grace period, a manifest or referenced by one.
func (r *Repository) holds(set map[digest.Digest]bool) {
	for d := range r.Blobs {
		set[d] = true
	}
	for d := range r.Dropped {
		set[d] = true
	}
	for d, m := range r.Manifests {
		set[d] = true
		for _, ref := range m.Refs {
			set[ref] = true
		}
	}
}

// ErrNotCollectable is what CollectGarbage returns (wrapped) when the
// stores cannot list repositories or delete blobs.
var ErrNotCollectable = errors.New("the registry's stores do not support garbage collection")

// CollectGarbage is one garbage collection. With mark set (the raft
// leader's job: it writes the tag store) it first drops unneeded links
// (Repository.Collect); then it deletes from this manager's blob store every
// blob that no repository holds and that was last written (or marked used)
// more than grace ago. A push racing with it either finds its links in place or gets
// them back from Dropped, and its fresh blobs are younger than grace.
func (h *Handler) CollectGarbage(ctx context.Context, now time.Time, mark bool) (GCStats, error) {
	var st GCStats
	lister, ok := h.cfg.Tags.(TagLister)
	sweeper, ok2 := h.cfg.Blobs.(Sweeper)
	if !ok || !ok2 {
		return st, ErrNotCollectable
	}
	grace := h.cfg.GCGrace
	names, err := lister.Names(ctx)
	if err != nil {
		return st, fmt.Errorf("garbage collection: %w", err)
	}
	if mark {
		for _, name := range names {
			err := h.cfg.Tags.Update(ctx, name, func(r *Repository) error {
				n, changed := r.Collect(now, grace)
				if !changed {
					return errUnchanged
				}
				st.Unlinked += n
				return nil
			})
			if err != nil && !errors.Is(err, errUnchanged) {
				return st, fmt.Errorf("garbage collection of %s: %w", name, err)
			}
		}
	}
	// The sweep's view is read after the marks, and names listed again: a
	// repository made since is not missed.
	if names, err = lister.Names(ctx); err != nil {
		return st, fmt.Errorf("garbage collection: %w", err)
	}
	keep := map[digest.Digest]bool{}
	for _, name := range names {
		r, err := h.cfg.Tags.View(ctx, name)
		if err != nil {
			return st, fmt.Errorf("garbage collection of %s: %w", name, err)
		}
		r.holds(keep)
	}
	st.Deleted, st.Bytes, err = sweeper.Sweep(ctx, func(d digest.Digest) bool { return keep[d] }, now.Add(-grace))
	if err != nil {
		return st, fmt.Errorf("garbage collection: %w", err)
	}
	return st, nil
}

// errUnchanged ends an Update that has nothing to write.
var errUnchanged = errors.New("unchanged")
