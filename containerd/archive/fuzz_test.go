package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

// FuzzApply feeds arbitrary bytes (seeded with hostile tars) to Apply and
// checks that nothing is written beside the root and that a failure is
// reported as one of the package's error classes, never a panic.
func FuzzApply(f *testing.F) {
	seeds := [][]byte{
		mkTar(f, ent{name: "../outside/pwned", body: "x"}),
		mkTar(f, ent{name: "/abs", body: "x"}),
		mkTar(f, ent{name: "evil", typ: tar.TypeSymlink, link: "../outside"}, ent{name: "evil/pwned", body: "x"}),
		mkTar(f, ent{name: "evil", typ: tar.TypeSymlink, link: "/"}, ent{name: "evil/outside/pwned", body: "x"}),
		mkTar(f, ent{name: "pw", typ: tar.TypeLink, link: "/etc/passwd"}),
		mkTar(f, ent{name: "pw", typ: tar.TypeLink, link: "../outside/sentinel"}),
		mkTar(f, ent{name: "mem", typ: tar.TypeChar, major: 1, minor: 1}),
		mkTar(f, ent{name: "d/", typ: tar.TypeDir, mode: 0o755}, ent{name: "d/.wh..wh..opq"}, ent{name: "d/.wh.x"}, ent{name: "d/f", body: "y"}),
		mkTar(f, ent{name: "f", body: "1"}, ent{name: "f", typ: tar.TypeSymlink, link: "../outside/sentinel"}, ent{name: "f", body: "2"}),
		mkTar(f, ent{name: "a/b/c", body: "data", xattrs: map[string]string{"user.x": "y"}}),
	}
	for _, s := range seeds {
		f.Add(s)
		f.Add(s[:len(s)/2])
		f.Add(gz(f, s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := newSandbox(t)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := Apply(ctx, s.root, bytes.NewReader(data), ApplyOptions{})
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Apply of %d bytes took too long", len(data))
		}
		if err != nil && !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrUnsafe) {
			// System-call failures on odd input are acceptable, but they must
			// not be panics or writes outside; log them to see what shows up.
			t.Logf("Apply: %v", err)
		}
		s.intact(t)
	})
}
