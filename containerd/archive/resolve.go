package archive

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ResolveInRoot resolves unsafePath as if root were "/": symlinks met on the
// way (absolute or relative) and ".." stay inside root. It returns the real
// host path, for `cp` into or out of a container rootfs. The last component
// need not exist; every one before it must. The answer is only as good as
// the moment it is computed: a tree that changes meanwhile can move it.
func ResolveInRoot(root, unsafePath string) (string, error) {
	rootfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("archive: open %s: %w", root, err)
	}
	defer unix.Close(rootfd)
	rel := strings.TrimLeft(filepath.Clean("/"+unsafePath), "/")
	if rel == "" {
		rel = "."
	}
	how := &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
	fd, err := unix.Openat2(rootfd, rel, how)
	base := ""
	if errors.Is(err, unix.ENOENT) {
		// Resolve the parent; the last component is created by the caller.
		dir, b := filepath.Split(rel)
		if dir == "" {
			dir = "."
		}
		base = b
		fd, err = unix.Openat2(rootfd, dir, how)
	}
	if err != nil {
		return "", fmt.Errorf("archive: resolve %q in %s: %w", unsafePath, root, err)
	}
	defer unix.Close(fd)
	real, err := os.Readlink(procPath(fd, ""))
	if err != nil {
		return "", fmt.Errorf("archive: resolve %q in %s: %w", unsafePath, root, err)
	}
	return filepath.Join(real, base), nil
}
