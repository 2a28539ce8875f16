package images

import (
	"errors"
	"strings"
	"testing"
)

func TestParseReference(t *testing.T) {
	good := []struct{ in, want string }{
		{"busybox", "busybox:latest"},
		{"busybox:1.36", "busybox:1.36"},
		{"library/busybox", "busybox:latest"},
		{"docker.io/library/busybox:1", "busybox:1"},
		{"index.docker.io/library/busybox", "busybox:latest"},
		{"docker.io/myorg/app", "myorg/app:latest"},
		{"myorg/app:v1.2_3-rc", "myorg/app:v1.2_3-rc"},
		{"localhost/app", "localhost/app:latest"},
		{"localhost:5000/app:tag", "localhost:5000/app:tag"},
		{"registry.example.com:443/a/b/c:x", "registry.example.com:443/a/b/c:x"},
		{"Registry.Example.com/app", "Registry.Example.com/app:latest"},
		{"a__b/c.d/e-f---g:T", "a__b/c.d/e-f---g:T"},
		{"busybox@sha256:" + strings.Repeat("a", 64), "busybox@sha256:" + strings.Repeat("a", 64)},
		{"busybox:1@sha256:" + strings.Repeat("a", 64), "busybox:1@sha256:" + strings.Repeat("a", 64)},
	}
	for _, c := range good {
		r, err := ParseReference(c.in)
		if err != nil {
			t.Errorf("ParseReference(%q): %v", c.in, err)
			continue
		}
		if r.String() != c.want {
			t.Errorf("ParseReference(%q) = %q, want %q", c.in, r.String(), c.want)
		}
	}
	bad := []struct{ in, msg string }{
		{"", "empty"},
		{"Bad:Ref!!", "invalid reference format"},
		{"Busybox", "must be lowercase"},
		{"myorg/App", "must be lowercase"},
		{"busybox:", "bad tag"},
		{":tag", "invalid reference format"},
		{"busybox:-x", "bad tag"},
		{"busybox:" + strings.Repeat("t", 129), "bad tag"},
		{"a//b", "invalid reference format"},
		{"/busybox", "invalid reference format"},
		{"busybox/", "invalid reference format"},
		{"bu--sy_.box", "invalid reference format"},
		{"_busybox", "invalid reference format"},
		{"busybox@sha256:abc", "bad digest"},
		{"host:port/app", "bad registry host"},
		{"a/" + strings.Repeat("b", 300), "more than 255"},
		{"busy box", "invalid reference format"},
	}
	for _, c := range bad {
		_, err := ParseReference(c.in)
		if !errors.Is(err, ErrInvalidReference) || !strings.Contains(err.Error(), c.msg) || !strings.HasPrefix(err.Error(), "invalid reference format") {
			t.Errorf("ParseReference(%q) = %v, want invalid reference (%s)", c.in, err, c.msg)
		}
	}
	if _, err := parseTagged("busybox@sha256:" + strings.Repeat("a", 64)); !errors.Is(err, ErrInvalidReference) {
		t.Errorf("parseTagged accepted a digest: %v", err)
	}
	if _, err := parseTagged(strings.Repeat("a", 64)); !errors.Is(err, ErrInvalidReference) {
		t.Errorf("parseTagged accepted a 64-hex name: %v", err)
	}
}

// FuzzParseReference checks that parsing never panics, that errors are
// ErrInvalidReference, and that a parsed reference prints to a string that
// parses back to itself.
func FuzzParseReference(f *testing.F) {
	for _, s := range []string{"busybox", "docker.io/library/busybox:1", "localhost:5000/a/b:c", "Bad:Ref!!",
		"a@sha256:" + strings.Repeat("0", 64), "x:y:z", "a/b/c/d/e/f:latest", "[::1]:5000/app", "a..b", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseReference(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidReference) {
				t.Fatalf("ParseReference(%q): error %v is not ErrInvalidReference", s, err)
			}
			return
		}
		r2, err := ParseReference(r.String())
		if err != nil || r2 != r {
			t.Fatalf("ParseReference(%q) = %+v; reparsing %q gives %+v, %v", s, r, r.String(), r2, err)
		}
	})
}
