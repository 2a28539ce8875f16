// Package archive applies and produces layer tars safely.
//
// Apply unpacks a tar (plain or gzip) into a directory and guarantees that
// nothing lands outside it: every parent directory is resolved by the
// engine's one in-root resolver (package inroot, openat2 RESOLVE_IN_ROOT), so
// "..", absolute names and symlinks met on the way all resolve inside the
// root, as they would inside a chroot; entries are then created and changed
// relative to that directory's descriptor with the *at system calls and never
// follow a symlink in their last component. That holds while the tree
// changes under it: ApplyIn unpacks into a running container, which may swap
// a directory for a symlink to / at any moment. Names that try to
// climb out of the root with ".." are refused outright, absolute names are
// taken relative to the root (as GNU tar does).
//
// Layers are unpacked "upperdir style": OCI whiteouts become overlayfs
// whiteouts (".wh.x" -> character device 0:0 named x, ".wh..wh..opq" ->
// trusted.overlay.opaque=y on the directory), so that a directory per layer
// can be stacked as overlayfs lower layers. Diff does the reverse for commit.
//
// Apply never cleans up after a failure: the caller owns the target directory
// and removes it, which is why callers unpack into a fresh directory.
package archive

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/containerd/inroot"
)

var (
	// ErrUnsafe is returned for an entry that would write outside the root,
	// a link that points outside it or at nothing, or a refused device node.
	ErrUnsafe = errors.New("archive: unsafe entry")
	// ErrInvalid is returned for a stream that is not a well-formed tar archive
	// (truncated, corrupt, unsupported compression or entry type).
	ErrInvalid = errors.New("archive: invalid archive")
)

// WhiteoutMode says how OCI whiteout entries are applied.
type WhiteoutMode int

const (
	// WhiteoutOverlay writes overlayfs whiteouts into an upperdir-style layer
	// directory: ".wh.x" becomes a character device 0:0 named x and
	// ".wh..wh..opq" sets trusted.overlay.opaque=y on its directory.
	WhiteoutOverlay WhiteoutMode = iota
	// WhiteoutDelete applies the layer onto a merged tree: ".wh.x" removes x,
	// and ".wh..wh..opq" removes every child of its directory that this
	// archive did not create (whatever the tar order).
	WhiteoutDelete
)

// ApplyOptions tune Apply. The zero value is right for image layers.
type ApplyOptions struct {
	// Whiteouts selects how whiteout entries are applied.
	Whiteouts WhiteoutMode
	// AllowDevices lets the archive create character, block and fifo nodes.
	// Only for trusted input: image layers must leave it false.
	AllowDevices bool
	// NoLchown leaves files owned by the caller instead of the tar's uid/gid.
	NoLchown bool
}

const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."
	whiteoutOpaque = ".wh..wh..opq"
	opaqueXattr    = "trusted.overlay.opaque"
	paxXattr       = "SCHILY.xattr."
)

// Apply unpacks the tar stream r (plain or gzip) into root, creating root if
// needed. It returns the number of bytes of regular file content written.
// On error root may hold a partial tree; the caller removes it.
func Apply(ctx context.Context, root string, r io.Reader, opts ApplyOptions) (int64, error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return 0, fmt.Errorf("archive: apply: %w", err)
	}
	rt, err := inroot.OpenRoot(root)
	if err != nil {
		return 0, fmt.Errorf("archive: apply: %w", err)
	}
	defer rt.Close()
	return ApplyIn(ctx, rt, ".", r, opts)
}

