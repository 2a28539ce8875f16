package manager

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/shoal-project/shoal/api"
	"google.golang.org/grpc/peer"
)

// GossipPort is the overlay's gossip port (TCP and UDP), memberlist's and
// Swarm's 7946: the daemon gives it to overlaynet/peers, and the managers
// probe it on a joining node.
const GossipPort = 7946

// defaultDataPathPort is the VXLAN port of a cluster that set none.
const defaultDataPathPort = 4789

const (
	probeMagic   = "shoal-port-probe "
	probeCount   = 5
	probeSpacing = 40 * time.Millisecond
	// probeWait is how long a joining node waits for the probes after the
	// manager has sent them: they cross one link, so a probe that has not
	// come by then was dropped.
	probeWait = 2 * time.Second
)

// ProbePorts answers api.CA's ProbePorts on the manager called. The token
// is what makes a caller worth answering: a holder could join anyway, and
// the probes are five small datagrams and one TCP connection to the address
// the caller will advertise, on the two ports the cluster uses.
func (s *caServer) ProbePorts(ctx context.Context, req *api.ProbePortsRequest) (*api.ProbePortsResponse, error) {
	resp, err := s.probePorts(ctx, req)
	if err != nil {
		return nil, api.ToGRPC(err)
	}
	return resp, nil
}

func (s *caServer) probePorts(ctx context.Context, req *api.ProbePortsRequest) (*api.ProbePortsResponse, error) {
	cluster := s.m.cluster()
	if cluster == nil {
		return nil, api.Wrap(api.ErrUnavailable, errors.New("the swarm is not initialized yet"))
	}
	if _, err := tokenRole(cluster, req.GetToken()); err != nil {
		return nil, err
	}
	if n := len(req.GetNonce()); n < 16 || n > 64 {
		return nil, api.Wrap(api.ErrInvalidArgument, fmt.Errorf("probe nonce of %d bytes, want 16 to 64", n))
	}
	addr := req.GetAddr()
	if addr == "" {
		// No advertise address given: the one the call came from.
		if p, ok := peer.FromContext(ctx); ok {
			addr = p.Addr.String()
		}
	}
	ip, err := probeTarget(addr)
	if err != nil {
		return nil, api.Wrap(api.ErrInvalidArgument, err)
	}
	return sendProbes(ctx, ip, int(cluster.GetDataPathPort()), req.GetNonce()), nil
}

// sendProbes sends probeCount datagrams holding nonce to ip's dataPort (0:
// the default) and gossip port, then connects to the gossip port over TCP
// and sends it the same.
func sendProbes(ctx context.Context, ip net.IP, dataPort int, nonce []byte) *api.ProbePortsResponse {
	if dataPort == 0 {
		dataPort = defaultDataPathPort
	}
	payload := append([]byte(probeMagic), nonce...)
	for i := range probeCount {
		if i > 0 {
			select {
			case <-ctx.Done():
				return &api.ProbePortsResponse{DataPathPort: uint32(dataPort), GossipPort: GossipPort}
			case <-time.After(probeSpacing):
			}
		}
		for _, port := range []int{dataPort, GossipPort} {
			if err := sendProbe(ip, port, payload); err != nil {
				slog.Debug("manager: port probe", "to", ip, "port", port, "err", err)
			}
		}
	}
	resp := &api.ProbePortsResponse{DataPathPort: uint32(dataPort), GossipPort: GossipPort}
	d := net.Dialer{Timeout: probeWait / 2}
	if c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ip.String(), strconv.Itoa(GossipPort))); err == nil {
		c.SetWriteDeadline(time.Now().Add(probeWait / 2))
		_, err = c.Write(payload)
		c.Close()
		resp.GossipTcp = err == nil
	}
	return resp
}

// probeTarget is the IPv4 unicast (or loopback: a cluster on one host)
// address of addr (host or host:port).
func probeTarget(addr string) (net.IP, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	ip := net.ParseIP(host).To4()
	if ip == nil || !(ip.IsGlobalUnicast() || ip.IsLoopback()) {
		return nil, fmt.Errorf("probe address %q is not an IPv4 unicast address", addr)
	}
	return ip, nil
}

func sendProbe(ip net.IP, port int, payload []byte) error {
	c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: ip, Port: port})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write(payload)
	return err
}

