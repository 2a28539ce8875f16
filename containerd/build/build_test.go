package build

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestContextIgnoreAndEscape: .dockerignore leaves files out (exceptions
// bring them back), and a source through a symlink that leaves the
// context, or a ../ path, finds nothing outside it.
func TestContextIgnoreAndEscape(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"Dockerfile": "FROM scratch\n", ".dockerignore": "*.log\nbuild/\n!build/keep.txt\n",
		"a.txt": "a", "b.log": "b", "build/x": "x", "build/keep.txt": "k", "sub/c.txt": "c",
	})
	if err := os.Symlink("/etc", filepath.Join(dir, "out")); err != nil {
		t.Fatal(err)
	}
	c, err := openContext(dir, "Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range c.names {
		if !c.files[n].IsDir() {
			names = append(names, n)
		}
	}
	want := []string{".dockerignore", "Dockerfile", "a.txt", "build/keep.txt", "out", "sub/c.txt"}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("context entries %v, want %v", names, want)
	}
	for _, src := range []string{"b.log", "build/x", "out/passwd", "../../etc/passwd", "/etc/passwd"} {
		if m, err := c.match(src); err == nil {
			t.Errorf("COPY %s matched %v, want not found", src, m)
		}
	}
	m, err := c.match("*.txt")
	if err != nil || len(m) != 1 || m[0].rel != "a.txt" {
		t.Fatalf("*.txt matched %v, %v", m, err)
	}
}

// TestContextIgnoresItself: a .dockerignore that lists itself and the
// Dockerfile leaves both out of the sources, as dockerd's builder removes
// them from the context (docker-py's test_build_with_dockerignore); the
// Dockerfile is still found to be read.
func TestContextIgnoresItself(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"build.Dockerfile": "FROM scratch\n", ".dockerignore": "build.Dockerfile\n.dockerignore\n", "a.txt": "a",
	})
	c, err := openContext(dir, "build.Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a.txt"}; !reflect.DeepEqual(c.names, want) {
		t.Fatalf("context entries %v, want %v", c.names, want)
	}
	if c.dockerfile == nil || c.dockerfile.Size() != int64(len("FROM scratch\n")) {
		t.Fatalf("the excluded Dockerfile was not found: %v", c.dockerfile)
	}
	for _, src := range []string{".dockerignore", "build.Dockerfile"} {
		if m, err := c.match(src); err == nil {
			t.Errorf("COPY %s matched %v, want not found", src, m)
		}
	}
}

// TestPlanCopy: Docker's destination rules.
func TestPlanCopy(t *testing.T) {
	dir := writeFiles(t, map[string]string{"Dockerfile": "", "f.txt": "f", "d/one": "1", "d/sub/two": "2"})
	c, err := openContext(dir, "Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	existing := map[string]bool{"/": true, "/usr": true, "/etc": true, "/etc/hosts": false}
	stat := func(p string) (bool, bool, error) { isDir, ok := existing[p]; return ok, isDir, nil }
	names := func(p *copyPlan) []string {
		var out []string
		for _, e := range p.entries {
			out = append(out, e.name)
		}
		sort.Strings(out)
		return out
	}
	f, _ := c.match("f.txt")
	d, _ := c.match("d")
	for _, tc := range []struct {
		srcs             []source
		dest             string
		point            string
		missing, entries []string
	}{
		{f, "/usr/", "/usr", nil, []string{"f.txt"}},
		{f, "/usr/renamed", "/usr", nil, []string{"renamed"}},
		{f, "/etc", "/etc", nil, []string{"f.txt"}},
		{f, "/opt/app/", "/", []string{"opt", "opt/app"}, []string{"opt/app/f.txt"}},
		{d, "/usr/d", "/usr", []string{"d"}, []string{"d/one", "d/sub", "d/sub/two"}},
	} {
		p, err := c.planCopy(tc.srcs, tc.dest, false, false, stat)
		if err != nil {
			t.Fatalf("%s: %v", tc.dest, err)
		}
		if p.point != tc.point || !reflect.DeepEqual(p.missing, tc.missing) || !reflect.DeepEqual(names(p), tc.entries) {
			t.Errorf("COPY to %s: point %s missing %v entries %v; want %s %v %v", tc.dest, p.point, p.missing, names(p), tc.point, tc.missing, tc.entries)
		}
	}
	if _, err := c.planCopy(append(f, d...), "/usr", true, false, stat); err == nil || !strings.Contains(err.Error(), "must be a directory and end with a /") {
		t.Errorf("several sources to a non-directory: %v", err)
	}
	if _, err := c.planCopy(f, "/etc/hosts/x", false, false, stat); err == nil {
		t.Error("COPY under a file was planned")
	}
	// The tar: owners and modes as asked, content from the context.
	p, _ := c.planCopy(f, "/usr/", false, false, stat)
	var buf bytes.Buffer
	if err := c.writeTar(context.Background(), p, owner{uid: 7, gid: 8}, 0o600, &buf); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(&buf)
	h, err := tr.Next()
	if err != nil || h.Name != "f.txt" || h.Uid != 7 || h.Gid != 8 || h.Mode != 0o600 {
		t.Fatalf("tar entry %+v, %v", h, err)
	}
	if b, _ := io.ReadAll(tr); string(b) != "f" {
		t.Fatalf("content %q", b)
	}
}

// TestStagesAndExpansion: the stages a target needs (FROM a stage, COPY
// --from by name and by number), ARG before FROM, and Docker's expansion.
func TestStagesAndExpansion(t *testing.T) {
	df := "ARG V=3.1\nFROM busybox:${V} AS a\nFROM busybox AS unused\nFROM a AS b\nRUN true\nFROM busybox\nCOPY --from=0 /x /x\nCOPY --from=b /y /y\n"
	res, err := parser.Parse(strings.NewReader(df))
	if err != nil {
		t.Fatal(err)
	}
	stages, meta, err := instructions.Parse(res.AST, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := &buildRun{lex: shell.NewLex('\\'), usedArgs: map[string]bool{}, opts: Options{BuildArgs: map[string]*string{"V": ptr("3.2")}}}
	if err := r.metaArgs(meta); err != nil {
		t.Fatal(err)
	}
	if got := r.expandMeta(stages[0].BaseName); got != "busybox:3.2" {
		t.Errorf("FROM expands to %q", got)
	}
	need, err := r.neededStages(stages)
	if err != nil || !reflect.DeepEqual(need, []int{0, 2, 3}) {
		t.Errorf("needed stages %v, %v; want [0 2 3]", need, err)
	}
	r.opts.Target = "b"
	if need, _ := r.neededStages(stages); !reflect.DeepEqual(need, []int{0, 2}) {
		t.Errorf("stages for target b: %v", need)
	}
	r.opts.Target = "nope"
	if _, err := r.neededStages(stages); err == nil {
		t.Error("an unknown target was accepted")
	}
	ports, err := exposedPorts([]string{"80", "53/udp", "8000-8002"})
	if err != nil || !reflect.DeepEqual(ports, []string{"80/tcp", "53/udp", "8000/tcp", "8001/tcp", "8002/tcp"}) {
		t.Errorf("EXPOSE: %v %v", ports, err)
	}
	for _, bad := range []string{"0", "70000", "80/xyz", "9-3"} {
		if _, err := exposedPorts([]string{bad}); err == nil {
			t.Errorf("EXPOSE %s accepted", bad)
		}
	}
}
