package archive

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Diff writes the overlayfs upperdir as an OCI layer tar to w: character
// devices 0:0 become ".wh.NAME" entries and directories marked
// trusted.overlay.opaque=y are followed by a ".wh..wh..opq" entry. Other
// trusted.overlay.* attributes are overlayfs bookkeeping and are dropped.
// The upperdir must not be in use by a mounted overlay that is being written.
func Diff(ctx context.Context, upperdir string, w io.Writer) error {
	return writeTar(ctx, upperdir, w, true)
}

// TarDir writes the tree under dir as a tar to w, names relative to dir
// (directories end in "/"), with ownership, modes, mtimes, xattrs and hard
// links preserved. Nothing is converted: this is for `cp` and `export`.
// If dir is not a directory, the tar holds that one file under its base name.
func TarDir(ctx context.Context, dir string, w io.Writer) error {
	return writeTar(ctx, dir, w, false)
}

func writeTar(ctx context.Context, root string, w io.Writer, overlay bool) error {
	tw := tar.NewWriter(w)
	t := &tarWriter{ctx: ctx, tw: tw, overlay: overlay, links: map[[2]uint64]string{}, buf: make([]byte, 128<<10)}
	fi, err := os.Lstat(root)
	if err != nil {
		return fmt.Errorf("archive: tar %s: %w", root, err)
	}
	if !fi.IsDir() {
		if err := t.add(root, filepath.Base(root)); err != nil {
			return err
		}
		return tw.Close()
	}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		return t.add(p, filepath.ToSlash(rel))
	})
	if err != nil {
		return fmt.Errorf("archive: tar %s: %w", root, err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("archive: tar %s: %w", root, err)
	}
	return nil
}

type tarWriter struct {
	ctx     context.Context
	tw      *tar.Writer
	overlay bool
	links   map[[2]uint64]string // (dev, inode) of a multiply linked file -> first name written
	buf     []byte
}

func (t *tarWriter) add(p, name string) error {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return fmt.Errorf("stat %s: %w", p, err)
	}
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
		if t.overlay && st.Rdev == 0 {
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
		target, err := os.Readlink(p)
		if err != nil {
			return fmt.Errorf("readlink %s: %w", p, err)
		}
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
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
	opaque, err := t.xattrs(p, hdr)
	if err != nil {
		return err
	}
	if err := t.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("write header %s: %w", name, err)
	}
	if hdr.Typeflag == tar.TypeReg && hdr.Size > 0 {
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("open %s: %w", p, err)
		}
		_, err = io.CopyBuffer(t.tw, io.LimitReader(f, hdr.Size), t.buf)
		f.Close()
		if err != nil {
			return fmt.Errorf("copy %s: %w", p, err)
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
		n, err := unix.Llistxattr(p, buf)
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
		n, err := unix.Lgetxattr(p, name, buf)
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
