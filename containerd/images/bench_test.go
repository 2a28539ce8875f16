package images

import (
	"archive/tar"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// BenchmarkImport50MB imports a 50 MB rootfs tar (400 files of 128 KiB in
// 20 directories, plus symlinks) into a fresh store: one pass that stores
// the layer blob, hashes it and unpacks the snapshot, synced.
func BenchmarkImport50MB(b *testing.B) {
	dir := b.TempDir()
	tarPath := filepath.Join(dir, "rootfs.tar")
	f, err := os.Create(tarPath)
	if err != nil {
		b.Fatal(err)
	}
	tw := tar.NewWriter(f)
	rnd := rand.New(rand.NewSource(1))
	buf := make([]byte, 128<<10)
	mtime := time.Unix(1600000000, 0)
	for d := range 20 {
		dn := "usr/lib/d" + strconv.Itoa(d) + "/"
		tw.WriteHeader(&tar.Header{Name: dn, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime})
		for i := range 20 {
			rnd.Read(buf)
			name := dn + "f" + strconv.Itoa(i)
			tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(buf)), ModTime: mtime})
			tw.Write(buf)
			tw.WriteHeader(&tar.Header{Name: name + ".link", Typeflag: tar.TypeSymlink, Linkname: "f" + strconv.Itoa(i), ModTime: mtime})
		}
	}
	if err := tw.Close(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	fi, _ := os.Stat(tarPath)
	b.SetBytes(fi.Size())
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		root := filepath.Join(dir, "store"+strconv.Itoa(i))
		s, err := Open(root)
		if err != nil {
			b.Fatal(err)
		}
		in, _ := os.Open(tarPath)
		b.StartTimer()
		if _, err := s.Import(ctx, in, "bench:latest", ImportOptions{}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		in.Close()
		os.RemoveAll(root)
		b.StartTimer()
	}
}
