package daemon

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// secretsTmpfs makes dir a tmpfs that only root can enter, where the worker
// writes the secret and config files of its tasks (worker.TaskFiles): a
// secret must never reach a disk. A tmpfs already there is kept, and none is
// unmounted when the daemon stops: the files of the containers that outlive
// it (created ones too, which bind them only when they start) stay, and a
// task's directory goes with its container. It returns dir, or "" and why
// there is none.
func secretsTmpfs(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("secrets dir: %w", err)
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return "", fmt.Errorf("secrets dir: %w", err)
	}
	if fs.Type != unix.TMPFS_MAGIC || !isMountPoint(dir) {
		if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0700,size=64m"); err != nil {
			return "", fmt.Errorf("mount a tmpfs on %s: %w", dir, err)
		}
	}
	return dir, nil
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
