package containers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/containerd/archive"
	"github.com/shoal-project/shoal/containerd/images"
	"github.com/shoal-project/shoal/containerd/inroot"
	"github.com/shoal-project/shoal/containerd/runtime"
)

// PathStat describes a path in a container, as the X-Docker-Container-Path-Stat header.
type PathStat struct {
	Name       string      `json:"name"`
	Size       int64       `json:"size"`
	Mode       os.FileMode `json:"mode"`
	Mtime      time.Time   `json:"mtime"`
	LinkTarget string      `json:"linkTarget"`
}

// openRoot opens the container's mounted rootfs as the root that every
// path of cp is resolved in (package inroot): the container may be running
// and changing its tree, so no path is ever resolved on the host by name.
func (e *Engine) openRoot(idOrName string) (*inroot.Root, Container, error) {
	c, err := e.Get(idOrName)
	if err != nil {
		return nil, c, err
	}
	dir, release, err := e.rootView(c)
	if err != nil {
		return nil, c, err
	}
	defer release()
	root, err := inroot.OpenRoot(dir)
	if err != nil {
		return nil, c, err
	}
	return root, c, nil
}

// rootView returns a path to read and write the container's rootfs by,
// valid until release: a running container's own mount (its overlay
// without the mounts inside it: the same filesystem its processes see,
// never a second overlay on its upper directory), or for a container that
// does not run, its overlay mounted on the host until its removal or next
// start.
func (e *Engine) rootView(c Container) (string, func(), error) {
	if c.State.Running {
		f, err := e.rt.RootMount(c.ID)
		if err == nil {
			return inroot.FdPath(int(f.Fd()), ""), func() { f.Close() }, nil
		}
		if !errors.Is(err, runtime.ErrState) {
			return "", nil, err
		}
		// It has just exited: its rootfs is the host's to mount.
	}
	dir, err := e.mountRootfs(c)
	return dir, func() {}, err
}

// openPathRoot is openRoot for reading path: the container's /etc/hosts,
// /etc/hostname and /etc/resolv.conf are its own files mounted over the
// image's (etcfiles.go), so they are read from the container's directory;
// path is then the name there. With mounts, a path inside a -v bind or
// volume is read in the mount's source (cp, as dockerd's); without, the
// rootfs alone is read (a volume's copy-up of the image's content, a
// build's COPY --from).
func (e *Engine) openPathRoot(idOrName, path string, mounts bool) (*inroot.Root, string, error) {
	c, err := e.Get(idOrName)
	if err != nil {
		return nil, "", err
	}
	clean := filepath.Clean("/" + path)
	if name, ok := strings.CutPrefix(clean, "/etc/"); ok && etcFileNames[name] && !hasBind(c.Config.Binds, clean) {
		if _, err := os.Stat(e.EtcFile(c.ID, name)); err == nil {
			root, err := inroot.OpenRoot(e.containerDir(c.ID))
			return root, name, err
		}
	}
	if src, rel, _, ok := mountFor(c, clean); ok && mounts {
		root, err := inroot.OpenRoot(src)
		if err != nil {
			return nil, "", fmt.Errorf("open the mount at %s: %w", path, err)
		}
		return root, rel, nil
	}
	root, _, err := e.openRoot(idOrName)
	return root, path, err
}

// mountFor finds the -v bind or volume of c that holds the cleaned
// absolute path: the one with the deepest destination at or above it. Its
// source on the host is what the container sees there, also while it does
// not run and whatever its rootfs view shows (that is the overlay alone,
// without the mounts), so cp reads and writes it there, as dockerd does.
// rel is path's name inside the source. Only the path's own components
// are matched: a symlink in the rootfs that points into a mount is not
// followed into it.
func mountFor(c Container, clean string) (src, rel string, ro, ok bool) {
	best := ""
	for _, b := range c.Config.Binds {
		s, dst, r, err := ParseBind(b)
		if err != nil {
			continue
		}
		dst = filepath.Clean(dst)
		switch {
		case len(dst) <= len(best):
		case clean == dst:
			src, rel, ro, best = s, ".", r, dst
		case strings.HasPrefix(clean, dst+"/") || dst == "/":
			src, rel, ro, best = s, strings.TrimPrefix(clean[len(dst):], "/"), r, dst
		}
	}
	return src, rel, ro, best != ""
}

