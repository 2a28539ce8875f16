package manager

import (
	"context"
	"errors"
	"net"
	"strings"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/manager/ca"
	"github.com/shoal-project/shoal/raftstore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// Metadata a manager adds when it forwards a call to the leader: who the
// original caller was (roleAnonymous for a caller without a certificate)
// and where it called from. The leader believes it only from a manager's
// certificate, so a worker cannot pose as someone else.
const (
	mdForwardedNode = "shoal-forwarded-node"
	mdForwardedRole = "shoal-forwarded-role"
	mdForwardedAddr = "shoal-forwarded-addr"
	roleAnonymous   = "anonymous"
)

// Caller is who made an RPC: from the peer's verified certificate, or from a
// forwarding manager's metadata. Anonymous callers (a node joining with a
// token) have an empty NodeID.
type Caller struct {
	NodeID string
	Role   string // ca.RoleManager or ca.RoleWorker
}

type callerKey struct{}

// CallerFrom returns the caller that the manager's interceptors attached to
// ctx; ok is false for anonymous calls.
func CallerFrom(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok && c.NodeID != ""
}

var (
	errNoCert     = api.Wrap(api.ErrInvalidArgument, errors.New("this call needs a node certificate of the cluster"))
	errNotManager = api.Wrap(api.ErrFailedPrecondition, errors.New("This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager."))
)

// access is what a method requires of its caller.
type access int

const (
	anyone   access = iota // join: the token is checked by the handler
	member                 // any node of the cluster
	managers               // manager certificates only
)

func methodAccess(method string) access {
	switch {
	case strings.HasPrefix(method, "/shoal.api.CA/"):
		return anyone
	case strings.HasPrefix(method, "/shoal.api.Dispatcher/"),
		method == api.LogBroker_ListenSubscriptions_FullMethodName, method == api.LogBroker_PublishLogs_FullMethodName:
		return member
	}
	return managers
}

// identify finds the caller of ctx's RPC. Its certificate was verified at
// the connection's TLS handshake (the demux), against the roots trusted and
// at the time of that handshake: a connection stays authenticated, as in TLS
// and Swarm, so that certificate renewals and root rotations never cut open
// connections; new connections need a current certificate.
// For a call a manager forwarded, from is the original caller's address.
func identify(ctx context.Context) (c Caller, from net.Addr, err error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Caller{}, nil, nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return Caller{}, nil, nil
	}
	id, err := ca.IdentityOf(info.State.PeerCertificates[0])
	if err != nil {
		return Caller{}, nil, api.Wrap(api.ErrInvalidArgument, err)
	}
	c = Caller{NodeID: id.NodeID, Role: id.Role}
	if c.Role == ca.RoleManager {
		md, _ := metadata.FromIncomingContext(ctx)
		// The role is always set by a forwarding manager; an anonymous
		// caller must not become the forwarding manager itself.
		if r := md.Get(mdForwardedRole); len(r) == 1 {
			c = Caller{Role: r[0]}
			if n := md.Get(mdForwardedNode); len(n) == 1 {
				c.NodeID = n[0]
			}
			if c.Role == roleAnonymous || c.NodeID == "" {
				c = Caller{}
			}
			if a := md.Get(mdForwardedAddr); len(a) == 1 {
				from = forwardedAddr(a[0])
			}
		}
	}
	return c, from, nil
}

// forwardedAddr is the address a forwarded call came from.
type forwardedAddr string

func (a forwardedAddr) Network() string { return "tcp" }
func (a forwardedAddr) String() string  { return string(a) }

// authorize identifies the caller of method, checks it may call it and
// returns ctx with the caller attached.
func (m *Manager) authorize(ctx context.Context, method string) (context.Context, error) {
	c, from, err := identify(ctx)
	if err != nil {
		return nil, err
	}
	if from != nil {
		// Handlers (the dispatcher records a node's address) see the
		// original caller's address, not the forwarding manager's.
		p, _ := peer.FromContext(ctx)
		ctx = peer.NewContext(ctx, &peer.Peer{Addr: from, LocalAddr: p.LocalAddr, AuthInfo: p.AuthInfo})
	}
	switch methodAccess(method) {
	case member:
		if c.NodeID == "" {
			return nil, errNoCert
		}
	case managers:
		if c.NodeID == "" {
			return nil, errNoCert
		}
		if c.Role != ca.RoleManager {
			return nil, errNotManager
		}
	}
	if c.NodeID != "" {
		if err := m.allowed(ca.NodeIdentity{NodeID: c.NodeID, Role: c.Role}); err != nil {
			return nil, api.Wrap(api.ErrFailedPrecondition, err)
		}
	}
	return context.WithValue(ctx, callerKey{}, c), nil
}

func (m *Manager) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	ctx, err := m.authorize(ctx, info.FullMethod)
	if err != nil {
		return nil, api.ToGRPC(err)
	}
	if forwards(info.FullMethod) {
		if conn, addr, err := m.leaderConn(ctx); err != nil {
			if !isRead(info.FullMethod) {
				return nil, api.ToGRPC(err)
			}
			// No leader: reads are answered from this manager's copy, so
			// that a cluster without quorum can still be looked at.
		} else if conn != nil {
			resp, err := m.forwardToLeader(ctx, conn, addr, info.FullMethod, req)
			if errors.Is(err, errLeaderLost) {
				if isRead(info.FullMethod) {
					return h(ctx, req) // as without a leader: from this copy
				}
				return nil, api.ToGRPC(m.leaderLost())
			}
			if err == nil && info.FullMethod == api.CA_IssueNodeCertificate_FullMethodName {
				m.awaitNode(ctx, resp.(*api.IssueNodeCertificateResponse).GetNodeId())
			}
			return resp, err
		}
	}
	return h(ctx, req)
}

func (m *Manager) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	ctx, err := m.authorize(ss.Context(), info.FullMethod)
	if err != nil {
		return api.ToGRPC(err)
	}
	if forwards(info.FullMethod) {
		conn, addr, err := m.leaderConn(ctx)
		if err != nil {
			return api.ToGRPC(err)
		}
		if conn != nil {
			return m.streamToLeader(ctx, conn, addr, info, ss)
		}
	}
	return h(srv, &callerStream{ServerStream: ss, ctx: ctx})
}

// forwards reports whether method is served by the leader only: all but
// the root certificate, which every manager has.
func forwards(method string) bool {
	return method != api.CA_GetRootCACertificate_FullMethodName
}

func isRead(method string) bool {
	i := strings.LastIndexByte(method, '/')
	name := method[i+1:]
	return strings.HasPrefix(name, "Get") || strings.HasPrefix(name, "List")
}

// awaitNode waits, briefly, until this manager's store holds node id. A node
// that joined through this follower uses its new certificate here next, and
// the handshake refuses nodes the store does not hold.
func (m *Manager) awaitNode(ctx context.Context, id string) {
	if id == "" {
		return
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		var ok bool
		m.store.View(func(tx raftstore.ReadTx) { ok = tx.GetNode(id) != nil })
		if ok || time.Now().After(deadline) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

type callerStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *callerStream) Context() context.Context { return s.ctx }

// nodeIDOf is the dispatcher's Config.NodeID: the caller found by the
// interceptor.
func nodeIDOf(ctx context.Context) (string, error) {
	c, ok := CallerFrom(ctx)
	if !ok {
		return "", errNoCert
	}
	return c.NodeID, nil
}
