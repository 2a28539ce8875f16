package manager

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/shoal-project/shoal/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// ErrNoLeader is Swarm's message for a cluster without quorum.
var ErrNoLeader = api.Wrap(api.ErrUnavailable, errors.New("The swarm does not have a leader. It's possible that too few managers are online. Make sure more than half of the managers are online."))

// leaderConn returns a connection to the leader, or nil when this manager
// is the leader. Forwarding is generic (any method of any service), so a new
// RPC needs no forwarding stub.
func (m *Manager) leaderConn(ctx context.Context) (*grpc.ClientConn, string, error) {
	if m.raft.IsLeader() {
		return nil, "", m.waitCaughtUp(ctx)
	}
	id, addr := m.raft.Leader()
	if id == "" || id == m.cfg.NodeID {
		// The connection to the last leader may be dead (a partition drops
		// packets without a reset): the next leader gets a fresh one.
		m.dropConn("")
		return nil, "", ErrNoLeader
	}
	m.connMu.Lock()
	defer m.connMu.Unlock()
	if m.conn != nil && m.connAddr == addr {
		return m.conn, addr, nil
	}
	if m.conn != nil {
		m.conn.Close()
	}
	conn, err := m.cfg.Dial(addr)
	if err != nil {
		return nil, "", api.Wrap(api.ErrUnavailable, fmt.Errorf("connect to leader %s: %w", addr, err))
	}
	m.conn, m.connAddr = conn, addr
	return conn, addr, nil
}

// errLeaderLost: the leader a call was forwarded to stopped being the
// leader, as this manager's raft sees it, before it answered.
var errLeaderLost = errors.New("manager: the leader was lost while a call was forwarded to it")

// dropConn closes the forwarding connection if it goes to addr ("": any).
func (m *Manager) dropConn(addr string) {
	m.connMu.Lock()
	defer m.connMu.Unlock()
	if m.conn != nil && (addr == "" || m.connAddr == addr) {
		m.conn.Close()
		m.conn, m.connAddr = nil, ""
	}
}

// whileLeads returns a context for a call forwarded to the leader at addr
// that ends when ctx does or when addr stops being the raft leader (an
// election, a partition, the leader's loss): a forwarded call must not wait
// for a leader that is gone, which with packets dropped it would do for as
// long as TCP retries. lost reports whether that ended it; stop must be called.
func (m *Manager) whileLeads(ctx context.Context, addr string) (fctx context.Context, lost func() bool, stop func()) {
	fctx, cancel := context.WithCancel(ctx)
	var gone atomic.Bool
	done := make(chan struct{})
	go func() {
		for {
			changed := m.raft.LeaderChanged()
			if _, now := m.raft.Leader(); now != addr {
				gone.Store(true)
				m.dropConn(addr)
				cancel()
				return
			}
			select {
			case <-done:
				return
			case <-changed:
			case <-time.After(100 * time.Millisecond): // a missed change
			}
		}
	}()
	return fctx, gone.Load, func() { close(done); cancel() }
}

// leaderLost is the error of a forwarded call whose leader was lost: Swarm's
// "no leader" while there is none, else a retryable unavailable (the
// outcome of a write is unknown).
func (m *Manager) leaderLost() error {
	if id, _ := m.raft.Leader(); id == "" {
		return ErrNoLeader
	}
	return api.Wrap(api.ErrUnavailable, errors.New("the swarm's leader changed while the request was forwarded to it: its outcome is unknown, retry"))
}

// forwardToLeader forwards a unary call to the leader at addr over conn;
// the error is errLeaderLost when the leader was lost before it answered.
// After a write it waits (up to appliedWait) until this manager's store has
// applied what the leader had when it answered: a caller that wrote through
// this manager reads its write here next (the registry's token, a node that
// joined and now calls with its certificate), as it would at the leader.
func (m *Manager) forwardToLeader(ctx context.Context, conn *grpc.ClientConn, addr, method string, req any) (any, error) {
	fctx, lost, stop := m.whileLeads(ctx, addr)
	defer stop()
	var hdr metadata.MD
	resp, err := forwardUnary(fctx, conn, method, req, grpc.Header(&hdr))
	if err != nil && lost() && ctx.Err() == nil {
		return nil, errLeaderLost
	}
	if err == nil {
		m.awaitApplied(ctx, hdr)
	}
	return resp, err
}

// mdAppliedIndex is the leader's applied raft index after a write it served,
// in the answer's header.
const mdAppliedIndex = "shoal-applied-index"

// appliedWait bounds how long a follower holds a forwarded write's answer
// for its store to catch up: the write is done either way.
const appliedWait = 5 * time.Second

