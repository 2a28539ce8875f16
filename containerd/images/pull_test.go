package images

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestIngestPinsSurviveReopen: the layers of an ingest cut short (the
// daemon died) are kept by the collection at the next Open; those of a
// failed one are not; Register keeps the config bytes as they are.
func TestIngestPinsSurviveReopen(t *testing.T) {
	s, root := openStore(t)
	layer := mkTar(t, tent{name: "a", body: "hello"})
	diffID := digest.FromBytes(layer)
	ctx := context.Background()

	in := s.BeginIngest()
	if err := in.AddLayer(ctx, bytes.NewReader(layer), "", diffID); err != nil {
		t.Fatal(err)
	}
	in.Close(true) // interrupted: keep
	s2, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	in = s2.BeginIngest()
	if !in.HasLayer("", diffID) {
		t.Fatal("the layer of an interrupted ingest was collected")
	}
	in.Close(false) // failed: drop
	if _, err := s2.Content().Info(diffID); err == nil {
		t.Fatal("the layer of a failed ingest was kept")
	}

	// A config with fields ocispec does not know keeps them: the ID is its digest.
	in = s2.BeginIngest()
	defer in.Close(false)
	if err := in.AddLayer(ctx, bytes.NewReader(layer), "", diffID); err != nil {
		t.Fatal(err)
	}
	cfg, _ := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux", "container": "abc",
		"rootfs": ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{diffID}}})
	img, err := in.Register(cfg, []string{"reg.example/app:1"}, "reg.example/app@"+string(digest.FromString("m")))
	if err != nil {
		t.Fatal(err)
	}
	if img.ID != digest.FromBytes(cfg).String() || len(img.RepoDigests) != 1 {
		t.Fatalf("registered %+v", img)
	}
	if len(s2.pins) != 0 {
		t.Fatalf("pins left after Register: %v", s2.pins)
	}
	if got, err := s2.Get("reg.example/app@" + string(digest.FromString("m"))); err != nil || got.ID != img.ID {
		t.Fatalf("lookup by repo digest: %v", err)
	}
	// A config naming a layer that is not there is refused.
	bad, _ := json.Marshal(map[string]any{"rootfs": ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromString("nope")}}})
	if _, err := in.Register(bad, nil, ""); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("register with a missing layer: %v", err)
	}
}
