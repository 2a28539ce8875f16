package cli

import (
	"archive/tar"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type tarEntry struct {
	name, body, link string
	typ              byte
}

func makeTar(t *testing.T, entries []tarEntry) *bytes.Buffer {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.body)), Typeflag: e.typ, Linkname: e.link}
		if e.typ == tar.TypeDir {
			h.Mode, h.Size = 0o755, 0
		}
		if e.typ == tar.TypeSymlink || e.typ == tar.TypeLink {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return &b
}

func TestUntarIntoRenamesAndStaysInside(t *testing.T) {
	root := t.TempDir()
	arch := makeTar(t, []tarEntry{
		{name: "etc/", typ: tar.TypeDir},
		{name: "etc/passwd", body: "root:x:0:0\n", typ: tar.TypeReg},
		{name: "etc/link", link: "passwd", typ: tar.TypeSymlink},
	})
	if err := untarInto(arch, root, "etc", "copied"); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "copied", "passwd")); err != nil || string(b) != "root:x:0:0\n" {
		t.Fatalf("renamed file: %q %v", b, err)
	}
	if l, err := os.Readlink(filepath.Join(root, "copied", "link")); err != nil || l != "passwd" {
		t.Fatalf("symlink: %q %v", l, err)
	}

	outside := t.TempDir()
	hostile := []struct {
		name    string
		entries []tarEntry
	}{
		{"dotdot", []tarEntry{{name: "../escaped", body: "x", typ: tar.TypeReg}}},
		{"absolute", []tarEntry{{name: "/escaped", body: "x", typ: tar.TypeReg}}},
		{"through symlink", []tarEntry{
			{name: "d", link: outside, typ: tar.TypeSymlink},
			{name: "d/escaped", body: "x", typ: tar.TypeReg},
		}},
		{"hard link out", []tarEntry{{name: "h", link: "../../etc/passwd", typ: tar.TypeLink}}},
	}
	for _, h := range hostile {
		dst := t.TempDir()
		err := untarInto(makeTar(t, h.entries), dst, "x", "")
		if err == nil || !strings.Contains(err.Error(), "refusing") {
			t.Errorf("%s: err = %v, want a refusal", h.name, err)
		}
		if _, err := os.Stat(filepath.Join(outside, "escaped")); err == nil {
			t.Fatalf("%s: wrote outside the destination", h.name)
		}
	}
}

func TestTarPathRoundTrip(t *testing.T) {
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "sub"), 0o755)
	os.WriteFile(filepath.Join(src, "sub", "f.txt"), []byte("data"), 0o600)
	os.Symlink("sub/f.txt", filepath.Join(src, "ln"))
	var b bytes.Buffer
	if err := tarPath(src, "top", false, &b); err != nil {
		t.Fatal(err)
	}
	names := map[string]*tar.Header{}
	tr := tar.NewReader(bytes.NewReader(b.Bytes()))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names[h.Name] = h
	}
	for _, want := range []string{"top/", "top/sub/", "top/sub/f.txt", "top/ln"} {
		if names[want] == nil {
			t.Fatalf("entry %q missing: %v", want, names)
		}
	}
	if h := names["top/sub/f.txt"]; h.Mode&0o777 != 0o600 || h.Uid != 0 || h.Size != 4 {
		t.Fatalf("file header %+v", h)
	}
	if names["top/ln"].Linkname != "sub/f.txt" {
		t.Fatalf("symlink target %q", names["top/ln"].Linkname)
	}
	// And back: what we pack, untarInto unpacks under a new name.
	dst := t.TempDir()
	if err := untarInto(bytes.NewReader(b.Bytes()), dst, "top", "copy"); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(dst, "copy", "sub", "f.txt")); err != nil || string(got) != "data" {
		t.Fatalf("round trip: %q %v", got, err)
	}
}