// ApplyIn unpacks the tar stream r into the directory dir of root (a
// container's rootfs, say): entry names are taken relative to dir, and
// everything, dir included, is resolved inside root, never outside it, even
// while the tree is being changed. dir must exist.
func ApplyIn(ctx context.Context, root *inroot.Root, dir string, r io.Reader, opts ApplyOptions) (int64, error) {
	zr, err := Decompress(&ctxReader{ctx: ctx, r: r})
	if err != nil {
		return 0, err
	}
	defer zr.Close()
	a := &applier{
		ctx:    ctx,
		opts:   opts,
		root:   root,
		prefix: inroot.Clean(dir),
		buf:    make([]byte, 128<<10),
		cached: -1,
	}
	defer a.dropCache()
	if opts.Whiteouts == WhiteoutDelete {
		a.created = map[string]bool{}
	}
	tr := tar.NewReader(zr)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if cerr := ctx.Err(); cerr != nil {
				return a.size, cerr
			}
			return a.size, fmt.Errorf("%w: truncated or corrupt tar: %v", ErrInvalid, err)
		}
		if err := a.entry(hdr, tr); err != nil {
			if cerr := ctx.Err(); cerr != nil {
				return a.size, cerr
			}
			return a.size, err
		}
	}
	if err := a.finish(); err != nil {
		return a.size, err
	}
	return a.size, nil
}

type dirTime struct {
	rel          string
	atime, mtime time.Time
}

type applier struct {
	ctx  context.Context
	opts ApplyOptions
	root *inroot.Root
	// prefix is the directory entries are relative to, inside root.
	prefix string
	buf    []byte
	size   int64
	dirs   []dirTime
	// opaque lists directories marked opaque, applied after all entries in WhiteoutDelete mode.
	opaque []string
	// created records what this archive made, for opaque directories in WhiteoutDelete mode.
	created map[string]bool
	// cached is a descriptor of the directory cachedRel, the parent of the last
	// entry; tars list siblings together so this saves most path walks. It is
	// dropped whenever anything is removed or replaced.
	cachedRel string
	cached    int
	// stale says the cache may name a removed directory; it is dropped at
	// the next lookup (not at once: the current entry still uses it).
	stale bool
}

func (a *applier) dropCache() {
	if a.cached >= 0 {
		unix.Close(a.cached)
		a.cached = -1
	}
}

// CleanName turns a tar entry name into a path relative to the root:
// leading slashes are dropped and "." or ".." components are resolved
// lexically. A name that climbs above the root is refused.
func CleanName(name string) (string, error) {
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("%w: name %q contains a NUL byte", ErrInvalid, name)
	}
	if name == "" {
		return "", fmt.Errorf("%w: empty name", ErrInvalid)
	}
	p := path.Clean(strings.TrimLeft(name, "/"))
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", fmt.Errorf("%w: %q escapes the root", ErrUnsafe, name)
	}
	return p, nil
}

