// Package images is the local engine's image store: images, their tags,
// their layers unpacked as overlayfs snapshots, and container root
// filesystems stacked on them.
//
// On disk, under the data root ROOT:
//
//	content/blobs/sha256/<hex>   configs and layers (uncompressed tars: digest = DiffID)
//	images/state.json            images (by config digest) and tags, replaced atomically
//	snapshots/<chainID hex>/fs   one directory per layer, upperdir style, shared read-only
//	containers-rootfs/<id>/      a container's upper/ and work/ and the record of what it uses
//	tmp/                         archives being loaded
//
// An image ID is the sha256 of its config JSON, as in Docker. Each layer is
// unpacked once, keyed by its ChainID (OCI image-spec); a snapshot directory
// appears under its final name only after a complete unpack (unpack into
// snapshots/tmp-*, sync, rename), so a snapshot that exists is ready.
//
// Concurrency: mu guards the in-memory state and is never held across disk
// I/O. gcMu orders garbage collection against writers: operations that add
// blobs or snapshots (or read them: Save, PrepareRootfs) hold it shared for
// their duration; garbage collection takes it exclusively, but only if it is
// free (TryLock): when it is not, the collection is left to the last of those
// operations to finish, so a slow import never makes `rmi` or `run` wait.
// One daemon owns a data root; two processes must not open the same root.
package images

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/shoal-project/shoal/containerd/atomicfile"
	"github.com/shoal-project/shoal/containerd/content"
)

var (
	// ErrNotFound is returned when no image matches a reference or ID.
	ErrNotFound = errors.New("No such image")
	// ErrInvalidReference is returned for a malformed image reference.
	ErrInvalidReference = errors.New("invalid reference format")
	// ErrConflict is returned when an operation clashes with the store's
	// state: an image in use, an ambiguous short ID, an existing rootfs.
	ErrConflict = errors.New("conflict")
	// ErrInvalid is returned for a bad archive or image (bad config, digest
	// mismatch, hostile layer).
	ErrInvalid = errors.New("invalid image")
)

// Image is one image of the store.
type Image struct {
	// ID is "sha256:<hex>", the digest of the config JSON.
	ID string
	// RepoTags are the image's references in familiar form, sorted.
	RepoTags []string
	// Created is the config's creation time.
	Created time.Time
	// Size is the sum of the layers' unpacked file sizes.
	Size int64
	// Config is the full OCI image config (a fresh copy for each call).
	Config ocispec.Image
	// ChainID identifies the top layer stack; empty for an image without layers.
	ChainID digest.Digest
	// Parent is the image this one was committed on, if it is known here.
	Parent string
	// Healthcheck is the image's HEALTHCHECK, a Docker extension of the
	// OCI config that ocispec.Image drops; nil when it has none.
	Healthcheck *Healthcheck
	// OnBuild and Shell are the image's ONBUILD triggers and SHELL, the
	// other Docker extensions of the config.
	OnBuild, Shell []string
	// RepoDigests are the name@digest references of the manifests this
	// image was pulled by or pushed as, sorted.
	RepoDigests []string
	// LastTagTime is when a tag was last given to the image here; zero
	// when none was (pulled or loaded only), as dockerd's.
	LastTagTime time.Time
}

// Healthcheck is a HEALTHCHECK as Docker's image config and Engine API hold
// it: Test is {} (inherit), {"NONE"}, {"CMD", args...} or {"CMD-SHELL",
// command}; zero durations and retries mean the default.
type Healthcheck struct {
	Test          []string      `json:",omitempty"`
	Interval      time.Duration `json:",omitempty"`
	Timeout       time.Duration `json:",omitempty"`
	StartPeriod   time.Duration `json:",omitempty"`
	StartInterval time.Duration `json:",omitempty"`
	Retries       int           `json:",omitempty"`
}

// Removed is one step of Remove, like Docker's image delete response.
type Removed struct {
	Untagged string `json:",omitempty"`
	Deleted  string `json:",omitempty"`
}

// HistoryEntry is one line of `image history`, newest first.
type HistoryEntry struct {
	// ID is the image whose top this entry is, or "<missing>".
	ID         string
	Created    time.Time
	CreatedBy  string
	Comment    string
	Author     string
	Tags       []string
	Size       int64
	EmptyLayer bool
}

