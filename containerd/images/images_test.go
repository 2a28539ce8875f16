package images

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

var ctx = context.Background()

func TestImportBusybox(t *testing.T) {
	s, root := openStore(t)
	bb := busyboxTar(t)
	for _, compressed := range []bool{false, true} {
		in := bb
		if compressed {
			in = gz(bb)
		}
		img, err := s.Import(ctx, bytes.NewReader(in), "busybox", ImportOptions{Config: ocispec.ImageConfig{Cmd: []string{"sh"}}})
		if err != nil {
			t.Fatal(err)
		}
		raw, err := s.Content().ReadAll(digest.Digest(img.ID))
		if err != nil || digest.FromBytes(raw).String() != img.ID {
			t.Fatalf("image ID %s is not the digest of its config (%v)", img.ID, err)
		}
		c := img.Config
		if c.OS != "linux" || c.Architecture == "" || len(c.RootFS.DiffIDs) != 1 || c.RootFS.DiffIDs[0] != digest.FromBytes(bb) ||
			len(c.History) != 1 || c.History[0].Comment != "Imported from -" || c.Config.Cmd[0] != "sh" {
			t.Fatalf("config: %+v", c)
		}
		if img.ChainID != digest.FromBytes(bb) || len(img.RepoTags) != 1 || img.RepoTags[0] != "busybox:latest" || img.Size < 500_000 {
			t.Fatalf("image: chain %s tags %v size %d", img.ChainID, img.RepoTags, img.Size)
		}
		if _, err := os.Stat(filepath.Join(root, "snapshots", img.ChainID.Encoded(), "fs", "bin", "busybox")); err != nil {
			t.Fatalf("snapshot not unpacked: %v", err)
		}
	}
	// Both imports share one layer and one snapshot; the second moved the tag.
	imgs, _ := s.List()
	if len(imgs) != 2 || countDir(t, filepath.Join(root, "snapshots")) != 1 {
		t.Fatalf("%d images, %d snapshots", len(imgs), countDir(t, filepath.Join(root, "snapshots")))
	}
	top := imgs[0]
	for _, name := range []string{"busybox", "busybox:latest", "docker.io/library/busybox", top.ID, strings.TrimPrefix(top.ID, "sha256:"), top.ID[7:19], top.ID[:19]} {
		got, err := s.Get(name)
		if err != nil || got.ID != top.ID {
			t.Errorf("Get(%q) = %s, %v; want %s", name, got.ID, err, top.ID)
		}
	}
	for _, name := range []string{"nosuch", "busybox:other", "abcdefabcdef"} {
		if _, err := s.Get(name); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%q): %v, want ErrNotFound", name, err)
		}
	}
	if _, err := s.Get("Bad:Ref!!"); !errors.Is(err, ErrInvalidReference) {
		t.Errorf("Get(bad ref): %v", err)
	}
	if _, err := s.Import(ctx, bytes.NewReader(bb), "Bad:Ref!!", ImportOptions{}); !errors.Is(err, ErrInvalidReference) {
		t.Errorf("Import with bad ref: %v", err)
	}

	// Run busybox from the image through a real overlay mount.
	r, err := s.PrepareRootfs(ctx, "ctr1", top)
	if err != nil {
		t.Fatal(err)
	}
	defer s.RemoveRootfs(ctx, "ctr1")
	mnt := t.TempDir()
	inMountNamespace(t, func() {
		if err := r.Mount(mnt); err != nil {
			t.Error(err)
			return
		}
		defer Unmount(mnt)
		out, err := exec.Command("chroot", mnt, "/bin/sh", "-c", "echo hello > /tmp/f; cat /tmp/f; ls /bin | wc -l").CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "hello\n") {
			t.Errorf("run in rootfs: %v %q", err, out)
		}
	})
	if b, err := os.ReadFile(filepath.Join(r.Upper, "tmp", "f")); err != nil || string(b) != "hello\n" {
		t.Errorf("write did not land in the upperdir: %q %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(r.Lower[0], "tmp", "f")); err == nil {
		t.Error("write landed in the shared snapshot")
	}
}