func (a *applier) entry(hdr *tar.Header, r io.Reader) error {
	if err := a.ctx.Err(); err != nil {
		return err
	}
	rel, err := CleanName(hdr.Name)
	if err != nil {
		return err
	}
	dir, base := path.Split(rel)
	dir = path.Clean(dir)
	if rel == "." {
		dir, base = ".", "."
	}

	if strings.HasPrefix(base, whiteoutPrefix) {
		return a.whiteout(hdr, dir, base)
	}

	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader:
		return nil // global PAX records carry nothing we apply
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		if !a.opts.AllowDevices {
			return fmt.Errorf("%w: %q: device node or fifo refused", ErrUnsafe, hdr.Name)
		}
	case tar.TypeDir, tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse, tar.TypeSymlink, tar.TypeLink:
	default:
		return fmt.Errorf("%w: %q: unsupported entry type %q", ErrInvalid, hdr.Name, hdr.Typeflag)
	}

	if rel == "." {
		if hdr.Typeflag != tar.TypeDir {
			return fmt.Errorf("%w: the root entry %q is not a directory", ErrInvalid, hdr.Name)
		}
		fd, err := a.open(".", false)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return a.meta(hdr, fd, ".", rel, true)
	}

	dfd, err := a.parent(dir, true)
	if err != nil {
		return fmt.Errorf("%w: %q: %w", ErrInvalid, hdr.Name, err)
	}
	var st unix.Stat_t
	exists := unix.Fstatat(dfd, base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil
	isDir := hdr.Typeflag == tar.TypeDir
	if exists && !(isDir && st.Mode&unix.S_IFMT == unix.S_IFDIR) {
		// Anything but dir-over-dir replaces what was there.
		if err := a.remove(dfd, base, st.Mode&unix.S_IFMT == unix.S_IFDIR); err != nil {
			return fmt.Errorf("archive: replace %q: %w", hdr.Name, err)
		}
		exists = false
	}
	if a.created != nil {
		a.created[rel] = true
	}

	switch hdr.Typeflag {
	case tar.TypeDir:
		if !exists {
			if err := unix.Mkdirat(dfd, base, 0o700); err != nil {
				return fmt.Errorf("archive: mkdir %q: %w", hdr.Name, err)
			}
		}
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
		if err := a.file(dfd, base, hdr, r); err != nil {
			return err
		}
	case tar.TypeSymlink:
		// The target is stored as is: it is never followed while unpacking
		// (parents resolve inside the root), so its text cannot escape.
		if hdr.Linkname == "" || strings.IndexByte(hdr.Linkname, 0) >= 0 {
			return fmt.Errorf("%w: %q: bad symlink target %q", ErrInvalid, hdr.Name, hdr.Linkname)
		}
		if err := unix.Symlinkat(hdr.Linkname, dfd, base); err != nil {
			return fmt.Errorf("archive: symlink %q: %w", hdr.Name, err)
		}
	case tar.TypeLink:
		if err := a.hardlink(dfd, base, hdr); err != nil {
			return err
		}
		return nil // a hard link shares its target's metadata
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		mode := uint32(unix.S_IFIFO)
		switch hdr.Typeflag {
		case tar.TypeChar:
			mode = unix.S_IFCHR
		case tar.TypeBlock:
			mode = unix.S_IFBLK
		}
		dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
		if err := unix.Mknodat(dfd, base, mode|0o600, int(dev)); err != nil {
			return fmt.Errorf("archive: mknod %q: %w", hdr.Name, err)
		}
	}
	return a.meta(hdr, dfd, base, rel, isDir)
}

func (a *applier) file(dfd int, base string, hdr *tar.Header, r io.Reader) error {
	fd, err := unix.Openat(dfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("archive: create %q: %w", hdr.Name, err)
	}
	f := os.NewFile(uintptr(fd), hdr.Name)
	defer f.Close()
	n, err := io.CopyBuffer(struct{ io.Writer }{f}, r, a.buf)
	a.size += n
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, tar.ErrHeader) {
			return fmt.Errorf("%w: truncated or corrupt tar at %q: %v", ErrInvalid, hdr.Name, err)
		}
		return fmt.Errorf("archive: write %q: %w", hdr.Name, err)
	}
	return f.Close()
}

func (a *applier) hardlink(dfd int, base string, hdr *tar.Header) error {
	target, err := CleanName(hdr.Linkname)
	if err != nil {
		return fmt.Errorf("hard link %q: %w", hdr.Name, err)
	}
	if target == "." {
		return fmt.Errorf("%w: hard link %q to the root", ErrUnsafe, hdr.Name)
	}
	tdir, tbase := path.Split(target)
	tfd, err := a.open(path.Clean(tdir), false)
	if err != nil {
		return fmt.Errorf("%w: hard link %q: target %q is not in the archive", ErrUnsafe, hdr.Name, hdr.Linkname)
	}
	defer unix.Close(tfd)
	var st unix.Stat_t
	if err := unix.Fstatat(tfd, tbase, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("%w: hard link %q: target %q is not in the archive", ErrUnsafe, hdr.Name, hdr.Linkname)
	}
	if t := st.Mode & unix.S_IFMT; t != unix.S_IFREG && t != unix.S_IFLNK {
		return fmt.Errorf("%w: hard link %q: target %q is not a regular file", ErrUnsafe, hdr.Name, hdr.Linkname)
	}
	if err := unix.Linkat(tfd, tbase, dfd, base, 0); err != nil {
		return fmt.Errorf("archive: link %q: %w", hdr.Name, err)
	}
	return nil
}

