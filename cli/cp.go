package cli

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

	"github.com/spf13/cobra"

	"github.com/shoal-project/shoal/cli/apiclient"
)

// splitCpArg splits a cp operand into container and path. An absolute
// path, a path without a colon, or one starting with "." is local.
func splitCpArg(arg string) (ctr, p string) {
	if filepath.IsAbs(arg) {
		return "", arg
	}
	c, rest, ok := strings.Cut(arg, ":")
	if !ok || strings.HasPrefix(c, ".") {
		return "", arg
	}
	return c, rest
}

func newCpCommand() *cobra.Command {
	var archive bool
	cmd := &cobra.Command{
		Use:   "cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n  shoal cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH",
		Short: "Copy files/folders between a container and the local filesystem",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			srcCtr, srcPath := splitCpArg(args[0])
			dstCtr, dstPath := splitCpArg(args[1])
			switch {
			case srcCtr != "" && dstCtr != "":
				return errors.New("copying between containers is not supported")
			case srcCtr == "" && dstCtr == "":
				return errors.New("must specify at least one container source")
			case srcPath == "" || dstPath == "":
				return errors.New("filepath cannot be empty")
			}
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			if srcCtr != "" {
				return copyFromContainer(cmd, c, srcCtr, srcPath, dstPath)
			}
			return copyToContainer(cmd, c, srcPath, dstCtr, dstPath, archive)
		},
	}
	cmd.Flags().BoolVarP(&archive, "archive", "a", false, "Archive mode (copy all uid/gid information)")
	return cmd
}

// copyFromContainer fetches srcPath as a tar and unpacks it at dst: into
// dst when it is a directory, else as dst itself (the top entry renamed).
func copyFromContainer(cmd *cobra.Command, c *apiClient, ctr, srcPath, dst string) error {
	if !path.IsAbs(srcPath) {
		srcPath = "/" + srcPath
	}
	content, stat, err := c.CopyFromContainer(commandContext(cmd), ctr, srcPath)
	if err != nil {
		return c.apiError(err)
	}
	defer content.Close()
	if dst == "-" {
		_, err := io.Copy(streamsOf(cmd).out, content)
		return err
	}
	srcName := stat.Name
	if srcName == "" {
		srcName = path.Base(srcPath)
	}
	srcIsDir := stat.Mode.IsDir()

	dir, rename := dst, ""
	fi, err := os.Stat(dst)
	switch {
	case err == nil && fi.IsDir():
		// Unpack into the directory under the source's own name.
	case err == nil && srcIsDir:
		return fmt.Errorf("cannot copy a directory to a file: %s", dst)
	case err == nil || errors.Is(err, fs.ErrNotExist):
		if strings.HasSuffix(dst, string(os.PathSeparator)) {
			return fmt.Errorf("destination directory %s does not exist", dst)
		}
		dir, rename = filepath.Dir(dst), filepath.Base(dst)
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return fmt.Errorf("destination directory %s does not exist", dir)
		}
	default:
		return fmt.Errorf("stat %s: %w", dst, err)
	}
	return untarInto(content, dir, srcName, rename)
}

// untarInto unpacks a cp archive below root. Entries under top (the
// source's name) are renamed to rename when it is set. Names that would
// leave root, and writes through symlinks, are refused: the archive comes
// from a container and is not trusted.
func untarInto(r io.Reader, root, top, rename string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		if name == "." {
			continue
		}
		if rename != "" {
			if name == top {
				name = rename
			} else if rest, ok := strings.CutPrefix(name, top+"/"); ok {
				name = rename + "/" + rest
			}
		}
		if path.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("refusing archive entry %q: outside the destination", h.Name)
		}
		target := filepath.Join(root, filepath.FromSlash(name))
		if err := checkNoSymlinkParents(root, name); err != nil {
			return err
		}
		mode := fs.FileMode(h.Mode) & fs.ModePerm
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return fmt.Errorf("create %s: %w", target, err)
			}
			_ = os.Chmod(target, mode|fs.FileMode(h.Mode)&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky))
		case tar.TypeReg:
			if err := writeRegular(target, tr, mode); err != nil {
				return err
			}
		case tar.TypeSymlink:
			_ = os.Remove(target)
			if err := os.Symlink(h.Linkname, target); err != nil {
				return fmt.Errorf("create symlink %s: %w", target, err)
			}
			continue
		case tar.TypeLink:
			link := path.Clean(h.Linkname)
			if rename != "" {
				if link == top {
					link = rename
				} else if rest, ok := strings.CutPrefix(link, top+"/"); ok {
					link = rename + "/" + rest
				}
			}
			if path.IsAbs(link) || strings.HasPrefix(link, "../") || link == ".." {
				return fmt.Errorf("refusing archive hard link %q: outside the destination", h.Linkname)
			}
			_ = os.Remove(target)
			if err := os.Link(filepath.Join(root, filepath.FromSlash(link)), target); err != nil {
				return fmt.Errorf("create hard link %s: %w", target, err)
			}
			continue
		default:
			// Devices, fifos and the like are not recreated on the host.
			continue
		}
		_ = os.Chtimes(target, h.ModTime, h.ModTime)
	}
}

