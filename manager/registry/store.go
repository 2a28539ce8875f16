package registry

import (
	"context"
	"errors"
	"io"

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
// a 200 MB push no longer writes every byte twice. The handler has hashed
// the file's size bytes to d as they arrived, so the store need not read
// them again (d is always sha256). On success the file is gone; on any
// error nothing is stored and the file stays where it was.
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
