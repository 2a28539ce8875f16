package manager

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/manager/ca"
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
	joining                // a manager certificate of a node to be a manager (raft join after a promotion)
	managers               // current managers only
)

func methodAccess(method string) access {
	switch {
	case strings.HasPrefix(method, "/shoal.api.CA/"):
		return anyone
	case strings.HasPrefix(method, "/shoal.api.Dispatcher/"),
		method == api.LogBroker_ListenSubscriptions_FullMethodName, method == api.LogBroker_PublishLogs_FullMethodName:
		return member
	case method == api.RaftMembership_Join_FullMethodName:
		return joining
	}
	return managers
}

// forwarded is what a forwarding manager's metadata says of the original
// caller.
type forwarded struct {
	caller Caller // empty for an anonymous caller
	from   net.Addr
}

// identify finds the peer of ctx's RPC from its certificate, and the
// forwarding metadata it sent, if any. Whether the metadata may be believed
// is authorize's decision. The certificate was verified at the connection's
// TLS handshake (the demux), against the roots trusted and at the time of
// that handshake: a connection stays authenticated, as in TLS and Swarm, so
// that certificate renewals and root rotations never cut open connections;
// the store check in authorize is what ends a removed or demoted node's
// access at once.
func identify(ctx context.Context) (c Caller, fwd *forwarded, err error) {
	md, _ := metadata.FromIncomingContext(ctx)
	// The role is always set by a forwarding manager.
	if r := md.Get(mdForwardedRole); len(r) > 0 {
		fwd = &forwarded{}
		if n := md.Get(mdForwardedNode); len(r) == 1 && len(n) == 1 && r[0] != roleAnonymous && n[0] != "" {
			fwd.caller = Caller{NodeID: n[0], Role: r[0]}
		}
		if a := md.Get(mdForwardedAddr); len(a) == 1 {
			fwd.from = forwardedAddr(a[0])
		}
	}
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Caller{}, fwd, nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return Caller{}, fwd, nil
	}
	id, err := ca.IdentityOf(info.State.PeerCertificates[0])
	if err != nil {
		return Caller{}, nil, api.Wrap(api.ErrInvalidArgument, err)
	}
	return Caller{NodeID: id.NodeID, Role: id.Role}, fwd, nil
}

// forwardedAddr is the address a forwarded call came from.
type forwardedAddr string

func (a forwardedAddr) Network() string { return "tcp" }
func (a forwardedAddr) String() string  { return string(a) }

// authorize identifies the caller of method, checks it may call it and
// returns ctx with the caller attached, and the store part of the check for
// streams to repeat. Certificates live for months and roles change at once,
// so every call is checked against the store as it is now: the forwarding
// peer must be a current manager, and the caller's current role must allow
// the method, whatever its certificate says.
func (m *Manager) authorize(ctx context.Context, method string) (context.Context, func() error, error) {
	c, fwd, err := identify(ctx)
	if err != nil {
		return nil, nil, err
	}
	forwarder := ""
	if fwd != nil {
		if c.Role != ca.RoleManager {
			return nil, nil, api.Wrap(api.ErrFailedPrecondition, errors.New("forwarding metadata from a caller without a manager certificate"))
		}
		// A manager forwarding its own node's calls (its agent's session, its
		// renewal after a demotion) is that node calling: judged as itself.
		if fwd.caller.NodeID != c.NodeID {
			forwarder, c = c.NodeID, fwd.caller
		}
		if fwd.from != nil {
			// Handlers (the dispatcher records a node's address) see the
			// original caller's address, not the forwarding manager's.
			p, _ := peer.FromContext(ctx)
			ctx = peer.NewContext(ctx, &peer.Peer{Addr: fwd.from, LocalAddr: p.LocalAddr, AuthInfo: p.AuthInfo})
		}
	}
	need := methodAccess(method)
	switch {
	case need != anyone && c.NodeID == "":
		return nil, nil, errNoCert
	case (need == managers || need == joining) && c.Role != ca.RoleManager:
		return nil, nil, errNotManager
	}
	rule := inStore
	switch need {
	case managers:
		rule = currentManager
	case joining:
		rule = toBeManager
	}
	recheck := func() error {
		if forwarder != "" {
			if err := m.check(forwarder, currentManager); err != nil {
				return api.Wrap(api.ErrFailedPrecondition, fmt.Errorf("node %s may not forward calls: %w", forwarder, err))
			}
		}
		if c.NodeID == "" {
			return nil
		}
		if err := m.check(c.NodeID, rule); err != nil {
			if errors.Is(err, errNotCurrentManager) {
				return errNotManager
			}
			return api.Wrap(api.ErrFailedPrecondition, err)
		}
		return nil
	}
	if err := recheck(); err != nil {
		return nil, nil, err
	}
	return context.WithValue(ctx, callerKey{}, c), recheck, nil
}

// recheckPeriod is how often an open stream's caller is checked again.
const recheckPeriod = 500 * time.Millisecond

// openStream is a stream whose caller is checked again while it is open.
type openStream struct {
	recheck func() error
	cancel  context.CancelFunc
	// refused is the error of the recheck that ended the stream.
	refused atomic.Pointer[error]
}

// streamGuard rechecks the callers of all open streams, every
// recheckPeriod, and cancels a stream whose caller lost the right to it (a
// demotion or removal while the stream is open). One goroutine does it for
// all: a goroutine and a ticker per stream (two streams per node) woke
// 4,000 times a second on a leader of 1,000 nodes, each wake-up a turn in
// the run queue that heartbeats wait in too (docs/cluster.md, scale). The
// goroutine runs while streams are open and ends with the last one.
type streamGuard struct {
	mu      sync.Mutex
	open    map[*openStream]struct{}
	running bool // the checking goroutine runs
}

