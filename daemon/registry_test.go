package daemon

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-project/shoal/containerd/content"
	"github.com/shoal-project/shoal/manager/registry"
)

// TestRegistryBlobs checks the engine content store as the registry's
// BlobStore: a blob round-trips, and a mismatching, short or sha512 upload
// is refused with the registry's error and leaves no file behind.
func TestRegistryBlobs(t *testing.T) {
	root := t.TempDir()
	cs, err := content.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	b := &registryBlobs{cs: cs}
	ctx := context.Background()
	d := digest.FromString("layer")
	if _, err := b.Stat(ctx, d); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("Stat of a missing blob: %v", err)
	}
	for name, c := range map[string]struct {
		d    digest.Digest
		size int64
		want error
	}{
		"mismatch": {digest.FromString("other"), -1, registry.ErrDigestMismatch},
		"short":    {d, 10, registry.ErrDigestMismatch},
		"sha512":   {digest.SHA512.FromString("layer"), -1, registry.ErrUnsupportedDigest},
	} {
		if err := b.Ingest(ctx, c.d, c.size, strings.NewReader("layer")); !errors.Is(err, c.want) {
			t.Fatalf("%s: Ingest: %v, want %v", name, err, c.want)
		}
	}
	var files []string
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if len(files) != 0 {
		t.Fatalf("refused uploads left %v", files)
	}
	if err := b.Ingest(ctx, d, 5, strings.NewReader("layer")); err != nil {
		t.Fatal(err)
	}
	rc, size, err := b.Open(ctx, d)
	if err != nil || size != 5 {
		t.Fatalf("Open: %d %v", size, err)
	}
	defer rc.Close()
	rc.Seek(2, io.SeekStart)
	if got, _ := io.ReadAll(rc); string(got) != "yer" {
		t.Fatalf("read %q after a seek", got)
	}
}