// hasBind tells whether a -v bind mounts over dst.
func hasBind(binds []string, dst string) bool {
	for _, b := range binds {
		if _, d, _, err := ParseBind(b); err == nil && filepath.Clean(d) == dst {
			return true
		}
	}
	return false
}

// notFound is cp's error for a path that does not resolve, as dockerd words it.
func notFound(path, idOrName string, err error) error {
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return fmt.Errorf("%w: Could not find the file %s in container %s", ErrNotFound, path, idOrName)
	}
	return fmt.Errorf("%w: %s in container %s: %v", ErrInvalidArgument, path, idOrName, err)
}

// StatPath describes a path in the container as dockerd does: the
// directories leading to it are resolved inside the container, its last
// component is not followed (a symlink is described itself, LinkTarget
// being what it resolves to in the container), and a trailing "/" or "/."
// asks for a directory.
func (e *Engine) StatPath(idOrName, path string) (PathStat, error) {
	return e.statPath(idOrName, path, false)
}

// StatResolved is StatPath with a symlink last in path followed (inside
// the container): what a builder's COPY of path reads.
func (e *Engine) StatResolved(idOrName, path string) (PathStat, error) {
	return e.statPath(idOrName, path, true)
}

func (e *Engine) statPath(idOrName, path string, follow bool) (PathStat, error) {
	// The API's stat (follow false) sees the mounts; a build's does not.
	root, rel, err := e.openPathRoot(idOrName, path, !follow)
	if err != nil {
		return PathStat{}, err
	}
	defer root.Close()
	fd, err := openLast(root, rel, path, follow)
	if err != nil {
		return PathStat{}, notFound(path, idOrName, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return PathStat{}, notFound(path, idOrName, err)
	}
	ps := PathStat{Name: filepath.Base(path), Size: st.Size, Mode: fileMode(st.Mode), Mtime: time.Unix(st.Mtim.Unix())}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		ps.LinkTarget = linkTarget(root, rel, fd)
	}
	return ps, nil
}

// openLast opens name (the caller's path, for its trailing separator)
// inside root with O_PATH, without following its last component unless the
// path ends in "/" or "/.", which must then be a directory.
func openLast(root *inroot.Root, rel, name string, follow bool) (int, error) {
	if strings.HasSuffix(name, "/") || strings.HasSuffix(name, "/.") || inroot.Clean(rel) == "." {
		return root.Open(rel, unix.O_PATH|unix.O_DIRECTORY)
	}
	if follow {
		return root.Open(rel, unix.O_PATH)
	}
	return root.Open(rel, unix.O_PATH|unix.O_NOFOLLOW)
}

// linkTarget is the path in the container that the symlink at rel (open as
// link) resolves to: fully where it exists, else the link's own text made
// absolute, as dockerd's lexical evaluation gives for a dangling link.
func linkTarget(root *inroot.Root, rel string, link int) string {
	if fd, err := root.Open(rel, unix.O_PATH); err == nil {
		defer unix.Close(fd)
		if p, ok := pathInRoot(root, fd); ok {
			return p
		}
	}
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(link, "", buf)
	if err != nil {
		return ""
	}
	t := string(buf[:n])
	if !filepath.IsAbs(t) {
		t = filepath.Join("/", filepath.Dir("/"+inroot.Clean(rel)), t)
	}
	return filepath.Clean(t)
}

// pathInRoot is the path of fd inside root, from the kernel's names of the
// two descriptors (the root's may be a mount of another namespace, named
// from its own top).
func pathInRoot(root *inroot.Root, fd int) (string, bool) {
	top, err1 := os.Readlink(inroot.FdPath(root.Fd(), ""))
	p, err2 := os.Readlink(inroot.FdPath(fd, ""))
	if err1 != nil || err2 != nil {
		return "", false
	}
	if top == "/" {
		return p, strings.HasPrefix(p, "/")
	}
	if p == top {
		return "/", true
	}
	rest, ok := strings.CutPrefix(p, top+"/")
	return "/" + rest, ok
}