// twoLayer is an image whose second layer deletes a file and makes a
// directory opaque.
func twoLayer() layoutImage {
	l1 := mkTar(nil,
		tent{name: "etc/", typ: tar.TypeDir}, tent{name: "etc/keep", body: "keep"}, tent{name: "etc/gone", body: "gone"},
		tent{name: "data/", typ: tar.TypeDir}, tent{name: "data/old1", body: "1"}, tent{name: "data/sub/old2", body: "2"})
	l2 := mkTar(nil,
		tent{name: "etc/.wh.gone"},
		tent{name: "data/.wh..wh..opq"}, tent{name: "data/new", body: "new"},
		tent{name: "etc/added", body: "added"})
	return layoutImage{layers: [][]byte{l1, l2}, cfg: ocispec.ImageConfig{Env: []string{"A=1"}}}
}

// treeOf lists every path under dir, relative to it, in walk order.
func treeOf(dir string) []string {
	var got []string
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if p != dir && err == nil {
			rel, _ := filepath.Rel(dir, p)
			got = append(got, rel)
		}
		return nil
	})
	return got
}

// withoutInitLayer drops from a mounted tree's paths the mount points the
// image's init layer adds (initlayer.go).
func withoutInitLayer(paths []string) []string {
	var out []string
	for _, p := range paths {
		if !slices.Contains(initDirs, p) && !slices.Contains(initFiles, p) {
			out = append(out, p)
		}
	}
	return out
}

func checkWhiteoutsMounted(t *testing.T, s *Store, img Image, id string) {
	t.Helper()
	r, err := s.PrepareRootfs(ctx, id, img)
	if err != nil {
		t.Fatal(err)
	}
	defer s.RemoveRootfs(ctx, id)
	if len(r.Lower) != 3 { // the init layer, then the image's two
		t.Fatalf("lower %v", r.Lower)
	}
	mnt := t.TempDir()
	inMountNamespace(t, func() {
		if err := r.Mount(mnt); err != nil {
			t.Error(err)
			return
		}
		defer Unmount(mnt)
		got := treeOf(mnt)
		want := "data,data/new,etc,etc/added,etc/keep"
		if got = withoutInitLayer(got); strings.Join(got, ",") != want {
			t.Errorf("mounted tree %v, want %s", got, want)
		}
	})
}

func TestLoadOCILayoutWhiteouts(t *testing.T) {
	s, root := openStore(t)
	li := twoLayer()
	li.gzip = []bool{false, true}
	li.tag = "docker.io/library/layered:v1"
	loaded, err := s.Load(ctx, bytes.NewReader(ociLayout(t, li)))
	if err != nil {
		t.Fatal(err)
	}
	if len(loaded) != 1 || loaded[0] != "layered:v1" {
		t.Fatalf("loaded %v", loaded)
	}
	img, err := s.Get("layered:v1")
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := li.config()
	if img.ID != digest.FromBytes(cfg).String() || img.Config.Config.Env[0] != "A=1" {
		t.Fatalf("loaded image %s %+v", img.ID, img.Config)
	}
	if countDir(t, filepath.Join(root, "snapshots")) != 2 || countDir(t, filepath.Join(root, "tmp")) != 0 {
		t.Fatalf("snapshots %d, tmp %d", countDir(t, filepath.Join(root, "snapshots")), countDir(t, filepath.Join(root, "tmp")))
	}
	checkWhiteoutsMounted(t, s, img, "wh1")

	// Loading the same archive again changes nothing.
	if _, err := s.Load(ctx, bytes.NewReader(ociLayout(t, li))); err != nil {
		t.Fatal(err)
	}
	if imgs, _ := s.List(); len(imgs) != 1 {
		t.Fatalf("%d images after reload", len(imgs))
	}
}

func TestLoadDockerSaveGzip(t *testing.T) {
	s, _ := openStore(t)
	li := twoLayer()
	li.gzip = []bool{true, true}
	li.tag = "layered:gz"
	other := layoutImage{layers: [][]byte{mkTar(t, tent{name: "hello", body: "hi"})}}
	// The whole archive gzip'd too, as `docker save | gzip` gives.
	loaded, err := s.Load(ctx, bytes.NewReader(gz(dockerSave(t, li, other))))
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := other.config()
	if len(loaded) != 2 || loaded[0] != "layered:gz" || loaded[1] != digest.FromBytes(cfg).String() {
		t.Fatalf("loaded %v", loaded)
	}
	img, err := s.Get("layered:gz")
	if err != nil {
		t.Fatal(err)
	}
	checkWhiteoutsMounted(t, s, img, "wh2")
}

