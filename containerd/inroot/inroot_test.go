package inroot

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// where reports the host path a descriptor ended up at.
func where(t *testing.T, fd int) string {
	t.Helper()
	p, err := os.Readlink(FdPath(fd, ""))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestOpenResolvesInsideTheRoot(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "usr/lib"), 0o755)
	os.MkdirAll(filepath.Join(dir, "etc"), 0o755)
	os.Symlink("/usr/lib", filepath.Join(dir, "lib"))
	os.Symlink("../../../..", filepath.Join(dir, "usr/up"))
	os.Symlink("/proc/self/root", filepath.Join(dir, "magic"))
	r, err := OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cases := map[string]string{
		"/lib":            "usr/lib",
		"lib":             "usr/lib",
		"/usr/up/etc":     "etc",
		"../../../../etc": "etc",
		"/":               "",
	}
	for in, want := range cases {
		fd, err := r.Open(in, unix.O_PATH)
		if err != nil {
			t.Errorf("Open(%q): %v", in, err)
			continue
		}
		if got := where(t, fd); got != filepath.Join(dir, want) {
			t.Errorf("Open(%q) = %q, want %q", in, got, filepath.Join(dir, want))
		}
		unix.Close(fd)
	}
	// O_NOFOLLOW opens the last symlink itself.
	fd, err := r.Open("/lib", unix.O_PATH|unix.O_NOFOLLOW)
	if err != nil || where(t, fd) != filepath.Join(dir, "lib") {
		t.Errorf("Open(/lib, O_NOFOLLOW): %v", err)
	}
	unix.Close(fd)
	if _, err := r.Open("/magic/etc", unix.O_PATH); err == nil {
		t.Error("a magic link was followed")
	}
	if _, err := r.OpenNoSymlinks("/lib", unix.O_PATH); !errors.Is(err, unix.ELOOP) {
		t.Errorf("OpenNoSymlinks through a symlink: %v", err)
	}
	if _, err := r.Open("/missing/dir/x", unix.O_PATH); !errors.Is(err, unix.ENOENT) {
		t.Errorf("missing parent: %v", err)
	}
}

func TestMkdirAllStaysInside(t *testing.T) {
	dir := t.TempDir()
	os.Symlink("/", filepath.Join(dir, "up"))
	os.Symlink("/nowhere", filepath.Join(dir, "dangling"))
	r, err := OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	fd, made, err := r.MkdirAll("/up/a/b", 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if got := where(t, fd); got != filepath.Join(dir, "a/b") || len(made) != 2 {
		t.Errorf("MkdirAll(/up/a/b) = %q, made %v", got, made)
	}
	unix.Close(fd)
	if _, _, err := r.MkdirAll("/dangling/x", 0o755); err == nil {
		t.Error("MkdirAll through a dangling symlink succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir, "nowhere")); err == nil {
		t.Error("a dangling symlink's target was created")
	}
}

func TestChmodDoesNotFollow(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "f")
	os.WriteFile(outside, nil, 0o600)
	os.Symlink(outside, filepath.Join(dir, "l"))
	os.WriteFile(filepath.Join(dir, "f"), nil, 0o600)
	dfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dfd)
	if err := Chmod(dfd, "l", 0o777); err != nil {
		t.Fatal(err)
	}
	if err := Chmod(dfd, "f", 0o640); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(outside); fi.Mode().Perm() != 0o600 {
		t.Errorf("chmod followed a symlink out: %v", fi.Mode())
	}
	if fi, _ := os.Stat(filepath.Join(dir, "f")); fi.Mode().Perm() != 0o640 {
		t.Errorf("chmod: %v", fi.Mode())
	}
}

// TestMkdirAllRacingSwap swaps a directory of the root for a symlink to the
// host's / (renameat2 RENAME_EXCHANGE, as a container could) while MkdirAll
// and Open run through it: nothing is ever made or opened outside.
func TestMkdirAllRacingSwap(t *testing.T) {
	dir := t.TempDir()
	host := t.TempDir() // what an escape would reach: <host>/made
	if err := os.MkdirAll(filepath.Join(dir, "d", host), 0o755); err != nil {
		t.Fatal(err)
	}
	os.Symlink("/", filepath.Join(dir, "x"))
	r, err := OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			unix.Renameat2(unix.AT_FDCWD, filepath.Join(dir, "d"), unix.AT_FDCWD, filepath.Join(dir, "x"), unix.RENAME_EXCHANGE)
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	for i := 0; i < 2000; i++ {
		fd, _, err := r.MkdirAll(filepath.Join("/d", host, "made"), 0o755)
		if err == nil {
			if p := where(t, fd); !strings.HasPrefix(p, dir+"/") {
				t.Fatalf("MkdirAll ended at %s, outside %s", p, dir)
			}
			unix.Close(fd)
		}
		if ents, _ := os.ReadDir(host); len(ents) != 0 {
			t.Fatalf("made outside the root after %d tries: %s holds %d entries", i, host, len(ents))
		}
	}
}

func TestReadFileLimit(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("12345"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadFileLimit(dir, "f", 5); err != nil || string(b) != "12345" {
		t.Fatalf("at the limit: %q %v", b, err)
	}
	if _, err := ReadFileLimit(dir, "f", 4); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("above the limit: %v", err)
	}
	if b, err := ReadFileLimit(dir, "f", -1); err != nil || string(b) != "12345" {
		t.Fatalf("no limit: %q %v", b, err)
	}
}
