package containers

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestContainerOutputOnFullDisk runs a container that prints 3 MB while its
// log directory is a 256 KiB tmpfs: it must run to its end (the shim keeps
// draining its output) instead of freezing once its pipe is full.
func TestContainerOutputOnFullDisk(t *testing.T) {
	env := newEnv(t)
	// It waits a moment before printing: Start saves the container's
	// record once the process runs, and a disk already full then is a
	// failed start (seen in make test), not what this test is about.
	c := env.create(Config{Cmd: []string{"sh", "-c", "sleep 0.5; yes 0123456789012345678901234567890123456789012345678901234567890123456789 | head -c 3000000"}})
	// The container's directory (record and log) moves onto a small tmpfs.
	dir := env.e.containerDir(c.ID)
	keep := t.TempDir()
	if out, err := exec.Command("cp", "-a", dir+"/.", keep).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=256k"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	if out, err := exec.Command("cp", "-a", keep+"/.", dir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	if err := env.e.Start(context.Background(), c.ID); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := env.e.Wait(ctx, c.ID, WaitNotRunning, nil)
	if err != nil {
		t.Fatalf("the container did not finish with its log on a full disk: %v", err)
	}
	if st.ExitCode != 0 {
		t.Fatalf("exit code %d: %+v", st.ExitCode, st)
	}
	if fi, err := os.Stat(filepath.Join(dir, c.ID+"-json.log")); err != nil || fi.Size() == 0 {
		t.Fatalf("log: %v", err)
	}
}
