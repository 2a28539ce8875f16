package manager

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/manager/ca"
	"github.com/shoal-project/shoal/raftstore"
	"google.golang.org/protobuf/proto"
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

func (s *caServer) GetRootCACertificate(ctx context.Context, _ *api.GetRootCACertificateRequest) (*api.GetRootCACertificateResponse, error) {
	return &api.GetRootCACertificateResponse{Certificate: s.m.root.CertPEM()}, nil
}

func (s *caServer) IssueNodeCertificate(ctx context.Context, req *api.IssueNodeCertificateRequest) (*api.IssueNodeCertificateResponse, error) {
	resp, err := s.issue(ctx, req)
	if err != nil {
		return nil, api.ToGRPC(err)
	}
	return resp, nil
}

func (s *caServer) issue(ctx context.Context, req *api.IssueNodeCertificateRequest) (*api.IssueNodeCertificateResponse, error) {
	var cluster *api.Cluster
	s.m.store.View(func(tx raftstore.ReadTx) {
		if cs := tx.Clusters(); len(cs) > 0 {
			cluster = cs[0]
		}
	})
	if cluster == nil {
		return nil, api.Wrap(api.ErrUnavailable, errors.New("the swarm is not initialized yet"))
	}
	signer, err := ca.ParseRootCA(cluster.GetRootCa().GetCaCert(), cluster.GetRootCa().GetCaKey())
	if err != nil || signer.Key == nil {
		return nil, api.Wrap(api.ErrFailedPrecondition, fmt.Errorf("cluster CA cannot sign: %v", err))
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
	var addrs []string
	if host, _, err := net.SplitHostPort(req.GetAddr()); err == nil {
		addrs = append(addrs, host)
	} else if req.GetAddr() != "" {
		addrs = append(addrs, req.GetAddr())
	}
	certRole := ca.RoleWorker
	if role == api.NodeRole_MANAGER {
		certRole = ca.RoleManager
	}
	cert, err := signer.IssueNodeCertificate(req.GetCsr(), nodeID, certRole, addrs, time.Now())
	if err != nil {
		if errors.Is(err, ca.ErrInvalidCSR) {
			return nil, api.Wrap(api.ErrInvalidArgument, err)
		}
		return nil, err
	}
	// A new node is registered only once its certificate could be made: a
	// bad request leaves no node behind.
	if req.GetToken() != "" {
		if err := s.createNode(ctx, nodeID, role, req); err != nil {
			return nil, err
		}
	}
	return &api.IssueNodeCertificateResponse{NodeId: nodeID, Role: role, Certificate: cert, RootCa: signer.CertPEM()}, nil
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

func (s *caServer) createNode(ctx context.Context, id string, role api.NodeRole, req *api.IssueNodeCertificateRequest) error {
	n := &api.Node{
		Id:     id,
		Spec:   &api.NodeSpec{DesiredRole: role, Availability: req.GetAvailability()},
		Role:   role,
		Status: &api.NodeStatus{State: api.NodeStatus_UNKNOWN, Addr: hostOf(req.GetAddr())},
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
