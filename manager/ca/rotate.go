package ca

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"
)

// Renewal timing, as Swarm: a node renews its certificate once about two
// thirds of its life have passed, at a random point between 7/12 and 3/4 of
// it, so that the nodes that joined together do not all renew together.
const (
	renewFrom   = 7.0 / 12
	renewSpread = 1.0 / 6
)

// RenewAt is when a node should renew cert: jitter in [0, 1) picks the point
// in the renewal window. The life counted is from issue (NotBefore plus the
// backdate) to NotAfter.
func RenewAt(cert *x509.Certificate, jitter float64) time.Time {
	issued := cert.NotBefore.Add(backdate)
	life := cert.NotAfter.Sub(issued)
	if life <= 0 {
		return issued
	}
	return issued.Add(time.Duration(float64(life) * (renewFrom + renewSpread*jitter)))
}

// SignedBy reports whether cert was signed by root's key directly.
func SignedBy(cert, root *x509.Certificate) bool {
	return cert.CheckSignatureFrom(root) == nil
}

// CrossSign certifies next's key with r (the current root): the
// intermediate that lets nodes trusting only r verify certificates that
// next signs, while a rotation is in progress. It expires with next.
func (r *RootCA) CrossSign(next *x509.Certificate, now time.Time) ([]byte, error) {
	if r.Key == nil {
		return nil, errors.New("cross-sign: this node holds no CA key")
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               next.Subject,
		SubjectKeyId:          next.SubjectKeyId,
		NotBefore:             now.Add(-backdate),
		NotAfter:              next.NotAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	if tmpl.NotAfter.After(r.Cert.NotAfter) {
		tmpl.NotAfter = r.Cert.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, r.Cert, next.PublicKey, r.Key)
	if err != nil {
		return nil, fmt.Errorf("cross-sign the new root: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// ParseBundle reads a trust bundle: PEM certificates, the signing root
// first (it becomes Cert), then the other trusted roots.
func ParseBundle(b []byte) (*RootCA, error) {
	var certs []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("trust bundle: %w", err)
		}
		if !c.IsCA {
			return nil, errors.New("trust bundle: certificate is not a CA")
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("trust bundle: no PEM certificate")
	}
	return &RootCA{Cert: certs[0], Trusted: certs[1:]}, nil
}

// BundlePEM is the trust bundle ParseBundle reads: Cert, then Trusted.
func (r *RootCA) BundlePEM() []byte {
	out := r.CertPEM()
	for _, c := range r.Trusted {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// NextRoot starts a root rotation away from r (which must hold its key): a
// new root for the same cluster and cross, the new root's key certified by
// r, which nodes that trust only r need to verify the new certificates.
func (r *RootCA) NextRoot(now time.Time) (next *RootCA, cross []byte, err error) {
	if r.Key == nil {
		return nil, nil, errors.New("root rotation: this node holds no CA key")
	}
	clusterID := ""
	if len(r.Cert.Subject.Organization) == 1 {
		clusterID = r.Cert.Subject.Organization[0]
	}
	if next, err = NewRootCA(clusterID, now); err != nil {
		return nil, nil, err
	}
	if cross, err = r.CrossSign(next.Cert, now); err != nil {
		return nil, nil, err
	}
	return next, cross, nil
}