func TestSaveLoadRoundTrip(t *testing.T) {
	s, root := openStore(t)
	li := twoLayer()
	li.tag = "layered:v1"
	if _, err := s.Load(ctx, bytes.NewReader(ociLayout(t, li))); err != nil {
		t.Fatal(err)
	}
	if err := s.Tag("layered:v1", "example.com/team/layered:v2"); err != nil {
		t.Fatal(err)
	}
	orig, _ := s.Get("layered:v1")
	var buf bytes.Buffer
	if err := s.Save(ctx, &buf, []string{"layered:v1", "example.com/team/layered:v2"}); err != nil {
		t.Fatal(err)
	}
	saved := buf.Bytes()
	checkSavedArchive(t, saved, orig)

	for _, tag := range []string{"layered:v1", "example.com/team/layered:v2"} {
		if _, err := s.Remove(tag, false); err != nil {
			t.Fatal(err)
		}
	}
	if countDir(t, filepath.Join(root, "snapshots")) != 0 || countDir(t, filepath.Join(root, "content", "blobs", "sha256")) != 0 {
		t.Fatal("remove left snapshots or blobs")
	}
	loaded, err := s.Load(ctx, bytes.NewReader(saved))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(loaded, ",") != "layered:v1,example.com/team/layered:v2" {
		t.Fatalf("loaded %v", loaded)
	}
	back, err := s.Get("example.com/team/layered:v2")
	if err != nil || back.ID != orig.ID || back.ChainID != orig.ChainID || len(back.RepoTags) != 2 {
		t.Fatalf("round trip: %+v %v", back, err)
	}

	// The saved archive is also a plain OCI layout: load it without manifest.json.
	var oci []archiveFile
	tr := tar.NewReader(bytes.NewReader(saved))
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		if h.Typeflag == tar.TypeReg && h.Name != "manifest.json" && h.Name != "repositories" {
			b, _ := io.ReadAll(tr)
			oci = append(oci, archiveFile{h.Name, b})
		}
	}
	s2, _ := openStore(t)
	loaded, err = s2.Load(ctx, bytes.NewReader(writeArchive(t, oci)))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s2.Get("layered:v1"); err != nil || got.ID != orig.ID || len(got.RepoTags) != 2 {
		t.Fatalf("OCI-only load: %v %+v %v", loaded, got, err)
	}
	// Save by ID: no tags.
	buf.Reset()
	if err := s.Save(ctx, &buf, []string{orig.ID[:12]}); err != nil {
		t.Fatal(err)
	}
	s3, _ := openStore(t)
	if loaded, err := s3.Load(ctx, &buf); err != nil || len(loaded) != 1 || loaded[0] != orig.ID {
		t.Fatalf("load of untagged save: %v %v", loaded, err)
	}
}

func checkSavedArchive(t *testing.T, b []byte, img Image) {
	t.Helper()
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name], _ = io.ReadAll(tr)
	}
	for _, f := range []string{"manifest.json", "repositories", "oci-layout", "index.json"} {
		if _, ok := files[f]; !ok {
			t.Fatalf("saved archive lacks %s", f)
		}
	}
	for name, data := range files {
		if hex, ok := strings.CutPrefix(name, "blobs/sha256/"); ok && hex != "" && digest.FromBytes(data).Encoded() != hex {
			t.Errorf("blob %s has digest %s", name, digest.FromBytes(data))
		}
	}
	var mf []dockerManifest
	json.Unmarshal(files["manifest.json"], &mf)
	if len(mf) != 1 || mf[0].Config != "blobs/sha256/"+img.ID[7:] || len(mf[0].RepoTags) != 2 || len(mf[0].Layers) != 2 {
		t.Fatalf("manifest.json %s", files["manifest.json"])
	}
	var repos map[string]map[string]string
	json.Unmarshal(files["repositories"], &repos)
	if repos["layered"]["v1"] != img.ID[7:] {
		t.Fatalf("repositories %s", files["repositories"])
	}
	var idx ocispec.Index
	json.Unmarshal(files["index.json"], &idx)
	if len(idx.Manifests) != 2 || idx.Manifests[0].Annotations[annotationImageName] != "docker.io/library/layered:v1" ||
		idx.Manifests[1].Annotations[ocispec.AnnotationRefName] != "v2" {
		t.Fatalf("index.json %s", files["index.json"])
	}
	var m ocispec.Manifest
	json.Unmarshal(files["blobs/sha256/"+idx.Manifests[0].Digest.Encoded()], &m)
	if m.Config.Digest.String() != img.ID || len(m.Layers) != 2 || m.Layers[1].Digest != img.Config.RootFS.DiffIDs[1] {
		t.Fatalf("manifest %+v", m)
	}
}

