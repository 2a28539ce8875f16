package encrypt

import (
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// The loops use their descriptors non-blocking and wait in poll(2) on their
// own thread, beside an eventfd that Close signals, rather than in the
// runtime's poller: a packet then costs no goroutine hand-off and no wake-up
// of another thread, which on these machines (every context switch traps to
// the hypervisor) was a tenth of the tunnel's time.

// errStopped ends a loop: Close signalled.
var errStopped = errors.New("tunnel closed")

// waitFD blocks until fd has one of events or stop is signalled.
func waitFD(fd, stop int, events int16) error {
	pfd := []unix.PollFd{{Fd: int32(fd), Events: events}, {Fd: int32(stop), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(pfd, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("poll: %w", err)
		}
		if pfd[1].Revents != 0 {
			return errStopped
		}
		return nil
	}
}

// pause waits a little after an error a descriptor may give again at once
// (its TUN device deleted under it, say), so that the loop does not spin;
// errStopped if Close signalled meanwhile.
func pause(stop int) error {
	pfd := []unix.PollFd{{Fd: int32(stop), Events: unix.POLLIN}}
	if n, _ := unix.Poll(pfd, 100); n > 0 {
		return errStopped
	}
	return nil
}

// readFD reads one packet or datagram from fd, waiting for it.
func readFD(fd, stop int, buf []byte) (int, error) {
	for {
		n, err := unix.Read(fd, buf)
		switch err {
		case nil:
			return n, nil
		case unix.EAGAIN, unix.EINTR:
			if err := waitFD(fd, stop, unix.POLLIN); err != nil {
				return 0, err
			}
		default:
			return 0, err
		}
	}
}

// recvFD receives one (possibly coalesced) datagram from fd into iov,
// waiting for it.
func recvFD(fd, stop int, iov [][]byte, oob []byte) (n, oobn int, from netip.Addr, err error) {
	for {
		n, oobn, _, sa, err := unix.RecvmsgBuffers(fd, iov, oob, 0)
		switch err {
		case nil:
			if in4, ok := sa.(*unix.SockaddrInet4); ok {
				return n, oobn, netip.AddrFrom4(in4.Addr), nil
			}
			return n, oobn, netip.Addr{}, nil
		case unix.EAGAIN, unix.EINTR:
			if err := waitFD(fd, stop, unix.POLLIN); err != nil {
				return 0, 0, netip.Addr{}, err
			}
		default:
			return 0, 0, netip.Addr{}, err
		}
	}
}

// sendFD sends the datagram gathered from iov (with control messages oob)
// to to, waiting for room.
func sendFD(fd, stop int, iov [][]byte, oob []byte, to *unix.SockaddrInet4) error {
	for {
		_, err := unix.SendmsgBuffers(fd, iov, oob, to, 0)
		switch err {
		case nil:
			return nil
		case unix.EAGAIN, unix.EINTR:
			if err := waitFD(fd, stop, unix.POLLOUT); err != nil {
				return err
			}
		default:
			return err
		}
	}
}

// udpSocket opens a non-blocking UDP socket bound to port on every address
// of the caller's namespace, with room for bursts of chunks (forced, as
// root, past the sysctl's maximum) and coalesced receives (UDP GRO; a
// kernel without it delivers one datagram at a time).
func udpSocket(ip [4]byte, port int) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("UDP socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: ip, Port: port}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind UDP port %d: %w", port, err)
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20)
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 4<<20)
	unix.SetsockoptInt(fd, unix.SOL_UDP, unix.UDP_GRO, 1)
	return fd, nil
}
