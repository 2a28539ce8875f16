package atomicfile

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

func TestWriteFileReplaces(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || string(b) != "new" {
		t.Fatalf("content %q, %v", b, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("entries left: %v", ents)
	}
}

func TestWriteFileFailureLeavesTheOldFile(t *testing.T) {
	dir := t.TempDir()
	// The target is a non-empty directory: the rename fails.
	path := filepath.Join(dir, "busy")
	if err := os.MkdirAll(filepath.Join(path, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	err := WriteFile(path, []byte("new"), 0o600)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("WriteFile over a directory: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("a temporary file is left: %v", ents)
	}
	if err := WriteFile(filepath.Join(dir, "nodir", "f"), nil, 0o600); err == nil {
		t.Fatal("WriteFile into a missing directory succeeded")
	}
}

// TestWriteFileConcurrent: readers only ever see one complete version, also
// while writers (each with its own temporary file) replace it at once.
func TestWriteFileConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	versions := [][]byte{bytes.Repeat([]byte("a"), 100), bytes.Repeat([]byte("b"), 70000)}
	if err := WriteFile(path, versions[0], 0o644); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if err := WriteFile(path, versions[(w+i)%2], 0o644); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for {
		select {
		case <-done:
			return
		default:
		}
		b, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(b, versions[0]) && !bytes.Equal(b, versions[1]) {
			t.Fatalf("read %d bytes (%v): not one of the versions", len(b), err)
		}
	}
}

// TestWriteFileSyncsFileThenDirectory runs WriteFile under strace and checks
// the order that makes it durable: fsync of the temporary file before the
// rename, fsync of the directory after it.
func TestWriteFileSyncsFileThenDirectory(t *testing.T) {
	if steps := traceWrite(t, "durable"); steps != "sync file, rename, sync dir" {
		t.Fatalf("steps %s, want sync file, rename, sync dir", steps)
	}
}

// TestReplaceDoesNotSync: Replace renames a complete temporary file over
// the target, with no fsync at all.
func TestReplaceDoesNotSync(t *testing.T) {
	if steps := traceWrite(t, "replace"); steps != "rename" {
		t.Fatalf("steps %s, want rename only", steps)
	}
}

// traceWrite runs WriteFile (mode durable) or Replace (mode replace) in a
// child under strace and returns its steps.
func traceWrite(t *testing.T, mode string) string {
	if target := os.Getenv("ATOMICFILE_TEST_WRITE"); target != "" {
		write := WriteFile
		if os.Getenv("ATOMICFILE_TEST_MODE") == "replace" {
			write = Replace
		}
		if err := write(target, []byte("data"), 0o600); err != nil {
			t.Fatal(err)
		}
		t.SkipNow() // the child's part is done
	}
	strace, err := exec.LookPath("strace")
	if err != nil {
		t.Skip("needs strace")
	}
	dir := t.TempDir()
	target := filepath.Join(dir, "state.json")
	trace := filepath.Join(t.TempDir(), "trace")
	cmd := exec.Command(strace, "-f", "-y", "-o", trace, "-e", "trace=fsync,fdatasync,rename,renameat,renameat2",
		os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), "ATOMICFILE_TEST_WRITE="+target, "ATOMICFILE_TEST_MODE="+mode)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("strace: %v\n%s", err, out)
	}
	b, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(target); err != nil || string(got) != "data" {
		t.Fatalf("target after the write: %q, %v", got, err)
	}
	var steps []string
	tmp := regexp.MustCompile(regexp.QuoteMeta(dir) + `/\.state\.json\.tmp-[0-9]+`)
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.Contains(line, "fsync(") && tmp.MatchString(line):
			steps = append(steps, "sync file")
		case strings.Contains(line, "rename") && strings.Contains(line, target):
			steps = append(steps, "rename")
		case strings.Contains(line, "fsync(") && strings.Contains(line, "<"+dir+">"):
			steps = append(steps, "sync dir")
		}
	}
	return strings.Join(steps, ", ")
}
