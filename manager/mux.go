package manager

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"
)

// ALPN protocols on the managers' one port (2377, as Swarm): gRPC clients
// negotiate "h2", raft's transport "shoal-raft". One TLS handshake decides
// where a connection goes, so raft and the APIs share the port and the
// mutual-TLS identity without raft knowing about gRPC.
const (
	protoGRPC = "h2"
	protoRaft = "shoal-raft"
)

// handshakeTimeout bounds a TLS handshake on the shared port: a client that
// connects and says nothing must not hold an accept slot.
const handshakeTimeout = 10 * time.Second

// demux accepts TLS connections on one listener and hands each, after its
// handshake, to the listener of its negotiated protocol. It owns the
// listener; its accept goroutine, started by start, ends when the listener
// is closed.
type demux struct {
	ln   net.Listener
	raft *chanListener
	grpc *chanListener
	// raftPeer decides whether a verified peer certificate may speak raft,
	// and returns the check to repeat while the connection lives.
	raftPeer func(*x509.Certificate) (func() error, error)
	wg       sync.WaitGroup
}

func newDemux(ln net.Listener, cfg *tls.Config, raftPeer func(*x509.Certificate) (func() error, error)) *demux {
	cfg = cfg.Clone()
	cfg.NextProtos = []string{protoGRPC, protoRaft}
	d := &demux{ln: tls.NewListener(ln, cfg), raftPeer: raftPeer}
	d.raft = newChanListener(ln.Addr(), d.close)
	d.grpc = newChanListener(ln.Addr(), d.close)
	return d
}

// start starts accepting. Until then connections wait in the kernel's
// backlog: the handshake's checks may use only what is fully set up.
func (d *demux) start() {
	d.wg.Add(1)
	go d.accept()
}

func (d *demux) accept() {
	defer d.wg.Done()
	for {
		c, err := d.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				d.raft.shut()
				d.grpc.shut()
				return
			}
			slog.Debug("manager: accept", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go d.route(c.(*tls.Conn))
	}
}

// route finishes the handshake off the accept loop and passes the
// connection on. Raft connections must come from a manager: raft has no
// authorisation of its own.
func (d *demux) route(c *tls.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	defer cancel()
	if err := c.HandshakeContext(ctx); err != nil {
		c.Close()
		return
	}
	switch c.ConnectionState().NegotiatedProtocol {
	case protoRaft:
		certs := c.ConnectionState().PeerCertificates
		if len(certs) == 0 {
			c.Close()
			return
		}
		recheck, err := d.raftPeer(certs[0])
		if err != nil {
			slog.Debug("manager: raft connection refused", "peer", c.RemoteAddr(), "err", err)
			c.Close()
			return
		}
		d.raft.push(&checkedConn{Conn: c, check: recheck})
	default:
		d.grpc.push(c)
	}
}

func (d *demux) close() error {
	return d.ln.Close()
}

// checkedConn is a raft connection whose peer is checked again whenever a
// read brings data, before raft sees it: a manager demoted or removed while
// its connection is open loses raft at its next message, not when the
// connection happens to close.
type checkedConn struct {
	net.Conn
	check func() error
}

func (c *checkedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		if cerr := c.check(); cerr != nil {
			slog.Debug("manager: raft connection closed", "peer", c.RemoteAddr(), "err", cerr)
			c.Conn.Close()
			return 0, fmt.Errorf("raft peer %s refused: %w", c.RemoteAddr(), cerr)
		}
	}
	return n, err
}

// chanListener is a net.Listener fed by the demux.
type chanListener struct {
	addr    net.Addr
	conns   chan net.Conn
	done    chan struct{}
	once    sync.Once
	closeFn func() error
}

func newChanListener(addr net.Addr, closeFn func() error) *chanListener {
	return &chanListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{}), closeFn: closeFn}
}

func (l *chanListener) push(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *chanListener) shut() { l.once.Do(func() { close(l.done) }) }

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close closes the shared listener: raft and gRPC stop together.
func (l *chanListener) Close() error {
	l.shut()
	err := l.closeFn()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// doneTLS is gRPC server credentials for connections whose TLS handshake the
// demux has already done: it reports their TLS state as the AuthInfo, so
// that handlers see the verified peer certificate as with credentials.NewTLS.
type doneTLS struct{}

func (doneTLS) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("manager: server-only credentials")
}

func (doneTLS) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return nil, nil, errors.New("manager: connection is not TLS")
	}
	return c, credentials.TLSInfo{State: tc.ConnectionState(), CommonAuthInfo: credentials.CommonAuthInfo{
		SecurityLevel: credentials.PrivacyAndIntegrity}}, nil
}

func (doneTLS) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls"}
}
func (doneTLS) Clone() credentials.TransportCredentials { return doneTLS{} }
func (doneTLS) OverrideServerName(string) error         { return nil }