// nothingLeft fails if a failed import or load left an image, a snapshot,
// a blob or a temporary file.
func nothingLeft(t *testing.T, s *Store, root string) {
	t.Helper()
	imgs, _ := s.List()
	if len(imgs) != 0 {
		t.Errorf("%d images left", len(imgs))
	}
	for _, d := range []string{"snapshots", "content/blobs/sha256", "content/ingest", "tmp"} {
		if n := countDir(t, filepath.Join(root, d)); n != 0 {
			t.Errorf("%s: %d entries left", d, n)
		}
	}
}

func TestBadArchivesLeaveNothing(t *testing.T) {
	bb := busyboxTar(t)
	good := twoLayer()
	good.tag = "good:1"
	bad := layoutImage{layers: [][]byte{mkTar(t, tent{name: "x", body: "x"}), mkTar(t, tent{name: "../../escape", body: "x"})}, tag: "bad:1"}
	mismatch := dockerSave(t, good)
	// A docker-save archive whose layer does not match the config's diff_id.
	mismatch = bytes.Replace(mismatch, []byte("keep"), []byte("KEEP"), 1)
	imports := map[string][]byte{
		"truncated":      bb[:len(bb)/2],
		"truncated gzip": gz(bb)[:len(gz(bb))/2],
		"escape":         mkTar(t, tent{name: "ok", body: "x"}, tent{name: "../../escaped-by-shoal-test", body: "x"}),
		"device":         mkTar(t, tent{name: "ok", body: "x"}, tent{name: "dev/mem", typ: tar.TypeChar}),
		"garbage":        bytes.Repeat([]byte("garbage!"), 1000),
	}
	for name, in := range imports {
		t.Run("import "+name, func(t *testing.T) {
			s, root := openStore(t)
			_, err := s.Import(ctx, bytes.NewReader(in), "short:1", ImportOptions{})
			if !errors.Is(err, ErrInvalid) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("import: %v", err)
			}
			nothingLeft(t, s, root)
		})
	}
	loads := map[string][]byte{
		"truncated":             dockerSave(t, good)[:len(dockerSave(t, good))*2/3],
		"second image hostile":  ociLayout(t, good, bad),
		"diff_id mismatch":      mismatch,
		"not an image":          mkTar(t, tent{name: "hello", body: "x"}),
		"missing layer":         writeArchive(t, []archiveFile{{"manifest.json", []byte(`[{"Config":"c.json","Layers":["nope.tar"]}]`)}, {"c.json", []byte(`{"rootfs":{"type":"layers","diff_ids":["sha256:` + strings.Repeat("0", 64) + `"]}}`)}}),
		"bad json":              writeArchive(t, []archiveFile{{"manifest.json", []byte(`[{`)}}),
		"blob digest mismatch":  bytes.Replace(ociLayout(t, good), []byte("keep"), []byte("KEEP"), 1),
		"bad tag":               dockerSave(t, layoutImage{layers: good.layers, tag: "UPPER:case"}),
		"config lists 1 layer":  writeArchive(t, []archiveFile{{"manifest.json", []byte(`[{"Config":"c.json","Layers":[]}]`)}, {"c.json", []byte(`{"rootfs":{"type":"layers","diff_ids":["sha256:` + strings.Repeat("0", 64) + `"]}}`)}}),
		"bad diff_id":           writeArchive(t, []archiveFile{{"manifest.json", []byte(`[{"Config":"c.json","Layers":["l.tar"]}]`)}, {"l.tar", mkTar(t, tent{name: "a", body: "a"})}, {"c.json", []byte(`{"rootfs":{"type":"layers","diff_ids":["abc"]}}`)}}),
		"zstd layer":            writeArchive(t, []archiveFile{{"manifest.json", []byte(`[{"Config":"c.json","Layers":["l.tar"]}]`)}, {"l.tar", []byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0}}, {"c.json", []byte(`{"rootfs":{"type":"layers","diff_ids":["sha256:` + strings.Repeat("0", 64) + `"]}}`)}}),
		"path escape in layers": writeArchive(t, []archiveFile{{"manifest.json", []byte(`[{"Config":"../../etc/passwd","Layers":[]}]`)}}),
	}
	for name, in := range loads {
		t.Run("load "+name, func(t *testing.T) {
			s, root := openStore(t)
			_, err := s.Load(ctx, bytes.NewReader(in))
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrInvalidReference) {
				t.Fatalf("load: %v", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
			nothingLeft(t, s, root)
		})
	}
	if _, err := os.Stat("/escaped-by-shoal-test"); err == nil {
		os.Remove("/escaped-by-shoal-test")
		t.Fatal("an archive wrote outside the store")
	}
}

