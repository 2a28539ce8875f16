// Package sandbox makes and removes network sandboxes: network namespaces
// bind-mounted on a file (so they outlive any process and can be joined by path,
// as an OCI runtime does), and veth links whose inner end is addressed and
// routed inside such a namespace.
//
// Nothing here knows about bridges, IPAM or firewalls: a driver (bridge today,
// vxlan overlays later) decides names and addresses and calls these functions.
// The functions never move the calling goroutine's thread into another
// namespace: new namespaces are made on a throw-away locked thread, and inner
// links are configured through a netlink handle opened in the namespace.
package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ErrNotNetNS reports that a path exists but is not a mounted network namespace.
var ErrNotNetNS = errors.New("sandbox: not a network namespace")

// Create makes a new network namespace, bind-mounts it on path (creating the
// parent directory) and brings its loopback up. path must not exist yet.
func Create(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create netns %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return fmt.Errorf("create netns %s: %w", path, err)
	}
	f.Close()
	if err := mountNew(path); err != nil {
		os.Remove(path)
		return fmt.Errorf("create netns %s: %w", path, err)
	}
	if err := setLoopbackUp(path); err != nil {
		Remove(path)
		return fmt.Errorf("create netns %s: %w", path, err)
	}
	return nil
}

// mountNew unshares a network namespace on a dedicated OS thread and
// bind-mounts it on path. The thread stays locked when the goroutine ends, so
// the Go runtime destroys it instead of reusing a thread left in the new
// namespace: no restore step that could fail half-way.
func mountNew(path string) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(src, path, "", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("bind mount %s: %w", src, err)
			return
		}
		errc <- nil
	}()
	return <-errc
}

func setLoopbackUp(path string) error {
	h, err := Handle(path)
	if err != nil {
		return err
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo: %w", err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	return nil
}

// IsNetNS reports whether path is a mounted network namespace. A missing path
// is (false, nil).
func IsNetNS(path string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, fmt.Errorf("statfs %s: %w", path, err)
	}
	return st.Type == unix.NSFS_MAGIC, nil
}

// Remove unmounts the namespace bound on path and deletes the file. Links
// inside the namespace disappear with it once no process holds it (a veth
// takes its peer with it). Missing or unmounted paths are fine: Remove is
// idempotent.
func Remove(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil &&
		!errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove netns %s: unmount: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove netns %s: %w", path, err)
	}
	return nil
}

// Handle opens a netlink handle operating inside the namespace at path. The
// caller closes it.
func Handle(path string) (*netlink.Handle, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", path, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netlink handle in %s: %w", path, err)
	}
	return h, nil
}

// Do runs fn on a thread that has joined the namespace at path. Sockets fn
// opens stay in that namespace and may be used from any goroutine afterwards.
// The thread is discarded after fn, never returned to the scheduler.
func Do(path string, fn func() error) error {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", path, err)
	}
	defer ns.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("setns %s: %w", path, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}
