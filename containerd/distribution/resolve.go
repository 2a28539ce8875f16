package distribution

import (
	"context"
	"fmt"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/shoal-project/shoal/containerd/images"
)

// Resolve asks the registry of ref (name[:tag] or name@digest) for the
// manifest ref names and returns its descriptor: the digest a service pins
// its image to (an index's own digest, as Swarm pins it).
func (c *Client) Resolve(ctx context.Context, refStr string, auth Auth) (ocispec.Descriptor, error) {
	ref, err := images.ParseReference(refStr)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	s, err := c.open(ctx, registryHost(ref.Domain), remotePath(ref), auth, false)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("resolve %s: %w", ref, err)
	}
	want := ref.Tag
	if ref.Digest != "" {
		want = string(ref.Digest)
	}
	if want == "" {
		want = "latest"
	}
	raw, d, m, err := s.fetchManifest(ctx, want, ref.Digest)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("resolve %s: %w", ref, err)
	}
	return ocispec.Descriptor{MediaType: m.MediaType, Digest: d, Size: int64(len(raw))}, nil
}
