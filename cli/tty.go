package cli

import (
	"os"

	"golang.org/x/sys/unix"
)

// resizeAndRaw prepares a TTY session: resize gives the remote terminal
// the size of ours, and our stdin (when attached and a terminal) goes raw so
// keys reach the container unprocessed. It returns the function that
// restores the terminal, or nil when nothing was changed.
func resizeAndRaw(s streams, stdin bool, resize func(height, width uint)) func() {
	if f, ok := s.out.(*os.File); ok {
		if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil && ws.Row > 0 {
			resize(uint(ws.Row), uint(ws.Col))
		}
	}
	if !stdin {
		return nil
	}
	f, ok := s.in.(*os.File)
	if !ok {
		return nil
	}
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil
	}
	raw := *old
	// cfmakeraw(3).
	raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	raw.Oflag &^= unix.OPOST
	raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	raw.Cflag &^= unix.CSIZE | unix.PARENB
	raw.Cflag |= unix.CS8
	raw.Cc[unix.VMIN] = 1
	raw.Cc[unix.VTIME] = 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &raw); err != nil {
		return nil
	}
	return func() { _ = unix.IoctlSetTermios(fd, unix.TCSETS, old) }
}
