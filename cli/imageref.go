package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"
)

// Image references, parsed as github.com/distribution/reference parses
// them (the same results and error texts for what the CLI asks of them)
// without that package: its regular expressions, compiled at package
// initialisation, were the largest part of the CLI's start. The grammar is
// checked by hand here.
//
//	reference  := name [ ":" tag ] [ "@" digest ]
//	name       := [ domain "/" ] path-component { "/" path-component }
//	domain     := host [ ":" port ]   host: DNS labels or [IPv6]
//	path-component := [a-z0-9]+ { separator [a-z0-9]+ }
//	separator  := "." | "_" | "__" | "-"+
//	tag        := [\w][\w.-]{0,127}
//	digest     := algorithm ":" hex{32,}

const (
	refDefaultDomain  = "docker.io"
	refLegacyDomain   = "index.docker.io"
	refOfficialPrefix = "library/"
	refDefaultTag     = "latest"
	refNameMaxLen     = 255
)

// imageRef is a parsed image reference: a repository (domain and path) with
// an optional tag and digest, or (parseAnyImageRef only) a digest alone.
type imageRef struct {
	domain string // "docker.io" for Docker Hub once normalised
	path   string // "library/busybox"
	tag    string
	digest string // "sha256:…"
}

// Name is the repository: domain/path.
func (r imageRef) Name() string {
	if r.domain == "" {
		return r.path
	}
	return r.domain + "/" + r.path
}

// Domain is the registry part of the name.
func (r imageRef) Domain() string { return r.domain }

// String is the full reference: name[:tag][@digest], or the digest of a
// reference that has no name.
func (r imageRef) String() string {
	if r.path == "" {
		return r.digest
	}
	s := r.Name()
	if r.tag != "" {
		s += ":" + r.tag
	}
	if r.digest != "" {
		s += "@" + r.digest
	}
	return s
}

// Familiar is String as docker shows it: Docker Hub's domain and its
// library/ prefix left out (reference.FamiliarString).
func (r imageRef) Familiar() string {
	if r.path == "" {
		return r.String()
	}
	f := r
	if f.domain == refDefaultDomain {
		f.domain = ""
		if rest, ok := strings.CutPrefix(f.path, refOfficialPrefix); ok && !strings.Contains(rest, "/") {
			f.path = rest
		}
	}
	return f.String()
}

// NameOnly reports whether r has neither tag nor digest (reference.IsNameOnly).
func (r imageRef) NameOnly() bool { return r.tag == "" && r.digest == "" }

// Canonical reports whether r has a digest (a reference.Canonical).
func (r imageRef) Canonical() bool { return r.path != "" && r.digest != "" }

// WithDefaultTag is r with the tag "latest" when it has neither tag nor
// digest (reference.TagNameOnly).
func (r imageRef) WithDefaultTag() imageRef {
	if r.NameOnly() {
		r.tag = refDefaultTag
	}
	return r
}

// WithDigest is r pinned to dgst (reference.WithDigest), its tag kept.
func (r imageRef) WithDigest(dgst string) (imageRef, error) {
	if !isRefDigest(dgst) {
		return imageRef{}, errors.New("invalid digest format")
	}
	r.digest = dgst
	return r, nil
}

// parseImageRef parses s as docker names images (reference.ParseNormalizedNamed):
// a one-part name is on Docker Hub under library/, a first part that is no
// host name (no ".", no ":", not localhost, lowercase) is a Hub path.
func parseImageRef(s string) (imageRef, error) {
	if isImageID(s) {
		return imageRef{}, fmt.Errorf("invalid repository name (%s), cannot specify 64-byte hexadecimal strings", s)
	}
	domain, remainder := splitRefDomain(s)
	remote, _, _ := strings.Cut(remainder, ":")
	if strings.ToLower(remote) != remote {
		return imageRef{}, fmt.Errorf("invalid reference format: repository name (%s) must be lowercase", remote)
	}
	r, err := parseImageRefGrammar(domain + "/" + remainder)
	if err != nil {
		return imageRef{}, err
	}
	if r.path == "" {
		return imageRef{}, fmt.Errorf("reference %s has no name", r.String())
	}
	return r, nil
}

// parseAnyImageRef is parseImageRef that also takes an image ID: a digest
// (sha256:…) or its 64 hex digits alone (reference.ParseAnyReference).
func parseAnyImageRef(s string) (imageRef, error) {
	if isImageID(s) {
		return imageRef{digest: "sha256:" + s}, nil
	}
	if d, err := digest.Parse(s); err == nil {
		return imageRef{digest: d.String()}, nil
	}
	return parseImageRef(s)
}

// splitRefDomain is the domain of a name as docker reads it and the rest.
func splitRefDomain(name string) (domain, remainder string) {
	first, rest, ok := strings.Cut(name, "/")
	switch {
	case !ok:
		return refDefaultDomain, refOfficialPrefix + name
	case first == "localhost", strings.ContainsAny(first, ".:"), strings.ToLower(first) != first:
		domain, remainder = first, rest
		if first == refLegacyDomain {
			domain = refDefaultDomain
		}
	default:
		domain, remainder = refDefaultDomain, name
	}
	if domain == refDefaultDomain && !strings.Contains(remainder, "/") {
		remainder = refOfficialPrefix + remainder
	}
	return domain, remainder
}

