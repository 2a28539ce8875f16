package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"
)

// Roles as they appear in a node certificate's OrganizationalUnit, as in Swarm.
const (
	RoleManager = "swarm-manager"
	RoleWorker  = "swarm-worker"
)

// Validity periods, Swarm's defaults: a 20-year root, 90-day node certificates,
// backdated an hour so that small clock skew between nodes does not reject them.
const (
	RootValidity = 20 * 365 * 24 * time.Hour
	NodeValidity = 90 * 24 * time.Hour
	backdate     = time.Hour
)

// ErrInvalidCSR is returned for a certificate request that cannot be signed.
var ErrInvalidCSR = errors.New("invalid certificate request")

// RootCA holds the cluster's root certificate and, on managers, its key.
type RootCA struct {
	Cert *x509.Certificate
	// Key is nil on nodes that can verify but not sign.
	Key *ecdsa.PrivateKey
	// Trusted are further roots whose certificates are accepted too: the
	// other root while a root rotation is in progress.
	Trusted []*x509.Certificate
	// Validity of the node certificates this root issues; NodeValidity when 0.
	Validity time.Duration
	// Intermediate (PEM) is sent after each certificate this root issues: the
	// cross-signed root during a rotation, so that nodes that trust only the
	// old root can verify the new certificates.
	Intermediate []byte
}

// NewRootCA creates a self-signed ECDSA P-256 root for the cluster clusterID.
func NewRootCA(clusterID string, now time.Time) (*RootCA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("root CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "shoal-root-ca", Organization: []string{clusterID}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(RootValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		// One intermediate below the root: the cross-signed next root of a
		// rotation (node certificates never sign).
		MaxPathLen: 1,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("root CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("root CA certificate: %w", err)
	}
	return &RootCA{Cert: cert, Key: key}, nil
}

// ParseRootCA reads a root from PEM; keyPEM may be empty on nodes that only verify.
func ParseRootCA(certPEM, keyPEM []byte) (*RootCA, error) {
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("root CA: %w", err)
	}
	if !cert.IsCA {
		return nil, errors.New("root CA: certificate is not a CA")
	}
	r := &RootCA{Cert: cert}
	if len(keyPEM) > 0 {
		if r.Key, err = ParseKeyPEM(keyPEM); err != nil {
			return nil, fmt.Errorf("root CA: %w", err)
		}
		if !r.Key.PublicKey.Equal(cert.PublicKey) {
			return nil, errors.New("root CA: key does not match certificate")
		}
	}
	return r, nil
}

// CertPEM returns the root certificate in PEM.
func (r *RootCA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.Cert.Raw})
}

// KeyPEM returns the root key in PEM, or nil if this copy cannot sign.
func (r *RootCA) KeyPEM() ([]byte, error) {
	if r.Key == nil {
		return nil, nil
	}
	return KeyPEM(r.Key)
}

// Pool returns a pool with the root and the other trusted roots, for
// verifying peers.
func (r *RootCA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(r.Cert)
	for _, c := range r.Trusted {
		p.AddCert(c)
	}
	return p
}

// IssueNodeCertificate signs a CSR for node nodeID with role (RoleManager or
// RoleWorker). The certificate's CommonName is the node ID, its
// OrganizationalUnit the role and its Organization the cluster ID; manager
// certificates also name addrs, so that workers can verify the manager they dial.
func (r *RootCA) IssueNodeCertificate(csrDER []byte, nodeID, role string, addrs []string, now time.Time) ([]byte, error) {
	if r.Key == nil {
		return nil, errors.New("issue certificate: this node holds no CA key")
	}
	if role != RoleManager && role != RoleWorker {
		return nil, fmt.Errorf("issue certificate: unknown role %q", role)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: signature: %v", ErrInvalidCSR, err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:         nodeID,
			OrganizationalUnit: []string{role},
			Organization:       r.Cert.Subject.Organization,
		},
		NotBefore:   now.Add(-backdate),
		NotAfter:    now.Add(r.validity()),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:    []string{nodeID, role},
	}
	for _, a := range addrs {
		if ip := net.ParseIP(a); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, r.Cert, csr.PublicKey, r.Key)
	if err != nil {
		return nil, fmt.Errorf("issue certificate for %s: %w", nodeID, err)
	}
	return append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), r.Intermediate...), nil
}

func (r *RootCA) validity() time.Duration {
	if r.Validity > 0 {
		return r.Validity
	}
	return NodeValidity
}

// NodeIdentity is what a verified peer certificate says about its node.
type NodeIdentity struct {
	NodeID    string
	Role      string
	ClusterID string
}

// Identify verifies a peer's certificate against the trusted roots and returns who it is.
func (r *RootCA) Identify(cert *x509.Certificate, now time.Time) (NodeIdentity, error) {
	return r.IdentifyChain([]*x509.Certificate{cert}, now)
}

// IdentifyChain is Identify for a certificate (chain[0]) sent with
// intermediates (chain[1:]), as a peer sends them in its TLS handshake.
func (r *RootCA) IdentifyChain(chain []*x509.Certificate, now time.Time) (NodeIdentity, error) {
	if len(chain) == 0 {
		return NodeIdentity{}, errors.New("verify node certificate: no certificate")
	}
	cert := chain[0]
	var inter *x509.CertPool
	if len(chain) > 1 {
		inter = x509.NewCertPool()
		for _, c := range chain[1:] {
			inter.AddCert(c)
		}
	}
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots:         r.Pool(),
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return NodeIdentity{}, fmt.Errorf("verify node certificate: %w", err)
	}
	return IdentityOf(cert)
}

// IdentityOf reads who a certificate names, without verifying it: for a
// certificate already verified (at a TLS handshake).
func IdentityOf(cert *x509.Certificate) (NodeIdentity, error) {
	id := NodeIdentity{NodeID: cert.Subject.CommonName}
	if len(cert.Subject.OrganizationalUnit) == 1 {
		id.Role = cert.Subject.OrganizationalUnit[0]
	}
	if len(cert.Subject.Organization) == 1 {
		id.ClusterID = cert.Subject.Organization[0]
	}
	if id.NodeID == "" || (id.Role != RoleManager && id.Role != RoleWorker) {
		return NodeIdentity{}, errors.New("verify node certificate: no node ID or role")
	}
	return id, nil
}

// NewNodeKey makes a node's key and a CSR for it.
func NewNodeKey() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("node key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "shoal-node"},
	}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("node CSR: %w", err)
	}
	return key, csr, nil
}

// TLSConfig builds a mutual-TLS configuration for a node holding certPEM/key:
// it presents its certificate and requires and verifies its peer's against the
// root. allowed, when set, is asked about every peer, so that the certificate of
// a removed node stops working at once rather than at its expiry. The
// configuration is fixed; Security.TLSConfig follows renewals.
func (r *RootCA) TLSConfig(certPEM []byte, key *ecdsa.PrivateKey, allowed func(NodeIdentity) error) (*tls.Config, error) {
	sec, err := NewSecurity(r, certPEM, key)
	if err != nil {
		return nil, err
	}
	return sec.TLSConfig(allowed), nil
}

// KeyPEM encodes an ECDSA key.
func KeyPEM(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

// ParseKeyPEM decodes an ECDSA key.
func ParseKeyPEM(b []byte) (*ecdsa.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("key: no PEM block")
	}
	k, err := x509.ParseECPrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("key: %w", err)
	}
	return k, nil
}

func parseCertPEM(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(blk.Bytes)
}

func randomSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial: %w", err)
	}
	return n, nil
}
