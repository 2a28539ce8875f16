package daemon

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// ErrSocketInUse is returned by Run when another daemon answers on the socket.
var ErrSocketInUse = errors.New("another daemon is already listening")

// listen opens the API socket with mode 0660 (root and the socket's group,
// as dockerd). A socket file left by a crashed daemon is replaced; one that
// something still answers on is refused, so a second daemon started on the
// same socket by mistake cannot steal it from a live one.
func listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o711); err != nil {
		return nil, fmt.Errorf("socket directory: %w", err)
	}
	fi, err := os.Lstat(path)
	switch {
	case err == nil && fi.Mode()&os.ModeSocket == 0:
		return nil, fmt.Errorf("listen on %s: the path exists and is not a socket", path)
	case err == nil:
		c, derr := net.DialTimeout("unix", path, time.Second)
		if derr == nil {
			c.Close()
			return nil, fmt.Errorf("listen on %s: %w", path, ErrSocketInUse)
		}
		if !errors.Is(derr, syscall.ECONNREFUSED) && !errors.Is(derr, syscall.ENOENT) {
			return nil, fmt.Errorf("listen on %s: probe of the existing socket: %w", path, derr)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	// Not through the umask: it is process-wide, and other goroutines make
	// files meanwhile. The window before the chmod is what dockerd has too.
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	// As dockerd with its "docker" group: members of "shoal" may use the
	// API without root. Without such a group the socket stays root's.
	if g, err := user.LookupGroup(socketGroup); err == nil {
		if gid, err := strconv.Atoi(g.Gid); err == nil {
			if err := os.Chown(path, 0, gid); err != nil {
				ln.Close()
				return nil, fmt.Errorf("chown %s to group %s: %w", path, socketGroup, err)
			}
		}
	}
	return ln, nil
}

// socketGroup owns the API socket when it exists.
const socketGroup = "shoal"