// record is what state.json keeps of one image.
type record struct {
	Parent      string    `json:"parent,omitempty"`
	Added       time.Time `json:"added"`
	RepoDigests []string  `json:"repoDigests,omitempty"`
	// LastTag is when a tag was last given to the image here (tag, and
	// import, commit or build with a tag), as dockerd's LastTagTime; a
	// pull or a load sets no time.
	LastTag time.Time `json:"lastTag,omitzero"`
}

// persisted is the format of images/state.json.
type persisted struct {
	Images map[string]record       `json:"images"`
	Refs   map[string]string       `json:"refs"`   // familiar ref -> image ID
	Layers map[digest.Digest]int64 `json:"layers"` // DiffID -> unpacked size
	// Pins are the layers of pulls not finished yet (ChainID -> pin), kept
	// by garbage collection so that a pull interrupted by a crash resumes
	// without downloading them again.
	Pins map[digest.Digest]pin `json:"pins,omitempty"`
}

// entry is the in-memory form of one image.
type entry struct {
	id     string
	rec    record
	raw    []byte // config JSON, parsed afresh for each caller
	config ocispec.Image
	chain  []digest.Digest // ChainIDs, bottom first
}

// Store is the image store of one data root. It is safe for concurrent use.
type Store struct {
	root    string
	content *content.Store

	gcMu      sync.RWMutex
	gcPending atomic.Bool // a collection was skipped because gcMu was busy

	// mu guards images, refs, layers and gen.
	mu     sync.Mutex
	images map[string]*entry
	refs   map[string]string
	layers map[digest.Digest]int64
	pins   map[digest.Digest]pin
	gen    uint64

	// saveMu serialises writes of state.json; saved is the generation on disk.
	saveMu sync.Mutex
	saved  uint64
}

// Open opens the image store under the data root, creating it if needed,
// and removes leftovers of interrupted operations.
func Open(root string) (*Store, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("images: open: %w", err)
	}
	for _, d := range []string{"images", "snapshots", "containers-rootfs", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			return nil, fmt.Errorf("images: open %s: %w", root, err)
		}
	}
	cs, err := content.Open(filepath.Join(root, "content"))
	if err != nil {
		return nil, fmt.Errorf("images: open: %w", err)
	}
	s := &Store{
		root: root, content: cs,
		images: map[string]*entry{}, refs: map[string]string{}, layers: map[digest.Digest]int64{},
		pins: map[digest.Digest]pin{},
	}
	s.removeLeftovers()
	b, err := os.ReadFile(s.statePath())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("images: open: %w", err)
	}
	if err == nil {
		var p persisted
		if err := json.Unmarshal(b, &p); err != nil {
			return nil, fmt.Errorf("images: open: corrupt %s: %w", s.statePath(), err)
		}
		for id, rec := range p.Images {
			e, err := s.loadEntry(id, rec)
			if err != nil {
				continue // its config blob is gone: the image cannot be used, forget it
			}
			s.images[id] = e
		}
		for ref, id := range p.Refs {
			if s.images[id] != nil {
				s.refs[ref] = id
			}
		}
		for d, n := range p.Layers {
			s.layers[d] = n
		}
		for c, pn := range p.Pins {
			if time.Since(pn.Time) < pinLifetime {
				s.pins[c] = pn
			}
		}
	}
	// Blobs or snapshots of an operation a crash interrupted are garbage now.
	if err := s.collect(); err != nil {
		return nil, fmt.Errorf("images: open: %w", err)
	}
	return s, nil
}

func (s *Store) statePath() string { return filepath.Join(s.root, "images", "state.json") }

// Content is the blob store under the data root (for build and the daemon).
func (s *Store) Content() *content.Store { return s.content }

func (s *Store) removeLeftovers() {
	for _, pat := range []string{"tmp/*", "snapshots/tmp-*", "images/state.json.tmp*"} {
		m, _ := filepath.Glob(filepath.Join(s.root, pat))
		for _, p := range m {
			os.RemoveAll(p)
		}
	}
}

func (s *Store) loadEntry(id string, rec record) (*entry, error) {
	raw, err := s.content.ReadAll(digest.Digest(id))
	if err != nil {
		return nil, err
	}
	return newEntry(id, rec, raw)
}

