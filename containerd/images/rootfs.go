package images

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/containerd/atomicfile"
	"github.com/shoal-project/shoal/containerd/runtime"
)

// Rootfs is a container's root filesystem: the image's layer snapshots,
// shared read-only, under the container's own upper and work directories.
type Rootfs struct {
	// Lower are the layer directories, top layer first (overlayfs order).
	Lower []string
	// Upper receives the container's changes; Work is overlayfs' work dir.
	Upper, Work string
	// Volatile mounts the overlay with "volatile", for a container whose
	// changes are thrown away when it ends (--rm): nothing written to the
	// upper layer is ever synced, neither the container's own fsyncs nor
	// the sync of the whole upper file system that the unmount of an
	// overlay otherwise does (half a millisecond of a quiet disk, and a
	// flush of every other writer's dirty data on a busy one). After a
	// crash the kernel refuses to mount such an upper layer again; a
	// container with --rm is removed then, not mounted again. Mount clears
	// the kernel's mark of an earlier volatile mount (work/work/incompat/
	// volatile), which a clean unmount leaves too: the caller mounts a
	// volatile rootfs again only if no crash came between (a daemon whose
	// mount namespace ended while its container ran, say).
	Volatile bool
}

// Overlay options that keep upperdirs diffable by archive.Diff: no inode
// index, no redirect xattrs (renamed lower dirs are copied instead), no
// metadata-only copy-up. redirect_dir=nofollow also stops overlayfs from
// following a redirect xattr smuggled into a layer.
const overlayFlags = "index=off,redirect_dir=nofollow,metacopy=off"

// Options is the overlay mount data for this rootfs.
func (r Rootfs) Options() string {
	return fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s,%s", strings.Join(r.Lower, ":"), r.Upper, r.Work, r.flags())
}

func (r Rootfs) flags() string {
	if r.Volatile {
		return overlayFlags + ",volatile"
	}
	return overlayFlags
}

// Mount mounts the rootfs on target. The classic mount(2) data is limited
// to one page; when many layers do not fit, the layers are passed one by one
// through the new mount API (fsconfig "lowerdir+", Linux 6.8+).
func (r Rootfs) Mount(target string) error {
	ov, err := r.Overlay()
	if err != nil {
		return fmt.Errorf("mount %s: %w", target, err)
	}
	if opts := r.Options(); len(opts) < os.Getpagesize()-1 {
		if err := unix.Mount("overlay", target, "overlay", 0, opts); err != nil {
			return fmt.Errorf("images: mount overlay on %s: %w", target, err)
		}
		return nil
	}
	if err := mountDetached(ov, target); err != nil {
		return fmt.Errorf("images: mount overlay (%d layers) on %s: %w", len(r.Lower), target, err)
	}
	return nil
}

// mountDetached mounts ov through the new mount API, one layer at a time.
func mountDetached(ov runtime.Overlay, target string) error {
	f, err := ov.Detached()
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.MoveMount(int(f.Fd()), "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount: %w", err)
	}
	return nil
}

// Overlay describes the rootfs for a runtime that mounts it itself, in the
// container's own mount namespace (runtime.RootfsOverlayAnnotation), after
// the same preparation as Mount.
func (r Rootfs) Overlay() (runtime.Overlay, error) {
	if len(r.Lower) == 0 {
		return runtime.Overlay{}, fmt.Errorf("images: rootfs: %w: no layers", ErrInvalid)
	}
	if r.Volatile {
		if err := os.RemoveAll(filepath.Join(r.Work, "work", "incompat", "volatile")); err != nil {
			return runtime.Overlay{}, fmt.Errorf("images: rootfs: clear the volatile mark: %w", err)
		}
	}
	return runtime.Overlay{Lower: r.Lower, Upper: r.Upper, Work: r.Work, Options: strings.Split(r.flags(), ",")}, nil
}

// rootfsRecord is containers-rootfs/<id>/rootfs.json: what the container
// uses, so that Remove and garbage collection leave it alone.
type rootfsRecord struct {
	Image string          `json:"image"`
	Chain []digest.Digest `json:"chain"`
}

var containerIDRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`) })

func (s *Store) rootfsDir(id string) (string, error) {
	if !containerIDRE().MatchString(id) {
		return "", fmt.Errorf("images: %w: bad container ID %q", ErrInvalid, id)
	}
	return filepath.Join(s.root, "containers-rootfs", id), nil
}

// PrepareRootfs makes the root filesystem of container id from img:
// ROOT/containers-rootfs/<id>/{upper,work}, over the image's snapshots
// (unpacked now from the content store if missing). A second call for the
// same id fails with ErrConflict. The container uses the image until
// RemoveRootfs.
func (s *Store) PrepareRootfs(ctx context.Context, containerID string, img Image) (Rootfs, error) {
	return s.prepareRootfs(ctx, containerID, img, true)
}

// PrepareEphemeralRootfs is PrepareRootfs for a container that is removed
// when it ends (--rm): its record is not synced to the disk. After a crash
// of the machine such a container is removed, not started again, and what
// the crash kept of its record matters no more than the record itself.
func (s *Store) PrepareEphemeralRootfs(ctx context.Context, containerID string, img Image) (Rootfs, error) {
	return s.prepareRootfs(ctx, containerID, img, false)
}

func (s *Store) prepareRootfs(ctx context.Context, containerID string, img Image, durable bool) (Rootfs, error) {
	dir, err := s.rootfsDir(containerID)
	if err != nil {
		return Rootfs{}, err
	}
	s.useStore()
	defer s.doneWithStore()
	s.mu.Lock()
	e := s.images[img.ID]
	s.mu.Unlock()
	if e == nil {
		return Rootfs{}, fmt.Errorf("%w: %s", ErrNotFound, img.ID)
	}
	if len(e.chain) == 0 {
		return Rootfs{}, fmt.Errorf("images: %w: image %s has no layers", ErrInvalid, short(e.id))
	}
	for i, c := range e.chain {
		if err := s.ensureSnapshot(ctx, e.config.RootFS.DiffIDs[i], c); err != nil {
			return Rootfs{}, err
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return Rootfs{}, fmt.Errorf("%w: rootfs of container %s already exists", ErrConflict, containerID)
		}
		return Rootfs{}, fmt.Errorf("images: prepare rootfs: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(dir)
		}
	}()
	rec, _ := json.Marshal(rootfsRecord{Image: e.id, Chain: e.chain})
	r := Rootfs{Upper: filepath.Join(dir, "upper"), Work: filepath.Join(dir, "work")}
	for _, d := range []string{r.Upper, r.Work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return Rootfs{}, fmt.Errorf("images: prepare rootfs: %w", err)
		}
	}
	write := atomicfile.WriteFile
	if !durable {
		write = atomicfile.Replace
	}
	if err := write(filepath.Join(dir, "rootfs.json"), rec, 0o600); err != nil {
		return Rootfs{}, fmt.Errorf("images: prepare rootfs: %w", err)
	}
	// The image's init layer on top of its own (initlayer.go). Without one
	// (it could not be made) the runtime makes the mount points in the
	// upper directory, as it always could.
	layers := s.layerDirs(e.chain)
	if init, err := s.initLayer(e.chain, layers); err == nil {
		r.Lower = append(r.Lower, init)
	}
	r.Lower = append(r.Lower, layers...)
	ok = true
	return r, nil
}

// RootfsOf returns the rootfs PrepareRootfs made for the container (after a
// daemon restart, say).
func (s *Store) RootfsOf(containerID string) (Rootfs, error) {
	dir, err := s.rootfsDir(containerID)
	if err != nil {
		return Rootfs{}, err
	}
	b, err := os.ReadFile(filepath.Join(dir, "rootfs.json"))
	if err != nil {
		return Rootfs{}, fmt.Errorf("%w: rootfs of container %s: %v", ErrNotFound, containerID, err)
	}
	var rec rootfsRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return Rootfs{}, fmt.Errorf("images: rootfs of container %s: %w", containerID, err)
	}
	r := Rootfs{Upper: filepath.Join(dir, "upper"), Work: filepath.Join(dir, "work")}
	if len(rec.Chain) > 0 && exists(s.initDir(rec.Chain)) {
		r.Lower = append(r.Lower, s.initDir(rec.Chain))
	}
	r.Lower = append(r.Lower, s.layerDirs(rec.Chain)...)
	return r, nil
}

// layerDirs are the directories of the layers chain (bottom first), top
// first, as overlayfs's lowerdir lists them.
func (s *Store) layerDirs(chain []digest.Digest) []string {
	dirs := make([]string, 0, len(chain))
	for i := len(chain) - 1; i >= 0; i-- {
		dirs = append(dirs, s.snapshotFS(chain[i]))
	}
	return dirs
}

// RemoveRootfs deletes the container's upper and work directories (the
// caller unmounts first) and the snapshots nothing uses any more. Removing a
// rootfs that does not exist is not an error.
func (s *Store) RemoveRootfs(ctx context.Context, containerID string) error {
	trash, err := s.DetachRootfs(ctx, containerID)
	if trash != "" {
		if rerr := os.RemoveAll(trash); rerr != nil && err == nil {
			err = fmt.Errorf("images: remove rootfs of %s: %w", containerID, rerr)
		}
	}
	return err
}

// DetachRootfs is RemoveRootfs that leaves the deletion of the upper and
// work directories to the caller: they are moved under the store's tmp/
// (emptied when the store opens, should the caller not get to it), and
// the path returned ("" when there was nothing) is for the caller to
// remove once it is not in a hurry. The container's rootfs is gone when it
// returns: a new one of the same id can be made, and it pins no snapshot.
func (s *Store) DetachRootfs(ctx context.Context, containerID string) (string, error) {
	dir, err := s.rootfsDir(containerID)
	if err != nil {
		return "", err
	}
	// What the rootfs used: if its images still use all of it, removing
	// it frees nothing, and the collection (a read of every container's
	// record, of the content store and of the snapshots) can be skipped.
	var rec rootfsRecord
	b, err := os.ReadFile(filepath.Join(dir, "rootfs.json"))
	known := err == nil && json.Unmarshal(b, &rec) == nil
	// Drop the record first: a half-removed directory must not pin snapshots.
	if err := os.Remove(filepath.Join(dir, "rootfs.json")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("images: remove rootfs of %s: %w", containerID, err)
	}
	trash := filepath.Join(s.root, "tmp", "rootfs-"+containerID+"-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	switch err := os.Rename(dir, trash); {
	case errors.Is(err, fs.ErrNotExist):
		trash = ""
	case err != nil:
		// Not movable (it should be: same filesystem): removed here.
		trash = ""
		if err := os.RemoveAll(dir); err != nil {
			return "", fmt.Errorf("images: remove rootfs of %s: %w", containerID, err)
		}
	}
	if known && !s.gcPending.Load() && s.chainKept(rec.Chain) {
		return trash, nil
	}
	return trash, s.collect()
}

// chainKept reports whether every snapshot of chain is kept without any
// container's rootfs: by an image or a pin.
func (s *Store) chainKept(chain []digest.Digest) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := map[digest.Digest]bool{}
	for _, e := range s.images {
		for _, c := range e.chain {
			kept[c] = true
		}
	}
	for c := range s.pins {
		kept[c] = true
	}
	for _, c := range chain {
		if !kept[c] {
			return false
		}
	}
	return true
}

func (s *Store) rootfsRecords() map[string]rootfsRecord {
	out := map[string]rootfsRecord{}
	ents, _ := os.ReadDir(filepath.Join(s.root, "containers-rootfs"))
	for _, ent := range ents {
		b, err := os.ReadFile(filepath.Join(s.root, "containers-rootfs", ent.Name(), "rootfs.json"))
		if err != nil {
			continue
		}
		var rec rootfsRecord
		if json.Unmarshal(b, &rec) == nil {
			out[ent.Name()] = rec
		}
	}
	return out
}

// rootfsUsers maps image IDs to the containers whose rootfs uses them.
func (s *Store) rootfsUsers() map[string][]string {
	out := map[string][]string{}
	for id, rec := range s.rootfsRecords() {
		out[rec.Image] = append(out[rec.Image], id)
	}
	return out
}

// Unmount unmounts a rootfs mounted by Rootfs.Mount; not mounted is not an error.
func Unmount(target string) error {
	if err := unix.Unmount(target, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("images: unmount %s: %w", target, err)
	}
	return nil
}
