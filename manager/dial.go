package manager

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/manager/ca"
	"github.com/shoal-project/shoal/raftstore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
)

// ClientTLS is the mutual-TLS configuration a node dials managers with: it
// presents the node's certificate and accepts only a manager certificate of
// the same cluster.
func ClientTLS(root *ca.RootCA, cert []byte, key *ecdsa.PrivateKey) (*tls.Config, error) {
	return root.TLSConfig(cert, key, managerOnly)
}

// Dial opens a gRPC connection to the manager at addr with cfg (from
// ClientTLS). The connection is lazy: errors show on the first call.
func Dial(addr string, cfg *tls.Config) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient("passthrough:///"+addr, dialOptions(cfg)...)
	if err != nil {
		return nil, fmt.Errorf("dial manager %s: %w", addr, err)
	}
	return conn, nil
}

// Flow-control windows of the managers' gRPC connections, both ends
// (dialOptions, and the server in New). Fixed windows turn off gRPC's
// bandwidth-delay estimation, which pings the peer after data arrives and
// grows the window in small steps: on a leader streaming assignments to a
// thousand nodes the pings, their answers and the window updates woke the
// connections' reader goroutines (the scale bench's trace: 5,475 reader
// wake-ups in 3 s before, 3,257 after). 1 MiB per stream holds the largest
// assignments message (the dispatcher's maxMessageBytes); 4 MiB per
// connection a few. On a LAN that is no limit (1 MiB per 0.2 ms round
// trip); over a 50 ms round trip one stream would carry 20 MB/s.
const (
	streamWindow = 1 << 20
	connWindow   = 4 << 20
)

// dialOptions are Dial's options (the scale bench's simulated agents dial
// with them too).
func dialOptions(cfg *tls.Config) []grpc.DialOption {
	return []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(cfg)),
		// gRPC's defaults (20 s to connect, reconnect backoff up to 2 min)
		// would hold a call to a lost manager for 20 s, and one to a
		// restarted manager for minutes: managers are on a LAN.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: 5 * time.Second,
		}),
		grpc.WithInitialWindowSize(streamWindow), grpc.WithInitialConnWindowSize(connWindow),
	}
}

// dialTLS is raft's dial function: TLS with ALPN shoal-raft on the shared port.
func dialTLS(cfg *tls.Config) raftstore.DialFunc {
	return func(addr string, timeout time.Duration) (net.Conn, error) {
		d := &net.Dialer{Timeout: timeout}
		c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
		if err != nil {
			return nil, err
		}
		if c.ConnectionState().NegotiatedProtocol != protoRaft {
			c.Close()
			return nil, fmt.Errorf("raft dial %s: peer did not accept the raft protocol", addr)
		}
		return c, nil
	}
}

// JoinResult is what a node gets from a manager when it joins.
type JoinResult struct {
	NodeID string
	Role   api.NodeRole
	Cert   []byte
	Key    *ecdsa.PrivateKey
	Root   *ca.RootCA
}

// Join asks the manager at addr for a node certificate with a join token.
// The token pins the cluster's root CA: the root the manager shows must have
// the token's digest. The token's secret then travels only on a second
// connection that verifies, at every handshake (gRPC reconnects on its
// own), that the peer holds a manager certificate of that root: a
// connection that passed the pin check once proves nothing about the one a
// reconnect makes.
func Join(ctx context.Context, addr, token, advertiseAddr string, availability api.NodeSpec_Availability) (*JoinResult, error) {
	tok, err := ca.ParseToken(token)
	if err != nil {
		return nil, api.Wrap(api.ErrInvalidArgument, err)
	}
	// A plain TCP probe first, for a clear error when nothing listens.
	probe, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, api.Wrap(api.ErrUnavailable, fmt.Errorf("cannot reach manager at %s: %w", addr, err))
	}
	probe.Close()
	cactx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	root, err := remoteRoot(cactx, addr)
	if err != nil {
		return nil, err
	}
	if !tok.MatchesCA(root.Cert.Raw) {
		return nil, api.Wrap(api.ErrInvalidArgument, fmt.Errorf("join %s: remote CA does not match the fingerprint in the join token", addr))
	}
	var refused atomic.Pointer[error]
	conn, err := Dial(addr, pinnedTLS(root, &refused))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	// The ports the overlay needs are checked before the node exists: a
	// node whose firewall drops them would join and then carry no traffic.
	if err := checkPorts(cactx, api.NewCAClient(conn), addr, token, advertiseAddr); err != nil {
		if rerr := refused.Load(); rerr != nil {
			return nil, api.Wrap(api.ErrInvalidArgument, fmt.Errorf("join %s: %w", addr, *rerr))
		}
		return nil, api.Wrap(api.ErrFailedPrecondition, err)
	}
	key, csr, err := ca.NewNodeKey()
	if err != nil {
		return nil, err
	}
	resp, err := api.NewCAClient(conn).IssueNodeCertificate(cactx, &api.IssueNodeCertificateRequest{
		Csr: csr, Token: token, Availability: availability, Addr: advertiseAddr,
	})
	if err != nil {
		if rerr := refused.Load(); rerr != nil {
			return nil, api.Wrap(api.ErrInvalidArgument, fmt.Errorf("join %s: %w", addr, *rerr))
		}
		return nil, fmt.Errorf("join %s: %w", addr, api.FromGRPC(err))
	}
	return &JoinResult{NodeID: resp.GetNodeId(), Role: resp.GetRole(), Cert: resp.GetCertificate(), Key: key, Root: root}, nil
}