// meta applies ownership, mode and xattrs now, and the times now for files
// or at the end for directories (later entries would change them).
func (a *applier) meta(hdr *tar.Header, dfd int, base, rel string, isDir bool) error {
	isLink := hdr.Typeflag == tar.TypeSymlink
	// For the root itself the path is the fd's magic link, which must be
	// followed; otherwise the l* calls act on base without following it.
	p := inroot.FdPath(dfd, base)
	lchown, lsetxattr := unix.Lchown, unix.Lsetxattr
	if base == "." {
		lchown, lsetxattr = unix.Chown, unix.Setxattr
	}
	if !a.opts.NoLchown {
		if err := lchown(p, hdr.Uid, hdr.Gid); err != nil {
			return fmt.Errorf("archive: chown %q: %w", hdr.Name, err)
		}
	}
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, paxXattr)
		if !ok {
			continue
		}
		// overlayfs reads trusted.overlay.* as instructions (redirects,
		// metacopy, opaque); a layer may only express those through whiteouts.
		if strings.HasPrefix(name, "trusted.overlay.") {
			continue
		}
		if err := lsetxattr(p, name, []byte(v), 0); err != nil {
			if errors.Is(err, unix.ENOTSUP) || (isLink && errors.Is(err, unix.EPERM)) {
				continue // the filesystem or the file type cannot hold it
			}
			return fmt.Errorf("archive: xattr %s on %q: %w", name, hdr.Name, err)
		}
	}
	if !isLink {
		// After chown: chown clears set-id bits. Never chmod(2) by name: it
		// follows a symlink the tree may have put there meanwhile.
		if err := inroot.Chmod(dfd, base, uint32(hdr.Mode)&0o7777); err != nil {
			return fmt.Errorf("archive: chmod %q: %w", hdr.Name, err)
		}
	}
	atime := hdr.AccessTime
	if atime.IsZero() {
		atime = hdr.ModTime
	}
	if isDir {
		a.dirs = append(a.dirs, dirTime{rel: rel, atime: atime, mtime: hdr.ModTime})
		return nil
	}
	return setTimes(dfd, base, atime, hdr.ModTime)
}

func setTimes(dfd int, base string, atime, mtime time.Time) error {
	ts := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	if base == "." {
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, inroot.FdPath(dfd, ""), ts, 0); err != nil {
			return fmt.Errorf("archive: set times of the root: %w", err)
		}
		return nil
	}
	if err := unix.UtimesNanoAt(dfd, base, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("archive: set times of %q: %w", base, err)
	}
	return nil
}

func (a *applier) whiteout(hdr *tar.Header, dir, base string) error {
	if base == whiteoutOpaque {
		fd, err := a.open(dir, true)
		if err != nil {
			return fmt.Errorf("%w: %q: %w", ErrInvalid, hdr.Name, err)
		}
		defer unix.Close(fd)
		if a.opts.Whiteouts == WhiteoutDelete {
			a.opaque = append(a.opaque, dir)
			return nil
		}
		// Setxattr, not Lsetxattr: the magic link must be followed to the directory.
		if err := unix.Setxattr(inroot.FdPath(fd, ""), opaqueXattr, []byte("y"), 0); err != nil {
			return fmt.Errorf("archive: mark %q opaque: %w", dir, err)
		}
		return nil
	}
	if strings.HasPrefix(base, whiteoutMeta) {
		return nil // other AUFS metadata (.wh..wh.plnk, .wh..wh.aufs) means nothing here
	}
	name := strings.TrimPrefix(base, whiteoutPrefix)
	if name == "" || name == "." || name == ".." {
		return fmt.Errorf("%w: bad whiteout %q", ErrInvalid, hdr.Name)
	}
	dfd, err := a.parent(dir, true)
	if err != nil {
		return fmt.Errorf("%w: %q: %w", ErrInvalid, hdr.Name, err)
	}
	var st unix.Stat_t
	exists := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil
	if exists {
		if err := a.remove(dfd, name, st.Mode&unix.S_IFMT == unix.S_IFDIR); err != nil {
			return fmt.Errorf("archive: whiteout %q: %w", hdr.Name, err)
		}
	}
	if a.opts.Whiteouts == WhiteoutDelete {
		return nil
	}
	if err := unix.Mknodat(dfd, name, unix.S_IFCHR|0, 0); err != nil {
		return fmt.Errorf("archive: whiteout %q: %w", hdr.Name, err)
	}
	return nil
}

