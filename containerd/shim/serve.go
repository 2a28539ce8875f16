package shim

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// A start request is one message on the control socket: Options as JSON,
// with descriptors attached (SCM_RIGHTS): these two, in this order, then
// Options.Clients connected sockets, the engine's clients of this container
// (see Options.Clients).
const (
	fdStatus = iota // write end of the status pipe (Status lines)
	fdLog           // the container's shim.log, for what the shim has to say about it
	nFDs
)

// MaxClients bounds the clients handed over with one start request (the
// kernel takes at most 253 descriptors in one message).
const MaxClients = 64

// maxRequest bounds a start request's JSON (Options is a few hundred bytes).
const maxRequest = 64 << 10

// Serve supervises the containers that the engine asks for on ctl (their
// state directories directly under stateRoot), each in
// goroutines of its own, exactly as a shim of its own would (run), and
// returns once ctl has ended (the engine retired this shim, or the daemon
// is gone) and the last of its containers has exited and been recorded.
//
// The engine sends start requests (see fdStatus) on a SOCK_SEQPACKET
// socket, so that each request and its descriptors arrive as one message.
// A request that cannot be read is refused on its status pipe when it has
// one, and costs no other container anything.
func Serve(ctl *net.UnixConn, stateRoot string) {
	var running sync.WaitGroup
	buf := make([]byte, maxRequest)
	oob := make([]byte, unix.CmsgSpace(4*(nFDs+MaxClients)))
	for {
		n, oobn, _, _, err := ctl.ReadMsgUnix(buf, oob)
		if err != nil || n == 0 && oobn == 0 {
			break // EOF (a seqpacket peer's close reads as an empty message) or a dead socket
		}
		opts, files, clients, err := decodeRequest(buf[:n], oob[:oobn], stateRoot)
		if err != nil {
			if files != nil {
				report(files[fdStatus], Status{Error: "shim: " + err.Error()})
				closeAll(files)
			}
			fmt.Fprintln(os.Stderr, "shim: refused a request:", err)
			continue
		}
		running.Add(1)
		go func() {
			defer running.Done()
			defer closeAll(files)
			if err := run(opts, files[fdStatus], clients); err != nil {
				fmt.Fprintln(files[fdLog], "shim:", err)
			}
		}()
	}
	ctl.Close()
	running.Wait()
}

// decodeRequest parses one start request. The descriptors it returns (nil
// when the message carried fewer than nFDs) and, on success, the clients
// are the caller's to close; on an error it has closed the clients' sockets.
func decodeRequest(b, oob []byte, stateRoot string) (Options, []*os.File, []net.Conn, error) {
	var o Options
	fds, err := receivedFDs(oob)
	if err != nil {
		return o, nil, nil, err
	}
	if len(fds) < nFDs {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return o, nil, nil, fmt.Errorf("start request with %d descriptors, want at least %d", len(fds), nFDs)
	}
	// Non-blocking, hence in the netpoller: with one P, a write parked in
	// write(2) would stall every other container's goroutines.
	files := make([]*os.File, nFDs)
	for i, name := range []string{"status", "shim.log"} {
		_ = unix.SetNonblock(fds[i], true)
		files[i] = os.NewFile(uintptr(fds[i]), name)
	}
	clients, err := clientConns(fds[nFDs:])
	if err != nil {
		return o, files, nil, fmt.Errorf("start request: %w", err)
	}
	fail := func(err error) (Options, []*os.File, []net.Conn, error) {
		for _, c := range clients {
			c.Close()
		}
		return o, files, nil, err
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return fail(fmt.Errorf("start request: %w", err))
	}
	if o.ID == "" || o.Bundle == "" || o.StateDir == "" || o.RuntimeRoot == "" || o.LogPath == "" {
		return fail(errors.New("start request: ID, Bundle, StateDir, RuntimeRoot and LogPath are required"))
	}
	if filepath.Dir(o.StateDir) != filepath.Clean(stateRoot) {
		return fail(fmt.Errorf("start request: state directory %s is not under %s", o.StateDir, stateRoot))
	}
	if o.Clients != len(clients) {
		return fail(fmt.Errorf("start request: %d clients announced, %d sockets attached", o.Clients, len(clients)))
	}
	return o, files, clients, nil
}

// clientConns makes connections of the clients' descriptors, and closes
// the descriptors (all of them, also on an error).
func clientConns(fds []int) ([]net.Conn, error) {
	var conns []net.Conn
	var first error
	for _, fd := range fds {
		f := os.NewFile(uintptr(fd), "client")
		c, err := net.FileConn(f) // a copy; the original goes
		f.Close()
		if err == nil {
			if _, ok := c.(*net.UnixConn); !ok {
				c.Close()
				err = errors.New("a client's descriptor is not a unix socket")
			}
		}
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		conns = append(conns, c)
	}
	if first != nil {
		for _, c := range conns {
			c.Close()
		}
		return nil, first
	}
	return conns, nil
}

// receivedFDs returns the descriptors of a message's SCM_RIGHTS.
func receivedFDs(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("start request's control data: %w", err)
	}
	var fds []int
	for _, m := range msgs {
		r, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		fds = append(fds, r...)
	}
	return fds, nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// Send hands one start request to the shim at the other end of ctl: the
// container's options, the status and log descriptors (see fdStatus) and
// the sockets of o.Clients clients (see Options.Clients). The caller closes
// its copies afterwards.
func Send(ctl *net.UnixConn, o Options, status, log *os.File, clients ...*os.File) error {
	if len(clients) != o.Clients || len(clients) > MaxClients {
		return fmt.Errorf("send to shim: %d clients for %d announced (at most %d)", len(clients), o.Clients, MaxClients)
	}
	b, err := json.Marshal(o)
	if err != nil {
		return err
	}
	fds := []int{int(status.Fd()), int(log.Fd())}
	for _, c := range clients {
		fds = append(fds, int(c.Fd()))
	}
	if _, _, err := ctl.WriteMsgUnix(b, unix.UnixRights(fds...), nil); err != nil {
		return fmt.Errorf("send to shim: %w", err)
	}
	return nil
}