func writeRegular(target string, r io.Reader, mode fs.FileMode) error {
	// Replace, never write through, whatever is there (it may be a symlink).
	_ = os.Remove(target)
	f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("create %s: %w", target, err)
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", target, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", target, err)
	}
	return os.Chmod(target, mode)
}

// checkNoSymlinkParents refuses an entry whose parent directories below
// root include a symlink, which an earlier entry of the archive may have
// planted to redirect writes outside root.
func checkNoSymlinkParents(root, name string) error {
	parts := strings.Split(name, "/")
	cur := root
	for _, p := range parts[:len(parts)-1] {
		cur = filepath.Join(cur, p)
		fi, err := os.Lstat(cur)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("stat %s: %w", cur, err)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("refusing archive entry %q: it would be written through the symlink %s", name, cur)
		}
	}
	return nil
}

// copyToContainer sends src (a local path, or "-" for a tar on stdin) to
// the container: into dst when it is a directory there, else as dst.
func copyToContainer(cmd *cobra.Command, c *apiClient, src, ctr, dst string, keepOwner bool) error {
	ctx := commandContext(cmd)
	if !path.IsAbs(dst) {
		dst = "/" + dst
	}
	if src == "-" {
		err := c.CopyToContainer(ctx, ctr, apiclient.CopyToContainerOptions{DestinationPath: dst, Content: streamsOf(cmd).in})
		return c.apiError(err)
	}
	fi, err := os.Lstat(src)
	if err != nil {
		return err
	}
	dir, name := dst, filepath.Base(src)
	st, err := c.ContainerStatPath(ctx, ctr, dst)
	switch {
	case err != nil && (apiclient.IsConnectionFailed(err) || isDialError(err)):
		return c.apiError(err)
	case err == nil && st.Mode.IsDir():
	case err == nil && fi.IsDir():
		return fmt.Errorf("cannot copy a directory to a file: %s", dst)
	default:
		// Missing (404), a file, or a daemon without HEAD support: write
		// dst itself. A missing container is reported by the PUT.
		if strings.HasSuffix(dst, "/") {
			if err == nil {
				return fmt.Errorf("destination %s is not a directory", dst)
			}
			// Let the daemon report a missing directory (or container).
			break
		}
		dir, name = path.Dir(dst), path.Base(dst)
	}

	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(tarPath(src, name, keepOwner, pw)) }()
	err = c.CopyToContainer(ctx, ctr, apiclient.CopyToContainerOptions{
		DestinationPath: dir, Content: pr, CopyUIDGID: keepOwner,
	})
	pr.CloseWithError(context.Canceled) // ends the writer if the request ended early
	return c.apiError(err)
}

// tarPath writes src (a file or a directory tree) as a tar whose top entry
// is called name. Ownership is kept only with keepOwner (cp -a); otherwise
// entries belong to root, as docker cp makes them.
func tarPath(src, name string, keepOwner bool, w io.Writer) error {
	tw := tar.NewWriter(w)
	if err := writeTree(tw, src, name, keepOwner, nil); err != nil {
		return err
	}
	return tw.Close()
}

// writeTree writes src's tree to tw under name, leaving out what skip says
// (rel is the path below src, "." for src itself; skipDir leaves out a
// directory's whole subtree).
func writeTree(tw *tar.Writer, src, name string, keepOwner bool, skip func(rel string, isDir bool) (skip, skipDir bool, err error)) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		if skip != nil {
			s, sd, err := skip(filepath.ToSlash(rel), d.IsDir())
			if err != nil {
				return err
			}
			if sd {
				return filepath.SkipDir
			}
			if s {
				return nil
			}
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return fmt.Errorf("archive %s: %w", p, err)
		}
		h.Name = path.Join(name, filepath.ToSlash(rel))
		if fi.IsDir() {
			h.Name += "/"
		}
		if !keepOwner {
			h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "", ""
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			if err != nil {
				return fmt.Errorf("archive %s: %w", p, err)
			}
		}
		return nil
	})
}
