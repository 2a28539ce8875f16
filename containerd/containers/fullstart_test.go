package containers

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestStartOnFullDisk starts a container whose record cannot be saved (its
// directory is a full tmpfs, as on the worker whose disk the chaos test
// fills): the start fails, nothing of the container runs on, and the engine
// can still stop and remove it once the disk has room again.
func TestStartOnFullDisk(t *testing.T) {
	env := newEnv(t)
	c := env.create(Config{Cmd: []string{"sleep", "1000"}})
	dir := env.e.containerDir(c.ID)
	keep := t.TempDir()
	if out, err := exec.Command("cp", "-a", dir+"/.", keep).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	if out, err := exec.Command("cp", "-a", keep+"/.", dir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	fill := filepath.Join(dir, "fill")
	f, err := os.Create(fill)
	if err != nil {
		t.Fatal(err)
	}
	for err == nil {
		_, err = f.Write(make([]byte, 4096))
	}
	f.Close()
	if !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("fill: %v", err)
	}

	err = env.e.Start(context.Background(), c.ID)
	t.Logf("start on a full disk: %v", err)
	if err == nil {
		t.Fatal("start succeeded though its record could not be saved")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := env.e.Wait(ctx, c.ID, WaitNotRunning, nil); err != nil {
		got, _ := env.e.Get(c.ID)
		t.Fatalf("a container whose start failed still runs after 15s (state %+v): %v", got.State, err)
	}
	if err := os.Remove(fill); err != nil {
		t.Fatal(err)
	}
	if err := env.e.Remove(context.Background(), c.ID, true); err != nil {
		t.Fatalf("remove: %v", err)
	}
}
