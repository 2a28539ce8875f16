package ca

import (
	"crypto/ecdsa"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func TestTokenRoundTrip(t *testing.T) {
	root, err := NewRootCA("cluster1", now)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := NewToken(root.Cert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	s := tok.String()
	if !strings.HasPrefix(s, "SWMTKN-1-") || len(s) != len("SWMTKN-1-")+digestLen+1+secretLen {
		t.Fatalf("token %q has the wrong shape", s)
	}
	back, err := ParseToken(s)
	if err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	if back != tok || !back.MatchesCA(root.Cert.Raw) || !back.SameSecret(tok) {
		t.Fatal("round trip changed the token")
	}
	other, _ := NewRootCA("cluster2", now)
	if back.MatchesCA(other.Cert.Raw) {
		t.Fatal("token matches another cluster's CA")
	}
	rotated, _ := NewToken(root.Cert.Raw)
	if rotated.SameSecret(tok) {
		t.Fatal("a rotated token kept its secret")
	}
}

func TestParseTokenRefusesMalformed(t *testing.T) {
	good := Token{}.String()
	for _, s := range []string{
		"", "SWMTKN", "SWMTKN-1", "SWMTKN-2-" + good[9:], "XXXXXX-1-" + good[9:],
		good + "0", good[:len(good)-1], strings.ToUpper(good[:9]) + strings.ToUpper(good[9:]) + "Z",
		"SWMTKN-1-" + strings.Repeat("z", digestLen) + "-" + strings.Repeat("0", secretLen), // > 256 bits
		"SWMTKN-1-" + strings.Repeat("!", digestLen) + "-" + strings.Repeat("0", secretLen),
		good + "-extra",
	} {
		if _, err := ParseToken(s); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("ParseToken(%q) = %v, want ErrInvalidToken", s, err)
		}
	}
}

func FuzzParseToken(f *testing.F) {
	f.Add(Token{}.String())
	f.Add("SWMTKN-1-abc-def")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseToken(s)
		if err != nil {
			return
		}
		// Whatever parses must render back to the same canonical text.
		if again, err := ParseToken(tok.String()); err != nil || again != tok {
			t.Fatalf("%q parsed but does not round-trip", s)
		}
	})
}

func issue(t *testing.T, root *RootCA, nodeID, role string) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	key, csr, err := NewNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := root.IssueNodeCertificate(csr, nodeID, role, []string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func TestIssueAndIdentify(t *testing.T) {
	root, _ := NewRootCA("c1", now)
	certPEM, _ := issue(t, root, "node-a", RoleWorker)
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	id, err := root.Identify(cert, time.Now())
	if err != nil || id != (NodeIdentity{NodeID: "node-a", Role: RoleWorker, ClusterID: "c1"}) {
		t.Fatalf("identify: %+v %v", id, err)
	}
	other, _ := NewRootCA("c2", now)
	if _, err := other.Identify(cert, time.Now()); err == nil {
		t.Fatal("another cluster's root accepted the certificate")
	}
	if _, err := root.Identify(cert, time.Now().Add(NodeValidity+2*time.Hour)); err == nil {
		t.Fatal("an expired certificate was accepted")
	}
	if _, err := root.IssueNodeCertificate([]byte("garbage"), "n", RoleWorker, nil, now); !errors.Is(err, ErrInvalidCSR) {
		t.Fatalf("garbage CSR: %v", err)
	}
	if _, err := root.IssueNodeCertificate(nil, "n", "swarm-admin", nil, now); err == nil {
		t.Fatal("unknown role accepted")
	}
	// A verify-only copy of the root cannot sign.
	ro, err := ParseRootCA(root.CertPEM(), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, csr, _ := NewNodeKey()
	if _, err := ro.IssueNodeCertificate(csr, "n", RoleWorker, nil, now); err == nil {
		t.Fatal("a root without key signed")
	}
	keyPEM, _ := root.KeyPEM()
	if back, err := ParseRootCA(root.CertPEM(), keyPEM); err != nil || back.Key == nil {
		t.Fatalf("PEM round trip: %v", err)
	}
}

// TestMutualTLS does real TLS handshakes over loopback: peers of the cluster get
// through, a certificate from another CA and a removed node's certificate do not.
func TestMutualTLS(t *testing.T) {
	root, _ := NewRootCA("c1", time.Now())
	removed := map[string]bool{"node-gone": true}
	allowed := func(id NodeIdentity) error {
		if removed[id.NodeID] {
			return errors.New("node " + id.NodeID + " was removed from the cluster")
		}
		return nil
	}
	mgrCert, mgrKey := issue(t, root, "mgr", RoleManager)
	srvCfg, err := root.TLSConfig(mgrCert, mgrKey, allowed)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srvCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if err := c.(*tls.Conn).Handshake(); err == nil {
					io.WriteString(c, "ok")
				}
			}()
		}
	}()
	dial := func(root *RootCA, nodeID string) error {
		cert, key := issue(t, root, nodeID, RoleWorker)
		cfg, err := root.TLSConfig(cert, key, nil)
		if err != nil {
			return err
		}
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), cfg)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(c)
		if err != nil {
			return err
		}
		if string(b) != "ok" {
			return errors.New("server refused the handshake")
		}
		return nil
	}
	if err := dial(root, "worker-1"); err != nil {
		t.Fatalf("member refused: %v", err)
	}
	if err := dial(root, "node-gone"); err == nil {
		t.Fatal("a removed node's certificate still works")
	}
	stranger, _ := NewRootCA("c2", time.Now())
	if err := dial(stranger, "worker-x"); err == nil {
		t.Fatal("a certificate from another CA was accepted")
	}
}
