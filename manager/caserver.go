package manager

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/manager/ca"
	"github.com/shoal-project/shoal/raftstore"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// errBadToken is Swarm's answer to a wrong or rotated token: it does not say
// which part was wrong.
var errBadToken = api.Wrap(api.ErrInvalidArgument, errors.New("A valid join token is necessary to join this cluster"))

// caServer serves api.CA: the root certificate to anyone, node certificates
// to holders of a join token (a new node) or of a node certificate (a
// renewal after a role change). It runs on the leader (calls are forwarded),
// because issuing for a new node creates its Node object.
type caServer struct {
	api.UnimplementedCAServer
	m *Manager
}

// GetRootCACertificate answers the root join tokens pin: during a rotation,
// still the old one, until the rotation completes and the tokens change.
func (s *caServer) GetRootCACertificate(ctx context.Context, _ *api.GetRootCACertificateRequest) (*api.GetRootCACertificateResponse, error) {
	if cl := s.m.cluster(); len(cl.GetRootCa().GetCaCert()) > 0 {
		return &api.GetRootCACertificateResponse{Certificate: cl.GetRootCa().GetCaCert()}, nil
	}
	return &api.GetRootCACertificateResponse{Certificate: s.m.sec.Root().CertPEM()}, nil
}

// RenewNodeCertificate issues the caller a new certificate in its current
// role: a manager certificate only while the store also has the node as a
// manager, so that a demoted manager's renewal makes it a worker.
func (s *caServer) RenewNodeCertificate(ctx context.Context, req *api.RenewNodeCertificateRequest) (*api.IssueNodeCertificateResponse, error) {
	resp, err := s.renew(ctx, req)
	if err != nil {
		return nil, api.ToGRPC(err)
	}
	return resp, nil
}

func (s *caServer) renew(ctx context.Context, req *api.RenewNodeCertificateRequest) (*api.IssueNodeCertificateResponse, error) {
	caller, ok := CallerFrom(ctx)
	if !ok {
		return nil, errNoCert
	}
	_, signer, err := s.signer()
	if err != nil {
		return nil, err
	}
	var n *api.Node
	s.m.store.View(func(tx raftstore.ReadTx) { n = tx.GetNode(caller.NodeID) })
	if n == nil {
		return nil, api.Wrap(api.ErrNotFound, fmt.Errorf("node %s not found", caller.NodeID))
	}
	role := api.NodeRole_WORKER
	if caller.Role == ca.RoleManager && n.GetRole() == api.NodeRole_MANAGER {
		role = api.NodeRole_MANAGER
	}
	return s.sign(ctx, signer, req.GetCsr(), caller.NodeID, role, req.GetAddr(), nil)
}

func (s *caServer) IssueNodeCertificate(ctx context.Context, req *api.IssueNodeCertificateRequest) (*api.IssueNodeCertificateResponse, error) {
	resp, err := s.issue(ctx, req)
	if err != nil {
		return nil, api.ToGRPC(err)
	}
	return resp, nil
}

// signer is the cluster and the root that signs for it now.
func (s *caServer) signer() (*api.Cluster, *ca.RootCA, error) {
	cluster := s.m.cluster()
	if cluster == nil {
		return nil, nil, api.Wrap(api.ErrUnavailable, errors.New("the swarm is not initialized yet"))
	}
	signer, err := signerOf(cluster)
	return cluster, signer, err
}

func (s *caServer) issue(ctx context.Context, req *api.IssueNodeCertificateRequest) (*api.IssueNodeCertificateResponse, error) {
	cluster, signer, err := s.signer()
	if err != nil {
		return nil, err
	}
	var nodeID string
	var role api.NodeRole
	if req.GetToken() != "" {
		role, err = tokenRole(cluster, req.GetToken())
		if err != nil {
			return nil, err
		}
		nodeID = raftstore.NewID()
	} else {
		caller, ok := CallerFrom(ctx)
		if !ok {
			return nil, errBadToken
		}
		nodeID = caller.NodeID
		var n *api.Node
		s.m.store.View(func(tx raftstore.ReadTx) { n = tx.GetNode(nodeID) })
		if n == nil {
			return nil, api.Wrap(api.ErrNotFound, fmt.Errorf("node %s not found", nodeID))
		}
		role = n.GetSpec().GetDesiredRole()
	}
	var create *api.IssueNodeCertificateRequest
	if req.GetToken() != "" {
		create = req
	}
	return s.sign(ctx, signer, req.GetCsr(), nodeID, role, req.GetAddr(), create)
}

