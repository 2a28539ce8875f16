package images

import (
	"fmt"
	"regexp"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
)

// Reference is an image reference in Docker's familiar form: Docker Hub
// names carry no domain ("busybox", "myorg/app") and a missing tag means
// "latest". References are stored and shown in this form.
type Reference struct {
	// Domain is the registry host[:port], empty for Docker Hub.
	Domain string
	// Path is the repository path ("busybox", "myorg/app").
	Path string
	// Tag is the tag; "latest" when the input had neither tag nor digest.
	Tag string
	// Digest is set for name@sha256:... references.
	Digest digest.Digest
}

// Name is the repository name, with its domain when not Docker Hub.
func (r Reference) Name() string {
	if r.Domain == "" {
		return r.Path
	}
	return r.Domain + "/" + r.Path
}

// String is the familiar form: name:tag, name@digest or name:tag@digest.
func (r Reference) String() string {
	s := r.Name()
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + string(r.Digest)
	}
	return s
}

// The grammar of github.com/distribution/reference, written out here and
// compiled on first use: package initialization runs in every process of the
// binary (each CLI command), and compiling these there cost ~1.5 ms of CPU.
var (
	tagRE       = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`) })
	componentRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`) })
	domainRE    = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*(?::[0-9]+)?$`)
	})
	hex64RE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-f0-9]{64}$`) })
)

const maxNameLen = 255

// ParseReference parses and normalises an image reference the way Docker
// does: "busybox" -> "busybox:latest", "docker.io/library/busybox" ->
// "busybox:latest", "localhost:5000/app" -> "localhost:5000/app:latest".
// Errors wrap ErrInvalidReference and read like Docker's
// ("invalid reference format: ...").
func ParseReference(s string) (Reference, error) {
	bad := func(why string) (Reference, error) {
		if why == "" {
			return Reference{}, fmt.Errorf("%w", ErrInvalidReference)
		}
		return Reference{}, fmt.Errorf("%w: %s", ErrInvalidReference, why)
	}
	if s == "" {
		return bad("empty reference")
	}
	var ref Reference
	name := s
	if i := strings.IndexByte(name, '@'); i >= 0 {
		d := digest.Digest(name[i+1:])
		if err := d.Validate(); err != nil {
			return bad(fmt.Sprintf("bad digest in %q", s))
		}
		ref.Digest, name = d, name[:i]
	}
	// A tag is after the last ':' that follows the last '/' (a ':' before
	// that belongs to a registry port).
	if i := strings.LastIndexByte(name, ':'); i >= 0 && i > strings.LastIndexByte(name, '/') {
		ref.Tag, name = name[i+1:], name[:i]
		if !tagRE().MatchString(ref.Tag) {
			return bad(fmt.Sprintf("bad tag %q", ref.Tag))
		}
	}
	if name == "" {
		return bad("")
	}
	if len(name) > maxNameLen {
		return bad(fmt.Sprintf("repository name must not be more than %d characters", maxNameLen))
	}
	parts := strings.Split(name, "/")
	if len(parts) > 1 && (strings.ContainsAny(parts[0], ".:") || parts[0] == "localhost" || strings.ToLower(parts[0]) != parts[0]) {
		if !domainRE().MatchString(parts[0]) {
			return bad(fmt.Sprintf("bad registry host %q", parts[0]))
		}
		ref.Domain, parts = parts[0], parts[1:]
	}
	for _, c := range parts {
		if !componentRE().MatchString(c) {
			if componentRE().MatchString(strings.ToLower(c)) {
				return bad(fmt.Sprintf("repository name (%s) must be lowercase", strings.Join(parts, "/")))
			}
			return bad("")
		}
	}
	ref.Path = strings.Join(parts, "/")
	// Familiar form for Docker Hub.
	if ref.Domain == "docker.io" || ref.Domain == "index.docker.io" {
		ref.Domain = ""
	}
	if ref.Domain == "" {
		if p, ok := strings.CutPrefix(ref.Path, "library/"); ok && !strings.Contains(p, "/") {
			ref.Path = p
		}
	}
	if ref.Tag == "" && ref.Digest == "" {
		ref.Tag = "latest"
	}
	return ref, nil
}

// parseTagged parses a reference that names a tag, as Import, Tag, Commit
// and Load require: digests are refused, and so are names that are 64 hex
// digits (they would be taken for image IDs).
func parseTagged(s string) (Reference, error) {
	ref, err := ParseReference(s)
	if err != nil {
		return Reference{}, err
	}
	if ref.Digest != "" {
		return Reference{}, fmt.Errorf("%w: %q: cannot tag by digest", ErrInvalidReference, s)
	}
	if ref.Domain == "" && hex64RE().MatchString(ref.Path) {
		return Reference{}, fmt.Errorf("%w: invalid repository name (%s), cannot specify 64-byte hexadecimal strings", ErrInvalidReference, ref.Path)
	}
	return ref, nil
}
