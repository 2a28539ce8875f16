package daemon

import (
	"fmt"
	"log/slog"
	"os"

	"golang.org/x/sys/unix"
)

// execRootTmpfs makes the exec root a tmpfs when it is on another
// filesystem and empty. Execution state (sockets, state files with pids,
// netns bind mounts) must not outlive a reboot, which dockerd and
// containerd get from /run being a tmpfs; where it is not (this project's
// VMs: ext4 without a journal), every container's dozen short-lived files
// there also cost inode allocations whose scans grow with the files deleted
// in the last minutes (docs/engine.md, session 27). A directory that
// already holds state (an earlier daemon's, on disk) is left as it is: a
// mount would hide it from the running containers' shims. Nothing is
// unmounted when the daemon stops, as for /run. It reports whether it
// mounted one.
func execRootTmpfs(dir string) (bool, error) {
	tmpfs, err := onTmpfs(dir, 0o711)
	if err != nil {
		return false, fmt.Errorf("exec root: %w", err)
	}
	if tmpfs {
		return false, nil
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false, fmt.Errorf("exec root: %w", err)
	}
	if len(ents) > 0 {
		slog.Info("daemon: exec root is on disk, not a tmpfs, and holds state: kept there", "exec-root", dir)
		return false, nil
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "mode=0711,size=10%"); err != nil {
		return false, fmt.Errorf("mount a tmpfs on exec root %s: %w", dir, err)
	}
	return true, nil
}

// secretsTmpfs makes dir a tmpfs that only root can enter, where the worker
// writes the secret and config files of its tasks (worker.TaskFiles): a
// secret must never reach a disk. A tmpfs already there is kept, and none is
// unmounted when the daemon stops: the files of the containers that outlive
// it (created ones too, which bind them only when they start) stay, and a
// task's directory goes with its container. It returns dir, or "" and why
// there is none.
func secretsTmpfs(dir string) (string, error) {
	tmpfs, err := onTmpfs(dir, 0o700)
	if err != nil {
		return "", fmt.Errorf("secrets dir: %w", err)
	}
	if !tmpfs || !isMountPoint(dir) {
		if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0700,size=64m"); err != nil {
			return "", fmt.Errorf("mount a tmpfs on %s: %w", dir, err)
		}
	}
	return dir, nil
}

// onTmpfs makes dir (with mode) if it is missing and reports whether it is
// on a tmpfs.
func onTmpfs(dir string, mode os.FileMode) (bool, error) {
	if err := os.MkdirAll(dir, mode); err != nil {
		return false, err
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return false, err
	}
	return fs.Type == unix.TMPFS_MAGIC, nil
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
