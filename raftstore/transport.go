package raftstore

import (
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// DialFunc opens a connection to a peer's raft address. The manager passes
// one that dials mutual TLS; nil means plain TCP.
type DialFunc func(address string, timeout time.Duration) (net.Conn, error)

// streamLayer is raft's StreamLayer over any listener: a plain TCP listener
// in tests, a tls.NewListener in the manager, so TLS is plugged in without
// raft knowing.
type streamLayer struct {
	net.Listener
	advertise net.Addr
	dial      DialFunc
}

func newStreamLayer(ln net.Listener, advertise string, dial DialFunc) (*streamLayer, error) {
	sl := &streamLayer{Listener: ln, advertise: ln.Addr(), dial: dial}
	if advertise != "" {
		a, err := net.ResolveTCPAddr("tcp", advertise)
		if err != nil {
			return nil, fmt.Errorf("raftstore: advertise address %q: %w", advertise, err)
		}
		sl.advertise = a
	}
	if a, ok := sl.advertise.(*net.TCPAddr); ok && a.IP.IsUnspecified() {
		return nil, fmt.Errorf("raftstore: listening on %s: set an advertise address peers can reach", a)
	}
	if sl.dial == nil {
		sl.dial = func(address string, timeout time.Duration) (net.Conn, error) {
			return net.DialTimeout("tcp", address, timeout)
		}
	}
	return sl, nil
}

func (s *streamLayer) Addr() net.Addr { return s.advertise }

func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return s.dial(string(address), timeout)
}