func newEntry(id string, rec record, raw []byte) (*entry, error) {
	var cfg ocispec.Image
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("%w: config %s: %v", ErrInvalid, id, err)
	}
	return &entry{id: id, rec: rec, raw: raw, config: cfg, chain: identity.ChainIDs(append([]digest.Digest(nil), cfg.RootFS.DiffIDs...))}, nil
}

// persist writes the state as of now to disk. It takes mu only to snapshot
// the state; the write itself happens under saveMu alone, and a writer that
// finds a newer generation already on disk has nothing to do.
func (s *Store) persist() error {
	s.mu.Lock()
	s.gen++
	gen := s.gen
	p := persisted{Images: map[string]record{}, Refs: map[string]string{}, Layers: map[digest.Digest]int64{}, Pins: map[digest.Digest]pin{}}
	for c, pn := range s.pins {
		p.Pins[c] = pn
	}
	for id, e := range s.images {
		p.Images[id] = e.rec
	}
	for r, id := range s.refs {
		p.Refs[r] = id
	}
	for d, n := range s.layers {
		p.Layers[d] = n
	}
	s.mu.Unlock()
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return fmt.Errorf("images: save state: %w", err)
	}

	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	if s.saved >= gen {
		return nil
	}
	if err := atomicfile.WriteFile(s.statePath(), b, 0o600); err != nil {
		return fmt.Errorf("images: save state: %w", err)
	}
	s.saved = gen
	return nil
}

// imageLocked builds the public view of e. Call with mu held.
func (s *Store) imageLocked(e *entry) Image {
	img := Image{ID: e.id, Parent: e.rec.Parent, RepoDigests: append([]string(nil), e.rec.RepoDigests...), LastTagTime: e.rec.LastTag}
	for r, id := range s.refs {
		if id == e.id {
			img.RepoTags = append(img.RepoTags, r)
		}
	}
	sort.Strings(img.RepoTags)
	if err := json.Unmarshal(e.raw, &img.Config); err != nil {
		img.Config = e.config // cannot happen: e.raw parsed when the entry was made
	}
	if img.Config.Created != nil {
		img.Created = *img.Config.Created
	}
	var ext struct {
		Config struct {
			Healthcheck    *Healthcheck
			OnBuild, Shell []string
		} `json:"config"`
	}
	if json.Unmarshal(e.raw, &ext) == nil {
		img.Healthcheck, img.OnBuild, img.Shell = ext.Config.Healthcheck, ext.Config.OnBuild, ext.Config.Shell
	}
	for _, d := range img.Config.RootFS.DiffIDs {
		img.Size += s.layers[d]
	}
	if n := len(e.chain); n > 0 {
		img.ChainID = e.chain[n-1]
	}
	return img
}

// lookupLocked finds the image named by refOrID: a full ID (with or without
// "sha256:"), a reference, or a unique prefix of an ID. byRef is the
// normalised reference when the image was found through one. Call with mu held.
func (s *Store) lookupLocked(refOrID string) (e *entry, byRef string, err error) {
	id := refOrID
	if !strings.HasPrefix(id, "sha256:") && hex64RE().MatchString(id) {
		id = "sha256:" + id
	}
	if e := s.images[id]; e != nil {
		return e, "", nil
	}
	ref, perr := ParseReference(refOrID)
	if perr == nil && ref.Digest == "" {
		if id, ok := s.refs[ref.String()]; ok {
			return s.images[id], ref.String(), nil
		}
	}
	if perr == nil && ref.Digest != "" {
		// name@digest: the image pulled by (or pushed as) that manifest.
		want := ref.Name() + "@" + string(ref.Digest)
		for _, e := range s.images {
			if contains(e.rec.RepoDigests, want) {
				return e, "", nil
			}
		}
	}
	prefix := strings.TrimPrefix(refOrID, "sha256:")
	if isHex(prefix) && prefix != "" {
		var found *entry
		for id, e := range s.images {
			if strings.HasPrefix(strings.TrimPrefix(id, "sha256:"), prefix) {
				if found != nil {
					return nil, "", fmt.Errorf("%w: short ID %q matches several images", ErrConflict, refOrID)
				}
				found = e
			}
		}
		if found != nil {
			return found, "", nil
		}
	}
	if perr != nil && !isHex(prefix) {
		return nil, "", perr
	}
	if perr == nil && !strings.HasPrefix(refOrID, "sha256:") {
		refOrID = ref.String() // "busybox:latest", as dockerd names what it did not find
	}
	return nil, "", fmt.Errorf("%w: %s", ErrNotFound, refOrID)
}

