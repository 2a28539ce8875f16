package daemon

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// secretsTmpfs makes dir a tmpfs that only root can enter, where the worker
// writes the secret and config files of its tasks (worker.TaskFiles): a
// secret must never reach a disk. A tmpfs already there (a daemon
// restarted after a kill) is kept. It returns dir and what unmounts it at
// the daemon's exit: running containers keep their files (their binds pin
// the tmpfs), and the next start mounts a fresh one.
func secretsTmpfs(dir string) (string, func(), error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", nil, fmt.Errorf("secrets dir: %w", err)
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return "", nil, fmt.Errorf("secrets dir: %w", err)
	}
	if fs.Type != unix.TMPFS_MAGIC || !isMountPoint(dir) {
		if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0700,size=64m"); err != nil {
			return "", nil, fmt.Errorf("mount a tmpfs on %s: %w", dir, err)
		}
	}
	return dir, func() { _ = unix.Unmount(dir, unix.MNT_DETACH) }, nil
}

// isMountPoint reports whether dir is the root of a mount: its device
// differs from its parent's.
func isMountPoint(dir string) bool {
	var a, b unix.Stat_t
	if unix.Stat(dir, &a) != nil || unix.Stat(dir+"/..", &b) != nil {
		return false
	}
	return a.Dev != b.Dev
}
