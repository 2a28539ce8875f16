package volumes

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestCreateMountRemove(t *testing.T) {
	root := t.TempDir()
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"../x", "a", "-x", "a/b", "x y"} {
		if _, _, err := s.Create(bad, "", nil, nil); !errors.Is(err, ErrInvalid) {
			t.Errorf("name %q: got %v, want ErrInvalid", bad, err)
		}
	}
	if _, _, err := s.Create("v1", "nfsdriver", nil, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("driver: got %v", err)
	}
	if _, _, err := s.Create("v1", "", nil, map[string]string{"type": "nfs", "o": "addr=1.2.3.4", "device": ":/x"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("nfs: got %v", err)
	}
	// A mount that fails leaves no volume.
	if _, _, err := s.Create("v1", "", nil, map[string]string{"type": "ext4", "device": "/dev/nonexistent"}); err == nil || !strings.Contains(err.Error(), "mount /dev/nonexistent") {
		t.Fatalf("a volume on a missing device: %v, want its mount's failure", err)
	}
	if _, err := os.Stat(filepath.Join(root, "v1")); !os.IsNotExist(err) {
		t.Fatalf("failed create left %v", err)
	}
	v, created, err := s.Create("v1", "", map[string]string{"a": "b"}, map[string]string{"type": "tmpfs", "o": "size=1m"})
	if err != nil || !created {
		t.Fatal(err, created)
	}
	dir, err := s.Mount("v1", "c1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	if _, err := s.Mount("v1", "c2"); err != nil {
		t.Fatal(err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil || st.Type != unix.TMPFS_MAGIC || st.Blocks*uint64(st.Bsize) != 1<<20 {
		t.Fatalf("not a 1m tmpfs: %v %x %d", err, st.Type, st.Blocks*uint64(st.Bsize))
	}
	if err := s.Remove("v1", true, ""); !errors.Is(err, ErrInUse) {
		t.Fatalf("remove in use: %v", err)
	}
	// The count survives a reopen (a daemon restart).
	s2, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := s2.Get("v1"); len(got.Users) != 2 || got.Labels["a"] != "b" || got.Mountpoint != v.Mountpoint {
		t.Fatalf("reopened: %+v", got)
	}
	_ = s2.Unmount("v1", "c1")
	if !isMountpoint(dir) {
		t.Fatal("unmounted with a user left")
	}
	_ = s2.Unmount("v1", "c2")
	if isMountpoint(dir) {
		t.Fatal("still mounted without users")
	}
	if err := s2.Remove("v1", false, "ctr"); !errors.Is(err, ErrInUse) {
		t.Fatalf("remove referenced: %v", err)
	}
	if err := s2.Remove("v1", false, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "v1")); !os.IsNotExist(err) {
		t.Fatalf("removed volume left %v", err)
	}
	a, _, err := s2.Create("", "", nil, nil)
	if err != nil || !a.Anonymous() || len(a.Name) != 64 {
		t.Fatalf("anonymous: %+v %v", a, err)
	}
}

// TestBindVolume: type=none o=bind device=DIR binds DIR while used, and a
// read-only bind is read-only.
func TestBindVolume(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Create("bv", "", nil, map[string]string{"type": "none", "device": "rel", "o": "bind"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("relative bind device: %v", err)
	}
	if _, _, err := s.Create("bv", "", nil, map[string]string{"type": "none", "device": src, "o": "bind,ro"}); err != nil {
		t.Fatal(err)
	}
	dir, err := s.Mount("bv", "c1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	if b, err := os.ReadFile(filepath.Join(dir, "f")); err != nil || string(b) != "x" {
		t.Fatalf("bound content: %q %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "g"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Fatalf("write to a ro bind volume: %v", err)
	}
	if err := s.Unmount("bv", "c1"); err != nil || isMountpoint(dir) {
		t.Fatalf("unmount: %v", err)
	}
}
