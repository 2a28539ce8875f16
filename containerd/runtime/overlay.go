package runtime

import (
	"encoding/json"
	"fmt"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// RootfsOverlayAnnotation carries, as the JSON of an Overlay, a root
// filesystem that the runtime mounts itself, inside the container's mount
// namespace, instead of a rootfs mounted beforehand by the caller.
//
// Why: a mount in the host's namespace is copied by every later
// unshare(CLONE_NEWNS) on the machine and released again by every
// container's detach of its old root; with the container's rootfs mounted
// on the host, each start cost more the more containers ran (a third of the
// kernel's share of a 1,000-container start burst). Mounted by the runtime
// as a detached mount and attached only in the container's namespace, it is
// in no other namespace and goes with the container's last process.
const RootfsOverlayAnnotation = "org.shoal.rootfs.overlay"

// Overlay is an overlayfs mount: its layers, top first, its upper and work
// directories, and options as "key" or "key=value".
type Overlay struct {
	Lower   []string `json:"lower"`
	Upper   string   `json:"upper"`
	Work    string   `json:"work"`
	Options []string `json:"options,omitempty"`
}

// Detached makes the overlay as a mount attached nowhere (fsopen, fsmount)
// and returns its descriptor: the caller attaches it (move_mount) or reads
// through it, and closing the last descriptor of an unattached mount
// unmounts it. Layers are passed one by one (fsconfig "lowerdir+", Linux
// 6.8+), so their number is not bounded by mount(2)'s one page of data.
func (o Overlay) Detached() (*os.File, error) {
	if len(o.Lower) == 0 || o.Upper == "" || o.Work == "" {
		return nil, fmt.Errorf("%w: an overlay needs layers, an upper and a work directory", ErrInvalid)
	}
	fsfd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("fsopen overlay: %w", err)
	}
	defer unix.Close(fsfd)
	set := func(k, v string) error {
		if err := unix.FsconfigSetString(fsfd, k, v); err != nil {
			return fmt.Errorf("overlay %s=%s: %w", k, v, err)
		}
		return nil
	}
	for _, l := range o.Lower {
		if err := set("lowerdir+", l); err != nil {
			return nil, err
		}
	}
	if err := set("upperdir", o.Upper); err != nil {
		return nil, err
	}
	if err := set("workdir", o.Work); err != nil {
		return nil, err
	}
	for _, kv := range o.Options {
		k, v, hasValue := strings.Cut(kv, "=")
		if !hasValue {
			if err := unix.FsconfigSetFlag(fsfd, k); err != nil {
				return nil, fmt.Errorf("overlay %s: %w", k, err)
			}
			continue
		}
		if err := set(k, v); err != nil {
			return nil, err
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return nil, fmt.Errorf("overlay create: %w", err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("fsmount overlay: %w", err)
	}
	return os.NewFile(uintptr(mfd), "rootfs"), nil
}

// rootfsOverlay returns the overlay that spec asks the runtime to mount, if
// any.
func rootfsOverlay(annotations map[string]string) (*Overlay, error) {
	v, ok := annotations[RootfsOverlayAnnotation]
	if !ok {
		return nil, nil
	}
	var o Overlay
	if err := json.Unmarshal([]byte(v), &o); err != nil {
		return nil, fmt.Errorf("%w: annotation %s: %v", ErrInvalid, RootfsOverlayAnnotation, err)
	}
	return &o, nil
}

// RootMount returns a detached copy of the root mount of a running
// container (its rootfs alone, none of the mounts inside it), read and
// written through the same filesystem as the container's own processes.
// The container's init is recognised by its recorded start time, checked
// after its mount namespace is opened, so a pid reused by another process
// is never entered.
func (r *Runtime) RootMount(id string) (*os.File, error) {
	st, err := r.load(id)
	if err != nil {
		return nil, err
	}
	if st.Pid <= 0 {
		return nil, fmt.Errorf("root of %s: %w: not running", id, ErrState)
	}
	ns, err := os.Open("/proc/" + strconv.Itoa(st.Pid) + "/ns/mnt")
	if err != nil {
		return nil, fmt.Errorf("root of %s: %w: not running", id, ErrState)
	}
	defer ns.Close()
	if !alive(st.Pid, st.StartTime) {
		return nil, fmt.Errorf("root of %s: %w: not running", id, ErrState)
	}
	type result struct {
		fd  int
		err error
	}
	done := make(chan result, 1)
	go func() {
		// This thread enters the container's mount namespace and is never
		// unlocked: it ends with this goroutine, and no other goroutine
		// ever runs in that namespace.
		goruntime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			done <- result{-1, fmt.Errorf("unshare fs: %w", err)}
			return
		}
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNS); err != nil {
			done <- result{-1, fmt.Errorf("enter mount namespace: %w", err)}
			return
		}
		// setns made this thread's root the namespace's root mount, which
		// pivot_root made the container's rootfs.
		fd, err := unix.OpenTree(unix.AT_FDCWD, "/", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
		if err != nil {
			err = fmt.Errorf("copy root mount: %w", err)
		}
		done <- result{fd, err}
	}()
	res := <-done
	if res.err != nil {
		return nil, fmt.Errorf("root of %s: %w", id, res.err)
	}
	return os.NewFile(uintptr(res.fd), "rootfs"), nil
}
