package archive

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/containerd/inroot"
)

// Diff writes the overlayfs upperdir as an OCI layer tar to w: character
// devices 0:0 become ".wh.NAME" entries and directories marked
// trusted.overlay.opaque=y are followed by a ".wh..wh..opq" entry. Other
// trusted.overlay.* attributes are overlayfs bookkeeping and are dropped.
// The upperdir may be written meanwhile (commit --pause=false): the walk
// never follows a symlink, so what it reads is always inside upperdir.
func Diff(ctx context.Context, upperdir string, w io.Writer) error {
	return tarDir(ctx, upperdir, w, true)
}

// TarDir writes the tree under dir as a tar to w, names relative to dir
// (directories end in "/"), with ownership, modes, mtimes, xattrs and hard
// links preserved. Nothing is converted. If dir is not a directory, the tar
// holds that one file under its base name.
func TarDir(ctx context.Context, dir string, w io.Writer) error {
	return tarDir(ctx, dir, w, false)
}

func tarDir(ctx context.Context, dir string, w io.Writer, overlay bool) error {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("archive: tar %s: %w", dir, err)
	}
	defer unix.Close(fd)
	if err := writeTar(ctx, fd, filepath.Base(dir), false, w, overlay); err != nil {
		return fmt.Errorf("archive: tar %s: %w", dir, err)
	}
	return nil
}

// TarFd writes what fd (O_PATH, a symlink itself with O_NOFOLLOW) has open
// as a tar to w under the base name of name: a file as one entry, a
// directory as "base/" then its tree as "base/...", as `docker cp` does.
// The tree may change meanwhile (a running container): every entry below
// it is opened relative to its parent's descriptor without following a
// symlink, so nothing outside the tree is ever read.
func TarFd(ctx context.Context, fd int, name string, w io.Writer) error {
	base := path.Base(path.Clean("/" + name))
	if base == "/" {
		base = "."
	}
	if err := writeTar(ctx, fd, base, true, w, false); err != nil {
		return fmt.Errorf("archive: tar %q: %w", name, err)
	}
	return nil
}

// writeTar archives the file open (O_PATH) as start: a non-directory as one
// entry named top; a directory's tree, preceded by its own entry top+"/"
// when withTop.
func writeTar(ctx context.Context, start int, top string, withTop bool, w io.Writer, overlay bool) error {
	tw := tar.NewWriter(w)
	t := &tarWriter{ctx: ctx, tw: tw, overlay: overlay, links: map[[2]uint64]string{}, buf: make([]byte, 128<<10)}
	var st unix.Stat_t
	if err := unix.Fstat(start, &st); err != nil {
		return err
	}
	prefix := ""
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		if err := t.add(start, &st, top); err != nil {
			return err
		}
		return tw.Close()
	case withTop:
		if err := t.add(start, &st, top); err != nil {
			return err
		}
		prefix = top + "/"
	}
	if err := t.walk(start, prefix); err != nil {
		return err
	}
	return tw.Close()
}

type tarWriter struct {
	ctx     context.Context
	tw      *tar.Writer
	overlay bool
	links   map[[2]uint64]string // (dev, inode) of a multiply linked file -> first name written
	buf     []byte
}

// walk archives the children of the directory open as dir, in name order,
// named prefix+name. Each child is opened O_PATH|O_NOFOLLOW relative to dir
// and everything else is read through that descriptor: a name swapped for
// a symlink meanwhile is archived as the symlink, never followed.
func (t *tarWriter) walk(dir int, prefix string) error {
	rfd, err := unix.Openat(dir, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open directory %q: %w", prefix, err)
	}
	f := os.NewFile(uintptr(rfd), prefix)
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return fmt.Errorf("read directory %q: %w", prefix, err)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := t.ctx.Err(); err != nil {
			return err
		}
		fd, err := unix.Openat(dir, n, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) {
			continue // removed since the directory was read
		}
		if err != nil {
			return fmt.Errorf("open %q: %w", prefix+n, err)
		}
		var st unix.Stat_t
		err = unix.Fstat(fd, &st)
		if err == nil {
			err = t.add(fd, &st, prefix+n)
		}
		if err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			err = t.walk(fd, prefix+n+"/")
		}
		unix.Close(fd)
		if err != nil {
			return err
		}
	}
	return nil
}

