package images

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// layerTree makes an upperdir-style layer: paths ending in / are
// directories, "->x" makes a symlink to x, "wh:" a whiteout, "opq:" an
// opaque directory; anything else a file.
func layerTree(t *testing.T, entries ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, e := range entries {
		switch {
		case len(e) > 4 && e[:4] == "opq:":
			p := filepath.Join(dir, e[4:])
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := unix.Lsetxattr(p, "trusted.overlay.opaque", []byte("y"), 0); err != nil {
				t.Fatal(err)
			}
		case len(e) > 3 && e[:3] == "wh:":
			if err := unix.Mknod(filepath.Join(dir, e[3:]), unix.S_IFCHR, 0); err != nil {
				t.Fatal(err)
			}
		case e[len(e)-1] == '/':
			if err := os.MkdirAll(filepath.Join(dir, e), 0o755); err != nil {
				t.Fatal(err)
			}
		default:
			name, target, link := strings.Cut(e, "->")
			if link {
				if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if err := os.WriteFile(filepath.Join(dir, e), []byte("image's"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

// What the init layer holds for images that lack all, some or none of the
// mount points, and for whiteouts, opaque directories and a symlinked /etc.
func TestInitLayerAddsOnlyWhatIsMissing(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (whiteouts, opaque xattrs)")
	}
	for _, c := range []struct {
		name   string
		layers [][]string // top first
		want   []string   // what the init layer holds
	}{
		{"empty image", [][]string{{"bin/"}}, []string{"proc", "dev", "sys", "etc", "etc/hosts", "etc/hostname", "etc/resolv.conf"}},
		{"all there", [][]string{{"proc/", "dev/", "sys/", "etc/", "etc/hosts", "etc/hostname", "etc/resolv.conf"}}, nil},
		{"hosts in a lower layer", [][]string{{"etc/"}, {"etc/", "etc/hosts", "proc/", "dev/", "sys/"}}, []string{"etc", "etc/hostname", "etc/resolv.conf"}},
		{"whiteouts above", [][]string{{"etc/", "wh:etc/hosts", "wh:proc"}, {"etc/", "etc/hosts", "etc/hostname", "etc/resolv.conf", "proc/", "dev/", "sys/"}}, []string{"proc", "etc", "etc/hosts"}},
		{"opaque etc above", [][]string{{"opq:etc"}, {"etc/", "etc/hosts", "etc/hostname", "etc/resolv.conf", "proc/", "dev/", "sys/"}}, []string{"etc", "etc/hosts", "etc/hostname", "etc/resolv.conf"}},
		{"etc a symlink", [][]string{{"etc->usr/etc", "usr/etc/", "proc/", "dev/", "sys/"}}, nil},
	} {
		var layers []string
		for _, l := range c.layers {
			layers = append(layers, layerTree(t, l...))
		}
		dir := t.TempDir()
		if err := fillInitLayer(dir, layers); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		got := treeOf(dir)
		want := map[string]bool{}
		for _, w := range c.want {
			want[w] = true
		}
		if len(got) != len(want) {
			t.Fatalf("%s: init layer holds %v, want %v", c.name, got, c.want)
		}
		for _, g := range got {
			if !want[g] {
				t.Fatalf("%s: init layer holds %v, want %v", c.name, got, c.want)
			}
		}
	}
}

// An /etc the layer must make in an image that has one takes that /etc's
// owner and mode: the merged /etc shows the top layer's.
func TestInitLayerKeepsImageEtcAttributes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (chown)")
	}
	img := layerTree(t, "etc/", "proc/", "dev/", "sys/")
	if err := os.Chmod(filepath.Join(img, "etc"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(filepath.Join(img, "etc"), 5, 6); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := fillInitLayer(dir, []string{img}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(filepath.Join(dir, "etc"))
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != 0o750 || st.Uid != 5 || st.Gid != 6 {
		t.Fatalf("init layer's /etc: %v %d:%d, want -rwxr-x--- 5:6", fi.Mode(), st.Uid, st.Gid)
	}
}
