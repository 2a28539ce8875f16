package distribution

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-project/shoal/containerd/atomicfile"
)

// blobRef is a compressed form of a layer a registry is known to hold.
type blobRef struct {
	Digest    digest.Digest `json:"digest"`
	Size      int64         `json:"size"`
	MediaType string        `json:"mediaType"`
	Host      string        `json:"host"`
	Repo      string        `json:"repo"`
}

// layerMeta remembers, per DiffID, the registry blobs the layer was pulled
// from or pushed as (dockerd's v2 metadata): a push then checks those with
// HEAD or mounts them instead of compressing and uploading the layer again.
type layerMeta struct {
	path string
	mu   sync.Mutex
	m    map[digest.Digest][]blobRef
}

func openLayerMeta(path string) (*layerMeta, error) {
	lm := &layerMeta{path: path, m: map[digest.Digest][]blobRef{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return lm, nil
	}
	if err != nil {
		return nil, fmt.Errorf("distribution: %w", err)
	}
	if json.Unmarshal(b, &lm.m) != nil {
		lm.m = map[digest.Digest][]blobRef{} // only a cache: start afresh
	}
	return lm, nil
}

func (lm *layerMeta) get(diffID digest.Digest) []blobRef {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	return append([]blobRef(nil), lm.m[diffID]...)
}

// add records b for diffID; the most recent is first, and the list stays short.
func (lm *layerMeta) add(diffID digest.Digest, b blobRef) error {
	lm.mu.Lock()
	list := []blobRef{b}
	for _, x := range lm.m[diffID] {
		if x != b && len(list) < 8 {
			list = append(list, x)
		}
	}
	lm.m[diffID] = list
	raw, err := json.Marshal(lm.m)
	lm.mu.Unlock()
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(lm.path, raw, 0o600); err != nil {
		return fmt.Errorf("distribution: save layer metadata: %w", err)
	}
	return nil
}

func ingestDir(root string) string { return filepath.Join(root, "ingest") }

// resetDir empties dir (partial downloads of a previous run) and creates it.
func resetDir(dir string) error {
	if dir == "" {
		return errors.New("no ingest directory")
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.MkdirAll(filepath.Clean(dir), 0o700)
}
