package images

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/opencontainers/go-digest"
)

// pin keeps one layer of an unfinished pull from garbage collection.
type pin struct {
	DiffID digest.Digest `json:"diffID"`
	Time   time.Time     `json:"time"`
}

// pinLifetime bounds how long the layers of a pull that never finished
// (the daemon died and nobody pulled the image again) are kept.
const pinLifetime = 24 * time.Hour

// Ingest adds an image piece by piece, as a registry pull does: layers
// first (in any order, concurrently), then the config that names them.
// While it is open, garbage collection leaves alone what it added; the
// layers it added are also pinned on disk, so that a pull cut short by a
// crash finds them again. Close it in every case.
type Ingest struct {
	s      *Store
	added  []digest.Digest // ChainIDs pinned by this ingest
	done   bool
	closed bool
}

// BeginIngest starts adding an image.
func (s *Store) BeginIngest() *Ingest {
	s.useStore()
	return &Ingest{s: s}
}

// HasLayer reports whether layer diffID above parent (a ChainID, empty for
// a base layer) is already unpacked, so it need not be fetched. A layer
// pinned by an earlier, interrupted ingest is taken over by this one.
func (in *Ingest) HasLayer(parent, diffID digest.Digest) bool {
	s := in.s
	chain := chainOf(parent, diffID)
	s.mu.Lock()
	_, sized := s.layers[diffID]
	s.mu.Unlock()
	if _, err := s.content.Info(diffID); err != nil || !sized || !exists(s.snapshotDir(chain)) {
		return false
	}
	s.mu.Lock()
	if _, pinned := s.pins[chain]; pinned && !containsDigest(in.added, chain) {
		in.added = append(in.added, chain)
	}
	s.mu.Unlock()
	return true
}

func containsDigest(list []digest.Digest, d digest.Digest) bool {
	for _, x := range list {
		if x == d {
			return true
		}
	}
	return false
}

// AddLayer reads the uncompressed layer tar r, which must have DiffID
// diffID, and unpacks it above parent. It is safe to call concurrently.
func (in *Ingest) AddLayer(ctx context.Context, r io.Reader, parent, diffID digest.Digest) error {
	if _, err := in.s.addLayer(ctx, r, parent, diffID); err != nil {
		return err
	}
	chain := chainOf(parent, diffID)
	in.s.mu.Lock()
	in.s.pins[chain] = pin{DiffID: diffID, Time: time.Now().UTC()}
	if !containsDigest(in.added, chain) {
		in.added = append(in.added, chain)
	}
	in.s.mu.Unlock()
	return in.s.persist()
}

// Register adds the image whose config is raw (stored as is, so that its
// ID is the config digest the registry named), tagged tags, with repoDigest
// (name@sha256:...) among its RepoDigests if not empty. Every layer the
// config lists must be in the store.
func (in *Ingest) Register(raw []byte, tags []string, repoDigest string) (Image, error) {
	s := in.s
	id := digest.FromBytes(raw).String()
	e, err := newEntry(id, record{Added: time.Now().UTC()}, raw)
	if err != nil {
		return Image{}, err
	}
	var parent digest.Digest
	for _, d := range e.config.RootFS.DiffIDs {
		if !in.HasLayer(parent, d) {
			return Image{}, fmt.Errorf("%w: image %s: layer %s is missing", ErrInvalid, short(id), d)
		}
		parent = chainOf(parent, d)
	}
	var refs []string
	for _, t := range tags {
		r, err := parseTagged(t)
		if err != nil {
			return Image{}, err
		}
		refs = append(refs, r.String())
	}
	if _, _, err := s.content.Put(bytes.NewReader(raw), digest.Digest(id)); err != nil {
		return Image{}, fmt.Errorf("images: store config: %w", err)
	}
	s.mu.Lock()
	if old := s.images[id]; old != nil {
		e.rec = old.rec
	} else {
		s.images[id] = e
	}
	e = s.images[id]
	if repoDigest != "" && !contains(e.rec.RepoDigests, repoDigest) {
		e.rec.RepoDigests = append(e.rec.RepoDigests, repoDigest)
		sort.Strings(e.rec.RepoDigests)
	}
	for _, r := range refs {
		s.refs[r] = id
	}
	in.unpinLocked()
	s.mu.Unlock()
	in.done = true
	if err := s.persist(); err != nil {
		return Image{}, err
	}
	return s.Get(id)
}

// AddRepoDigest records that image id is known to a registry as repoDigest.
func (s *Store) AddRepoDigest(id, repoDigest string) error {
	s.mu.Lock()
	e := s.images[id]
	if e == nil {
		s.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if contains(e.rec.RepoDigests, repoDigest) {
		s.mu.Unlock()
		return nil
	}
	e.rec.RepoDigests = append(e.rec.RepoDigests, repoDigest)
	sort.Strings(e.rec.RepoDigests)
	s.mu.Unlock()
	return s.persist()
}

func (in *Ingest) unpinLocked() {
	for _, c := range in.added {
		delete(in.s.pins, c)
	}
	in.added = nil
}

// Close ends the ingest. Without a Register, what it added is dropped (a
// failed pull leaves nothing behind), unless keep is set: an interrupted
// pull keeps its finished layers pinned for the next attempt.
func (in *Ingest) Close(keep bool) {
	if in.closed {
		return
	}
	in.closed = true
	if !in.done && !keep {
		in.s.mu.Lock()
		in.unpinLocked()
		in.s.mu.Unlock()
		in.s.persist()
	}
	in.s.doneWithStore()
	if !in.done && !keep {
		in.s.collect()
	}
}

// ConfigOf returns the raw config JSON of image refOrID, for a push.
func (s *Store) ConfigOf(refOrID string) (Image, []byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, _, err := s.lookupLocked(refOrID)
	if err != nil {
		return Image{}, nil, err
	}
	return s.imageLocked(e), append([]byte(nil), e.raw...), nil
}