// checkPorts asks the manager on conn to probe this node's ports and waits
// for the probes. A port this node cannot listen on (something else holds
// it: a kernel VXLAN device of a previous membership, say) is not checked;
// a port that can be listened on and that no probe reached is the error.
func checkPorts(ctx context.Context, client api.CAClient, manager, token, advertise string) error {
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	payload := append([]byte(probeMagic), nonce...)
	l := &probeListener{payload: payload}
	defer l.close()
	// The data path port is the cluster's: it is known once the manager
	// answers, so the probes it sends first may find nobody listening there
	// yet; the gossip probes and the last data path probes show whether the
	// path is open. Listening first on the usual port avoids the wait.
	l.listenUDP(defaultDataPathPort)
	l.listenUDP(GossipPort)
	l.listenTCP(GossipPort)
	resp, err := client.ProbePorts(ctx, &api.ProbePortsRequest{Token: token, Addr: advertise, Nonce: nonce})
	if err != nil {
		return fmt.Errorf("join %s: probe ports: %w", manager, api.FromGRPC(err))
	}
	dataPort := int(resp.GetDataPathPort())
	if dataPort != defaultDataPathPort && l.listenUDP(dataPort) {
		// Not listened on while the manager sent: ask once more.
		if _, err := client.ProbePorts(ctx, &api.ProbePortsRequest{Token: token, Addr: advertise, Nonce: nonce}); err != nil {
			return fmt.Errorf("join %s: probe ports: %w", manager, api.FromGRPC(err))
		}
	}
	host, _, err := net.SplitHostPort(manager)
	if err != nil {
		host = manager
	}
	self, _, err := net.SplitHostPort(advertise)
	if err != nil {
		self = advertise
	}
	want := []struct {
		port  int
		proto string
	}{{dataPort, "udp"}, {GossipPort, "udp"}, {GossipPort, "tcp"}}
	deadline := time.NewTimer(probeWait)
	defer deadline.Stop()
	for _, w := range want {
		ch := l.arrived(w.port, w.proto)
		if ch == nil {
			continue // not listened on: not checked
		}
		if w.proto == "tcp" && !resp.GetGossipTcp() {
			return fmt.Errorf("join: the gossip port %d/tcp of this node (%s) is not reachable from manager %s (no connection): a firewall drops it? Open %d/udp (data path) and %d/tcp+udp (gossip)", w.port, self, host, dataPort, GossipPort)
		}
		select {
		case <-ch:
		case <-deadline.C:
			what := "data path"
			if w.port == GossipPort && w.proto == "udp" {
				what = "gossip"
			}
			return fmt.Errorf("join: the %s port %d/%s of this node (%s) is not reachable from manager %s (no probe arrived in %s): a firewall drops it? Open %d/udp (data path) and %d/tcp+udp (gossip)", what, w.port, w.proto, self, host, probeWait, dataPort, GossipPort)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// probeListener listens on the ports being probed; each port's channel
// closes when a probe with the payload arrives there.
type probeListener struct {
	payload []byte
	mu      sync.Mutex
	got     map[string]chan struct{}
	closers []func() error
	wg      sync.WaitGroup
}

func probeKey(port int, proto string) string { return strconv.Itoa(port) + "/" + proto }

// listenUDP listens on port; false when it cannot (already listened on, or
// held by another socket).
func (l *probeListener) listenUDP(port int) bool {
	if !l.register(port, "udp") {
		return false
	}
	c, err := net.ListenUDP("udp4", &net.UDPAddr{Port: port})
	if err != nil {
		l.skip(port, "udp", err)
		return false
	}
	l.closers = append(l.closers, c.Close)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		buf := make([]byte, 256)
		for {
			n, _, err := c.ReadFromUDP(buf)
			if err != nil {
				return // closed
			}
			if bytes.Equal(buf[:n], l.payload) {
				l.mark(port, "udp")
			}
		}
	}()
	return true
}

func (l *probeListener) listenTCP(port int) {
	if !l.register(port, "tcp") {
		return
	}
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{Port: port})
	if err != nil {
		l.skip(port, "tcp", err)
		return
	}
	l.closers = append(l.closers, ln.Close)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return // closed
			}
			c.SetReadDeadline(time.Now().Add(probeWait))
			buf := make([]byte, len(l.payload))
			_, err = io.ReadFull(c, buf)
			c.Close()
			if err == nil && bytes.Equal(buf, l.payload) {
				l.mark(port, "tcp")
			}
		}
	}()
}

func (l *probeListener) register(port int, proto string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.got == nil {
		l.got = map[string]chan struct{}{}
	}
	k := probeKey(port, proto)
	if _, ok := l.got[k]; ok {
		return false
	}
	l.got[k] = make(chan struct{})
	return true
}

func (l *probeListener) skip(port int, proto string, err error) {
	l.mu.Lock()
	delete(l.got, probeKey(port, proto))
	l.mu.Unlock()
	if errors.Is(err, syscall.EADDRINUSE) {
		slog.Info("join: port in use here, not checked", "port", port, "proto", proto)
		return
	}
	slog.Warn("join: cannot listen to check a port", "port", port, "proto", proto, "err", err)
}

func (l *probeListener) mark(port int, proto string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ch, ok := l.got[probeKey(port, proto)]
	if !ok {
		return
	}
	select {
	case <-ch:
	default:
		close(ch)
	}
}

// arrived is the channel of port/proto, nil when it is not listened on.
func (l *probeListener) arrived(port int, proto string) <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ch, ok := l.got[probeKey(port, proto)]; ok {
		return ch
	}
	return nil
}

func (l *probeListener) close() {
	for _, c := range l.closers {
		c()
	}
	l.wg.Wait()
}
