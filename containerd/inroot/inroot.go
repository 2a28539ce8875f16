// Package inroot resolves and opens paths inside a directory tree as if that
// directory were "/": the one in-root path resolver of the engine (DESIGN.md).
// Image layers (archive), `cp` and `commit` against a running container
// (containers) and the container init's mount targets (runtime) all go
// through it.
//
// Every path is resolved by the kernel from one descriptor of the root with
// openat2(2) RESOLVE_IN_ROOT: "..", absolute names and symlinks met on the
// way (absolute or relative) stay inside the root, and magic links
// (/proc/PID/root...) are refused. Nothing is ever resolved twice by name: a
// caller gets a descriptor and works relative to it with the *at system
// calls, so a tree that changes meanwhile (a running container swapping a
// directory for a symlink to /) can move a name to another place inside the
// root, never outside it. Where the last component must not be followed
// (chmod, create, a mount target that must be a directory) the caller opens
// the parent and acts on the base name without following it.
//
// openat2 needs Linux 5.6; on an older kernel every call fails with ENOSYS
// rather than fall back to resolving in user space.
package inroot

import (
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Root is an open directory that paths are resolved in. It holds one
// O_PATH descriptor; Close releases it.
type Root struct {
	fd   int
	name string
}

// OpenRoot opens dir (a trusted host path) as a root.
func OpenRoot(dir string) (*Root, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("inroot: open %s: %w", dir, err)
	}
	return &Root{fd: fd, name: dir}, nil
}

// Close releases the root's descriptor.
func (r *Root) Close() error {
	if r.fd < 0 {
		return nil
	}
	err := unix.Close(r.fd)
	r.fd = -1
	return err
}

// Fd is the root's O_PATH descriptor, valid until Close.
func (r *Root) Fd() int { return r.fd }

// Name is the host path the root was opened from, for messages only: it is
// never resolved again.
func (r *Root) Name() string { return r.name }

// Clean turns a path of the tree (absolute or not, with "." and "..") into
// the relative name the resolver takes; the root itself is ".". ".." cannot
// climb above the root.
func Clean(name string) string {
	rel := strings.TrimLeft(path.Clean("/"+name), "/")
	if rel == "" {
		return "."
	}
	return rel
}

// Open resolves name inside the root and opens it with flags (O_CLOEXEC is
// added). With O_NOFOLLOW a symlink in the last component is not followed
// (with O_PATH it is opened itself); every other symlink is followed inside
// the root. O_CREAT is refused: create relative to OpenParent's descriptor.
func (r *Root) Open(name string, flags int) (int, error) {
	return r.open(name, flags, 0)
}

// OpenNoSymlinks is Open, refusing any symlink anywhere in name (ELOOP):
// for what must be exactly where its name says (a proc or sysfs mount target).
func (r *Root) OpenNoSymlinks(name string, flags int) (int, error) {
	return r.open(name, flags, unix.RESOLVE_NO_SYMLINKS)
}

func (r *Root) open(name string, flags int, resolve uint64) (int, error) {
	if flags&unix.O_CREAT != 0 {
		return -1, fmt.Errorf("inroot: open %q: O_CREAT is not supported, create from the parent", name)
	}
	how := &unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS | resolve,
	}
	var err error
	for try := 0; try < openRetries; try++ {
		var fd int
		fd, err = unix.Openat2(r.fd, Clean(name), how)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			// The kernel gives up when a rename anywhere races a ".."
			// (RESOLVE_IN_ROOT must not be fooled by it): try again.
			continue
		}
		if err != nil {
			break
		}
		return fd, nil
	}
	return -1, &pathError{op: "open", name: name, err: err}
}

// openRetries bounds the retries after EAGAIN, so that a container renaming
// in a tight loop makes a resolution fail instead of spin for ever.
const openRetries = 128

// OpenParent resolves the directory holding name and returns an O_PATH
// descriptor of it with name's last component, for *at calls that do not
// follow it. For the root itself the base is ".".
func (r *Root) OpenParent(name string) (dir int, base string, err error) {
	rel := Clean(name)
	if rel == "." {
		fd, err := r.Open(".", unix.O_PATH|unix.O_DIRECTORY)
		return fd, ".", err
	}
	d, base := path.Split(rel)
	fd, err := r.Open(d, unix.O_PATH|unix.O_DIRECTORY)
	return fd, base, err
}