// fileMode is st_mode as os.FileMode, as os.Lstat gives it.
func fileMode(m uint32) os.FileMode {
	mode := os.FileMode(m & 0o777)
	switch m & unix.S_IFMT {
	case unix.S_IFDIR:
		mode |= os.ModeDir
	case unix.S_IFLNK:
		mode |= os.ModeSymlink
	case unix.S_IFCHR:
		mode |= os.ModeDevice | os.ModeCharDevice
	case unix.S_IFBLK:
		mode |= os.ModeDevice
	case unix.S_IFIFO:
		mode |= os.ModeNamedPipe
	case unix.S_IFSOCK:
		mode |= os.ModeSocket
	}
	if m&unix.S_ISUID != 0 {
		mode |= os.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		mode |= os.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		mode |= os.ModeSticky
	}
	return mode
}

// ArchivePath writes a tar of path (its top entry named after its base
// name) to w. As StatPath, a symlink last in path is archived itself, not
// what it points to (docker cp -L asks for the target by name).
func (e *Engine) ArchivePath(ctx context.Context, idOrName, path string, w io.Writer) error {
	return e.archivePath(ctx, idOrName, path, w, false)
}

// ArchiveResolved is ArchivePath with a symlink last in path followed, its
// target archived under path's base name: a builder's COPY --from reads
// its sources so, as dockerd's builders do.
func (e *Engine) ArchiveResolved(ctx context.Context, idOrName, path string, w io.Writer) error {
	return e.archivePath(ctx, idOrName, path, w, true)
}

func (e *Engine) archivePath(ctx context.Context, idOrName, path string, w io.Writer, follow bool) error {
	// The API's cp (follow false) sees the mounts; a copy-up or a
	// build's COPY --from reads the image's content.
	root, rel, err := e.openPathRoot(idOrName, path, !follow)
	if err != nil {
		return err
	}
	defer root.Close()
	fd, err := openLast(root, rel, path, follow)
	if err != nil {
		return notFound(path, idOrName, err)
	}
	defer unix.Close(fd)
	// Entries that vanish during the walk are skipped; nothing is written
	// before the top entry is read. The top entry is named after path
	// (rel may be "." in a mount).
	return archive.TarFd(ctx, fd, path, w)
}

// ExtractToDir unpacks a tar into the directory path of the container, safely
// (nothing lands outside the container's rootfs, even while it runs).
// The rootfs alone is written, without the container's mounts: a build's
// COPY writes into the image's content.
func (e *Engine) ExtractToDir(ctx context.Context, idOrName, path string, r io.Reader) error {
	return e.extractToDir(ctx, idOrName, path, r, false)
}

// PutArchive is ExtractToDir for the API's cp into a container: a path
// inside a -v bind or volume is written in the mount's source, as
// dockerd's, and a read-only one is refused.
func (e *Engine) PutArchive(ctx context.Context, idOrName, path string, r io.Reader) error {
	return e.extractToDir(ctx, idOrName, path, r, true)
}

func (e *Engine) extractToDir(ctx context.Context, idOrName, path string, r io.Reader, mounts bool) error {
	c, err := e.Get(idOrName)
	if err != nil {
		return err
	}
	var root *inroot.Root
	dir := path // in root
	if src, rel, ro, ok := mountFor(c, filepath.Clean("/"+path)); ok && mounts {
		// A path in a -v bind or volume is written there (mountFor).
		if ro {
			return fmt.Errorf("%w: mounted volume is marked read-only", ErrInvalidArgument)
		}
		if root, err = inroot.OpenRoot(src); err != nil {
			return fmt.Errorf("open the mount at %s: %w", path, err)
		}
		dir = rel
	} else if root, _, err = e.openRoot(idOrName); err != nil {
		return err
	}
	defer root.Close()
	fd, err := root.Open(dir, unix.O_PATH)
	if err != nil {
		return notFound(path, idOrName, err)
	}
	var st unix.Stat_t
	err = unix.Fstat(fd, &st)
	unix.Close(fd)
	if err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("%w: extraction point is not a directory", ErrInvalidArgument)
	}
	if _, err := archive.ApplyIn(ctx, root, dir, r, archive.ApplyOptions{Whiteouts: archive.WhiteoutDelete}); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidArgument, err)
	}
	return nil
}