// remoteRoot reads the root certificate the manager at addr shows, over a
// connection that verifies nothing: the caller checks the root against the
// token's pin and sends nothing secret on this connection.
func remoteRoot(ctx context.Context, addr string) (*ca.RootCA, error) {
	conn, err := Dial(addr, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	resp, err := api.NewCAClient(conn).GetRootCACertificate(ctx, &api.GetRootCACertificateRequest{})
	if err != nil {
		return nil, fmt.Errorf("join %s: get root CA: %w", addr, api.FromGRPC(err))
	}
	root, err := ca.ParseRootCA(resp.GetCertificate(), nil)
	if err != nil {
		return nil, fmt.Errorf("join %s: %w", addr, err)
	}
	return root, nil
}

// pinnedTLS is the configuration of a client without a certificate that
// accepts only a manager certificate signed by root, at every handshake;
// refused keeps the last refusal, for the caller's error.
func pinnedTLS(root *ca.RootCA, refused *atomic.Pointer[error]) *tls.Config {
	return &tls.Config{
		// Verified below, by node identity rather than host name: nodes
		// dial each other by IP.
		InsecureSkipVerify: true,
		MinVersion:         tls.VersionTLS13,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			err := verifyManager(root, raw)
			if err != nil {
				refused.Store(&err)
			}
			return err
		},
	}
}

func verifyManager(root *ca.RootCA, raw [][]byte) error {
	if len(raw) == 0 {
		return errors.New("the manager presented no certificate")
	}
	// The chain as sent: during a root rotation a manager's certificate is
	// signed by the new root and reaches the pinned (old) one through the
	// cross-signed intermediate that follows it.
	chain := make([]*x509.Certificate, len(raw))
	for i, b := range raw {
		c, err := x509.ParseCertificate(b)
		if err != nil {
			return fmt.Errorf("the manager's certificate: %w", err)
		}
		chain[i] = c
	}
	id, err := root.IdentifyChain(chain, time.Now())
	if err != nil {
		return fmt.Errorf("the manager's certificate is not signed by the cluster CA of the token: %w", err)
	}
	return managerOnly(id)
}

// managerOnly accepts a manager's identity only.
func managerOnly(id ca.NodeIdentity) error {
	if id.Role != ca.RoleManager {
		return fmt.Errorf("peer %s is not a manager", id.NodeID)
	}
	return nil
}

// Renew asks a manager (over conn, with the node's current certificate) for
// a new certificate in the role the cluster now wants for this node, after
// a promotion or demotion.
func Renew(ctx context.Context, conn grpc.ClientConnInterface, advertiseAddr string) (*JoinResult, error) {
	key, csr, err := ca.NewNodeKey()
	if err != nil {
		return nil, err
	}
	resp, err := api.NewCAClient(conn).IssueNodeCertificate(ctx, &api.IssueNodeCertificateRequest{Csr: csr, Addr: advertiseAddr})
	if err != nil {
		return nil, fmt.Errorf("renew node certificate: %w", api.FromGRPC(err))
	}
	return &JoinResult{NodeID: resp.GetNodeId(), Role: resp.GetRole(), Cert: resp.GetCertificate(), Key: key}, nil
}