func isHex(s string) bool {
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Get returns the image named by a reference ("busybox", "busybox:1.36"),
// a full image ID, or a unique ID prefix.
func (s *Store) Get(refOrID string) (Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, _, err := s.lookupLocked(refOrID)
	if err != nil {
		return Image{}, err
	}
	return s.imageLocked(e), nil
}

// List returns every image, newest first.
func (s *Store) List() ([]Image, error) {
	s.mu.Lock()
	out := make([]Image, 0, len(s.images))
	for _, e := range s.images {
		out = append(out, s.imageLocked(e))
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.After(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// Tag makes dst (a reference) name the image src names. An existing dst
// moves to the new image, as in Docker.
func (s *Store) Tag(src, dst string) error {
	ref, err := parseTagged(dst)
	if err != nil {
		return err
	}
	s.mu.Lock()
	e, _, err := s.lookupLocked(src)
	if err == nil {
		s.refs[ref.String()] = e.id
		e.rec.LastTag = time.Now().UTC()
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	return s.persist()
}

// History returns the image's history, newest first, with layer sizes and,
// where an entry is the top of an image of this store, that image's ID and tags.
func (s *Store) History(refOrID string) ([]HistoryEntry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, _, err := s.lookupLocked(refOrID)
	if err != nil {
		return nil, err
	}
	cfg := e.config
	hist := cfg.History
	if len(hist) == 0 {
		// No history recorded: one anonymous entry per layer.
		for range cfg.RootFS.DiffIDs {
			hist = append(hist, ocispec.History{Created: cfg.Created})
		}
	}
	// The image owning entry i: this one for the last entry, its known
	// parents (committed here) for the last entry of theirs.
	owners := map[int]*entry{len(hist) - 1: e}
	for p := s.images[e.rec.Parent]; p != nil; p = s.images[p.rec.Parent] {
		if n := len(p.config.History); n > 0 && n <= len(hist) {
			owners[n-1] = p
		}
		if len(owners) > len(hist) {
			break // a cycle in hand-edited state; do not loop forever
		}
	}
	out := make([]HistoryEntry, 0, len(hist))
	layer := 0
	for i, h := range hist {
		he := HistoryEntry{ID: "<missing>", CreatedBy: h.CreatedBy, Comment: h.Comment, Author: h.Author, EmptyLayer: h.EmptyLayer}
		if h.Created != nil {
			he.Created = *h.Created
		}
		if !h.EmptyLayer && layer < len(cfg.RootFS.DiffIDs) {
			he.Size = s.layers[cfg.RootFS.DiffIDs[layer]]
			layer++
		}
		if o := owners[i]; o != nil {
			he.ID = o.id
			he.Tags = s.imageLocked(o).RepoTags
		}
		out = append(out, he)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

// Remove untags or deletes an image, with Docker's rules: removing one of
// several tags only untags; removing the last tag, or an image by ID,
// deletes the image. An image used by a container (one with a rootfs from
// PrepareRootfs), or an ID referenced by several repositories, is refused
// with ErrConflict unless force. Blobs and snapshots no image or container
// uses any more are deleted.
func (s *Store) Remove(refOrID string, force bool) ([]Removed, error) {
	users := s.rootfsUsers()
	s.mu.Lock()
	e, byRef, err := s.lookupLocked(refOrID)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	img := s.imageLocked(e)
	var out []Removed
	usedBy := users[e.id]
	if byRef != "" && len(img.RepoTags) > 1 {
		delete(s.refs, byRef)
		s.mu.Unlock()
		return []Removed{{Untagged: byRef}}, s.persist()
	}
	if len(usedBy) > 0 && !force && byRef != "" {
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: unable to remove repository reference %q (must force) - container %s is using its referenced image %s", ErrConflict, byRef, short(usedBy[0]), short(e.id))
	}
	// By ID, in dockerd's order of conflicts: the tags of several
	// repositories, then a container (a stopped one: the caller refuses
	// the image of a running one first, even with force).
	if byRef == "" && !force && repoCount(img.RepoTags) > 1 {
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: unable to delete %s (must be forced) - image is referenced in multiple repositories", ErrConflict, short(e.id))
	}
	if len(usedBy) > 0 && !force {
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: unable to delete %s (must be forced) - image is being used by stopped container %s", ErrConflict, short(e.id), short(usedBy[0]))
	}
	for _, r := range img.RepoTags {
		delete(s.refs, r)
		out = append(out, Removed{Untagged: r})
	}
	delete(s.images, e.id)
	out = append(out, Removed{Deleted: e.id})
	s.mu.Unlock()
	if err := s.persist(); err != nil {
		return out, err
	}
	return out, s.collect()
}

// Untag removes the reference ref and nothing else: the image stays, with
// no name if it was its last (dockerd's rmi -f of an image a running
// container uses). ref must be a reference, not an ID.
func (s *Store) Untag(ref string) (Removed, error) {
	s.mu.Lock()
	_, byRef, err := s.lookupLocked(ref)
	if err == nil && byRef == "" {
		err = fmt.Errorf("%w: %s names no tag to remove", ErrInvalidReference, ref)
	}
	if err != nil {
		s.mu.Unlock()
		return Removed{}, err
	}
	delete(s.refs, byRef)
	s.mu.Unlock()
	return Removed{Untagged: byRef}, s.persist()
}

func repoCount(tags []string) int {
	repos := map[string]bool{}
	for _, t := range tags {
		repos[t[:strings.LastIndexByte(t, ':')]] = true
	}
	return len(repos)
}

func short(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// useStore marks the start of an operation that adds or reads blobs and
// snapshots; doneWithStore its end, which runs a collection left pending.
func (s *Store) useStore() { s.gcMu.RLock() }

func (s *Store) doneWithStore() {
	s.gcMu.RUnlock()
	if s.gcPending.Load() {
		s.collect()
	}
}

// collect deletes the blobs and snapshots that no image and no container
// rootfs uses. It runs only while no writer is active (gcMu), so that a blob
// or snapshot made for an image not yet registered is never taken; if one
// is, the collection is left to it (see doneWithStore).
func (s *Store) collect() error {
	if !s.gcMu.TryLock() {
		s.gcPending.Store(true)
		return nil
	}
	s.gcPending.Store(false)
	defer s.gcMu.Unlock()
	keepBlobs := map[digest.Digest]bool{}
	keepSnaps := map[string]bool{}
	s.mu.Lock()
	for id, e := range s.images {
		keepBlobs[digest.Digest(id)] = true
		for _, d := range e.config.RootFS.DiffIDs {
			keepBlobs[d] = true
		}
		for _, c := range e.chain {
			keepSnaps[c.Encoded()] = true
		}
	}
	for c, pn := range s.pins {
		keepBlobs[pn.DiffID] = true
		keepSnaps[c.Encoded()] = true
	}
	s.mu.Unlock()
	for _, rec := range s.rootfsRecords() {
		for _, c := range rec.Chain {
			keepSnaps[c.Encoded()] = true
		}
	}
	var errs []error
	var dead []digest.Digest
	s.content.Walk(func(i content.Info) error {
		if !keepBlobs[i.Digest] {
			dead = append(dead, i.Digest)
		}
		return nil
	})
	for _, d := range dead {
		if err := s.content.Delete(d); err != nil && !errors.Is(err, content.ErrNotFound) {
			errs = append(errs, err)
		}
	}
	s.mu.Lock()
	for d := range s.layers {
		if !keepBlobs[d] {
			delete(s.layers, d)
		}
	}
	s.mu.Unlock()
	ents, _ := os.ReadDir(filepath.Join(s.root, "snapshots"))
	for _, ent := range ents {
		if strings.HasPrefix(ent.Name(), "tmp-") || keepSnaps[ent.Name()] {
			continue
		}
		if err := os.RemoveAll(filepath.Join(s.root, "snapshots", ent.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("images: garbage collection: %w", err)
	}
	return nil
}
