package tests

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// renameAllowed are the files of the engine and the daemon that may rename
// files themselves, with why; every other atomic replacement goes through
// containerd/atomicfile (DESIGN.md: one atomic-write helper for the whole
// engine), which syncs the file before and the directory after the rename.
var renameAllowed = map[string]string{
	"containerd/atomicfile/atomicfile.go": "the helper",
	"containerd/content/content.go":       "a streamed blob: synced, renamed into the blob directory, which is then synced with atomicfile.SyncDir",
	"containerd/images/layers.go":         "a directory (an unpacked snapshot), synced with syncfs, its parent with atomicfile.SyncDir",
	"containerd/images/initlayer.go":      "a directory of empty mount points, made once per image from its layers: one lost in a crash is made again, and one the runtime finds missing it makes in the container",
	"containerd/logs/jsonfile.go":         "log rotation shifts x.log.N to x.log.N+1 and renames a finished .gz: whole files moved, not a write into place",
	"containerd/containers/engine.go":     "a removed container's directories moved into the trash to be deleted: nothing written into place, and a crash leaves them to the next Open's emptying",
	"containerd/images/rootfs.go":         "a removed rootfs moved into tmp/ to be deleted: nothing written into place, and a crash leaves it to the next Open's emptying",
}

// fileRename matches a call that renames a file (os.Rename, unix.Renameat2,
// ...), not a method of that name (a container's Rename).
var fileRename = regexp.MustCompile(`\b(os|unix|syscall)\.Rename(at2?)?\(`)

// TestOneAtomicWriteHelper fails when code of the engine or the daemon
// renames a file into place by hand (the six hand-written helpers that were
// here differed: three never synced the file, none synced the directory).
func TestOneAtomicWriteHelper(t *testing.T) {
	for _, top := range []string{"containerd", "daemon", "worker"} {
		err := filepath.WalkDir(filepath.Join("..", top), func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return err
			}
			rel := strings.TrimPrefix(filepath.ToSlash(p), "../")
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			for i, line := range strings.Split(string(b), "\n") {
				if fileRename.MatchString(line) && renameAllowed[rel] == "" {
					t.Errorf("%s:%d renames a file by hand; use containerd/atomicfile: %s", rel, i+1, strings.TrimSpace(line))
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
