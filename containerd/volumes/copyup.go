package volumes

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/shoal-project/shoal/containerd/archive"
)

// Mountpoint is the host directory of volume name (whether it exists or not).
func (s *Store) Mountpoint(name string) string { return s.dataDir(name) }

// NameOf returns the volume whose mountpoint is dir, or "" (also on a nil
// store: an engine without volumes).
func (s *Store) NameOf(dir string) string {
	if s == nil {
		return ""
	}
	if filepath.Base(dir) != "_data" || filepath.Dir(filepath.Dir(dir)) != s.root {
		return ""
	}
	name := filepath.Base(filepath.Dir(dir))
	if _, err := s.Get(name); err != nil {
		return ""
	}
	return name
}

// CopyUp fills an empty volume with a directory of an image: tarOf writes
// the directory as a tar whose entries are under its base name (as
// `docker cp` and the engine's ArchivePath write it). The directory's own
// owner and mode go to the volume's root, as Docker's copy-up does. A
// volume that is not empty is left as it is.
func (s *Store) CopyUp(ctx context.Context, name string, tarOf func(io.Writer) error) error {
	v, err := s.Get(name)
	if err != nil {
		return err
	}
	ents, err := os.ReadDir(v.Mountpoint)
	if err != nil {
		return fmt.Errorf("copy-up into %s: %w", name, err)
	}
	if len(ents) > 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	src, srcW := io.Pipe()
	dst, dstW := io.Pipe()
	tarErr := make(chan error, 1)
	go func() {
		err := tarOf(srcW)
		srcW.CloseWithError(err)
		tarErr <- err
	}()
	var top *tar.Header
	applyErr := make(chan error, 1)
	go func() {
		_, err := archive.Apply(ctx, v.Mountpoint, dst, archive.ApplyOptions{Whiteouts: archive.WhiteoutDelete})
		dst.CloseWithError(err)
		applyErr <- err
	}()
	err = rebase(src, dstW, &top)
	dstW.CloseWithError(err)
	src.CloseWithError(errors.New("copy-up ended"))
	if aerr := <-applyErr; err == nil {
		err = aerr
	}
	if terr := <-tarErr; terr != nil {
		// The target is not in the image (ENOENT): nothing to copy.
		return terr
	}
	if err != nil {
		return fmt.Errorf("copy-up into %s: %w", name, err)
	}
	if top != nil && top.Typeflag == tar.TypeDir {
		if err := os.Lchown(v.Mountpoint, top.Uid, top.Gid); err != nil {
			return fmt.Errorf("copy-up into %s: %w", name, err)
		}
		if err := os.Chmod(v.Mountpoint, os.FileMode(top.Mode).Perm()|modeBits(top.Mode)); err != nil {
			return fmt.Errorf("copy-up into %s: %w", name, err)
		}
	}
	return nil
}

func modeBits(m int64) os.FileMode {
	var out os.FileMode
	if m&0o4000 != 0 {
		out |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		out |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		out |= os.ModeSticky
	}
	return out
}

// rebase copies the tar r to w without its top directory: "base/x" is
// written as "x"; the top entry itself is kept in *top. A target that is a
// file, not a directory, gives an empty archive.
func rebase(r io.Reader, w io.Writer, top **tar.Header) error {
	tr := tar.NewReader(r)
	tw := tar.NewWriter(w)
	first := true
	var base string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if first {
			first = false
			*top = h
			base = strings.TrimSuffix(h.Name, "/") + "/"
			continue
		}
		rest, ok := strings.CutPrefix(h.Name, base)
		if !ok || rest == "" {
			continue
		}
		h.Name = rest
		if h.Typeflag == tar.TypeLink {
			h.Linkname = strings.TrimPrefix(h.Linkname, base)
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
	return tw.Close()
}
