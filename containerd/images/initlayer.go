package images

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"syscall"

	digest "github.com/opencontainers/go-digest"

	"github.com/shoal-project/shoal/containerd/archive"
)

// The init layer of an image: the mount points every container needs and
// the image may lack (/proc, /dev, /sys, /etc/hosts, /etc/hostname,
// /etc/resolv.conf), made once per image as a read-only layer above its
// own, instead of in every container's upper directory by the runtime. On
// this machine's ext4 each new inode costs a scan of the recently deleted
// ones (find_inode_bit, recently_deleted: a fifth of the daemon's CPU while
// 1,000 replicas converged), and creating /etc/hosts in an upper directory
// copies /etc up first. Docker has one per container (its "-init" layer);
// one per image does the same for all of them.
//
// It lives in the directory of the image's top snapshot (snapshots/<chain>/
// init, beside fs), so it goes with that snapshot. A mount point that the
// image has is not shadowed: the layer only adds what is missing, and
// gives a directory it must make in an existing /etc that /etc's owner and
// mode; an /etc that is not a directory (a symlink) is left to the runtime,
// which creates the files where the link leads, as it always did.

// initMounts are the mount points the runtime's default spec needs.
var (
	initDirs  = []string{"proc", "dev", "sys"}
	initFiles = []string{"etc/hosts", "etc/hostname", "etc/resolv.conf"}
)

// initDir is where the init layer of the image whose layers are chain
// (bottom first) lives, made or not.
func (s *Store) initDir(chain []digest.Digest) string {
	return filepath.Join(s.snapshotDir(chain[len(chain)-1]), "init")
}

// initLayer returns the directory of the init layer of the image whose
// layers are chain (bottom first) and whose layer directories are layers
// (layerDirs), making it on first use.
func (s *Store) initLayer(chain []digest.Digest, layers []string) (string, error) {
	dir := s.initDir(chain)
	if exists(dir) {
		return dir, nil
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "init-tmp-")
	if err != nil {
		return "", fmt.Errorf("images: init layer: %w", err)
	}
	defer os.RemoveAll(tmp) // a no-op once renamed into place
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", fmt.Errorf("images: init layer: %w", err)
	}
	if err := fillInitLayer(tmp, layers); err != nil {
		return "", fmt.Errorf("images: init layer: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		if exists(dir) {
			return dir, nil // another start made it meanwhile
		}
		return "", fmt.Errorf("images: init layer: %w", err)
	}
	return dir, nil
}

// fillInitLayer makes in dir what layers (top first) lack of the mount
// points.
func fillInitLayer(dir string, layers []string) error {
	for _, d := range initDirs {
		if _, ok := lookupLayers(layers, d); !ok {
			if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
				return err
			}
		}
	}
	var missing []string
	for _, f := range initFiles {
		if _, ok := lookupLayers(layers, f); !ok {
			missing = append(missing, f)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	etc, ok := lookupLayers(layers, "etc")
	switch {
	case !ok:
		if err := os.Mkdir(filepath.Join(dir, "etc"), 0o755); err != nil {
			return err
		}
	case etc.IsDir():
		// The merged /etc takes this layer's attributes: the image's.
		p := filepath.Join(dir, "etc")
		if err := os.Mkdir(p, 0o755); err != nil {
			return err
		}
		if err := os.Chmod(p, etc.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
			return err
		}
		if st, ok := etc.Sys().(*syscall.Stat_t); ok {
			if err := os.Lchown(p, int(st.Uid), int(st.Gid)); err != nil {
				return err
			}
		}
		defer os.Chtimes(p, etc.ModTime(), etc.ModTime()) // after the files are made in it
	default:
		return nil // a symlink or a file: the runtime follows it, as before
	}
	for _, f := range missing {
		file, err := os.OpenFile(filepath.Join(dir, f), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		file.Close()
	}
	return nil
}

// lookupLayers finds rel (a name, or a name in a top-level directory) in
// the merged view of layers (upperdir-style, top first), as overlayfs
// would: a whiteout hides it, a parent that is not a directory in a layer
// hides what is below, and so does an opaque parent.
func lookupLayers(layers []string, rel string) (fs.FileInfo, bool) {
	parent := path.Dir(rel)
	for _, l := range layers {
		if parent != "." {
			if pst, err := os.Lstat(filepath.Join(l, parent)); err == nil && !pst.IsDir() {
				return nil, false
			}
		}
		st, err := os.Lstat(filepath.Join(l, rel))
		if err == nil {
			if sys, ok := st.Sys().(*syscall.Stat_t); ok && archive.IsWhiteout(sys.Mode, sys.Rdev) {
				return nil, false
			}
			return st, true
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, false
		}
		if parent != "." && archive.IsOpaque(filepath.Join(l, parent)) {
			return nil, false
		}
	}
	return nil, false
}
