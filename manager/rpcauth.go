package manager

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/manager/ca"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// Metadata a manager adds when it forwards a call to the leader: who the
// original caller was. The leader believes it only from a manager's
// certificate, so a worker cannot pose as someone else.
const (
	mdForwardedNode = "shoal-forwarded-node"
	mdForwardedRole = "shoal-forwarded-role"
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
		method == "/shoal.api.LogBroker/ListenSubscriptions", method == "/shoal.api.LogBroker/PublishLogs":
		return member
	}
	return managers
}

// identify finds the caller of ctx's RPC; rootCA verifies certificates.
func identify(ctx context.Context, root *ca.RootCA) (Caller, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Caller{}, nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return Caller{}, nil
	}
	id, err := root.Identify(info.State.PeerCertificates[0], time.Now())
	if err != nil {
		return Caller{}, api.Wrap(api.ErrInvalidArgument, err)
	}
	c := Caller{NodeID: id.NodeID, Role: id.Role}
	if c.Role == ca.RoleManager {
		md, _ := metadata.FromIncomingContext(ctx)
		if n := md.Get(mdForwardedNode); len(n) == 1 {
			c.NodeID = n[0]
			c.Role = ""
			if r := md.Get(mdForwardedRole); len(r) == 1 {
				c.Role = r[0]
			}
		}
	}
	return c, nil
}

// authorize identifies the caller of method, checks it may call it and
// returns ctx with the caller attached.
func (m *Manager) authorize(ctx context.Context, method string) (context.Context, error) {
	c, err := identify(ctx, m.root)
	if err != nil {
		return nil, err
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
	if m.forwards(info.FullMethod) {
		if conn, err := m.leaderConn(ctx); err != nil {
			if !isRead(info.FullMethod) {
				return nil, api.ToGRPC(err)
			}
			// No leader: reads are answered from this manager's copy, so
			// that a cluster without quorum can still be looked at.
		} else if conn != nil {
			return forwardUnary(ctx, conn, info.FullMethod, req)
		}
	}
	return h(ctx, req)
}

func (m *Manager) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	ctx, err := m.authorize(ss.Context(), info.FullMethod)
	if err != nil {
		return api.ToGRPC(err)
	}
	if m.forwards(info.FullMethod) {
		conn, err := m.leaderConn(ctx)
		if err != nil {
			return api.ToGRPC(err)
		}
		if conn != nil {
			return forwardStream(ctx, conn, info, ss)
		}
	}
	return h(srv, &callerStream{ServerStream: ss, ctx: ctx})
}

// forwards reports whether method is served by the leader only.
func (m *Manager) forwards(method string) bool {
	return method != "/shoal.api.CA/GetRootCACertificate"
}

func isRead(method string) bool {
	i := strings.LastIndexByte(method, '/')
	name := method[i+1:]
	return strings.HasPrefix(name, "Get") || strings.HasPrefix(name, "List")
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
