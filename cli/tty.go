package cli

import (
	"errors"
	"io"
	"os"
	"os/signal"
	"sync"

	"github.com/moby/term"
	"golang.org/x/sys/unix"
)

// resizeAndRaw prepares a TTY session: resize gives the remote terminal the
// size of ours, now and on every SIGWINCH, and our stdin (when attached and
// a terminal) goes raw so keys reach the container unprocessed. It returns
// the function that stops following the size and restores the terminal.
func resizeAndRaw(s streams, stdin bool, resize func(height, width uint)) func() {
	stopResize := followSize(s.out, resize)
	restore := makeRaw(s.in, stdin)
	return func() {
		stopResize()
		restore()
	}
}

// followSize calls resize with the size of the terminal out (if it is
// one) now and whenever the window changes, until the returned func is
// called.
func followSize(out io.Writer, resize func(height, width uint)) func() {
	f, ok := out.(*os.File)
	if !ok {
		return func() {}
	}
	send := func() {
		if sz := terminalSize(f); sz[0] > 0 && sz[1] > 0 {
			resize(sz[0], sz[1])
		}
	}
	send()
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, unix.SIGWINCH)
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			case <-ch:
				send()
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			signal.Stop(ch)
			close(quit)
			<-done
		})
	}
}

// terminalSize is the [height, width] of out when it is a terminal, for a
// create request's ConsoleSize; zero otherwise.
func terminalSize(out io.Writer) [2]uint {
	if f, ok := out.(*os.File); ok {
		if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil {
			return [2]uint{uint(ws.Row), uint(ws.Col)}
		}
	}
	return [2]uint{}
}

// makeRaw puts the terminal in (when stdin is attached and in is one) in
// raw mode and returns the function that restores it.
func makeRaw(in io.Reader, stdin bool) func() {
	f, ok := in.(*os.File)
	if !stdin || !ok {
		return func() {}
	}
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return func() {}
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
		return func() {}
	}
	return func() { _ = unix.IoctlSetTermios(fd, unix.TCSETS, old) }
}

// defaultDetachKeys are docker's: ctrl-p, ctrl-q.
const defaultDetachKeys = "ctrl-p,ctrl-q"

// parseDetachKeys checks a --detach-keys value (docker's syntax: a comma
// list of characters and ctrl-KEY); empty is the default.
func parseDetachKeys(s string) ([]byte, error) {
	if s == "" {
		s = defaultDetachKeys
	}
	keys, err := term.ToBytes(s)
	if err != nil {
		return nil, StatusError{Status: "invalid --detach-keys " + s + ": " + err.Error(), Code: 125}
	}
	return keys, nil
}

// copyInput copies the user's input to the attach stream and half-closes
// it at the end. With a TTY the detach keys stop it instead: detached is
// closed then, and the caller leaves the container running.
func copyInput(w io.Writer, closeWrite func() error, in io.Reader, tty bool, keys []byte) (detached <-chan struct{}) {
	d := make(chan struct{})
	if tty {
		in = term.NewEscapeProxy(in, keys)
	}
	go func() {
		_, err := io.Copy(w, in)
		var esc term.EscapeError
		if errors.As(err, &esc) {
			close(d)
			return
		}
		_ = closeWrite()
	}()
	return d
}
