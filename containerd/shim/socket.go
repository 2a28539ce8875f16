package shim

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// maxSunPath is the room for a path in sockaddr_un, less the terminating NUL.
const maxSunPath = 107

// withShortPath calls fn with a path naming the same file as path but short
// enough for a unix socket address: deep state directories (long exec roots,
// 64-hex container IDs) exceed the kernel's 108 bytes, so the directory is
// opened and reached through /proc/self/fd/N.
func withShortPath(path string, fn func(string) error) error {
	if len(path) <= maxSunPath {
		return fn(path)
	}
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer dir.Close()
	return fn(fmt.Sprintf("/proc/self/fd/%d/%s", dir.Fd(), filepath.Base(path)))
}

func listenUnix(path string) (net.Listener, error) {
	var ln net.Listener
	err := withShortPath(path, func(p string) error {
		var err error
		ln, err = net.Listen("unix", p)
		return err
	})
	if err != nil {
		return nil, err
	}
	// Only the daemon (root) talks to the shim.
	_ = unix.Chmod(path, 0o600)
	// The file stays when the container has exited: by then a restart may
	// have made the next run's socket at the same path, which a late close
	// here must not unlink. The engine removes the directory.
	if ul, ok := ln.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(false)
	}
	return ln, nil
}

// Dial connects to the shim whose state directory is stateDir.
func Dial(stateDir string) (net.Conn, error) {
	var c net.Conn
	err := withShortPath(SocketPath(stateDir), func(p string) error {
		var err error
		c, err = net.Dial("unix", p)
		return err
	})
	return c, err
}

// QueryState asks the shim of stateDir for the container's state.
func QueryState(stateDir string) (StateReply, error) {
	var r StateReply
	if err := roundTrip(stateDir, Request{State: true}, &r); err != nil {
		return r, fmt.Errorf("shim state: %w", err)
	}
	return r, nil
}

// ResizeConsole sets the window size of the console of the shim of stateDir.
func ResizeConsole(stateDir string, height, width uint16) error {
	var r ResizeReply
	if err := roundTrip(stateDir, Request{Resize: true, Height: height, Width: width}, &r); err != nil {
		return fmt.Errorf("shim resize: %w", err)
	}
	if r.Error != "" {
		return errors.New(r.Error)
	}
	return nil
}

// roundTrip sends one request and reads its one-line answer into reply.
func roundTrip(stateDir string, req Request, reply any) error {
	c, err := Dial(stateDir)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return err
	}
	return json.NewDecoder(c).Decode(reply)
}
