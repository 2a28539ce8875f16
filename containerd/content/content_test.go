package content

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestPutOpenDeleteWalk(t *testing.T) {
	root := t.TempDir()
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("hello blob")
	want := digest.FromBytes(data)
	d, n, err := s.Put(bytes.NewReader(data), want)
	if err != nil || d != want || n != int64(len(data)) {
		t.Fatalf("Put: %s %d %v", d, n, err)
	}
	if _, err := os.Stat(filepath.Join(root, "blobs", "sha256", want.Encoded())); err != nil {
		t.Fatalf("blob not at its path: %v", err)
	}
	f, err := s.Open(want)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(f)
	f.Close()
	if !bytes.Equal(b, data) {
		t.Fatalf("read %q", b)
	}
	if info, err := s.Info(want); err != nil || info.Size != int64(len(data)) {
		t.Fatalf("Info: %+v %v", info, err)
	}
	// A second write of the same blob is harmless.
	if _, _, err := s.Put(bytes.NewReader(data), ""); err != nil {
		t.Fatal(err)
	}
	var seen []digest.Digest
	os.WriteFile(filepath.Join(root, "blobs", "sha256", "not-a-digest"), nil, 0o644)
	if err := s.Walk(func(i Info) error { seen = append(seen, i.Digest); return nil }); err != nil || len(seen) != 1 || seen[0] != want {
		t.Fatalf("Walk: %v %v", seen, err)
	}
	if err := s.Delete(want); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(want); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open after delete: %v", err)
	}
	if err := s.Delete(want); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}

func TestRejects(t *testing.T) {
	root := t.TempDir()
	s, _ := Open(root)
	if _, _, err := s.Put(strings.NewReader("abc"), digest.FromString("xyz")); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("mismatch: %v", err)
	}
	for _, d := range []digest.Digest{"sha256:../../etc/passwd", "md5:abc", "sha512:" + digest.Digest(strings.Repeat("a", 128)), "", "sha256:ABC"} {
		if _, err := s.Open(d); !errors.Is(err, ErrInvalidDigest) {
			t.Errorf("Open(%q): %v", d, err)
		}
	}
	// Nothing of the failed put stays behind.
	ents, _ := os.ReadDir(filepath.Join(root, "ingest"))
	blobs, _ := os.ReadDir(filepath.Join(root, "blobs", "sha256"))
	if len(ents)+len(blobs) != 0 {
		t.Fatalf("left %d ingest files, %d blobs", len(ents), len(blobs))
	}
	w, _ := s.Writer()
	w.Write([]byte("partial"))
	w.Close()
	if ents, _ := os.ReadDir(filepath.Join(root, "ingest")); len(ents) != 0 {
		t.Fatal("closed writer left its file")
	}
	if _, err := w.Commit(""); err == nil {
		t.Fatal("commit after close succeeded")
	}
}

func TestConcurrentSameBlob(t *testing.T) {
	s, _ := Open(t.TempDir())
	data := bytes.Repeat([]byte("z"), 1<<20)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := s.Put(bytes.NewReader(data), digest.FromBytes(data)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	b, err := s.ReadAll(digest.FromBytes(data))
	if err != nil || !bytes.Equal(b, data) {
		t.Fatalf("blob: %d bytes, %v", len(b), err)
	}
}

// TestAdopt: a file on the store's file system becomes the blob by a rename
// (its inode is the blob's: no second copy of the bytes), read-only; a
// wrong size or a bad digest stores nothing and leaves the file in place.
// (The caller hashed the bytes; Adopt does not read them again.)
func TestAdopt(t *testing.T) {
	root := t.TempDir()
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("an upload session's bytes")
	want := digest.FromBytes(data)
	src := filepath.Join(root, "session")
	write := func() {
		if err := os.WriteFile(src, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	blobPath := filepath.Join(root, "blobs", "sha256", want.Encoded())
	for _, tc := range []struct {
		d    digest.Digest
		size int64
		is   error
	}{
		{want, int64(len(data)) + 1, ErrDigestMismatch},
		{want, -1, ErrDigestMismatch},
		{"sha256:../../etc/passwd", -1, ErrInvalidDigest},
	} {
		write()
		if err := s.Adopt(src, tc.d, tc.size); !errors.Is(err, tc.is) {
			t.Fatalf("Adopt(%s, %d): %v, want %v", tc.d, tc.size, err, tc.is)
		}
		if _, err := os.Stat(src); err != nil {
			t.Fatalf("a refused Adopt(%s, %d) took the file: %v", tc.d, tc.size, err)
		}
		if blobs, _ := os.ReadDir(filepath.Join(root, "blobs", "sha256")); len(blobs) != 0 {
			t.Fatalf("a refused Adopt(%s, %d) stored %d blobs", tc.d, tc.size, len(blobs))
		}
	}
	write()
	before, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Adopt(src, want, int64(len(data))); err != nil {
		t.Fatalf("Adopt: %v", err)
	}
	after, err := os.Stat(blobPath)
	if err != nil {
		t.Fatalf("blob not at its path: %v", err)
	}
	if !os.SameFile(before, after) {
		t.Fatal("the blob is a copy, not the adopted file")
	}
	if after.Mode().Perm() != 0o444 {
		t.Fatalf("blob mode %v, want read-only", after.Mode())
	}
	if _, err := os.Stat(src); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the adopted file is still at its old path: %v", err)
	}
	got, err := s.ReadAll(want)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("ReadAll: %q %v", got, err)
	}
}
