package manager

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/manager/ca"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// TestJoinTokenOnlyToPinnedManager is the join's man-in-the-middle: the
// first connection shows the cluster's root CA and a manager certificate it
// signed, so the pin check passes; the server then ends that connection
// (GOAWAY), and the reconnect shows another certificate. The token's secret
// must never reach the server behind the reconnect unless that certificate
// is a manager's of the pinned root.
func TestJoinTokenOnlyToPinnedManager(t *testing.T) {
	now := time.Now()
	root, err := ca.NewRootCA("cluster", now)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ca.NewRootCA("cluster", now)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ca.NewToken(root.Cert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		cert  func(t *testing.T) tls.Certificate
		token bool // whether the reconnect may get the token
	}{
		{"other CA", func(t *testing.T) tls.Certificate { return issueTLS(t, other, "mitm", ca.RoleManager) }, false},
		{"worker of the pinned CA", func(t *testing.T) tls.Certificate { return issueTLS(t, root, "worker", ca.RoleWorker) }, false},
		// The control: a genuine manager behind the reconnect gets it.
		{"manager of the pinned CA", func(t *testing.T) tls.Certificate { return issueTLS(t, root, "mgr-2", ca.RoleManager) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startSwitchingCA(t, root, issueTLS(t, root, "mgr-1", ca.RoleManager), tc.cert(t))
			ctx, cancel := context.WithTimeout(context.Background(), callTTL)
			defer cancel()
			_, err := Join(ctx, srv.addr, tok.String(), "127.0.0.1:4789", api.NodeSpec_ACTIVE)
			t.Logf("Join: %v", err)
			first, second := srv.received()
			if first != "" {
				t.Fatalf("the first connection got the token: the test server did not force a reconnect")
			}
			switch {
			case !tc.token && second != "":
				t.Errorf("the server behind the reconnect (%s) received the join token %s", tc.name, second)
			case tc.token && second != tok.String():
				t.Errorf("the manager behind the reconnect did not get the token (got %q): the test does not reconnect", second)
			}
			if !tc.token && err == nil {
				t.Errorf("Join succeeded against %s", tc.name)
			}
		})
	}
}

// issueTLS is a node certificate of root for id in role, as a TLS certificate.
func issueTLS(t *testing.T, root *ca.RootCA, id, role string) tls.Certificate {
	t.Helper()
	key, csr, err := ca.NewNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := root.IssueNodeCertificate(csr, id, role, []string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tlsPair(t, certPEM, key)
}

func tlsPair(t *testing.T, certPEM []byte, key *ecdsa.PrivateKey) tls.Certificate {
	t.Helper()
	keyPEM, err := ca.KeyPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

// switchingCA is a CA service whose first connection is served with one
// certificate and every later one with another. The first server answers
// GetRootCACertificate with the pinned root and ends its connection at
// once (GOAWAY before the answer), so the client's next call reconnects.
type switchingCA struct {
	addr string

	mu     sync.Mutex
	tokens [2]string // token received by the first and the later servers
}

func (s *switchingCA) received() (first, later string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokens[0], s.tokens[1]
}

func startSwitchingCA(t *testing.T, root *ca.RootCA, firstCert, laterCert tls.Certificate) *switchingCA {
	t.Helper()
	ln := listen(t)
	s := &switchingCA{addr: ln.Addr().String()}
	nop := func() error { return nil }
	lns := [2]*chanListener{newChanListener(ln.Addr(), nop), newChanListener(ln.Addr(), nop)}
	var srvs [2]*grpc.Server
	for i, cert := range []tls.Certificate{firstCert, laterCert} {
		creds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
		srvs[i] = grpc.NewServer(grpc.Creds(creds))
		api.RegisterCAServer(srvs[i], &recordingCA{s: s, i: i, root: root, srv: srvs[i]})
	}
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		for n := 0; ; {
			c, err := ln.Accept()
			if err != nil {
				lns[0].shut()
				lns[1].shut()
				return
			}
			// Join's reachability probe connects and closes: only
			// connections that say something count.
			first := make([]byte, 1)
			if _, err := io.ReadFull(c, first); err != nil {
				c.Close()
				continue
			}
			lns[min(n, 1)].push(&prefixConn{Conn: c, prefix: first})
			n++
		}
	}()
	for i := range srvs {
		go func() { defer wg.Done(); _ = srvs[i].Serve(lns[i]) }()
	}
	t.Cleanup(func() {
		ln.Close()
		for _, srv := range srvs {
			srv.Stop()
		}
		wg.Wait()
	})
	return s
}

// prefixConn is a connection whose first bytes were read already.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(b []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(b, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// recordingCA records the tokens it is sent and issues nothing.
type recordingCA struct {
	api.UnimplementedCAServer
	s    *switchingCA
	i    int
	root *ca.RootCA
	srv  *grpc.Server
	once sync.Once
}

func (r *recordingCA) GetRootCACertificate(context.Context, *api.GetRootCACertificateRequest) (*api.GetRootCACertificateResponse, error) {
	if r.i == 0 {
		// GracefulStop sends GOAWAY on the connection first, then waits
		// for this call: the client sees the GOAWAY before the answer.
		r.once.Do(func() { go r.srv.GracefulStop() })
		time.Sleep(200 * time.Millisecond)
	}
	return &api.GetRootCACertificateResponse{Certificate: r.root.CertPEM()}, nil
}

// ProbePorts records the token too: it travels on the same connection.
func (r *recordingCA) ProbePorts(ctx context.Context, req *api.ProbePortsRequest) (*api.ProbePortsResponse, error) {
	r.s.mu.Lock()
	r.s.tokens[r.i] = req.GetToken()
	r.s.mu.Unlock()
	return sendProbes(ctx, net.IPv4(127, 0, 0, 1), 0, req.GetNonce()), nil
}

func (r *recordingCA) IssueNodeCertificate(_ context.Context, req *api.IssueNodeCertificateRequest) (*api.IssueNodeCertificateResponse, error) {
	r.s.mu.Lock()
	r.s.tokens[r.i] = req.GetToken()
	r.s.mu.Unlock()
	return nil, errors.New("test server: recorded")
}
