package runtime

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
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
