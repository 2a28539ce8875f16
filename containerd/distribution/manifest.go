package distribution

import (
	"encoding/json"
	"fmt"
	"runtime"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// The media types of Docker's registry v2 schema 2 (OCI's are in ocispec).
const (
	mediaDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	mediaDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaDockerConfig   = "application/vnd.docker.container.image.v1+json"
	mediaDockerLayer    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	mediaDockerForeign  = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
	mediaDockerSchema1  = "application/vnd.docker.distribution.manifest.v1+prettyjws"
)

// acceptManifests is the Accept header of a manifest fetch.
var acceptManifests = strings.Join([]string{
	ocispec.MediaTypeImageIndex, mediaDockerList, ocispec.MediaTypeImageManifest, mediaDockerManifest,
}, ", ")

// maxManifest bounds a manifest or index read from a registry.
const maxManifest = 8 << 20

// maxConfig bounds an image config read from a registry.
const maxConfig = 32 << 20

// manifest is an image manifest or an index, whichever the bytes hold.
type manifest struct {
	SchemaVersion int                  `json:"schemaVersion"`
	MediaType     string               `json:"mediaType,omitempty"`
	Config        *ocispec.Descriptor  `json:"config,omitempty"`
	Layers        []ocispec.Descriptor `json:"layers,omitempty"`
	Manifests     []ocispec.Descriptor `json:"manifests,omitempty"`
}

// isIndex tells an index (manifest list) from an image manifest.
func (m *manifest) isIndex() bool {
	return m.MediaType == ocispec.MediaTypeImageIndex || m.MediaType == mediaDockerList
}

// parseManifest parses and checks a manifest or index; contentType is the
// registry's Content-Type, used when the document does not name its type.
// Everything a pull relies on is checked here, so that a hostile registry
// gets an error, not a panic or a half-made image.
func parseManifest(b []byte, contentType string) (*manifest, error) {
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("malformed manifest: %w", err)
	}
	if ct, _, _ := strings.Cut(contentType, ";"); m.MediaType == "" {
		m.MediaType = strings.TrimSpace(ct)
	}
	if m.MediaType == mediaDockerSchema1 || m.SchemaVersion == 1 {
		return nil, fmt.Errorf("manifest schema 1 is not supported (deprecated by docker): push the image again with a current client")
	}
	if m.SchemaVersion != 2 {
		return nil, fmt.Errorf("malformed manifest: schemaVersion %d, want 2", m.SchemaVersion)
	}
	if m.MediaType == "" || m.MediaType == "application/json" {
		// OCI allows an untyped document: tell by its fields.
		if m.Manifests != nil && m.Config == nil {
			m.MediaType = ocispec.MediaTypeImageIndex
		} else {
			m.MediaType = ocispec.MediaTypeImageManifest
		}
	}
	switch m.MediaType {
	case ocispec.MediaTypeImageIndex, mediaDockerList:
		if len(m.Manifests) == 0 {
			return nil, fmt.Errorf("malformed index: no manifests")
		}
		for _, d := range m.Manifests {
			if err := checkDescriptor(d); err != nil {
				return nil, fmt.Errorf("malformed index: %w", err)
			}
		}
	case ocispec.MediaTypeImageManifest, mediaDockerManifest:
		if m.Config == nil {
			return nil, fmt.Errorf("malformed manifest: no config")
		}
		if err := checkDescriptor(*m.Config); err != nil {
			return nil, fmt.Errorf("malformed manifest: config: %w", err)
		}
		if m.Config.Size > maxConfig {
			return nil, fmt.Errorf("malformed manifest: config of %d bytes is too big", m.Config.Size)
		}
		for i, l := range m.Layers {
			if err := checkDescriptor(l); err != nil {
				return nil, fmt.Errorf("malformed manifest: layer %d: %w", i+1, err)
			}
			if _, err := layerCompression(l.MediaType); err != nil {
				return nil, fmt.Errorf("malformed manifest: layer %d: %w", i+1, err)
			}
		}
	default:
		return nil, fmt.Errorf("unsupported manifest media type %q", m.MediaType)
	}
	return &m, nil
}

func checkDescriptor(d ocispec.Descriptor) error {
	if err := d.Digest.Validate(); err != nil {
		return fmt.Errorf("bad digest %q", d.Digest)
	}
	if d.Digest.Algorithm() != digest.SHA256 {
		return fmt.Errorf("digest %s: only sha256 is supported", d.Digest)
	}
	if d.Size < 0 {
		return fmt.Errorf("negative size %d", d.Size)
	}
	return nil
}

// compression of a layer, from its media type.
type compression int

const (
	compNone compression = iota
	compGzip
	compZstd
)

func layerCompression(mt string) (compression, error) {
	switch mt {
	case mediaDockerLayer, mediaDockerForeign, ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageLayerNonDistributableGzip: //nolint:staticcheck // still found in registries
		return compGzip, nil
	case ocispec.MediaTypeImageLayerZstd, ocispec.MediaTypeImageLayerNonDistributableZstd: //nolint:staticcheck // idem
		return compZstd, nil
	case ocispec.MediaTypeImageLayer, ocispec.MediaTypeImageLayerNonDistributable: //nolint:staticcheck // idem
		return compNone, nil
	}
	return 0, fmt.Errorf("unsupported layer media type %q", mt)
}

// Platform is os/arch[/variant].
type Platform struct{ OS, Architecture, Variant string }

func (p Platform) String() string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// ParsePlatform parses os/arch[/variant]; empty means the node's own.
func ParsePlatform(s string) (Platform, error) {
	if s == "" {
		p := Platform{OS: "linux", Architecture: runtime.GOARCH}
		if p.Architecture == "arm64" {
			p.Variant = "v8"
		}
		return p, nil
	}
	parts := strings.Split(strings.ToLower(s), "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return Platform{}, fmt.Errorf("invalid platform %q: want os/arch[/variant]", s)
	}
	p := Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p, nil
}

// pick chooses the manifest of platform p from an index, as containerd's
// platform matcher does for one platform: os and architecture must match;
// a variant asked for must match (arm64's v8 also matches no variant).
func (m *manifest) pick(p Platform) (ocispec.Descriptor, error) {
	for _, d := range m.Manifests {
		dp := d.Platform
		if dp == nil || dp.OS != p.OS || dp.Architecture != p.Architecture {
			continue
		}
		if p.Variant != "" && dp.Variant != p.Variant && !(p.Architecture == "arm64" && p.Variant == "v8" && dp.Variant == "") {
			continue
		}
		return d, nil
	}
	return ocispec.Descriptor{}, fmt.Errorf("no matching manifest for %s in the manifest list entries", p)
}