// sign issues nodeID a certificate for role and records it in the node
// object (its expiry is what `node inspect` shows, its issuer what a root
// rotation waits for). With create set, the node is new and is created with
// it: a bad request leaves no node behind.
func (s *caServer) sign(ctx context.Context, signer *ca.RootCA, csr []byte, nodeID string, role api.NodeRole, addr string, create *api.IssueNodeCertificateRequest) (*api.IssueNodeCertificateResponse, error) {
	var addrs []string
	if host, _, err := net.SplitHostPort(addr); err == nil {
		addrs = append(addrs, host)
	} else if addr != "" {
		addrs = append(addrs, addr)
	}
	certRole := ca.RoleWorker
	if role == api.NodeRole_MANAGER {
		certRole = ca.RoleManager
	}
	cert, err := signer.IssueNodeCertificate(csr, nodeID, certRole, addrs, s.m.now())
	if err != nil {
		if errors.Is(err, ca.ErrInvalidCSR) {
			return nil, api.Wrap(api.ErrInvalidArgument, err)
		}
		return nil, err
	}
	record, err := certificateRecord(cert, nodeID, role)
	if err != nil {
		return nil, err
	}
	if create != nil {
		if err := s.createNode(ctx, nodeID, role, create, record); err != nil {
			return nil, err
		}
	} else if err := s.m.updateNode(ctx, nodeID, func(n *api.Node) bool {
		n.Certificate = record
		return true
	}); err != nil {
		return nil, fmt.Errorf("record the certificate of node %s: %w", nodeID, err)
	}
	return &api.IssueNodeCertificateResponse{NodeId: nodeID, Role: role, Certificate: cert, RootCa: signer.BundlePEM()}, nil
}

// certificateRecord is the node object's copy of a certificate just issued.
func certificateRecord(certPEM []byte, nodeID string, role api.NodeRole) (*api.Certificate, error) {
	blk, _ := pem.Decode(certPEM)
	if blk == nil {
		return nil, errors.New("issued certificate is not PEM")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("issued certificate: %w", err)
	}
	return &api.Certificate{Role: role, Certificate: certPEM, Cn: nodeID, NotAfter: timestamppb.New(c.NotAfter)}, nil
}

// signerOf is the root that signs node certificates now, with the
// cluster's certificate expiry: during a rotation the new root (its
// certificates followed by the cross-signed intermediate), trusting the old
// one too.
func signerOf(cluster *api.Cluster) (*ca.RootCA, error) {
	rc := cluster.GetRootCa()
	cur, err := ca.ParseRootCA(rc.GetCaCert(), rc.GetCaKey())
	if err != nil || cur.Key == nil {
		return nil, api.Wrap(api.ErrFailedPrecondition, fmt.Errorf("cluster CA cannot sign: %v", err))
	}
	cur.Validity = cluster.GetSpec().GetNodeCertExpiry().AsDuration()
	rot := rc.GetRootRotation()
	if rot == nil {
		return cur, nil
	}
	next, err := ca.ParseRootCA(rot.GetCaCert(), rot.GetCaKey())
	if err != nil || next.Key == nil {
		return nil, api.Wrap(api.ErrFailedPrecondition, fmt.Errorf("new root CA of the rotation cannot sign: %v", err))
	}
	next.Validity = cur.Validity
	next.Trusted = []*x509.Certificate{cur.Cert}
	next.Intermediate = rot.GetCrossSignedCaCert()
	return next, nil
}

// trustOf is what a manager trusts for cluster: the signing root and,
// during a rotation, the old one.
func trustOf(cluster *api.Cluster) (*ca.RootCA, error) {
	rc := cluster.GetRootCa()
	cur, err := ca.ParseRootCA(rc.GetCaCert(), nil)
	if err != nil {
		return nil, err
	}
	rot := rc.GetRootRotation()
	if rot == nil {
		return cur, nil
	}
	next, err := ca.ParseRootCA(rot.GetCaCert(), nil)
	if err != nil {
		return nil, err
	}
	next.Trusted = []*x509.Certificate{cur.Cert}
	return next, nil
}

// tokenRole returns the role token grants in cluster.
func tokenRole(cluster *api.Cluster, token string) (api.NodeRole, error) {
	tok, err := ca.ParseToken(token)
	if err != nil {
		return 0, api.Wrap(api.ErrInvalidArgument, err)
	}
	tokens := cluster.GetRootCa().GetJoinTokens()
	for _, c := range []struct {
		s    string
		role api.NodeRole
	}{{tokens.GetManager(), api.NodeRole_MANAGER}, {tokens.GetWorker(), api.NodeRole_WORKER}} {
		want, err := ca.ParseToken(c.s)
		if err != nil {
			continue
		}
		if want.Digest == tok.Digest && want.SameSecret(tok) {
			return c.role, nil
		}
	}
	return 0, errBadToken
}

func (s *caServer) createNode(ctx context.Context, id string, role api.NodeRole, req *api.IssueNodeCertificateRequest, cert *api.Certificate) error {
	n := &api.Node{
		Id:          id,
		Certificate: cert,
		Spec:        &api.NodeSpec{DesiredRole: role, Availability: req.GetAvailability()},
		Role:        role,
		Status:      &api.NodeStatus{State: api.NodeStatus_UNKNOWN, Addr: hostOf(req.GetAddr())},
	}
	if role == api.NodeRole_MANAGER {
		n.ManagerStatus = &api.ManagerStatus{RaftId: id, Addr: req.GetAddr(), Reachability: api.ManagerStatus_UNKNOWN}
	}
	err := s.m.store.Update(ctx, func(tx raftstore.WriteTx) error { return tx.Create(proto.Clone(n).(*api.Node)) })
	if err != nil {
		return fmt.Errorf("register node %s: %w", id, err)
	}
	return nil
}

func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}
