package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestExecRootTmpfs: a fresh exec root on a disk becomes a tmpfs, once (a
// restarted daemon finds it and stacks no second one); one on disk that
// holds state stays on disk.
func TestExecRootTmpfs(t *testing.T) {
	base := t.TempDir()
	var fs unix.Statfs_t
	if err := unix.Statfs(base, &fs); err != nil {
		t.Fatal(err)
	}
	onDisk := fs.Type != unix.TMPFS_MAGIC
	dir := filepath.Join(base, "exec")
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	mounted, err := execRootTmpfs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if mounted != onDisk {
		t.Fatalf("mounted %v, want %v (the temp dir on disk: %v)", mounted, onDisk, onDisk)
	}
	if err := unix.Statfs(dir, &fs); err != nil || fs.Type != unix.TMPFS_MAGIC {
		t.Fatalf("exec root is not on a tmpfs: type %#x, %v", fs.Type, err)
	}
	if onDisk && !isMountPoint(dir) {
		t.Fatal("exec root is not a mount point")
	}
	if again, err := execRootTmpfs(dir); err != nil || again {
		t.Fatalf("second call mounted %v (%v): a restart must keep the tmpfs", again, err)
	}
	if onDisk {
		if n := mountsAt(t, dir); n != 1 {
			t.Fatalf("%d mounts at %s, want 1", n, dir)
		}
	}

	held := filepath.Join(base, "held")
	if err := os.MkdirAll(filepath.Join(held, "containers"), 0o711); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(held, unix.MNT_DETACH) })
	if mounted, err := execRootTmpfs(held); err != nil || mounted {
		t.Fatalf("an exec root holding state: mounted %v (%v), want it left", mounted, err)
	}
	if _, err := os.Stat(filepath.Join(held, "containers")); err != nil {
		t.Fatalf("state hidden: %v", err)
	}
}

func mountsAt(t *testing.T, dir string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == dir {
			n++
		}
	}
	return n
}