func TestCommitAndHistory(t *testing.T) {
	s, root := openStore(t)
	li := twoLayer()
	li.tag = "base:1"
	if _, err := s.Load(ctx, bytes.NewReader(ociLayout(t, li))); err != nil {
		t.Fatal(err)
	}
	base, _ := s.Get("base:1")
	r, err := s.PrepareRootfs(ctx, "c1", base)
	if err != nil {
		t.Fatal(err)
	}
	defer s.RemoveRootfs(ctx, "c1")
	mnt := t.TempDir()
	inMountNamespace(t, func() {
		if err := r.Mount(mnt); err != nil {
			t.Error(err)
			return
		}
		defer Unmount(mnt)
		// A new file, a deleted lower file, a directory recreated (opaque).
		os.WriteFile(filepath.Join(mnt, "etc", "motd"), []byte("hi"), 0o644)
		os.Remove(filepath.Join(mnt, "etc", "keep"))
		os.RemoveAll(filepath.Join(mnt, "data"))
		os.MkdirAll(filepath.Join(mnt, "data"), 0o755)
		os.WriteFile(filepath.Join(mnt, "data", "fresh"), []byte("f"), 0o644)
	})
	if t.Failed() {
		return
	}
	img, err := s.Commit(ctx, r.Upper, base, ocispec.ImageConfig{Cmd: []string{"/bin/sh"}}, "committed:1", "my change", "me")
	if err != nil {
		t.Fatal(err)
	}
	if len(img.Config.RootFS.DiffIDs) != 3 || img.Parent != base.ID || img.Config.Author != "me" || img.Config.Config.Cmd[0] != "/bin/sh" {
		t.Fatalf("committed %+v", img)
	}
	r2, err := s.PrepareRootfs(ctx, "c2", img)
	if err != nil {
		t.Fatal(err)
	}
	defer s.RemoveRootfs(ctx, "c2")
	mnt2 := t.TempDir()
	inMountNamespace(t, func() {
		if err := r2.Mount(mnt2); err != nil {
			t.Error(err)
			return
		}
		defer Unmount(mnt2)
		got := treeOf(mnt2)
		if want := "data,data/fresh,etc,etc/added,etc/motd"; strings.Join(withoutInitLayer(got), ",") != want {
			t.Errorf("committed tree %v, want %s", got, want)
		}
	})
	h, err := s.History("committed:1")
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 3 || h[0].ID != img.ID || h[0].Comment != "my change" || h[0].Tags[0] != "committed:1" ||
		h[1].ID != base.ID || h[1].Tags[0] != "base:1" || h[2].ID != "<missing>" || h[2].Size != 10 || h[1].Size != 8 {
		t.Fatalf("history %+v", h)
	}

	// A metadata-only step adds history, not a layer.
	meta, err := s.CommitWithOptions(ctx, "", img, CommitOptions{Config: ocispec.ImageConfig{Env: []string{"B=2"}}, CreatedBy: "ENV B=2", EmptyLayer: true})
	if err != nil {
		t.Fatal(err)
	}
	if h, err := s.History(meta.ID); err != nil || len(h) != 4 || len(meta.Config.RootFS.DiffIDs) != 3 || meta.ChainID != img.ChainID ||
		!h[0].EmptyLayer || h[0].Size != 0 || h[1].ID != img.ID || h[1].Size != 3 || h[3].Size != 10 {
		t.Fatalf("empty-layer commit: %+v %v", h, err)
	}
	if _, err := s.Remove(meta.ID, false); err != nil {
		t.Fatal(err)
	}

	// The base is in use by c1: Remove refuses without force.
	if _, err := s.Remove("base:1", false); !errors.Is(err, ErrConflict) {
		t.Fatalf("remove in-use image: %v", err)
	}
	if err := s.Tag("base:1", "base:2"); err != nil {
		t.Fatal(err)
	}
	if rm, err := s.Remove("base:2", false); err != nil || len(rm) != 1 || rm[0].Untagged != "base:2" {
		t.Fatalf("untag one of two: %v %v", rm, err)
	}
	if err := s.RemoveRootfs(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if rm, err := s.Remove("base:1", false); err != nil || len(rm) != 2 || rm[1].Deleted != base.ID {
		t.Fatalf("remove: %v %v", rm, err)
	}
	// The committed image still holds the base's layers.
	snaps := countDir(t, filepath.Join(root, "snapshots"))
	if snaps != 3 {
		t.Fatalf("%d snapshots, want 3", snaps)
	}
	if _, err := s.Remove(img.ID, false); !errors.Is(err, ErrConflict) {
		t.Fatalf("remove image used by c2: %v", err)
	}
	if _, err := s.Remove(img.ID, true); err != nil {
		t.Fatal(err)
	}
	// c2 still pins its snapshots.
	if n := countDir(t, filepath.Join(root, "snapshots")); n != 3 {
		t.Fatalf("%d snapshots while c2 exists", n)
	}
	s.RemoveRootfs(ctx, "c2")
	if n := countDir(t, filepath.Join(root, "snapshots")); n != 0 {
		t.Fatalf("%d snapshots left", n)
	}
}

func TestRemoveRules(t *testing.T) {
	s, _ := openStore(t)
	img, err := s.Import(ctx, bytes.NewReader(mkTar(t, tent{name: "a", body: "a"})), "one:1", ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Tag("one:1", "two:1")
	if _, err := s.Remove(img.ID, false); !errors.Is(err, ErrConflict) {
		t.Fatalf("remove by ID with two repositories: %v", err)
	}
	rm, err := s.Remove(img.ID[:10], true)
	if err != nil || len(rm) != 3 {
		t.Fatalf("forced remove: %v %v", rm, err)
	}
	if _, err := s.Remove("one:1", false); !errors.Is(err, ErrNotFound) {
		t.Fatalf("remove missing: %v", err)
	}
}

func TestPersistence(t *testing.T) {
	root := t.TempDir()
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	img, err := s.Import(ctx, bytes.NewReader(mkTar(t, tent{name: "a", body: "a"})), "keep:1", ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.PrepareRootfs(ctx, "c1", img)
	if err != nil {
		t.Fatal(err)
	}
	// Leftovers of a crash are removed on open.
	os.MkdirAll(filepath.Join(root, "snapshots", "tmp-123", "fs"), 0o755)
	os.WriteFile(filepath.Join(root, "content", "ingest", "blob-1"), []byte("x"), 0o644)
	s2, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s2.Get("keep:1")
	if err != nil || got.ID != img.ID || got.Size != 1 {
		t.Fatalf("after reopen: %+v %v", got, err)
	}
	if countDir(t, filepath.Join(root, "snapshots")) != 1 || countDir(t, filepath.Join(root, "content", "ingest")) != 0 {
		t.Fatal("leftovers not removed")
	}
	// The container's rootfs survives the restart and still pins the image.
	r2, err := s2.RootfsOf("c1")
	if err != nil || r2.Upper != r.Upper || !slices.Equal(r2.Lower, r.Lower) {
		t.Fatalf("RootfsOf: %+v %v, want %+v", r2, err, r)
	}
	if _, err := s2.Remove("keep:1", false); !errors.Is(err, ErrConflict) {
		t.Fatalf("remove of an image in use after restart: %v", err)
	}
}

func TestConcurrentUse(t *testing.T) {
	s, _ := openStore(t)
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tag := "img:" + string(rune('a'+i))
			body := strings.Repeat("x", i%3) // some images share their layer
			if _, err := s.Import(ctx, bytes.NewReader(mkTar(t, tent{name: "f", body: body})), tag, ImportOptions{}); err != nil {
				errs <- err
				return
			}
			if err := s.Tag(tag, tag+"2"); err != nil {
				errs <- err
			}
			if _, err := s.Remove(tag, false); err != nil {
				errs <- err
			}
			if _, err := s.List(); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	imgs, _ := s.List()
	for _, img := range imgs {
		if err := s.Save(ctx, io.Discard, []string{img.ID}); err != nil {
			t.Errorf("image %s lost a blob: %v", img.ID, err)
		}
	}
}

func TestMountManyLayers(t *testing.T) {
	dir := t.TempDir()
	var r Rootfs
	const n = 60
	for i := range n {
		// Long names, so that the classic mount data would exceed a page.
		l := filepath.Join(dir, strings.Repeat("l", 60)+string(rune('A'+i%26))+strings.Repeat("x", i/26))
		os.MkdirAll(l, 0o755)
		os.WriteFile(filepath.Join(l, "file"), []byte{byte(i)}, 0o644)
		os.WriteFile(filepath.Join(l, "only"+string(rune('A'+i%26))+strings.Repeat("x", i/26)), nil, 0o644)
		r.Lower = append(r.Lower, l)
	}
	r.Upper, r.Work = filepath.Join(dir, "upper"), filepath.Join(dir, "work")
	os.Mkdir(r.Upper, 0o755)
	os.Mkdir(r.Work, 0o755)
	if len(r.Options()) < os.Getpagesize() {
		t.Fatalf("options only %d bytes: the test would not exercise the long path", len(r.Options()))
	}
	mnt := t.TempDir()
	inMountNamespace(t, func() {
		if err := r.Mount(mnt); err != nil {
			t.Error(err)
			return
		}
		defer Unmount(mnt)
		if b, _ := os.ReadFile(filepath.Join(mnt, "file")); len(b) != 1 || b[0] != 0 {
			t.Errorf("top layer not on top: %v", b)
		}
		ents, _ := os.ReadDir(mnt)
		if len(ents) != n+1 {
			t.Errorf("%d entries, want %d", len(ents), n+1)
		}
	})
}

// TestMountVolatile: a Volatile rootfs is mounted with overlayfs'
// "volatile" (no sync of the upper layer, --rm containers), by mount(2) and,
// for many layers, by the new mount API; a plain one is not.
func TestMountVolatile(t *testing.T) {
	for _, layers := range []int{1, 60} {
		for _, volatile := range []bool{false, true} {
			dir := t.TempDir()
			r := Rootfs{Upper: filepath.Join(dir, "upper"), Work: filepath.Join(dir, "work"), Volatile: volatile}
			for i := range layers {
				l := filepath.Join(dir, fmt.Sprintf("%s%03d", strings.Repeat("l", 80), i))
				os.MkdirAll(l, 0o755)
				r.Lower = append(r.Lower, l)
			}
			os.Mkdir(r.Upper, 0o755)
			os.Mkdir(r.Work, 0o755)
			if long := len(r.Options()) >= os.Getpagesize(); long != (layers > 1) {
				t.Fatalf("%d layers: options of %d bytes do not take the path meant", layers, len(r.Options()))
			}
			mnt := t.TempDir()
			inMountNamespace(t, func() {
				if err := r.Mount(mnt); err != nil {
					t.Errorf("%d layers, volatile %v: %v", layers, volatile, err)
					return
				}
				defer Unmount(mnt)
				// thread-self: the namespace is this thread's only.
				b, err := os.ReadFile("/proc/thread-self/mountinfo")
				if err != nil {
					t.Error(err)
					return
				}
				found := false
				for _, line := range strings.Split(string(b), "\n") {
					f := strings.Fields(line)
					if len(f) < 5 || f[4] != mnt {
						continue
					}
					found = true
					// Newer kernels show it as fsync=volatile.
					_, super, _ := strings.Cut(line, " - ")
					opts := strings.Split(strings.Fields(super)[2], ",")
					if got := slices.Contains(opts, "volatile") || slices.Contains(opts, "fsync=volatile"); got != volatile {
						t.Errorf("%d layers: volatile %v, but the mount's options say %v", layers, volatile, got)
					}
				}
				if !found {
					t.Errorf("%s not in mountinfo", mnt)
				}
				// Mounted again after a clean unmount (the kernel's
				// volatile mark is cleared).
				if err := Unmount(mnt); err != nil {
					t.Error(err)
					return
				}
				if err := r.Mount(mnt); err != nil {
					t.Errorf("%d layers, volatile %v: mount again: %v", layers, volatile, err)
				}
			})
		}
	}
}

func TestPrepareRootfsErrors(t *testing.T) {
	s, _ := openStore(t)
	img, _ := s.Import(ctx, bytes.NewReader(mkTar(t, tent{name: "a", body: "a"})), "", ImportOptions{})
	if _, err := s.PrepareRootfs(ctx, "../x", img); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad id: %v", err)
	}
	if _, err := s.PrepareRootfs(ctx, "c", Image{ID: "sha256:" + strings.Repeat("0", 64)}); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown image: %v", err)
	}
	if _, err := s.PrepareRootfs(ctx, "c", img); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PrepareRootfs(ctx, "c", img); !errors.Is(err, ErrConflict) {
		t.Errorf("twice: %v", err)
	}
	if err := s.RemoveRootfs(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveRootfs(ctx, "c"); err != nil {
		t.Errorf("second remove: %v", err)
	}
	// A snapshot lost from disk is unpacked again from the content store.
	os.RemoveAll(s.snapshotDir(img.ChainID))
	r, err := s.PrepareRootfs(ctx, "d", img)
	if err != nil {
		t.Fatal(err)
	}
	defer s.RemoveRootfs(ctx, "d")
	if _, err := os.Stat(filepath.Join(r.Lower[len(r.Lower)-1], "a")); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(r.Upper, &st); err != nil {
		t.Fatal(err)
	}
}

func TestImportCancelled(t *testing.T) {
	s, root := openStore(t)
	cctx, cancel := context.WithCancel(ctx)
	bb := busyboxTar(t)
	pr, pw := io.Pipe()
	go func() {
		pw.Write(bb[:100000])
		cancel()
		pw.Write(make([]byte, 1<<20)) // blocks until the import stops reading
	}()
	_, err := s.Import(cctx, pr, "c:1", ImportOptions{})
	pr.Close()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("import: %v", err)
	}
	nothingLeft(t, s, root)
}

// TestLastTagTime: as dockerd's LastTagTime, set by an import with a tag and
// by tag, kept across a reopen; an import without a tag sets none.
func TestLastTagTime(t *testing.T) {
	root := t.TempDir()
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	bare, err := s.Import(ctx, bytes.NewReader(mkTar(t, tent{name: "b", body: "b"})), "", ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !bare.LastTagTime.IsZero() {
		t.Fatalf("untagged import has LastTagTime %v", bare.LastTagTime)
	}
	before := time.Now()
	img, err := s.Import(ctx, bytes.NewReader(mkTar(t, tent{name: "a", body: "a"})), "one:1", ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img.LastTagTime.Before(before) {
		t.Fatalf("tagged import: LastTagTime %v, before %v", img.LastTagTime, before)
	}
	time.Sleep(10 * time.Millisecond)
	if err := s.Tag(bare.ID, "two:1"); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get("two:1")
	if err != nil {
		t.Fatal(err)
	}
	if !got.LastTagTime.After(img.LastTagTime) {
		t.Fatalf("tag: LastTagTime %v, not after %v", got.LastTagTime, img.LastTagTime)
	}
	s2, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	again, err := s2.Get("two:1")
	if err != nil || !again.LastTagTime.Equal(got.LastTagTime) {
		t.Fatalf("after reopen: %v (%v), want %v", again.LastTagTime, err, got.LastTagTime)
	}
}
