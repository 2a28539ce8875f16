package manager

import (
	"context"
	"crypto/tls"
	"fmt"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/manager/ca"
	"google.golang.org/grpc"
)

// SecurityClientTLS is ClientTLS for credentials that change: each new
// connection presents the node's current certificate and verifies the
// manager against the roots trusted at that moment.
func SecurityClientTLS(sec *ca.Security) *tls.Config {
	return sec.TLSConfig(func(id ca.NodeIdentity) error {
		if id.Role != ca.RoleManager {
			return fmt.Errorf("peer %s is not a manager", id.NodeID)
		}
		return nil
	})
}

// RenewCertificate asks a manager (over conn, authenticated by the node's
// current certificate) for a new certificate in the node's current role
// with a fresh key. Root is the cluster's trust bundle at that moment.
func RenewCertificate(ctx context.Context, conn grpc.ClientConnInterface, advertiseAddr string) (*JoinResult, error) {
	key, csr, err := ca.NewNodeKey()
	if err != nil {
		return nil, err
	}
	resp, err := api.NewCAClient(conn).RenewNodeCertificate(ctx, &api.RenewNodeCertificateRequest{Csr: csr, Addr: advertiseAddr})
	if err != nil {
		return nil, fmt.Errorf("renew node certificate: %w", api.FromGRPC(err))
	}
	root, err := ca.ParseBundle(resp.GetRootCa())
	if err != nil {
		return nil, fmt.Errorf("renew node certificate: %w", err)
	}
	return &JoinResult{NodeID: resp.GetNodeId(), Role: resp.GetRole(), Cert: resp.GetCertificate(), Key: key, Root: root}, nil
}