// remove deletes base in dfd; a directory is removed with its contents
// (os.RemoveAll walks with openat and never follows symlinks).
func (a *applier) remove(dfd int, base string, isDir bool) error {
	a.stale = true
	if !isDir {
		return unix.Unlinkat(dfd, base, 0)
	}
	return os.RemoveAll(inroot.FdPath(dfd, base))
}

// parent returns a (cached, do not close) descriptor of directory rel.
func (a *applier) parent(rel string, create bool) (int, error) {
	if a.stale {
		a.dropCache()
		a.stale = false
	}
	if a.cached >= 0 && a.cachedRel == rel {
		return a.cached, nil
	}
	fd, err := a.open(rel, create)
	if err != nil {
		return -1, err
	}
	a.dropCache()
	a.cached, a.cachedRel = fd, rel
	return fd, nil
}

// open returns a new O_PATH descriptor of directory rel (relative to the
// prefix), resolved inside the root; with create, missing directories are
// made (mode 0755, like Docker).
func (a *applier) open(rel string, create bool) (int, error) {
	full := path.Join(a.prefix, rel)
	if !create {
		fd, err := a.root.Open(full, unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			return -1, fmt.Errorf("archive: open directory %q: %w", rel, err)
		}
		return fd, nil
	}
	fd, made, err := a.root.MkdirAll(full, 0o755)
	if a.created != nil {
		// made is relative to the root; created, like entries, to the prefix.
		for _, m := range made {
			if a.prefix == "." {
				a.created[m] = true
			} else if r, ok := strings.CutPrefix(m, a.prefix+"/"); ok {
				a.created[r] = true
			}
		}
	}
	if err != nil {
		return -1, fmt.Errorf("archive: directory %q: %w", rel, err)
	}
	return fd, nil
}

func (a *applier) finish() error {
	a.dropCache()
	for _, dir := range a.opaque {
		if err := a.clearOpaque(dir); err != nil {
			return err
		}
	}
	// Deepest last-listed first, so setting a child's times does not disturb
	// an already-set parent.
	for i := len(a.dirs) - 1; i >= 0; i-- {
		d := a.dirs[i]
		if d.rel == "." {
			fd, err := a.open(".", false)
			if err != nil {
				return err
			}
			err = setTimes(fd, ".", d.atime, d.mtime)
			unix.Close(fd)
			if err != nil {
				return err
			}
			continue
		}
		dir, base := path.Split(d.rel)
		fd, err := a.open(path.Clean(dir), false)
		if err != nil {
			continue // replaced by a later entry
		}
		err = setTimes(fd, base, d.atime, d.mtime)
		unix.Close(fd)
		if err != nil {
			return err
		}
	}
	return nil
}

// clearOpaque removes every child of dir that this archive did not create.
func (a *applier) clearOpaque(dir string) error {
	fd, err := a.open(dir, false)
	if err != nil {
		return nil // replaced by a later entry
	}
	defer unix.Close(fd)
	ents, err := os.ReadDir(inroot.FdPath(fd, ""))
	if err != nil {
		return fmt.Errorf("archive: opaque %q: %w", dir, err)
	}
	for _, e := range ents {
		if a.created[path.Join(dir, e.Name())] {
			continue
		}
		if err := a.remove(fd, e.Name(), e.IsDir()); err != nil {
			return fmt.Errorf("archive: opaque %q: %w", dir, err)
		}
	}
	return nil
}

// ctxReader stops a long copy when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
