// Package atomicfile replaces files so that a reader, or the file system
// after a crash, sees either the old content or the new one, never a mix or
// an empty file. It is the engine's one atomic-write helper: container
// records, exit records, runtime state, pid files, image store state and
// the daemon's swarm state all go through it.
//
// The steps are those that make a replacement durable on Linux file systems:
// write a temporary file in the same directory (a rename only is atomic
// within one file system), fsync it (else the rename can reach the disk
// before the data, and a crash leaves an empty file under the final name),
// rename it over the target, then fsync the directory (else the rename
// itself can be lost in a crash, and the old file comes back).
//
// Replace is the same without the two fsyncs: atomic for readers and across
// a crash of the process, but a crash of the machine may bring the old
// content back. It is for what a machine crash makes moot anyway: files
// under the exec root (a tmpfs, /run, in an install: gone at boot), and
// state that a crash undoes by itself (a container marked running: after a
// reboot its processes are gone whatever the record says). Each fsync pair
// costs a millisecond or more on a disk; a `run --rm` wrote nine such files.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// WriteFile replaces path with data, with permissions perm, atomically and
// durably. The temporary file has a unique name, so that concurrent writers
// (a shim and a daemon) never write into each other's; on any error it is
// removed and path is left as it was.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return write(path, data, perm, true)
}

// Replace replaces path with data atomically, not durably (see the package
// comment for when that is enough).
func Replace(path string, data []byte, perm os.FileMode) error {
	return write(path, data, perm, false)
}

func write(path string, data []byte, perm os.FileMode, durable bool) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
			err = fmt.Errorf("write %s: %w", path, err)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if durable {
		if err := f.Sync(); err != nil {
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if !durable {
		return nil
	}
	return SyncDir(dir)
}

// SyncDir fsyncs a directory: the creations, renames and removals of entries
// in it are on disk when it returns.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
