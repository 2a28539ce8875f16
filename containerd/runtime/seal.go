package runtime

import (
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// The binary that becomes a container's init, and every shim, must not be
// the host's file (CVE-2019-5736): a container process that runs it, say
// through an entrypoint "#!/proc/self/exe", can reopen /proc/PID/exe for
// writing once no shoal process runs it and replace the host binary. So the
// init is executed from a sealed memfd: a copy that can never be written,
// grown or shrunk. The copy is made once per process; a process that was
// itself executed from a sealed copy (a shim started by the daemon) reuses
// its own.
var sealed struct {
	once sync.Once
	path string
	file *os.File // kept open for the life of the process
	err  error
}

// allSeals are the seals a sealed binary carries.
const allSeals = unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE

// SealedSelf returns a path that executes a sealed, read-only copy of this
// process's binary: "/proc/self/exe" when the binary already is one, else
// "/proc/self/fd/N" for a memfd copy made on the first call. The path is
// resolved by execve in the child before close-on-exec descriptors close,
// so the memfd itself never reaches the child.
func SealedSelf() (string, error) {
	sealed.once.Do(func() {
		if isSealed("/proc/self/exe") {
			sealed.path = "/proc/self/exe"
			return
		}
		f, err := sealCopy("/proc/self/exe")
		if err != nil {
			sealed.err = err
			return
		}
		sealed.file = f
		sealed.path = fmt.Sprintf("/proc/self/fd/%d", f.Fd())
	})
	return sealed.path, sealed.err
}

// isSealed tells whether path is a memfd whose contents can no longer change.
func isSealed(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
	return err == nil && seals&allSeals == allSeals
}

// sealCopy copies the file at path into a new memfd and seals it.
func sealCopy(path string) (*os.File, error) {
	src, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("seal binary: %w", err)
	}
	defer src.Close()
	fd, err := unix.MemfdCreate("shoal", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("seal binary: memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "shoal (sealed)")
	// io.Copy between two files uses copy_file_range/sendfile: no user copy.
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
	return ro, nil
}