// CommitOptions are the commit's metadata.
type CommitOptions struct {
	Ref, Comment, Author string
	// NoPause leaves the container running during the commit; by default
	// it is frozen, as Docker does (`commit --pause=false`).
	NoPause bool
	// Change, if set, makes the new image's config from the one the
	// container gives (`commit --change`).
	Change func(ocispec.ImageConfig) (ocispec.ImageConfig, error)
}

// Commit makes a new image of the container's changes on top of its image.
// A running container is frozen meanwhile unless opts.NoPause, so that the
// layer is one moment's state; either way the upper layer is read without
// following a symlink (archive.Diff), so nothing outside it is ever read.
func (e *Engine) Commit(ctx context.Context, idOrName string, opts CommitOptions) (img images.Image, err error) {
	c, err := e.Get(idOrName)
	if err != nil {
		return images.Image{}, err
	}
	if c.State.Running && !opts.NoPause {
		release, err := e.pause(ctx, c.ID)
		if err == nil {
			defer func() {
				if rerr := release(); rerr != nil && err == nil {
					err = fmt.Errorf("commit: %w", rerr)
				}
			}()
		} else if cur, gerr := e.Get(c.ID); !exitedUnder(err) && (gerr != nil || cur.State.Running) {
			// A container that stopped meanwhile needs no pause (its
			// cgroup is gone); one still running must not be read unpaused.
			return images.Image{}, fmt.Errorf("commit: %w", err)
		}
	}
	parent, err := e.opts.Images.Get(c.ImageID)
	if err != nil {
		return images.Image{}, err
	}
	rfs, err := e.opts.Images.RootfsOf(c.ID)
	if err != nil {
		return images.Image{}, err
	}
	cfg := parent.Config.Config
	cfg.Env = mergeEnv(cfg.Env, c.Config.Env)
	if c.Config.Cmd != nil {
		cfg.Cmd = c.Config.Cmd
	}
	if c.Config.Entrypoint != nil {
		cfg.Entrypoint = c.Config.Entrypoint
	}
	if c.Config.WorkingDir != "" {
		cfg.WorkingDir = c.Config.WorkingDir
	}
	if c.Config.User != "" {
		cfg.User = c.Config.User
	}
	// The container's labels (the image's and its own) and stop signal are
	// the new image's, as dockerd's commit merges the container's config.
	if len(c.Config.Labels) > 0 {
		cfg.Labels = maps.Clone(cfg.Labels)
		if cfg.Labels == nil {
			cfg.Labels = map[string]string{}
		}
		maps.Copy(cfg.Labels, c.Config.Labels)
	}
	if c.Config.StopSignal != "" {
		cfg.StopSignal = c.Config.StopSignal
	}
	icfg := ocispec.ImageConfig(cfg)
	if opts.Change != nil {
		if icfg, err = opts.Change(icfg); err != nil {
			return images.Image{}, fmt.Errorf("commit: %w", err)
		}
	}
	return e.opts.Images.Commit(ctx, rfs.Upper, parent, icfg, opts.Ref, opts.Comment, opts.Author)
}

// exitedUnder tells whether a pause failed because the container's runtime
// record or cgroup is gone: its process has exited, though the engine may
// not have recorded the exit yet (a commit right after the start of a
// short command; docker-py's CommitTest got a 500 "container does not
// exist"). There is nothing left to freeze. A v1 cgroup removed between
// the freeze's write and its read answers ENODEV (make test, session 26:
// "read .../freezer.state: no such device").
func exitedUnder(pauseErr error) bool {
	return errors.Is(pauseErr, runtime.ErrNotFound) || errors.Is(pauseErr, fs.ErrNotExist) || errors.Is(pauseErr, unix.ENODEV)
}

// Size is what `ps -s` shows of a container: the bytes of the files it
// changed or added (its overlay's upper layer, symlinks not followed) and
// that plus its image's size.
func (e *Engine) Size(idOrName string) (rw, rootfs int64, err error) {
	c, rfs, err := e.rootfsOf(idOrName)
	if err != nil {
		return 0, 0, err
	}
	// Entries that vanish during the walk (a running container) are skipped.
	_ = filepath.WalkDir(rfs.Upper, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			rw += fi.Size()
		}
		return nil
	})
	img, err := e.opts.Images.Get(c.ImageID)
	if err != nil {
		return rw, rw, nil // the image is gone (rmi -f): its size is not known
	}
	return rw, rw + img.Size, nil
}