// parseImageRefGrammar checks s against the grammar and splits it (reference.Parse).
func parseImageRefGrammar(s string) (imageRef, error) {
	r, ok := matchImageRef(s)
	if !ok {
		if s == "" {
			return imageRef{}, errors.New("repository name must have at least one component")
		}
		if _, ok := matchImageRef(strings.ToLower(s)); ok {
			return imageRef{}, errors.New("repository name must be lowercase")
		}
		return imageRef{}, errors.New("invalid reference format")
	}
	if len(r.path) > refNameMaxLen {
		return imageRef{}, fmt.Errorf("repository name must not be more than %d characters", refNameMaxLen)
	}
	if r.digest != "" {
		d, err := digest.Parse(r.digest)
		if err != nil {
			return imageRef{}, err
		}
		r.digest = d.String()
	}
	return r, nil
}

// matchImageRef splits s into name, tag and digest when it has the grammar's
// form. Neither name nor tag holds an "@", and a tag (no "/") follows the
// last ":" when that comes after the last "/" (a port comes before one).
func matchImageRef(s string) (imageRef, bool) {
	var r imageRef
	rest := s
	if i := strings.IndexByte(s, '@'); i >= 0 {
		rest, r.digest = s[:i], s[i+1:]
		if !isRefDigest(r.digest) {
			return imageRef{}, false
		}
	}
	if i := strings.LastIndexByte(rest, ':'); i >= 0 && i > strings.LastIndexByte(rest, '/') {
		rest, r.tag = rest[:i], rest[i+1:]
		if !isRefTag(r.tag) {
			return imageRef{}, false
		}
	}
	// The part before the first "/" is the domain when it can be one;
	// else the whole name is a path.
	if d, p, ok := strings.Cut(rest, "/"); ok && isRefDomain(d) && isRefPath(p) {
		r.domain, r.path = d, p
		return r, true
	}
	if !isRefPath(rest) {
		return imageRef{}, false
	}
	r.path = rest
	return r, true
}

func isRefLowerAlnum(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }

func isRefAlnum(c byte) bool { return isRefLowerAlnum(c) || 'A' <= c && c <= 'Z' }

func isRefWordChar(c byte) bool { return isRefAlnum(c) || c == '_' }

func isRefHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isRefDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// isImageID reports whether s is 64 lowercase hex digits (an image ID).
func isImageID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !('0' <= s[i] && s[i] <= '9' || 'a' <= s[i] && s[i] <= 'f') {
			return false
		}
	}
	return true
}

// isRefTag: [\w][\w.-]{0,127}.
func isRefTag(s string) bool {
	if s == "" || len(s) > 128 || !isRefWordChar(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isRefWordChar(c) && c != '.' && c != '-' {
			return false
		}
	}
	return true
}

// isRefDigest: [A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)* ":" hex{32,}.
func isRefDigest(s string) bool {
	alg, hex, ok := strings.Cut(s, ":")
	if !ok || len(hex) < 32 {
		return false
	}
	for i := 0; i < len(hex); i++ {
		if !isRefHex(hex[i]) {
			return false
		}
	}
	start := true // a letter must come next
	for i := 0; i < len(alg); i++ {
		c := alg[i]
		switch {
		case start:
			if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z') {
				return false
			}
			start = false
		case c == '-' || c == '_' || c == '+' || c == '.':
			start = true
		case !isRefAlnum(c):
			return false
		}
	}
	return alg != "" && !start
}

// isRefDomain: DNS labels (letters, digits, inner "-") joined by ".", or an
// IPv6 address in brackets; then an optional ":port".
func isRefDomain(s string) bool {
	host, port, hasPort := s, "", false
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return false
		}
		host = s[:end+1]
		if rest := s[end+1:]; rest != "" {
			if rest[0] != ':' {
				return false
			}
			port, hasPort = rest[1:], true
		}
		inner := host[1 : len(host)-1]
		if inner == "" {
			return false
		}
		for i := 0; i < len(inner); i++ {
			if !isRefHex(inner[i]) && inner[i] != ':' {
				return false
			}
		}
	} else {
		host, port, hasPort = strings.Cut(s, ":")
		for _, label := range strings.Split(host, ".") {
			if label == "" || label[0] == '-' || label[len(label)-1] == '-' {
				return false
			}
			for i := 0; i < len(label); i++ {
				if !isRefAlnum(label[i]) && label[i] != '-' {
					return false
				}
			}
		}
	}
	return !hasPort || isRefDigits(port)
}

// isRefPath: path components joined by "/".
func isRefPath(s string) bool {
	for _, c := range strings.Split(s, "/") {
		if !isRefPathComponent(c) {
			return false
		}
	}
	return true
}

// isRefPathComponent: runs of [a-z0-9] joined by one separator: ".", "_",
// "__" or any number of "-".
func isRefPathComponent(s string) bool {
	i := 0
	for {
		// A run of letters and digits.
		j := i
		for j < len(s) && isRefLowerAlnum(s[j]) {
			j++
		}
		if j == i {
			return false
		}
		if j == len(s) {
			return true
		}
		// A separator, then another run.
		k := j
		for k < len(s) && (s[k] == '.' || s[k] == '_' || s[k] == '-') {
			k++
		}
		switch sep := s[j:k]; {
		case sep == "." || sep == "_" || sep == "__":
		case sep != "" && strings.Trim(sep, "-") == "":
		default:
			return false
		}
		i = k
	}
}