// add writes the entry of the file open (O_PATH, not followed) as fd.
func (t *tarWriter) add(fd int, st *unix.Stat_t, name string) error {
	mtime := time.Unix(st.Mtim.Unix()).Truncate(time.Second)
	hdr := &tar.Header{
		Name:    name,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: mtime,
		Format:  tar.FormatPAX,
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		if t.overlay && IsWhiteout(st.Mode, st.Rdev) {
			dir, base := path.Split(name)
			return t.tw.WriteHeader(&tar.Header{
				Name: dir + whiteoutPrefix + base, Typeflag: tar.TypeReg,
				ModTime: mtime, Format: tar.FormatPAX,
			})
		}
		hdr.Typeflag = tar.TypeChar
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	case unix.S_IFBLK:
		hdr.Typeflag = tar.TypeBlock
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	case unix.S_IFSOCK:
		return nil // sockets cannot be archived; Docker skips them too
	case unix.S_IFLNK:
		// An empty path reads the link the O_PATH descriptor itself holds.
		buf := make([]byte, unix.PathMax)
		n, err := unix.Readlinkat(fd, "", buf)
		if err != nil {
			return fmt.Errorf("readlink %q: %w", name, err)
		}
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, string(buf[:n])
	case unix.S_IFDIR:
		hdr.Typeflag, hdr.Name = tar.TypeDir, name+"/"
	case unix.S_IFREG:
		hdr.Typeflag, hdr.Size = tar.TypeReg, st.Size
		if st.Nlink > 1 {
			key := [2]uint64{st.Dev, st.Ino}
			if first, ok := t.links[key]; ok {
				hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
			} else {
				t.links[key] = name
			}
		}
	}
	opaque := false
	if hdr.Typeflag != tar.TypeSymlink {
		// Through the descriptor's magic link: the very inode opened. A
		// symlink's own xattrs are not kept (Docker keeps none either).
		var err error
		if opaque, err = t.xattrs(inroot.FdPath(fd, ""), hdr); err != nil {
			return err
		}
	}
	if err := t.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("write header %s: %w", name, err)
	}
	if hdr.Typeflag == tar.TypeReg && hdr.Size > 0 {
		// Reopened through the magic link: the same inode, readable.
		f, err := os.Open(inroot.FdPath(fd, ""))
		if err != nil {
			return fmt.Errorf("open %s: %w", name, err)
		}
		n, err := io.CopyBuffer(t.tw, io.LimitReader(f, hdr.Size), t.buf)
		f.Close()
		if err == nil && n < hdr.Size {
			err = fmt.Errorf("the file shrank while it was read")
		}
		if err != nil {
			return fmt.Errorf("copy %s: %w", name, err)
		}
	}
	if opaque {
		return t.tw.WriteHeader(&tar.Header{
			Name: name + "/" + whiteoutOpaque, Typeflag: tar.TypeReg,
			ModTime: mtime, Format: tar.FormatPAX,
		})
	}
	return nil
}

// xattrs copies p's extended attributes into hdr and reports, in overlay
// mode, whether p is an opaque directory.
func (t *tarWriter) xattrs(p string, hdr *tar.Header) (opaque bool, err error) {
	names, err := listXattrs(p)
	if err != nil {
		return false, err
	}
	for _, n := range names {
		if t.overlay && strings.HasPrefix(n, "trusted.overlay.") {
			if n == opaqueXattr && hdr.Typeflag == tar.TypeDir {
				v, _ := getXattr(p, n)
				opaque = string(v) == "y"
			}
			continue
		}
		v, err := getXattr(p, n)
		if err != nil {
			if errors.Is(err, unix.ENODATA) {
				continue
			}
			return false, fmt.Errorf("xattr %s of %s: %w", n, p, err)
		}
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = map[string]string{}
		}
		hdr.PAXRecords[paxXattr+n] = string(v)
	}
	return opaque, nil
}

func listXattrs(p string) ([]string, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Listxattr(p, buf)
		if errors.Is(err, unix.ERANGE) {
			buf = make([]byte, len(buf)*4)
			continue
		}
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("list xattrs of %s: %w", p, err)
		}
		var out []string
		for _, s := range strings.Split(string(buf[:n]), "\x00") {
			if s != "" {
				out = append(out, s)
			}
		}
		return out, nil
	}
}

func getXattr(p, name string) ([]byte, error) {
	buf := make([]byte, 128)
	for {
		n, err := unix.Getxattr(p, name, buf)
		if errors.Is(err, unix.ERANGE) {
			buf = make([]byte, len(buf)*4)
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}