// markApplied puts the leader's applied index in a write's answer header.
func (m *Manager) markApplied(ctx context.Context) {
	_ = grpc.SetHeader(ctx, metadata.Pairs(mdAppliedIndex, strconv.FormatUint(m.raft.AppliedIndex(), 10)))
}

// awaitApplied waits until this manager's store has applied the index in
// hdr (none: nothing to wait for).
func (m *Manager) awaitApplied(ctx context.Context, hdr metadata.MD) {
	v := hdr.Get(mdAppliedIndex)
	if len(v) == 0 {
		return
	}
	index, err := strconv.ParseUint(v[0], 10, 64)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, appliedWait)
	defer cancel()
	_ = m.raft.WaitApplied(ctx, index)
}

// streamToLeader relays a streaming call to the leader at addr, ending it
// (with leaderLost's error) when that leader is lost.
func (m *Manager) streamToLeader(ctx context.Context, conn *grpc.ClientConn, addr string, info *grpc.StreamServerInfo, ss grpc.ServerStream) error {
	fctx, lost, stop := m.whileLeads(ctx, addr)
	defer stop()
	err := forwardStream(fctx, conn, info, ss)
	if err != nil && lost() && ctx.Err() == nil {
		return api.ToGRPC(m.leaderLost())
	}
	return err
}

// outgoing carries the caller's identity and address and the original
// metadata on.
func outgoing(ctx context.Context) context.Context {
	md, _ := metadata.FromIncomingContext(ctx)
	md = md.Copy()
	for k := range md {
		if strings.HasPrefix(k, ":") || k == "content-type" || k == "user-agent" || k == "grpc-timeout" {
			delete(md, k)
		}
	}
	if c, ok := CallerFrom(ctx); ok {
		md.Set(mdForwardedNode, c.NodeID)
		md.Set(mdForwardedRole, c.Role)
	} else {
		delete(md, mdForwardedNode)
		md.Set(mdForwardedRole, roleAnonymous)
	}
	delete(md, mdForwardedAddr)
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		md.Set(mdForwardedAddr, p.Addr.String())
	}
	return metadata.NewOutgoingContext(ctx, md)
}

// messageTypes returns new instances of method's request and response messages.
func messageTypes(method string) (in, out protoreflect.MessageType, err error) {
	name := strings.ReplaceAll(strings.TrimPrefix(method, "/"), "/", ".")
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
	if err != nil {
		return nil, nil, fmt.Errorf("forward %s: %w", method, err)
	}
	md, ok := d.(protoreflect.MethodDescriptor)
	if !ok {
		return nil, nil, fmt.Errorf("forward %s: not a method", method)
	}
	if in, err = protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName()); err != nil {
		return nil, nil, err
	}
	if out, err = protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName()); err != nil {
		return nil, nil, err
	}
	return in, out, nil
}

func forwardUnary(ctx context.Context, conn *grpc.ClientConn, method string, req any, opts ...grpc.CallOption) (any, error) {
	_, outType, err := messageTypes(method)
	if err != nil {
		return nil, api.ToGRPC(err)
	}
	resp := outType.New().Interface()
	if err := conn.Invoke(outgoing(ctx), method, req, resp, opts...); err != nil {
		return nil, err // already a gRPC status from the leader
	}
	return resp, nil
}

// forwardStream relays a streaming call to the leader until either side ends.
func forwardStream(ctx context.Context, conn *grpc.ClientConn, info *grpc.StreamServerInfo, ss grpc.ServerStream) error {
	inType, outType, err := messageTypes(info.FullMethod)
	if err != nil {
		return api.ToGRPC(err)
	}
	ctx, cancel := context.WithCancel(outgoing(ctx))
	defer cancel()
	desc := &grpc.StreamDesc{ServerStreams: info.IsServerStream, ClientStreams: info.IsClientStream}
	cs, err := conn.NewStream(ctx, desc, info.FullMethod)
	if err != nil {
		return err
	}
	// Requests from the caller to the leader.
	go func() {
		for {
			m := inType.New().Interface()
			if err := ss.RecvMsg(m); err != nil {
				if errors.Is(err, io.EOF) {
					_ = cs.CloseSend()
				} else {
					cancel()
				}
				return
			}
			if err := cs.SendMsg(m); err != nil {
				return
			}
		}
	}()
	// Responses from the leader to the caller.
	first := true
	for {
		m := outType.New().Interface().(proto.Message)
		if err := cs.RecvMsg(m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if first {
			if h, err := cs.Header(); err == nil {
				_ = ss.SendHeader(h)
			}
			first = false
		}
		if err := ss.SendMsg(m); err != nil {
			return err
		}
	}
}
