package encrypt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"unsafe"

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

// msgIO is a loop's own message header for sendmsg(2) and recvmsg(2):
// x/sys/unix's SendmsgBuffers and RecvmsgBuffers allocate the iovecs and
// the address on every call, which at 10,000 packets a second per loop kept
// the garbage collector busy (2-3 % of the tunnel's CPU).
type msgIO struct {
	hdr  unix.Msghdr
	iov  [2 * maxChunks]unix.Iovec
	name unix.RawSockaddrInet4
}

// prepare points the header at bufs (at most len(m.iov) of them), oob and
// the address buffer.
func (m *msgIO) prepare(bufs [][]byte, oob []byte) {
	m.hdr = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&m.name)), Namelen: unix.SizeofSockaddrInet4}
	n := 0
	for _, b := range bufs {
		if len(b) > 0 && n < len(m.iov) {
			m.iov[n].Base = &b[0]
			m.iov[n].SetLen(len(b))
			n++
		}
	}
	if n > 0 {
		m.hdr.Iov = &m.iov[0]
		m.hdr.SetIovlen(n)
	}
	if len(oob) > 0 {
		m.hdr.Control = &oob[0]
		m.hdr.SetControllen(len(oob))
	}
}

// recv receives one (possibly coalesced) datagram from fd into bufs,
// waiting for it.
func (m *msgIO) recv(fd, stop int, bufs [][]byte, oob []byte) (n, oobn int, from netip.Addr, err error) {
	for {
		m.prepare(bufs, oob)
		r, _, errno := unix.Syscall(unix.SYS_RECVMSG, uintptr(fd), uintptr(unsafe.Pointer(&m.hdr)), 0)
		switch errno {
		case 0:
			if m.name.Family == unix.AF_INET {
				from = netip.AddrFrom4(m.name.Addr)
			}
			return int(r), int(m.hdr.Controllen), from, nil
		case unix.EAGAIN, unix.EINTR:
			if err := waitFD(fd, stop, unix.POLLIN); err != nil {
				return 0, 0, netip.Addr{}, err
			}
		default:
			return 0, 0, netip.Addr{}, errno
		}
	}
}

// send sends the datagram gathered from bufs (with control messages oob)
// to to, waiting for room.
func (m *msgIO) send(fd, stop int, bufs [][]byte, oob []byte, to *unix.SockaddrInet4) error {
	for {
		m.prepare(bufs, oob)
		m.name = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: to.Addr}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&m.name.Port))[:], uint16(to.Port))
		_, _, errno := unix.Syscall(unix.SYS_SENDMSG, uintptr(fd), uintptr(unsafe.Pointer(&m.hdr)), 0)
		switch errno {
		case 0:
			return nil
		case unix.EAGAIN, unix.EINTR:
			if err := waitFD(fd, stop, unix.POLLOUT); err != nil {
				return err
			}
		default:
			return errno
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
