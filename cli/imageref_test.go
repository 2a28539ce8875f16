package cli

import (
	"strings"
	"testing"
)

// The results and error texts are those of github.com/distribution/reference
// (ParseNormalizedNamed, Domain, FamiliarString, TagNameOnly, IsNameOnly,
// Canonical) for the same input.
func TestParseImageRef(t *testing.T) {
	h := strings.Repeat("ab", 32)
	H := strings.ToUpper(h)
	for _, c := range []struct {
		in, str, domain, familiar, tagged string // tagged: familiar with the default tag
		nameOnly, canonical               bool
		err                               string
	}{
		{in: "busybox", str: "docker.io/library/busybox", domain: "docker.io", familiar: "busybox", tagged: "busybox:latest", nameOnly: true},
		{in: "busybox:1.36", str: "docker.io/library/busybox:1.36", domain: "docker.io", familiar: "busybox:1.36", tagged: "busybox:1.36"},
		{in: "library/busybox", str: "docker.io/library/busybox", domain: "docker.io", familiar: "busybox", tagged: "busybox:latest", nameOnly: true},
		{in: "docker.io/busybox", str: "docker.io/library/busybox", domain: "docker.io", familiar: "busybox", tagged: "busybox:latest", nameOnly: true},
		{in: "index.docker.io/library/busybox:latest", str: "docker.io/library/busybox:latest", domain: "docker.io", familiar: "busybox:latest", tagged: "busybox:latest"},
		{in: "myuser/app", str: "docker.io/myuser/app", domain: "docker.io", familiar: "myuser/app", tagged: "myuser/app:latest", nameOnly: true},
		{in: "docker.io/myuser/app:v1", str: "docker.io/myuser/app:v1", domain: "docker.io", familiar: "myuser/app:v1", tagged: "myuser/app:v1"},
		{in: "localhost/app", str: "localhost/app", domain: "localhost", familiar: "localhost/app", tagged: "localhost/app:latest", nameOnly: true},
		{in: "localhost:5000/team/app:v2", str: "localhost:5000/team/app:v2", domain: "localhost:5000", familiar: "localhost:5000/team/app:v2", tagged: "localhost:5000/team/app:v2"},
		{in: "registry.example.com/app", str: "registry.example.com/app", domain: "registry.example.com", familiar: "registry.example.com/app", tagged: "registry.example.com/app:latest", nameOnly: true},
		{in: "registry.example.com:443/a/b/c", str: "registry.example.com:443/a/b/c", domain: "registry.example.com:443", familiar: "registry.example.com:443/a/b/c", tagged: "registry.example.com:443/a/b/c:latest", nameOnly: true},
		{in: "[::1]:5000/app:t", str: "[::1]:5000/app:t", domain: "[::1]:5000", familiar: "[::1]:5000/app:t", tagged: "[::1]:5000/app:t"},
		{in: "Foo.example.com/app", str: "Foo.example.com/app", domain: "Foo.example.com", familiar: "Foo.example.com/app", tagged: "Foo.example.com/app:latest", nameOnly: true},
		// A first part with a "." that is no host name: the whole is a path.
		{in: "a.b-c_d__e---f/x.y", str: "a.b-c_d__e---f/x.y", domain: "", familiar: "a.b-c_d__e---f/x.y", tagged: "a.b-c_d__e---f/x.y:latest", nameOnly: true},
		{in: "my_host.com/foo", str: "my_host.com/foo", domain: "", familiar: "my_host.com/foo", tagged: "my_host.com/foo:latest", nameOnly: true},
		{in: "app@sha256:" + h, str: "docker.io/library/app@sha256:" + h, domain: "docker.io", familiar: "app@sha256:" + h, tagged: "app@sha256:" + h, canonical: true},
		{in: "localhost:5000/app:v1@sha256:" + h, str: "localhost:5000/app:v1@sha256:" + h, domain: "localhost:5000", familiar: "localhost:5000/app:v1@sha256:" + h, tagged: "localhost:5000/app:v1@sha256:" + h, canonical: true},
		// A digest alone reads as a Hub name with a tag.
		{in: "sha256:" + h, str: "docker.io/library/sha256:" + h, domain: "docker.io", familiar: "sha256:" + h, tagged: "sha256:" + h},

		{in: "", err: "invalid reference format"},
		{in: "Busybox", err: "invalid reference format: repository name (library/Busybox) must be lowercase"},
		{in: "myuser/App:v1", err: "invalid reference format: repository name (myuser/App) must be lowercase"},
		{in: "a//b", err: "invalid reference format"},
		{in: "/app", err: "invalid reference format"},
		{in: "app/", err: "invalid reference format"},
		{in: "app:", err: "invalid reference format"},
		{in: "app:-bad", err: "invalid reference format"},
		{in: "app:bad/tag", err: "invalid reference format"},
		{in: "app:" + strings.Repeat("t", 129), err: "invalid reference format"},
		{in: "a..b", err: "invalid reference format"},
		{in: "a___b", err: "invalid reference format"},
		{in: "-app", err: "invalid reference format"},
		{in: "app-", err: "invalid reference format"},
		{in: "host.com:port/app", err: "invalid reference format"},
		{in: "app@", err: "invalid reference format"},
		{in: "app:tag@", err: "invalid reference format"},
		{in: "app@sha256:abc", err: "invalid reference format"},
		{in: "app@sha256:" + H, err: "invalid checksum digest format"},
		{in: "app@md5:" + h, err: "unsupported digest algorithm"},
		{in: h, err: "invalid repository name (" + h + "), cannot specify 64-byte hexadecimal strings"},
		{in: "x/" + strings.Repeat("a", 260), err: "repository name must not be more than 255 characters"},
	} {
		r, err := parseImageRef(c.in)
		if c.err != "" {
			if err == nil || err.Error() != c.err {
				t.Errorf("parseImageRef(%q): %v (%+v), want error %q", c.in, err, r, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseImageRef(%q): %v", c.in, err)
			continue
		}
		if r.String() != c.str || r.Domain() != c.domain || r.Familiar() != c.familiar || r.WithDefaultTag().Familiar() != c.tagged ||
			r.NameOnly() != c.nameOnly || r.Canonical() != c.canonical {
			t.Errorf("parseImageRef(%q) = %s domain %q familiar %s tagged %s nameOnly %v canonical %v,\nwant %+v",
				c.in, r, r.Domain(), r.Familiar(), r.WithDefaultTag().Familiar(), r.NameOnly(), r.Canonical(), c)
		}
	}
}

func TestParseAnyImageRef(t *testing.T) {
	h := strings.Repeat("cd", 32)
	for _, c := range []struct{ in, str, err string }{
		{in: h, str: "sha256:" + h},
		{in: "sha256:" + h, str: "sha256:" + h},
		{in: "busybox", str: "docker.io/library/busybox"},
		{in: "localhost:5000/app@sha256:" + h, str: "localhost:5000/app@sha256:" + h},
		{in: "sha256:abc", str: "docker.io/library/sha256:abc"},
		{in: "Busybox", err: "invalid reference format: repository name (library/Busybox) must be lowercase"},
		{in: "", err: "invalid reference format"},
		{in: "a//b", err: "invalid reference format"},
	} {
		r, err := parseAnyImageRef(c.in)
		switch {
		case c.err != "" && (err == nil || err.Error() != c.err):
			t.Errorf("parseAnyImageRef(%q): %v, want error %q", c.in, err, c.err)
		case c.err == "" && (err != nil || r.String() != c.str):
			t.Errorf("parseAnyImageRef(%q) = %s %v, want %s", c.in, r, err, c.str)
		}
	}
}

// A service's image is pinned as service create pins it.
func TestImageRefWithDigest(t *testing.T) {
	d := "sha256:" + strings.Repeat("ef", 32)
	for _, c := range []struct{ in, dgst, want, err string }{
		{in: "busybox", dgst: d, want: "busybox:latest@" + d},
		{in: "localhost:5000/app:v1", dgst: d, want: "localhost:5000/app:v1@" + d},
		{in: "myuser/app", dgst: "sha512:" + strings.Repeat("0", 128), want: "myuser/app:latest@sha512:" + strings.Repeat("0", 128)},
		{in: "busybox", dgst: "sha256:short", err: "invalid digest format"},
		{in: "busybox", dgst: "", err: "invalid digest format"},
		{in: "busybox", dgst: "1sha:" + strings.Repeat("0", 32), err: "invalid digest format"},
	} {
		r, err := parseImageRef(c.in)
		if err != nil {
			t.Fatal(err)
		}
		p, err := r.WithDefaultTag().WithDigest(c.dgst)
		switch {
		case c.err != "" && (err == nil || err.Error() != c.err):
			t.Errorf("%s with %q: %v, want error %q", c.in, c.dgst, err, c.err)
		case c.err == "" && (err != nil || p.Familiar() != c.want || !p.Canonical()):
			t.Errorf("%s with %q: %s %v, want %s", c.in, c.dgst, p.Familiar(), err, c.want)
		}
	}
}
