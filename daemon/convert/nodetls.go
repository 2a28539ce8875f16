package convert

import (
	"crypto/x509"
	"encoding/pem"
	"time"

	"github.com/moby/moby/api/types/swarm"
	"github.com/shoal-project/shoal/api"
)

// Node is a node as shoal's /nodes routes answer it: Docker's, with
// Description.TLSInfo filled in as dockerd does (the trust root, the
// issuer's subject and public key) and one field Docker lacks:
// Description.TLSInfo.CertExpiry, when the node's current certificate
// expires (it renews at about two thirds of its life).
type Node struct {
	swarm.Node
	Description NodeDescription `json:"Description"`
}

// NodeDescription is swarm.NodeDescription with the extended TLSInfo.
type NodeDescription struct {
	swarm.NodeDescription
	TLSInfo NodeTLSInfo `json:"TLSInfo"`
}

// NodeTLSInfo is swarm.TLSInfo plus the certificate's expiry.
type NodeTLSInfo struct {
	swarm.TLSInfo
	CertExpiry *time.Time `json:",omitempty"`
}

// NodeWithTLS converts n for /nodes; trust is the cluster's trust bundle
// (PEM: the root, and the new one during a rotation), which names the
// issuer's public key.
func NodeWithTLS(n *api.Node, trust []byte) Node {
	out := Node{Node: NodeToSwarm(n)}
	out.Description.NodeDescription = out.Node.Description
	certs := parsePEMCerts(n.GetCertificate().GetCertificate())
	if len(certs) == 0 {
		return out
	}
	leaf := certs[0]
	info := NodeTLSInfo{TLSInfo: swarm.TLSInfo{TrustRoot: string(trust), CertIssuerSubject: leaf.RawIssuer}}
	for _, c := range append(certs[1:], parsePEMCerts(trust)...) {
		if leaf.CheckSignatureFrom(c) == nil {
			info.CertIssuerPublicKey = c.RawSubjectPublicKeyInfo
			break
		}
	}
	expiry := leaf.NotAfter.UTC()
	info.CertExpiry = &expiry
	out.Description.TLSInfo = info
	out.Node.Description.TLSInfo = info.TLSInfo
	return out
}

func parsePEMCerts(b []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return out
		}
		if c, err := x509.ParseCertificate(blk.Bytes); err == nil && blk.Type == "CERTIFICATE" {
			out = append(out, c)
		}
	}
}
