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
	return openPtyUnder(root)
}

// openPtyUnder allocates a pseudo-terminal on the devpts mounted on
// /dev/pts under root, with the checks of OpenPtyIn.
func openPtyUnder(root *inroot.Root) (master, slave *os.File, err error) {
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

// newConsole allocates the container's terminal on the devpts just mounted
// under root (CreateConsole) and binds its slave on /dev/console; cfg keeps
// both ends and the slave's name in the container.
func newConsole(root *inroot.Root, cfg *initConfig) error {
	m, s, err := openPtyUnder(root)
	if err != nil {
		return err
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err == nil {
		err = bindConsole(root, fmt.Sprintf("/proc/thread-self/fd/%d", s.Fd()))
	}
	if err != nil {
		m.Close()
		s.Close()
		return fmt.Errorf("console: %w", err)
	}
	cfg.console, cfg.consoleSlave, cfg.consoleName = m, s, fmt.Sprintf("/dev/pts/%d", n)
	return nil
}

// bindConsole bind-mounts the terminal at source on the container's
// /dev/console, a file it makes afresh.
func bindConsole(root *inroot.Root, source string) error {
	pfd, base, err := parentIn(root, "/dev/console")
	if err != nil {
		return err
	}
	_ = unix.Unlinkat(pfd, base, 0)
	unix.Close(pfd)
	fd, err := makeTarget(root, "/dev/console", false, false)
	if err != nil {
		return fmt.Errorf("/dev/console: %w", err)
	}
	defer unix.Close(fd)
	return mountOn(fd, "/dev/console", source, "", unix.MS_BIND, "")
}

// sendConsole hands the console's master to the parent over the init's
// sync socket, in one byte's message, before anything else on it.
func sendConsole(sync *os.File, master *os.File) error {
	if err := unix.Sendmsg(int(sync.Fd()), []byte{consoleByte}, unix.UnixRights(int(master.Fd())), nil, 0); err != nil {
		return fmt.Errorf("send console: %w", err)
	}
	return nil
}

// consoleByte carries the console's master on the sync socket.
const consoleByte = 'c'

// recvConsole reads the first message on the sync socket: the console's
// master, or (the init failed before it sent it) the start of its report,
// which it returns for the caller to read first.
func recvConsole(sync *os.File) (master *os.File, report []byte, err error) {
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(4))
	for {
		n, oobn, _, _, err := unix.Recvmsg(int(sync.Fd()), buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("receive console: %w", err)
		}
		if n == 0 {
			return nil, nil, nil // EOF: what the init left says why
		}
		var fds []int
		if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, m := range msgs {
				if rights, err := unix.ParseUnixRights(&m); err == nil {
					fds = append(fds, rights...)
				}
			}
		}
		if buf[0] != consoleByte || len(fds) != 1 {
			for _, fd := range fds {
				unix.Close(fd)
			}
			return nil, buf[:n], nil
		}
		return os.NewFile(uintptr(fds[0]), "console"), nil, nil
	}
}
