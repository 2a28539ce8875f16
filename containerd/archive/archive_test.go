package archive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ent is one tar entry of a test archive.
type ent struct {
	name, body, link string
	typ              byte
	mode             int64
	uid, gid         int
	major, minor     int64
	xattrs           map[string]string
	mtime            time.Time
}

var testTime = time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)

func mkTar(t testing.TB, ents ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Gid: e.gid,
			Linkname: e.link, Devmajor: e.major, Devminor: e.minor, ModTime: e.mtime, Format: tar.FormatPAX}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if h.ModTime.IsZero() {
			h.ModTime = testTime
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		for k, v := range e.xattrs {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// sandbox is a root to apply into, beside an "outside" directory that no
// archive may touch.
type sandbox struct {
	root, outside string
}

func newSandbox(t testing.TB) sandbox {
	dir := t.TempDir()
	s := sandbox{root: filepath.Join(dir, "root"), outside: filepath.Join(dir, "outside")}
	if err := os.Mkdir(s.outside, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.outside, "sentinel"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

// intact fails the test if anything beside root changed.
func (s sandbox) intact(t testing.TB) {
	t.Helper()
	parent := filepath.Dir(s.root)
	names, _ := os.ReadDir(parent)
	for _, n := range names {
		if n.Name() != "root" && n.Name() != "outside" {
			t.Fatalf("archive wrote %s outside the root", n.Name())
		}
	}
	out, _ := os.ReadDir(s.outside)
	if len(out) != 1 || out[0].Name() != "sentinel" {
		t.Fatalf("archive wrote into the outside directory: %v", out)
	}
	if b, _ := os.ReadFile(filepath.Join(s.outside, "sentinel")); string(b) != "x" {
		t.Fatalf("archive changed the outside sentinel: %q", b)
	}
}

func TestApplyHostile(t *testing.T) {
	passwd, err := os.ReadFile("/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	good := mkTar(t, ent{name: "a/b/file", body: strings.Repeat("data", 1000)})
	cases := []struct {
		name string
		tar  func(s sandbox) []byte
		want error                  // nil: must succeed
		land func(s sandbox) string // with want nil: this path must exist inside root
	}{
		{"dotdot escape", func(s sandbox) []byte { return mkTar(t, ent{name: "../outside/pwned", body: "x"}) }, ErrUnsafe, nil},
		{"deep dotdot escape", func(s sandbox) []byte { return mkTar(t, ent{name: "a/../../../../outside/pwned", body: "x"}) }, ErrUnsafe, nil},
		{"dotdot dir escape", func(s sandbox) []byte { return mkTar(t, ent{name: "../evil/", typ: tar.TypeDir, mode: 0o755}) }, ErrUnsafe, nil},
		{"absolute path neutralised", func(s sandbox) []byte {
			return mkTar(t, ent{name: filepath.Join(s.outside, "pwned"), body: "x"})
		}, nil, func(s sandbox) string { return s.outside[1:] + "/pwned" }},
		{"absolute symlink then file through it", func(s sandbox) []byte {
			return mkTar(t, ent{name: s.outside[1:] + "/", typ: tar.TypeDir, mode: 0o755},
				ent{name: "evil", typ: tar.TypeSymlink, link: s.outside}, ent{name: "evil/pwned", body: "x"})
		}, nil, func(s sandbox) string { return s.outside[1:] + "/pwned" }},
		{"relative symlink up then file through it", func(s sandbox) []byte {
			return mkTar(t, ent{name: "outside/", typ: tar.TypeDir, mode: 0o755},
				ent{name: "evil", typ: tar.TypeSymlink, link: "../../../../outside"}, ent{name: "evil/pwned", body: "x"})
		}, nil, func(s sandbox) string { return "outside/pwned" }},
		{"dangling symlink then file through it", func(s sandbox) []byte {
			return mkTar(t, ent{name: "evil", typ: tar.TypeSymlink, link: s.outside}, ent{name: "evil/pwned", body: "x"})
		}, ErrInvalid, nil},
		{"symlink to /etc then overwrite passwd", func(s sandbox) []byte {
			return mkTar(t, ent{name: "etc", typ: tar.TypeSymlink, link: "/etc"}, ent{name: "etc/passwd", body: "root::0:0::/:/bin/sh\n"})
		}, ErrInvalid, nil},
		{"file replaced by symlink then written", func(s sandbox) []byte {
			return mkTar(t, ent{name: "f", body: "1"}, ent{name: "f", typ: tar.TypeSymlink, link: "/etc/passwd"}, ent{name: "f", body: "2"})
		}, nil, func(s sandbox) string { return "f" }},
		{"hardlink to /etc/passwd", func(s sandbox) []byte {
			return mkTar(t, ent{name: "pw", typ: tar.TypeLink, link: "/etc/passwd"})
		}, ErrUnsafe, nil},
		{"hardlink dotdot", func(s sandbox) []byte {
			return mkTar(t, ent{name: "pw", typ: tar.TypeLink, link: "../outside/sentinel"})
		}, ErrUnsafe, nil},
		{"hardlink through symlink", func(s sandbox) []byte {
			return mkTar(t, ent{name: "o", typ: tar.TypeSymlink, link: s.outside}, ent{name: "pw", typ: tar.TypeLink, link: "o/sentinel"})
		}, ErrUnsafe, nil},
		{"hardlink to missing target", func(s sandbox) []byte {
			return mkTar(t, ent{name: "pw", typ: tar.TypeLink, link: "nothere"})
		}, ErrUnsafe, nil},
		{"hardlink to directory", func(s sandbox) []byte {
			return mkTar(t, ent{name: "d/", typ: tar.TypeDir, mode: 0o755}, ent{name: "pw", typ: tar.TypeLink, link: "d"})
		}, ErrUnsafe, nil},
		{"char device", func(s sandbox) []byte {
			return mkTar(t, ent{name: "dev/mem", typ: tar.TypeChar, major: 1, minor: 1})
		}, ErrUnsafe, nil},
		{"char 0:0 from the tar", func(s sandbox) []byte { return mkTar(t, ent{name: "wh", typ: tar.TypeChar}) }, ErrUnsafe, nil},
		{"block device", func(s sandbox) []byte {
			return mkTar(t, ent{name: "sda", typ: tar.TypeBlock, major: 8, minor: 0})
		}, ErrUnsafe, nil},
		{"fifo", func(s sandbox) []byte { return mkTar(t, ent{name: "p", typ: tar.TypeFifo}) }, ErrUnsafe, nil},
		{"whiteout escape", func(s sandbox) []byte { return mkTar(t, ent{name: "../outside/.wh.sentinel"}) }, ErrUnsafe, nil},
		{"whiteout through symlink", func(s sandbox) []byte {
			return mkTar(t, ent{name: "outside/", typ: tar.TypeDir, mode: 0o755},
				ent{name: "o", typ: tar.TypeSymlink, link: "../outside"}, ent{name: "o/.wh.sentinel"})
		}, nil, func(s sandbox) string { return "outside/sentinel" }},
		{"opaque through dangling symlink", func(s sandbox) []byte {
			return mkTar(t, ent{name: "o", typ: tar.TypeSymlink, link: s.outside}, ent{name: "o/.wh..wh..opq"})
		}, ErrInvalid, nil},
		{"empty whiteout", func(s sandbox) []byte { return mkTar(t, ent{name: "d/.wh."}) }, ErrInvalid, nil},
		{"root is a file", func(s sandbox) []byte { return mkTar(t, ent{name: ".", body: ""}) }, ErrInvalid, nil},
		{"truncated", func(s sandbox) []byte { return good[:len(good)/2] }, ErrInvalid, nil},
		{"truncated gzip", func(s sandbox) []byte { g := gz(t, good); return g[:len(g)/2] }, ErrInvalid, nil},
		{"garbage", func(s sandbox) []byte { return bytes.Repeat([]byte("not a tar "), 100) }, ErrInvalid, nil},
		{"zstd", func(s sandbox) []byte { return append([]byte{0x28, 0xb5, 0x2f, 0xfd}, good...) }, ErrInvalid, nil},
		{"unsupported type", func(s sandbox) []byte { return mkTar(t, ent{name: "x", typ: 'Z'}) }, ErrInvalid, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newSandbox(t)
			_, err := Apply(context.Background(), s.root, bytes.NewReader(c.tar(s)), ApplyOptions{})
			if c.want != nil {
				if !errors.Is(err, c.want) {
					t.Fatalf("Apply: got %v, want %v", err, c.want)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Fatalf("error is not one line: %q", err)
				}
			} else if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			s.intact(t)
			if c.land != nil {
				if _, err := os.Lstat(filepath.Join(s.root, c.land(s))); err != nil {
					t.Fatalf("expected %s inside the root: %v", c.land(s), err)
				}
			}
			if b, _ := os.ReadFile("/etc/passwd"); !bytes.Equal(b, passwd) {
				t.Fatal("/etc/passwd changed")
			}
		})
	}
}

func gz(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

func TestApplyMetadataAndWhiteouts(t *testing.T) {
	dirTime := time.Date(2019, 5, 6, 7, 8, 9, 0, time.UTC)
	tarball := mkTar(t,
		// the opaque marker comes before its directory's own entry
		ent{name: "opq/.wh..wh..opq"},
		ent{name: "opq/", typ: tar.TypeDir, mode: 0o750, uid: 7, gid: 8, mtime: dirTime},
		ent{name: "opq/kept", body: "new"},
		ent{name: "bin/", typ: tar.TypeDir, mode: 0o755, mtime: dirTime},
		ent{name: "bin/su", body: "suid", mode: 0o4755, uid: 0, gid: 0},
		ent{name: "bin/tool", body: "tool", mode: 0o700, uid: 1234, gid: 5678, xattrs: map[string]string{"user.note": "hi", "trusted.overlay.redirect": "/etc"}},
		ent{name: "bin/sh", typ: tar.TypeSymlink, link: "tool", uid: 1234, gid: 5678},
		ent{name: "bin/tool2", typ: tar.TypeLink, link: "bin/tool"},
		ent{name: "bin/.wh.gone"},
		ent{name: "new/deep/file", body: "x"},
	)
	for _, compress := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "gzip"}[compress], func(t *testing.T) {
			root := t.TempDir()
			in := tarball
			if compress {
				in = gz(t, tarball)
			}
			n, err := Apply(context.Background(), root, bytes.NewReader(in), ApplyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if n != int64(len("new")+len("suid")+len("tool")+len("x")) {
				t.Errorf("size %d", n)
			}
			checkTree(t, root, dirTime)
		})
	}
}

func checkTree(t *testing.T, root string, dirTime time.Time) {
	t.Helper()
	var st unix.Stat_t
	must := func(p string) *unix.Stat_t {
		t.Helper()
		if err := unix.Lstat(filepath.Join(root, p), &st); err != nil {
			t.Fatalf("lstat %s: %v", p, err)
		}
		return &st
	}
	if s := must("bin/su"); s.Mode&0o7777 != 0o4755 {
		t.Errorf("bin/su mode %o", s.Mode&0o7777)
	}
	if s := must("bin/tool"); s.Uid != 1234 || s.Gid != 5678 || s.Mode&0o777 != 0o700 || s.Nlink != 2 || time.Unix(s.Mtim.Unix()).UTC() != testTime {
		t.Errorf("bin/tool: uid %d gid %d mode %o nlink %d mtime %v", s.Uid, s.Gid, s.Mode&0o777, s.Nlink, time.Unix(s.Mtim.Unix()))
	}
	if s := must("bin/sh"); s.Mode&unix.S_IFMT != unix.S_IFLNK || s.Uid != 1234 {
		t.Errorf("bin/sh: mode %o uid %d", s.Mode, s.Uid)
	}
	if s := must("bin/gone"); s.Mode&unix.S_IFMT != unix.S_IFCHR || s.Rdev != 0 {
		t.Errorf("bin/gone is not a whiteout: mode %o rdev %d", s.Mode, s.Rdev)
	}
	if s := must("opq"); s.Uid != 7 || s.Mode&0o777 != 0o750 || time.Unix(s.Mtim.Unix()).UTC() != dirTime {
		t.Errorf("opq: uid %d mode %o mtime %v", s.Uid, s.Mode&0o777, time.Unix(s.Mtim.Unix()))
	}
	if s := must("bin"); time.Unix(s.Mtim.Unix()).UTC() != dirTime {
		t.Errorf("bin mtime %v, want %v (dir times must be set last)", time.Unix(s.Mtim.Unix()).UTC(), dirTime)
	}
	if v, err := getXattr(filepath.Join(root, "opq"), opaqueXattr); err != nil || string(v) != "y" {
		t.Errorf("opq opaque xattr: %q %v", v, err)
	}
	if v, err := getXattr(filepath.Join(root, "bin/tool"), "user.note"); err != nil || string(v) != "hi" {
		t.Errorf("user.note: %q %v", v, err)
	}
	if _, err := getXattr(filepath.Join(root, "bin/tool"), "trusted.overlay.redirect"); err == nil {
		t.Error("trusted.overlay.redirect from the tar was applied")
	}
	if b, _ := os.ReadFile(filepath.Join(root, "new/deep/file")); string(b) != "x" {
		t.Errorf("new/deep/file %q", b)
	}
}

func TestDiffRoundTrip(t *testing.T) {
	dirTime := time.Date(2019, 5, 6, 7, 8, 9, 0, time.UTC)
	tarball := mkTar(t,
		ent{name: "opq/", typ: tar.TypeDir, mode: 0o750, uid: 7, gid: 8, mtime: dirTime},
		ent{name: "opq/.wh..wh..opq"},
		ent{name: "opq/kept", body: "new"},
		ent{name: "bin/", typ: tar.TypeDir, mode: 0o755, mtime: dirTime},
		ent{name: "bin/su", body: "suid", mode: 0o4755},
		ent{name: "bin/tool", body: "tool", mode: 0o700, uid: 1234, gid: 5678, xattrs: map[string]string{"user.note": "hi"}},
		ent{name: "bin/sh", typ: tar.TypeSymlink, link: "tool", uid: 1234, gid: 5678},
		ent{name: "bin/tool2", typ: tar.TypeLink, link: "bin/tool"},
		ent{name: "bin/.wh.gone"},
		ent{name: "new/", typ: tar.TypeDir, mode: 0o755},
		ent{name: "new/deep/", typ: tar.TypeDir, mode: 0o755},
		ent{name: "new/deep/file", body: "x"},
	)
	a := t.TempDir()
	if _, err := Apply(context.Background(), a, bytes.NewReader(tarball), ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := Diff(context.Background(), a, &out); err != nil {
		t.Fatal(err)
	}
	names := tarNames(t, out.Bytes())
	for _, want := range []string{"bin/.wh.gone", "opq/.wh..wh..opq", "bin/tool2"} {
		if !contains(names, want) {
			t.Errorf("diff lacks %s: %v", want, names)
		}
	}
	if contains(names, "bin/gone") {
		t.Errorf("diff holds the whiteout device itself: %v", names)
	}
	b := t.TempDir()
	if _, err := Apply(context.Background(), b, bytes.NewReader(out.Bytes()), ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	checkTree(t, b, dirTime)

	// TarDir keeps the whiteout device as a device.
	out.Reset()
	if err := TarDir(context.Background(), a, &out); err != nil {
		t.Fatal(err)
	}
	if names := tarNames(t, out.Bytes()); !contains(names, "bin/gone") || contains(names, "bin/.wh.gone") {
		t.Errorf("TarDir converted whiteouts: %v", names)
	}
}

func TestApplyWhiteoutDelete(t *testing.T) {
	root := t.TempDir()
	base := mkTar(t,
		ent{name: "etc/", typ: tar.TypeDir, mode: 0o755},
		ent{name: "etc/old", body: "o"},
		ent{name: "etc/keep", body: "k"},
		ent{name: "gone", body: "g"},
		ent{name: "gonedir/x", body: "g"},
	)
	upper := mkTar(t,
		ent{name: "etc/new", body: "n"}, // listed before the marker: must survive it
		ent{name: "etc/.wh..wh..opq"},
		ent{name: ".wh.gone"},
		ent{name: ".wh.gonedir"},
	)
	for _, b := range [][]byte{base, upper} {
		if _, err := Apply(context.Background(), root, bytes.NewReader(b), ApplyOptions{Whiteouts: WhiteoutDelete}); err != nil {
			t.Fatal(err)
		}
	}
	got := listTree(t, root)
	want := []string{"etc", "etc/new"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("tree %v, want %v", got, want)
	}
}

func TestApplyCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Apply(ctx, t.TempDir(), bytes.NewReader(mkTar(t, ent{name: "a", body: "x"})), ApplyOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
}

func listTree(t *testing.T, root string) []string {
	var out []string
	filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if p != root {
			rel, _ := filepath.Rel(root, p)
			out = append(out, rel)
		}
		return nil
	})
	sort.Strings(out)
	return out
}

func tarNames(t *testing.T, b []byte) []string {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	var out []string
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		out = append(out, strings.TrimSuffix(h.Name, "/"))
	}
	return out
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
