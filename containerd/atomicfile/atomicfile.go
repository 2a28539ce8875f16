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
func WriteFile(path string, data []byte, perm os.FileMode) (err error) {
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
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
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
