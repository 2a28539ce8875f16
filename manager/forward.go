package manager

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

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
func (m *Manager) leaderConn(ctx context.Context) (*grpc.ClientConn, error) {
	if m.raft.IsLeader() {
		return nil, nil
	}
	id, addr := m.raft.Leader()
	if id == "" || id == m.cfg.NodeID {
		return nil, ErrNoLeader
	}
	m.connMu.Lock()
	defer m.connMu.Unlock()
	if m.conn != nil && m.connAddr == addr {
		return m.conn, nil
	}
	if m.conn != nil {
		m.conn.Close()
	}
	conn, err := m.cfg.Dial(addr)
	if err != nil {
		return nil, api.Wrap(api.ErrUnavailable, fmt.Errorf("connect to leader %s: %w", addr, err))
	}
	m.conn, m.connAddr = conn, addr
	return conn, nil
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

func forwardUnary(ctx context.Context, conn *grpc.ClientConn, method string, req any) (any, error) {
	_, outType, err := messageTypes(method)
	if err != nil {
		return nil, api.ToGRPC(err)
	}
	resp := outType.New().Interface()
	if err := conn.Invoke(outgoing(ctx), method, req, resp); err != nil {
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