// MkdirAll makes every missing directory of name (with mode, less the
// umask) and returns an O_PATH descriptor of the last one, and the names
// (relative, cleaned) of the directories it made. A dangling symlink on the
// way is an error: its target is not guessed at.
func (r *Root) MkdirAll(name string, mode uint32) (fd int, made []string, err error) {
	rel := Clean(name)
	fd, err = r.Open(rel, unix.O_PATH|unix.O_DIRECTORY)
	if err == nil || !errors.Is(err, unix.ENOENT) {
		return fd, nil, err
	}
	// Walk down from the root; each step resolves the whole prefix from the
	// root descriptor again, so every symlink met stays confined, and each
	// directory is made relative to its parent's descriptor.
	parent, err := r.Open(".", unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return -1, nil, err
	}
	cur := "."
	for _, c := range strings.Split(rel, "/") {
		next := path.Join(cur, c)
		fd, err := r.Open(next, unix.O_PATH|unix.O_DIRECTORY)
		if errors.Is(err, unix.ENOENT) {
			merr := unix.Mkdirat(parent, c, mode)
			if merr == nil {
				made = append(made, next)
			} else if !errors.Is(merr, unix.EEXIST) {
				unix.Close(parent)
				return -1, made, &pathError{op: "mkdir", name: next, err: merr}
			}
			fd, err = r.Open(next, unix.O_PATH|unix.O_DIRECTORY)
			if errors.Is(err, unix.ENOENT) {
				err = &pathError{op: "mkdir", name: next, err: errors.New("a symlink to a missing directory")}
			}
		}
		unix.Close(parent)
		if err != nil {
			return -1, made, err
		}
		parent, cur = fd, next
	}
	return parent, made, nil
}

// Chmod sets the mode of base in the directory open as dir without
// following a symlink there (chmod(2) would): the file is opened O_PATH
// with O_NOFOLLOW and changed through its descriptor. A symlink is left
// alone, as the kernel has no mode for it.
func Chmod(dir int, base string, mode uint32) error {
	fd, err := unix.Openat(dir, base, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("inroot: chmod %q: %w", base, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("inroot: chmod %q: %w", base, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return nil
	}
	// The magic link of an O_PATH descriptor leads to exactly its inode.
	if err := unix.Chmod(FdPath(fd, ""), mode); err != nil {
		return fmt.Errorf("inroot: chmod %q: %w", base, err)
	}
	return nil
}

// ReadFile reads name resolved inside the directory dir (a trusted host
// path), following symlinks inside it.
func ReadFile(dir, name string) ([]byte, error) {
	return ReadFileLimit(dir, name, -1)
}

// ErrTooLarge is ReadFileLimit's answer for a file above its limit.
var ErrTooLarge = errors.New("file too large")

// ReadFileLimit is ReadFile of a file of at most limit bytes (no limit if
// negative); a larger one is not read (ErrTooLarge): the files of an image
// are its author's, and a layer of a few MB can unpack to a file of
// gigabytes of zeros.
func ReadFileLimit(dir, name string, limit int64) ([]byte, error) {
	r, err := OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	fd, err := r.Open(name, unix.O_RDONLY|unix.O_NONBLOCK)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, &pathError{op: "read", name: name, err: errors.New("not a regular file")}
	}
	if limit >= 0 && st.Size > limit {
		return nil, &pathError{op: "read", name: name, err: fmt.Errorf("%w: %d bytes, more than %d", ErrTooLarge, st.Size, limit)}
	}
	var out []byte
	buf := make([]byte, 32<<10)
	for {
		n, err := unix.Read(fd, buf)
		if n > 0 {
			out = append(out, buf[:n]...)
			// It may grow while read (a running container's file).
			if limit >= 0 && int64(len(out)) > limit {
				return nil, &pathError{op: "read", name: name, err: fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limit)}
			}
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, &pathError{op: "read", name: name, err: err}
		}
		if n == 0 {
			return out, nil
		}
	}
}

// FdPath names base inside the directory open as fd ("" for fd itself)
// through /proc/self/fd. The kernel follows the descriptor's magic link to
// exactly its inode; base is resolved from there, so callers use it only
// with calls that do not follow base (lchown, lsetxattr...).
func FdPath(fd int, base string) string {
	p := "/proc/self/fd/" + strconv.Itoa(fd)
	if base != "" && base != "." {
		p += "/" + base
	}
	return p
}

// pathError keeps the errno reachable with errors.Is while saying which
// path inside the root failed.
type pathError struct {
	op, name string
	err      error
}

func (e *pathError) Error() string {
	return fmt.Sprintf("inroot: %s %q: %v", e.op, e.name, e.err)
}

func (e *pathError) Unwrap() error { return e.err }
