package ca

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"
)

// fakeClock is the injectable clock of these tests: certificates are
// issued and checked at its time, which the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func issueAt(t *testing.T, root *RootCA, nodeID, role string, at time.Time) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	key, csr, err := NewNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := root.IssueNodeCertificate(csr, nodeID, role, []string{"127.0.0.1"}, at)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// handshake runs a real TLS 1.3 handshake over a pipe between a client and
// a server Security and reports the first error of either side.
func handshake(client, server *Security) error {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	errs := make(chan error, 2)
	go func() {
		c := tls.Server(b, server.TLSConfig(nil))
		c.SetDeadline(time.Now().Add(5 * time.Second))
		err := c.Handshake()
		if err == nil {
			_, err = io.WriteString(c, "ok")
		}
		if err != nil {
			b.Close()
		}
		errs <- err
	}()
	c := tls.Client(a, client.TLSConfig(nil))
	c.SetDeadline(time.Now().Add(5 * time.Second))
	err := c.Handshake()
	if err == nil {
		buf := make([]byte, 2)
		_, err = io.ReadFull(c, buf)
	}
	if err != nil {
		a.Close()
	}
	if serr := <-errs; serr != nil {
		return serr
	}
	return err
}

func newSecurity(t *testing.T, root *RootCA, cert []byte, key *ecdsa.PrivateKey, clock *fakeClock) *Security {
	t.Helper()
	s, err := NewSecurity(root, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	s.Now = clock.Now
	return s
}

// TestRenewAtTwoThirds: the renewal point is within the window around two
// thirds of the certificate's life, counted from its issue, and differs
// between nodes.
func TestRenewAtTwoThirds(t *testing.T) {
	root, _ := NewRootCA("c1", now)
	root.Validity = time.Hour
	certPEM, _ := issueAt(t, root, "n1", RoleWorker, now)
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	if got := cert.NotAfter.Sub(now); got != time.Hour {
		t.Fatalf("validity %s, want the configured 1h", got)
	}
	lo, mid, hi := RenewAt(cert, 0), RenewAt(cert, 0.5), RenewAt(cert, 0.999999)
	if lo != now.Add(35*time.Minute) || mid != now.Add(40*time.Minute) || hi.Sub(now.Add(45*time.Minute)) > time.Second {
		t.Fatalf("renewal window %s .. %s .. %s after issue, want 35m .. 40m .. 45m", lo.Sub(now), mid.Sub(now), hi.Sub(now))
	}
	seen := map[time.Time]bool{}
	for range 10 {
		seen[RenewAt(cert, rand.Float64())] = true
	}
	if len(seen) < 5 {
		t.Fatalf("no jitter: %d distinct renewal times of 10", len(seen))
	}
}

// TestRenewalKeepsWorking drives a node and a manager with a 1-hour expiry
// on an injected clock through six renewals (six hours): at every renewal
// point the old certificate still works, and the renewed one works until
// the next. Without renewal, the certificate really expires: the same
// handshake fails past its NotAfter.
func TestRenewalKeepsWorking(t *testing.T) {
	clock := &fakeClock{t: now}
	root, _ := NewRootCA("c1", now)
	root.Validity = time.Hour
	verify, _ := ParseRootCA(root.CertPEM(), nil)
	mc, mk := issueAt(t, root, "mgr", RoleManager, now)
	mgr := newSecurity(t, verify, mc, mk, clock)
	wc, wk := issueAt(t, root, "w1", RoleWorker, now)
	node := newSecurity(t, verify, wc, wk, clock)
	stale := newSecurity(t, verify, wc, wk, clock) // never renewed

	for i := range 6 {
		at := RenewAt(node.Leaf(), rand.Float64())
		clock.Set(at.Add(-time.Second))
		if err := handshake(node, mgr); err != nil {
			t.Fatalf("renewal %d: just before renewing, the node's certificate fails: %v", i, err)
		}
		clock.Set(at)
		c, k := issueAt(t, root, "w1", RoleWorker, at)
		if err := node.SetCredentials(c, k); err != nil {
			t.Fatal(err)
		}
		// The manager renews too (here at the node's points, which are
		// within its window as both were issued together).
		mcert, mkey := issueAt(t, root, "mgr", RoleManager, at)
		if err := mgr.SetCredentials(mcert, mkey); err != nil {
			t.Fatal(err)
		}
		if err := handshake(node, mgr); err != nil {
			t.Fatalf("renewal %d: renewed certificate fails: %v", i, err)
		}
	}
	if clock.Now().Sub(now) < 3*time.Hour {
		t.Fatalf("six renewals covered only %s", clock.Now().Sub(now))
	}
	clock.Set(now.Add(30 * time.Minute))
	if err := handshake(stale, stale); err != nil {
		t.Fatalf("before expiry, the first certificate works: %v", err)
	}
	clock.Set(now.Add(time.Hour + time.Minute))
	if err := handshake(stale, mgr); err == nil {
		t.Fatal("a certificate past its expiry was accepted")
	}
}

// TestRootRotationCrossSigned: the new root's certificates carry the
// cross-signed intermediate, so a node that trusts only the old root (it
// was offline when the rotation started) verifies the managers and is
// verified by them while both roots are trusted; once the old root is
// dropped, its old certificate is refused.
func TestRootRotationCrossSigned(t *testing.T) {
	clock := &fakeClock{t: now}
	old, _ := NewRootCA("c1", now)
	next, cross, err := old.NextRoot(now)
	if err != nil {
		t.Fatal(err)
	}
	if org := next.Cert.Subject.Organization; len(org) != 1 || org[0] != "c1" {
		t.Fatalf("new root's organization %v, want the cluster ID", org)
	}
	signer := &RootCA{Cert: next.Cert, Key: next.Key, Trusted: []*x509.Certificate{old.Cert}, Intermediate: cross}
	during, err := ParseBundle(signer.BundlePEM())
	if err != nil || !during.Cert.Equal(next.Cert) || len(during.Trusted) != 1 || !during.Trusted[0].Equal(old.Cert) {
		t.Fatalf("trust bundle round trip: %v", err)
	}
	oldOnly, _ := ParseRootCA(old.CertPEM(), nil)
	nextOnly, _ := ParseRootCA(next.CertPEM(), nil)

	mc, mk := issueAt(t, signer, "mgr", RoleManager, now)
	mgr := newSecurity(t, during, mc, mk, clock)
	oc, ok := issueAt(t, old, "offline", RoleWorker, now)
	offline := newSecurity(t, oldOnly, oc, ok, clock)
	if err := handshake(offline, mgr); err != nil {
		t.Fatalf("during the rotation, a node with the old root and certificate is refused: %v", err)
	}
	// Without the intermediate, the old-root node could not verify.
	bare := &RootCA{Cert: next.Cert, Key: next.Key}
	bc, bk := issueAt(t, bare, "mgr", RoleManager, now)
	if err := handshake(offline, newSecurity(t, during, bc, bk, clock)); err == nil {
		t.Fatal("a new-root certificate without the cross-signed intermediate verified against the old root")
	}
	// The node renews onto the new root and keeps working after completion.
	nc, nk := issueAt(t, signer, "offline", RoleWorker, now)
	if err := offline.SetCredentials(nc, nk); err != nil {
		t.Fatal(err)
	}
	offline.SetRoot(during)
	mgr.SetRoot(nextOnly)
	if err := handshake(offline, mgr); err != nil {
		t.Fatalf("after completion, a renewed node is refused: %v", err)
	}
	// A node that stayed away through the whole rotation is refused after it.
	late := newSecurity(t, oldOnly, oc, ok, clock)
	if err := handshake(late, mgr); err == nil {
		t.Fatal("after completion, a certificate of the old root was accepted")
	}
	if _, err := old.CrossSign(next.Cert, now); err != nil {
		t.Fatal(err)
	}
	if _, err := oldOnly.CrossSign(next.Cert, now); err == nil {
		t.Fatal("a root without its key cross-signed")
	}
	if _, err := ParseBundle([]byte("junk")); err == nil {
		t.Fatal("a bundle without certificates parsed")
	}
}