// add registers a stream opened now; the caller removes it when it ends.
func (g *streamGuard) add(recheck func() error, cancel context.CancelFunc) *openStream {
	s := &openStream{recheck: recheck, cancel: cancel}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.open == nil {
		g.open = make(map[*openStream]struct{})
	}
	g.open[s] = struct{}{}
	if !g.running {
		g.running = true
		go g.run()
	}
	return s
}

func (g *streamGuard) remove(s *openStream) {
	g.mu.Lock()
	delete(g.open, s)
	g.mu.Unlock()
}

// run checks every open stream each recheckPeriod until none is open: it
// has no context of its own, its life is bounded by the streams' (each
// removed when its handler returns).
func (g *streamGuard) run() {
	t := time.NewTicker(recheckPeriod)
	defer t.Stop()
	var streams []*openStream
	for range t.C {
		g.mu.Lock()
		if len(g.open) == 0 {
			g.running = false
			g.mu.Unlock()
			return
		}
		streams = streams[:0]
		for s := range g.open {
			streams = append(streams, s)
		}
		g.mu.Unlock()
		// Outside the lock: a check reads the store's node view, and
		// streams come and go meanwhile.
		for _, s := range streams {
			if err := s.recheck(); err != nil {
				if s.refused.CompareAndSwap(nil, &err) {
					s.cancel()
				}
				g.remove(s)
			}
		}
		clear(streams) // no stream kept alive until the next tick
	}
}

// errNotCurrentManager: the store's node is not (or no longer) a manager.
var errNotCurrentManager = errors.New("not a manager of the swarm")

// Rules on a node as the store has it now (check's rule).
func inStore(*api.Node) error { return nil }

// currentManager: a manager (a raft member) that is not being demoted.
func currentManager(n *api.Node) error {
	if n.GetRole() != api.NodeRole_MANAGER || n.GetSpec().GetDesiredRole() != api.NodeRole_MANAGER {
		return fmt.Errorf("node %s is %w (role %v, desired role %v)", n.GetId(), errNotCurrentManager, n.GetRole(), n.GetSpec().GetDesiredRole())
	}
	return nil
}

// toBeManager: promoted (or joined with the manager token), raft join pending or done.
func toBeManager(n *api.Node) error {
	if n.GetSpec().GetDesiredRole() != api.NodeRole_MANAGER {
		return fmt.Errorf("node %s is %w (desired role %v)", n.GetId(), errNotCurrentManager, n.GetSpec().GetDesiredRole())
	}
	return nil
}

// check applies rule to node id as this manager's store has it. A node not
// in the store is refused (removed); a manager whose store holds no cluster
// yet is still being filled by its first replication from the leader and
// accepts any node (the handshake verified the certificate).
func (m *Manager) check(id string, rule func(*api.Node) error) error {
	if m.store == nil {
		return nil
	}
	// PeekNode takes no lock: every worker call (each heartbeat) and every
	// open stream's recheck comes here, and must not queue behind an Apply
	// holding the store's write lock (the scale benchmark's heartbeat p99).
	n, hasCluster := m.store.PeekNode(id)
	if !hasCluster {
		return nil
	}
	if n == nil {
		return fmt.Errorf("node %s is not a member of the swarm (removed)", id)
	}
	return rule(n)
}

func (m *Manager) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	ctx, _, err := m.authorize(ctx, info.FullMethod)
	if err != nil {
		return nil, api.ToGRPC(err)
	}
	if forwards(info.FullMethod) {
		if conn, addr, err := m.leaderConn(ctx); err != nil {
			if !isRead(info.FullMethod) || !m.raft.Replayed() {
				return nil, api.ToGRPC(err)
			}
			// No leader: reads are answered from this manager's copy, so
			// that a cluster without quorum can still be looked at, once
			// that copy holds what this manager had seen before a restart.
		} else if conn != nil {
			resp, err := m.forwardToLeader(ctx, conn, addr, info.FullMethod, req)
			if errors.Is(err, errLeaderLost) {
				if isRead(info.FullMethod) && m.raft.Replayed() {
					return h(ctx, req) // as without a leader: from this copy
				}
				return nil, api.ToGRPC(m.leaderLost())
			}
			return resp, err
		}
	}
	resp, err := h(ctx, req)
	if err == nil && forwards(info.FullMethod) && !isRead(info.FullMethod) {
		m.markApplied(ctx)
	}
	return resp, err
}

func (m *Manager) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	ctx, recheck, err := m.authorize(ss.Context(), info.FullMethod)
	if err != nil {
		return api.ToGRPC(err)
	}
	// A stream lives as long as its caller wants: it ends when the caller
	// (or the manager forwarding it) loses the right to it.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	guarded := m.streams.add(recheck, cancel)
	defer m.streams.remove(guarded)
	if forwards(info.FullMethod) {
		var conn *grpc.ClientConn
		var addr string
		conn, addr, err = m.leaderConn(ctx)
		if err != nil {
			return api.ToGRPC(err)
		}
		if conn != nil {
			err = m.streamToLeader(ctx, conn, addr, info, ss)
		} else {
			err = h(srv, &callerStream{ServerStream: ss, ctx: ctx})
		}
	} else {
		err = h(srv, &callerStream{ServerStream: ss, ctx: ctx})
	}
	if r := guarded.refused.Load(); r != nil {
		return api.ToGRPC(*r)
	}
	return err
}

// forwards reports whether method is served by the leader only: all but
// the root certificate, which every manager has, and the port probe, which
// is about the path between the caller and the manager it called.
func forwards(method string) bool {
	return method != api.CA_GetRootCACertificate_FullMethodName && method != api.CA_ProbePorts_FullMethodName
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
