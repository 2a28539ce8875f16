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
// with three descriptors attached (SCM_RIGHTS), in this order.
const (
	fdStatus = iota // write end of the status pipe (Status lines)
	fdStart         // read end of the start pipe (the engine's go-ahead)
	fdLog           // the container's shim.log, for what the shim has to say about it
	nFDs
)

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
	oob := make([]byte, unix.CmsgSpace(4*nFDs))
	for {
		n, oobn, _, _, err := ctl.ReadMsgUnix(buf, oob)
		if err != nil || n == 0 && oobn == 0 {
			break // EOF (a seqpacket peer's close reads as an empty message) or a dead socket
		}
		opts, files, err := decodeRequest(buf[:n], oob[:oobn], stateRoot)
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
			if err := run(opts, files[fdStatus], files[fdStart]); err != nil {
				fmt.Fprintln(files[fdLog], "shim:", err)
			}
		}()
	}
	ctl.Close()
	running.Wait()
}

// decodeRequest parses one start request. The descriptors it returns (nil
// when the message carried not exactly nFDs) are the caller's to close.
func decodeRequest(b, oob []byte, stateRoot string) (Options, []*os.File, error) {
	var o Options
	fds, err := receivedFDs(oob)
	if err != nil {
		return o, nil, err
	}
	if len(fds) != nFDs {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return o, nil, fmt.Errorf("start request with %d descriptors, want %d", len(fds), nFDs)
	}
	// Non-blocking, hence in the netpoller: with one P, a read of the
	// start pipe parked in read(2) would stall every other container's
	// goroutines while the engine connects this one's clients.
	files := make([]*os.File, nFDs)
	for i, name := range []string{"status", "start", "shim.log"} {
		_ = unix.SetNonblock(fds[i], true)
		files[i] = os.NewFile(uintptr(fds[i]), name)
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return o, files, fmt.Errorf("start request: %w", err)
	}
	if o.ID == "" || o.Bundle == "" || o.StateDir == "" || o.RuntimeRoot == "" || o.LogPath == "" {
		return o, files, errors.New("start request: ID, Bundle, StateDir, RuntimeRoot and LogPath are required")
	}
	if filepath.Dir(o.StateDir) != filepath.Clean(stateRoot) {
		return o, files, fmt.Errorf("start request: state directory %s is not under %s", o.StateDir, stateRoot)
	}
	return o, files, nil
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
// container's options and the status, start and log descriptors (see
// fdStatus). The caller closes its copies afterwards.
func Send(ctl *net.UnixConn, o Options, status, start, log *os.File) error {
	b, err := json.Marshal(o)
	if err != nil {
		return err
	}
	rights := unix.UnixRights(int(status.Fd()), int(start.Fd()), int(log.Fd()))
	if _, _, err := ctl.WriteMsgUnix(b, rights, nil); err != nil {
		return fmt.Errorf("send to shim: %w", err)
	}
	return nil
}
