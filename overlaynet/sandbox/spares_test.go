package sandbox

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// nsInode is the identity of the namespace mounted at path.
func nsInode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// TestSpares: a take gets a fresh namespace with lo up, never the same one
// twice, from the pool or made at once when the pool is empty; Close
// leaves nothing mounted, and a new pool removes what an earlier process
// left.
func TestSpares(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	spareDir := filepath.Join(dir, "spare")
	// An earlier process's leftover, mounted.
	if err := Create(filepath.Join(spareDir, "old")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := NewSpares(ctx, spareDir, 2)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			s.Close()
		}
	})
	if ok, _ := IsNetNS(filepath.Join(spareDir, "old")); ok {
		t.Error("a leftover spare is still mounted")
	}
	waitSpares(t, spareDir, 2)

	seen := map[uint64]string{}
	for i, name := range []string{"a", "b", "c", "d", "e"} {
		path := filepath.Join(dir, "ns", name)
		t.Cleanup(func() { Remove(path) })
		if err := s.Take(path); err != nil {
			t.Fatalf("take %d: %v", i, err)
		}
		if ok, err := IsNetNS(path); !ok || err != nil {
			t.Fatalf("take %d: not a namespace: %v", i, err)
		}
		ino := nsInode(t, path)
		if prev, ok := seen[ino]; ok {
			t.Fatalf("take %d got the namespace of %s again", i, prev)
		}
		seen[ino] = path
		var up bool
		if err := Do(path, func() error {
			ifs, err := net.Interfaces()
			up = len(ifs) == 1 && ifs[0].Name == "lo" && ifs[0].Flags&net.FlagUp != 0
			return err
		}); err != nil || !up {
			t.Fatalf("take %d: lo not alone and up: %v", i, err)
		}
		if err := s.Take(path); err == nil {
			t.Fatalf("take %d: a second take on the same path succeeded", i)
		}
	}
	// What is taken is not the pool's any more (its spare's mount is gone),
	// and the pool is made up again: two spares, no more.
	waitSpares(t, spareDir, 2)
	time.Sleep(50 * time.Millisecond)
	if n := mountedIn(spareDir); n != 2 {
		t.Errorf("%d namespaces mounted in the pool's directory, want the 2 spares", n)
	}

	s.Close()
	closed = true
	if n := mountedIn(spareDir); n != 0 {
		t.Errorf("%d spares still mounted after Close", n)
	}
	// After Close a take still works: it makes its own.
	path := filepath.Join(dir, "ns", "after")
	t.Cleanup(func() { Remove(path) })
	if err := s.Take(path); err != nil {
		t.Fatalf("take after Close: %v", err)
	}
}

// mountedIn counts the namespaces mounted in dir.
func mountedIn(dir string) int {
	n := 0
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if ok, _ := IsNetNS(filepath.Join(dir, e.Name())); ok {
			n++
		}
	}
	return n
}

// waitSpares waits until n namespaces are mounted in dir.
func waitSpares(t *testing.T, dir string, n int) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); mountedIn(dir) < n; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("%d spares after 5 s, want %d", mountedIn(dir), n)
		}
	}
}
