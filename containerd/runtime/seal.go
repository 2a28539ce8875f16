package runtime

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// The binary that becomes a container's init, and every shim, must not be
// executed through a path that can write the host's file (CVE-2019-5736): a
// container process that runs it, say through an entrypoint
// "#!/proc/self/exe", can reopen /proc/PID/exe for writing once no shoal
// process runs it and replace the host binary. So the init is executed
// through a read-only view of the binary, made once per process; a process
// that was itself executed from one (a shim started by the daemon) reuses
// its own.
//
// The view is, first choice, the binary opened through a private,
// read-only overlayfs mount of its directory that is attached nowhere
// (fsopen/fsmount): no copy, a few syscalls, and no way to make it writable
// (an overlay without an upper layer cannot be written, and no mount
// namespace holds the mount, so nobody can remount it). `shoal runtime`
// makes one per call, so this is on its start path. Where overlayfs or the
// new mount API is missing, it is a copy in a sealed memfd (tens of
// milliseconds for a 23 MB binary) that can never be written, grown or
// shrunk.
var sealed struct {
	once sync.Once
	path string
	file *os.File // kept open for the life of the process
	err  error
}

// allSeals are the seals a sealed binary carries.
const allSeals = unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE

// SealedSelf returns a path that executes a read-only view of this
// process's binary: "/proc/self/exe" when the binary already runs from one,
// else "/proc/self/fd/N" for the view made on the first call (an overlay,
// or a sealed memfd copy). The path is resolved by execve in the child
// before close-on-exec descriptors close, so the descriptor itself never
// reaches the child.
func SealedSelf() (string, error) {
	sealed.once.Do(func() {
		if isSealed("/proc/self/exe") {
			sealed.path = "/proc/self/exe"
			return
		}
		f, err := sealOverlay("/proc/self/exe")
		if err != nil {
			f, err = sealCopy("/proc/self/exe")
		}
		if err != nil {
			sealed.err = err
			return
		}
		sealed.file = f
		sealed.path = fmt.Sprintf("/proc/self/fd/%d", f.Fd())
	})
	return sealed.path, sealed.err
}

// isSealed tells whether path is a memfd whose contents can no longer
// change, or a file of a read-only overlayfs mount (sealOverlay's).
func isSealed(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0); err == nil && seals&allSeals == allSeals {
		return true
	}
	var st unix.Statfs_t
	return unix.Fstatfs(int(f.Fd()), &st) == nil && st.Type == unix.OVERLAYFS_SUPER_MAGIC && st.Flags&unix.ST_RDONLY != 0
}

// sealLower is the empty directory under the binary's in the overlay:
// overlayfs without an upper layer needs two lower ones, which may not
// overlap (so neither an ancestor of the binary's directory nor that
// directory twice). Only root writes under /run; a file in it could not
// hide the binary anyway, the binary's directory being the upper lower layer.
const sealLower = "/run/shoal-seal"

// sealOverlay opens the binary at path (a symlink such as /proc/self/exe is
// resolved) through a new read-only overlayfs mount of its directory that
// is attached nowhere.
func sealOverlay(path string) (*os.File, error) {
	bin, err := os.Readlink(path)
	if err != nil {
		bin = path
	}
	if strings.HasSuffix(bin, " (deleted)") {
		return nil, fmt.Errorf("seal binary: %s was removed", bin)
	}
	if err := os.Mkdir(sealLower, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("seal binary: %w", err)
	}
	if fi, err := os.Lstat(sealLower); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("seal binary: %s is not a directory", sealLower)
	}
	ctx, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("seal binary: fsopen overlay: %w", err)
	}
	defer unix.Close(ctx)
	// ':' and '\' separate and escape lower layers.
	esc := strings.NewReplacer(`\`, `\\`, `:`, `\:`)
	lower := esc.Replace(filepath.Dir(bin)) + ":" + sealLower
	if err := unix.FsconfigSetString(ctx, "lowerdir", lower); err != nil {
		return nil, fmt.Errorf("seal binary: overlay lowerdir=%s: %w", lower, err)
	}
	// xino is irrelevant here; left on, it logs warnings when the layers
	// are on different filesystems.
	_ = unix.FsconfigSetString(ctx, "xino", "off")
	if err := unix.FsconfigCreate(ctx); err != nil {
		return nil, fmt.Errorf("seal binary: overlay: %w", err)
	}
	mnt, err := unix.Fsmount(ctx, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOSUID)
	if err != nil {
		return nil, fmt.Errorf("seal binary: fsmount: %w", err)
	}
	// The open file keeps the mount alive.
	defer unix.Close(mnt)
	fd, err := unix.Openat(mnt, filepath.Base(bin), unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("seal binary: open through overlay: %w", err)
	}
	return highFile(os.NewFile(uintptr(fd), "shoal (read-only overlay)"))
}

// sealCopy copies the file at path into a new memfd and seals it.
func sealCopy(path string) (*os.File, error) {
	src, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("seal binary: %w", err)
	}
	defer src.Close()
	return SealedCopy("shoal", src)
}

// SealedCopy copies src into a new memfd named name, seals it against every
// change and returns it open read-only: a file that can be executed through
// /proc/self/fd/N and that nobody, root included, can ever write, grow or
// shrink.
func SealedCopy(name string, src io.Reader) (*os.File, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("seal binary: memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), name+" (sealed)")
	// io.Copy from a file uses copy_file_range/sendfile: no user copy.
	if _, err := io.Copy(f, src); err != nil {
		f.Close()
		return nil, fmt.Errorf("seal binary: copy: %w", err)
	}
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, allSeals); err != nil {
		f.Close()
		return nil, fmt.Errorf("seal binary: add seals: %w", err)
	}
	// execve refuses a file that is open for writing (ETXTBSY): keep a
	// read-only descriptor of the sealed copy and drop the writable one.
	defer f.Close()
	ro, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", f.Fd()), os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("seal binary: reopen: %w", err)
	}
	return highFile(ro)
}

// highFD is the lowest descriptor number a sealed binary is kept at: above
// every descriptor a child is handed (os/exec's 0-2 and at most four
// ExtraFiles), and below 64, the size of a new process's descriptor table.
// Growing the table of a process with threads, as every Go process has,
// waits for an RCU grace period (expand_fdtable's synchronize_rcu): 8 ms of
// `shoal runtime run`'s 25 when this was 1000.
const highFD = 32

// highFile moves f to a descriptor numbered highFD or above. The binary is
// executed as /proc/self/fd/N, which execve resolves in the child after
// os/exec has moved the child's files to descriptors 0, 1, 2, 3...: a
// sealed binary at a low number (6, in a process that opened few files)
// would by then be one of them (a pipe: EACCES). Where the limit on open
// files is too low for the move, f stays where it is.
func highFile(f *os.File) (*os.File, error) {
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, highFD)
	if err != nil {
		return f, nil
	}
	name := f.Name()
	f.Close()
	return os.NewFile(uintptr(fd), name), nil
}
