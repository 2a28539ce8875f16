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
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
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
	// Plain system calls rather than an *os.File: os.CreateTemp's file
	// tries the netpoller (a failed epoll_ctl) and switches to non-blocking
	// and back, four calls more than the work itself, on every record of
	// every container start; a system call costs about 10 µs on the
	// paravirtualised VMs we test on.
	fd, tmp, err := createTemp(dir, "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			if fd >= 0 {
				unix.Close(fd)
			}
			unix.Unlink(tmp)
			err = fmt.Errorf("write %s: %w", path, err)
		}
	}()
	for b := data; len(b) > 0; {
		n, werr := unix.Write(fd, b)
		if werr != nil {
			return &os.PathError{Op: "write", Path: tmp, Err: werr}
		}
		b = b[n:]
	}
	if err := unix.Fchmod(fd, uint32(perm.Perm())); err != nil {
		return &os.PathError{Op: "chmod", Path: tmp, Err: err}
	}
	if durable {
		if err := unix.Fsync(fd); err != nil {
			return &os.PathError{Op: "sync", Path: tmp, Err: err}
		}
	}
	cerr := unix.Close(fd)
	fd = -1
	if cerr != nil {
		return &os.PathError{Op: "close", Path: tmp, Err: cerr}
	}
	if err := unix.Rename(tmp, path); err != nil {
		return &os.LinkError{Op: "rename", Old: tmp, New: path, Err: err}
	}
	if !durable {
		return nil
	}
	return SyncDir(dir)
}

// createTemp creates a new file dir/prefix followed by a random decimal
// number, mode 0600, named and made as os.CreateTemp does.
func createTemp(dir, prefix string) (int, string, error) {
	for try := 0; ; try++ {
		name := filepath.Join(dir, prefix+strconv.FormatUint(uint64(rand.Uint32()), 10))
		fd, err := unix.Open(name, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
		switch {
		case err == nil:
			return fd, name, nil
		case err == unix.EEXIST && try < 100:
			continue
		default:
			return -1, "", &os.PathError{Op: "open", Path: name, Err: err}
		}
	}
}

// SyncDir fsyncs a directory: the creations, renames and removals of entries
// in it are on disk when it returns.
func SyncDir(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	defer unix.Close(fd)
	if err := unix.Fsync(fd); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
