package daemon

import (
	"log/slog"
	"net"
	"os"
	"os/exec"

	"github.com/shoal-project/shoal/containerd/runtime"
	"github.com/shoal-project/shoal/manager/heartbeat"
)

// heartbeatEndpoint binds the heartbeat fast path's UDP socket on the
// manager port's address and number (UDP 2377 by default, beside the TCP
// port) and returns how to start its answering process: this binary's
// sealed copy as heartbeat.ServerArg. A port taken leaves the manager to
// gRPC heartbeats (nil).
func heartbeatEndpoint(ln net.Listener) (*net.UDPConn, func() *exec.Cmd) {
	tcp, ok := ln.Addr().(*net.TCPAddr)
	if !ok {
		return nil, nil
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: tcp.IP, Port: tcp.Port, Zone: tcp.Zone})
	if err != nil {
		slog.Warn("heartbeat fast path not served: agents beat over gRPC", "err", err)
		return nil, nil
	}
	self, err := runtime.SealedSelf()
	if err != nil {
		// Answered in the daemon's process, then.
		slog.Warn("heartbeat fast path answered in the daemon's process", "err", err)
		return conn, nil
	}
	return conn, func() *exec.Cmd {
		cmd := exec.Command(self, heartbeat.ServerArg)
		cmd.Args[0] = "shoal"
		cmd.Stderr = os.Stderr
		return cmd
	}
}
