package ca

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Security is a node's TLS identity as it changes over time: the roots it
// trusts (they change during a root rotation) and its certificate and key
// (renewed before they expire). TLS configurations from TLSConfig read it at
// every handshake, so a renewed certificate or a new trust bundle is used by
// the next connection without a restart; connections already open keep
// theirs. Safe for concurrent use.
type Security struct {
	// Now is the clock certificates are checked against (time.Now when nil);
	// tests inject one.
	Now func() time.Time

	mu   sync.RWMutex
	root *RootCA
	cert []byte
	key  *ecdsa.PrivateKey
	pair *tls.Certificate
}

// NewSecurity holds root (trust) and the node's certificate (PEM, leaf first)
// and key.
func NewSecurity(root *RootCA, certPEM []byte, key *ecdsa.PrivateKey) (*Security, error) {
	s := &Security{root: root}
	if err := s.SetCredentials(certPEM, key); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Security) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Root returns the roots the node trusts now.
func (s *Security) Root() *RootCA {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.root
}

// SetRoot replaces the trusted roots (a rotation started or ended).
func (s *Security) SetRoot(r *RootCA) {
	s.mu.Lock()
	s.root = r
	s.mu.Unlock()
}

// Credentials returns the node's certificate (PEM) and key.
func (s *Security) Credentials() ([]byte, *ecdsa.PrivateKey) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.cert, s.key
}

// Leaf returns the node's certificate, parsed.
func (s *Security) Leaf() *x509.Certificate {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.pair.Leaf
}

// SetCredentials replaces the node's certificate and key (after a renewal
// or a role change); the certificate must match the key.
func (s *Security) SetCredentials(certPEM []byte, key *ecdsa.PrivateKey) error {
	keyPEM, err := KeyPEM(key)
	if err != nil {
		return err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("node certificate: %w", err)
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return fmt.Errorf("node certificate: %w", err)
		}
	}
	s.mu.Lock()
	s.cert, s.key, s.pair = certPEM, key, &pair
	s.mu.Unlock()
	return nil
}

func (s *Security) keyPair() *tls.Certificate {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.pair
}

// VerifyChain checks a peer's certificates (DER, leaf first) against the
// roots trusted now and returns who the peer is.
func (s *Security) VerifyChain(rawCerts [][]byte) (NodeIdentity, error) {
	if len(rawCerts) == 0 {
		return NodeIdentity{}, errors.New("peer presented no certificate")
	}
	chain := make([]*x509.Certificate, 0, len(rawCerts))
	for _, raw := range rawCerts {
		c, err := x509.ParseCertificate(raw)
		if err != nil {
			return NodeIdentity{}, fmt.Errorf("peer certificate: %w", err)
		}
		chain = append(chain, c)
	}
	return s.Root().IdentifyChain(chain, s.now())
}

// TLSConfig is a mutual-TLS configuration that presents the node's current
// certificate and requires and verifies its peer's against the current
// roots. allowed, when set, is asked about every peer, so that the
// certificate of a removed node stops working at once rather than at its
// expiry.
func (s *Security) TLSConfig(allowed func(NodeIdentity) error) *tls.Config {
	verify := func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
		id, err := s.VerifyChain(rawCerts)
		if err != nil {
			return err
		}
		if allowed != nil {
			return allowed(id)
		}
		return nil
	}
	return &tls.Config{
		GetCertificate:       func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.keyPair(), nil },
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return s.keyPair(), nil },
		ClientAuth:           tls.RequireAnyClientCert,
		// Chains are verified in VerifyPeerCertificate against our roots, by
		// node identity rather than host name: nodes dial each other by IP.
		InsecureSkipVerify:    true,
		VerifyPeerCertificate: verify,
		MinVersion:            tls.VersionTLS13,
	}
}
