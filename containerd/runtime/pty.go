package runtime

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/containerd/inroot"
)

// OpenPty allocates a pseudo-terminal on the host's devpts and returns its
// master and slave. The slave is what CreateOptions.Stdin takes for a
// process.terminal container; whoever holds the master (the shim) owns the
// console.
func OpenPty() (master, slave *os.File, err error) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("console: %w", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("console: unlock pty: %w", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("console: pty number: %w", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("console: %w", err)
	}
	return m, s, nil
}

// OpenPtyIn allocates a pseudo-terminal on the devpts instance of the
// container whose process is pid, so that in the container the slave is
// /dev/pts/N and tty(1) names it (a host pty is no file there). The daemon
// opens what the container's tree holds, so nothing is taken on trust: the
// name is resolved inside the container's root (inroot), the file is first
// opened O_PATH and must be the ptmx of a devpts filesystem before it is
// opened for real, and the slave comes from the master (TIOCGPTPEER), not
// from a name.
func OpenPtyIn(pid int) (master, slave *os.File, err error) {
	return openPtyInRoot(fmt.Sprintf("/proc/%d/root", pid))
}

func openPtyInRoot(dir string) (master, slave *os.File, err error) {
	root, err := inroot.OpenRoot(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("console: %w", err)
	}
	defer root.Close()
	pfd, err := root.Open("/dev/pts/ptmx", unix.O_PATH|unix.O_NOFOLLOW)
	if err != nil {
		return nil, nil, fmt.Errorf("console: %w", err)
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	var fs unix.Statfs_t
	if err := unix.Fstat(pfd, &st); err != nil {
		return nil, nil, fmt.Errorf("console: %w", err)
	}
	if err := unix.Fstatfs(pfd, &fs); err != nil {
		return nil, nil, fmt.Errorf("console: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(st.Rdev) != 5 || unix.Minor(st.Rdev) != 2 || fs.Type != unix.DEVPTS_SUPER_MAGIC {
		return nil, nil, fmt.Errorf("console: the container's /dev/pts/ptmx is not a devpts ptmx")
	}
	mfd, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", pfd), unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("console: %w", err)
	}
	m := os.NewFile(uintptr(mfd), "ptmx")
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("console: unlock pty: %w", err)
	}
	sfd, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(mfd), unix.TIOCGPTPEER, uintptr(unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC))
	if errno != 0 {
		m.Close()
		return nil, nil, fmt.Errorf("console: open pty peer: %w", errno)
	}
	return m, os.NewFile(sfd, "pts"), nil
}

// Resize sets the window size of the terminal f (a pty master or slave);
// the kernel sends SIGWINCH to the terminal's foreground process group.
func Resize(f *os.File, height, width uint16) error {
	if height == 0 || width == 0 {
		return fmt.Errorf("%w: terminal size %dx%d: height and width must be positive", ErrInvalid, height, width)
	}
	if err := unix.IoctlSetWinsize(int(f.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: height, Col: width}); err != nil {
		return fmt.Errorf("resize terminal: %w", err)
	}
	return nil
}