// TestEveryCommandHasHelp builds the whole tree and asks each command for
// --help: a flag shorthand clash would panic here, not in front of a user.
func TestEveryCommandHasHelp(t *testing.T) {
	root := NewRootCommand()
	var paths [][]string
	for _, c := range root.Commands() {
		paths = append(paths, []string{c.Name()})
		for _, sub := range c.Commands() {
			paths = append(paths, []string{c.Name(), sub.Name()})
		}
	}
	if len(paths) < 25 {
		t.Fatalf("only %d commands", len(paths))
	}
	for _, p := range paths {
		r := runCLI(t, "unix:///nonexistent.sock", "", append(p, "--help")...)
		if r.code != 0 || !strings.Contains(r.stdout, "Usage:") {
			t.Errorf("%v --help: %+v", p, r)
		}
	}
	// -h is --hostname for run and create, help elsewhere.
	if r := runCLI(t, "unix:///nonexistent.sock", "", "ps", "-h"); r.code != 0 || !strings.Contains(r.stdout, "Usage:") {
		t.Errorf("ps -h: %+v", r)
	}
}

func TestCpBothWaysAgainstFakeDaemon(t *testing.T) {
	d := newFakeDaemon(t)
	got := make(chan map[string]string, 1)
	d.mux.HandleFunc("HEAD /containers/web/archive", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("path") == "/tmp" {
			st, _ := json.Marshal(map[string]any{"name": "tmp", "mode": uint32(fs.ModeDir | 0o1777)})
			w.Header().Set("X-Docker-Container-Path-Stat", base64.StdEncoding.EncodeToString(st))
			return
		}
		w.WriteHeader(404)
	})
	d.mux.HandleFunc("PUT /containers/web/archive", func(w http.ResponseWriter, r *http.Request) {
		files := map[string]string{"path": r.URL.Query().Get("path")}
		tr := tar.NewReader(r.Body)
		for {
			h, err := tr.Next()
			if err != nil {
				break
			}
			b, _ := io.ReadAll(tr)
			files[h.Name] = string(b)
		}
		got <- files
	})
	d.mux.HandleFunc("GET /containers/web/archive", func(w http.ResponseWriter, r *http.Request) {
		st, _ := json.Marshal(map[string]any{"name": "passwd", "size": 11, "mode": 0o644})
		w.Header().Set("X-Docker-Container-Path-Stat", base64.StdEncoding.EncodeToString(st))
		w.Header().Set("Content-Type", "application/x-tar")
		w.Write(makeTar(t, []tarEntry{{name: "passwd", body: "root:x:0:0\n", typ: tar.TypeReg}}).Bytes())
	})

	src := filepath.Join(t.TempDir(), "in.txt")
	os.WriteFile(src, []byte("copied in\n"), 0o644)
	// To a path that does not exist: written as that name into its directory.
	if r := runCLI(t, d.host, "", "cp", src, "web:/tmp/renamed.txt"); r.code != 0 {
		t.Fatalf("cp in: %+v", r)
	}
	if f := <-got; f["path"] != "/tmp" || f["renamed.txt"] != "copied in\n" {
		t.Fatalf("cp in sent %v", f)
	}
	// To an existing directory: under the source's name.
	if r := runCLI(t, d.host, "", "cp", src, "web:/tmp"); r.code != 0 {
		t.Fatalf("cp in to dir: %+v", r)
	}
	if f := <-got; f["path"] != "/tmp" || f["in.txt"] != "copied in\n" {
		t.Fatalf("cp in to dir sent %v", f)
	}

	dst := t.TempDir()
	if r := runCLI(t, d.host, "", "cp", "web:/etc/passwd", dst); r.code != 0 {
		t.Fatalf("cp out: %+v", r)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "passwd")); err != nil || string(b) != "root:x:0:0\n" {
		t.Fatalf("cp out into dir: %q %v", b, err)
	}
	if r := runCLI(t, d.host, "", "cp", "web:/etc/passwd", filepath.Join(dst, "pw")); r.code != 0 {
		t.Fatalf("cp out to a new name: %+v", r)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "pw")); err != nil || string(b) != "root:x:0:0\n" {
		t.Fatalf("cp out renamed: %q %v", b, err)
	}
	if r := runCLI(t, d.host, "", "cp", "web:/etc/passwd", filepath.Join(dst, "no", "such", "dir")); r.code != 1 || !strings.Contains(r.stderr, "does not exist") {
		t.Fatalf("cp out into a missing directory: %+v", r)
	}
}
