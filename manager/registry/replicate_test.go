package registry

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestReplicateBeforeAck: a manifest PUT hands Replicate the manifest and
// every blob it references before the tag exists, and a failed copy fails
// the PUT with the tag not made.
func TestReplicateBeforeAck(t *testing.T) {
	var got []digest.Digest
	var fail error
	var tr *testRegistry
	tr = newTestRegistry(t, Config{Replicate: func(_ context.Context, blobs []digest.Digest) error {
		got = blobs
		if repo, _ := tr.tags.View(context.Background(), "a"); repo.Tags["t"] != "" {
			t.Error("the tag existed before Replicate returned")
		}
		return fail
	}})
	cfg, layer := tr.pushBlob("a", "{}"), tr.pushBlob("a", "layer")
	m := manifestFor("{}", "layer", "")
	ct := []string{"Content-Type", MediaTypeOCIManifest}
	fail = errors.New("manager 2 refused")
	expect(t, tr.do("PUT", "/v2/a/manifests/t", m, ct...), http.StatusServiceUnavailable, codeUnsupported)
	expect(t, tr.do("GET", "/v2/a/manifests/t", ""), http.StatusNotFound, codeManifestUnknown)
	want := []digest.Digest{digest.FromString(m), cfg, layer}
	if !slices.Equal(got, want) {
		t.Fatalf("Replicate got %v, want %v", got, want)
	}
	fail = nil
	expect(t, tr.do("PUT", "/v2/a/manifests/t", m, ct...), http.StatusCreated, "")
	expect(t, tr.do("GET", "/v2/a/manifests/t", ""), http.StatusOK, "")
}
