package images

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

type tent struct {
	name, body, link string
	typ              byte
	mode             int64
}

func mkTar(t testing.TB, ents ...tent) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link, ModTime: time.Unix(1600000000, 0)}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			panic(err) // a bug in the test's own table
		}
		tw.Write([]byte(e.body))
	}
	tw.Close()
	return buf.Bytes()
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// busyboxTar is a rootfs of /bin/busybox and its applet symlinks.
func busyboxTar(t testing.TB) []byte {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skip("no /bin/busybox (apt-get install busybox-static)")
	}
	out, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		t.Fatal(err)
	}
	ents := []tent{{name: "bin/", typ: tar.TypeDir}, {name: "bin/busybox", body: string(bb), mode: 0o755},
		{name: "etc/", typ: tar.TypeDir}, {name: "etc/passwd", body: "root:x:0:0:root:/root:/bin/sh\n"},
		{name: "tmp/", typ: tar.TypeDir, mode: 0o1777}, {name: "root/", typ: tar.TypeDir, mode: 0o700}}
	for _, a := range strings.Fields(string(out)) {
		if a != "busybox" {
			ents = append(ents, tent{name: "bin/" + a, typ: tar.TypeSymlink, link: "busybox"})
		}
	}
	return mkTar(t, ents...)
}

func openStore(t testing.TB) (*Store, string) {
	t.Helper()
	root := t.TempDir()
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	return s, root
}

// layoutImage describes one image of a test archive.
type layoutImage struct {
	layers [][]byte // uncompressed layer tars, bottom first
	gzip   []bool   // per layer: store it gzip-compressed
	tag    string   // full name for index.json / RepoTags; "" for none
	cfg    ocispec.ImageConfig
}

type archiveFile struct {
	name string
	data []byte
}

func writeArchive(t testing.TB, files []archiveFile) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)})
		tw.Write(f.data)
	}
	tw.Close()
	return buf.Bytes()
}

func (li layoutImage) config() ([]byte, []digest.Digest) {
	var diffIDs []digest.Digest
	for _, l := range li.layers {
		diffIDs = append(diffIDs, digest.FromBytes(l))
	}
	created := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg := ocispec.Image{Created: &created, Platform: ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH},
		Config: li.cfg, RootFS: ocispec.RootFS{Type: "layers", DiffIDs: diffIDs}}
	for range li.layers {
		cfg.History = append(cfg.History, ocispec.History{Created: &created, CreatedBy: "test"})
	}
	b, _ := json.Marshal(cfg)
	return b, diffIDs
}

func (li layoutImage) blob(i int) []byte {
	if i < len(li.gzip) && li.gzip[i] {
		return gz(li.layers[i])
	}
	return li.layers[i]
}

// ociLayout builds an OCI image layout archive (no manifest.json).
func ociLayout(t testing.TB, imgs ...layoutImage) []byte {
	files := []archiveFile{{ocispec.ImageLayoutFile, []byte(`{"imageLayoutVersion":"1.0.0"}`)}}
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
	for _, li := range imgs {
		cfg, _ := li.config()
		m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
			Config: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))}}
		files = append(files, archiveFile{"blobs/sha256/" + digest.FromBytes(cfg).Encoded(), cfg})
		for i := range li.layers {
			b := li.blob(i)
			mt := ocispec.MediaTypeImageLayer
			if i < len(li.gzip) && li.gzip[i] {
				mt = ocispec.MediaTypeImageLayerGzip
			}
			m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(b), Size: int64(len(b))})
			files = append(files, archiveFile{"blobs/sha256/" + digest.FromBytes(b).Encoded(), b})
		}
		mb, _ := json.Marshal(m)
		files = append(files, archiveFile{"blobs/sha256/" + digest.FromBytes(mb).Encoded(), mb})
		d := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(mb), Size: int64(len(mb))}
		if li.tag != "" {
			d.Annotations = map[string]string{annotationImageName: li.tag}
		}
		idx.Manifests = append(idx.Manifests, d)
	}
	ib, _ := json.Marshal(idx)
	files = append(files, archiveFile{"index.json", ib})
	return writeArchive(t, files)
}

// dockerSave builds a classic `docker save` archive: <n>/layer.tar (gzip
// where asked), <id>.json configs, manifest.json, repositories.
func dockerSave(t testing.TB, imgs ...layoutImage) []byte {
	var files []archiveFile
	var mf []dockerManifest
	for n, li := range imgs {
		cfg, _ := li.config()
		cname := digest.FromBytes(cfg).Encoded() + ".json"
		files = append(files, archiveFile{cname, cfg})
		m := dockerManifest{Config: cname}
		if li.tag != "" {
			m.RepoTags = []string{li.tag}
		}
		for i := range li.layers {
			name := filepath.Join(strings.Repeat("l", n+1)+string(rune('a'+i)), "layer.tar")
			files = append(files, archiveFile{name, li.blob(i)})
			m.Layers = append(m.Layers, name)
		}
		mf = append(mf, m)
	}
	mb, _ := json.Marshal(mf)
	files = append(files, archiveFile{"manifest.json", mb})
	return writeArchive(t, files)
}

// inMountNamespace runs fn on a thread with a private mount namespace: the
// test's mounts vanish with that thread even if the test crashes.
func inMountNamespace(t *testing.T, fn func()) {
	t.Helper()
	done := make(chan struct{})
	var failed error
	go func() {
		defer close(done)
		runtime.LockOSThread()
		// The thread is never unlocked: Go ends it with this goroutine, and
		// the namespace with it.
		if err := unix.Unshare(unix.CLONE_NEWNS | unix.CLONE_FS); err != nil {
			failed = err
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			failed = err
			return
		}
		fn()
	}()
	<-done
	if failed != nil {
		t.Fatalf("mount namespace: %v", failed)
	}
}

// countDir is the number of entries in dir (0 if it does not exist).
func countDir(t testing.TB, dir string) int {
	ents, _ := os.ReadDir(dir)
	return len(ents)
}
