package manager

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/manager/ca"
	"github.com/shoal-project/shoal/raftstore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// TestForgedForwardingRefused: the leader believes forwarding metadata only
// from a current manager, and each caller only as far as its current role
// in the store allows. Attackers, each with a certificate the cluster CA
// signed: a worker holding a manager certificate (a stale one, or issued by
// mistake), a manager removed from the store (its connection opened before
// the removal), and a demoted manager; plus a plain worker certificate.
// They forge "I forward for the leader's node" and call CreateService at
// the leader, and try raft on the shared port.
func TestForgedForwardingRefused(t *testing.T) {
	c := startCluster(t, 2)
	c.waitMembership()
	li := c.leader()
	ld := c.nodes[li]
	di := 1 - li
	ctx, cancel := context.WithTimeout(context.Background(), settle)
	defer cancel()
	tokens := c.joinTokens()

	// A worker, and a manager certificate for it.
	w, err := Join(ctx, ld.addr, tokens.GetWorker(), "127.0.0.1:4789", api.NodeSpec_ACTIVE)
	if err != nil {
		t.Fatal(err)
	}
	wMgrCert, wMgrKey := issueCert(t, c.found.Root, w.NodeID, ca.RoleManager)

	// A manager that joined (a Node in the store, a manager certificate),
	// connected, and was then removed from the store.
	r, err := Join(ctx, ld.addr, tokens.GetManager(), "127.0.0.1:1", api.NodeSpec_ACTIVE)
	if err != nil {
		t.Fatal(err)
	}
	rconn := dialAs(t, ld.addr, r.Root, r.Cert, r.Key)
	if _, err := api.NewControlClient(rconn).ListNodes(ctx, &api.ListNodesRequest{}); err != nil {
		t.Fatalf("the manager to be removed, before its removal: %v", err)
	}
	rraft, err := dialRaft(ld.addr, r.Root, r.Cert, r.Key)
	if err != nil {
		t.Fatalf("raft connection of the manager to be removed, before its removal: %v", err)
	}
	defer rraft.Close()
	if err := rraft.call(); err != nil {
		t.Fatalf("raft call of the manager to be removed, before its removal: %v", err)
	}
	if err := ld.m.Store().Update(ctx, func(tx raftstore.WriteTx) error { return tx.Delete(raftstore.KindNode, r.NodeID) }); err != nil {
		t.Fatal(err)
	}

	// A manager demoted: it loses write access within a second, and raft
	// once the leader took it out of raft.
	demoted := c.nodes[di]
	dconn := dialAs(t, ld.addr, demoted.root, demoted.cert, demoted.key)
	dctl := api.NewControlClient(dconn)
	if _, err := dctl.CreateService(ctx, &api.CreateServiceRequest{Spec: serviceSpec("before-demotion")}); err != nil {
		t.Fatalf("the manager to be demoted, before its demotion: %v", err)
	}
	// A stream it forwards for the worker, opened while it was a manager.
	sctx, scancel := context.WithCancel(forged(ctx, w.NodeID, ca.RoleWorker))
	defer scancel()
	sess, err := api.NewDispatcherClient(dconn).Session(sctx, &api.SessionRequest{})
	if err == nil {
		_, err = sess.Recv()
	}
	if err != nil {
		t.Fatalf("a session forwarded by a manager: %v", err)
	}
	sessEnded := make(chan error, 1)
	go func() {
		for {
			if _, err := sess.Recv(); err != nil {
				sessEnded <- err
				return
			}
		}
	}()

	demote(t, c.control(li), demoted.id)
	start := time.Now()
	for n := 0; ; n++ {
		_, err := dctl.CreateService(ctx, &api.CreateServiceRequest{Spec: serviceSpec(fmt.Sprintf("after-demotion-%d", n))})
		if err != nil {
			t.Logf("demoted manager's write refused %s after the demotion: %v", time.Since(start).Round(time.Millisecond), err)
			break
		}
		if time.Since(start) > time.Second {
			t.Errorf("a demoted manager still writes %s after its demotion (%d services created)", time.Since(start).Round(time.Millisecond), n+1)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}

	select {
	case err := <-sessEnded:
		t.Logf("the stream the demoted manager forwarded ended %s after the demotion: %v", time.Since(start).Round(time.Millisecond), err)
		if !strings.Contains(err.Error(), "may not forward") {
			t.Errorf("the forwarded stream ended with %v, want the refusal", err)
		}
	case <-time.After(2*time.Second - time.Since(start)):
		t.Errorf("the stream the demoted manager forwarded is still open %s after the demotion", time.Since(start).Round(time.Millisecond))
	}

	leaderID := ld.id
	attackers := []struct {
		name string
		conn *grpc.ClientConn
	}{
		{"worker with a manager certificate", dialAs(t, ld.addr, c.found.Root, wMgrCert, wMgrKey)},
		{"worker", dialWorker(t, ld.addr, w)},
		{"removed manager", rconn},
		{"demoted manager", dconn},
	}
	for i, a := range attackers {
		fctx := forged(ctx, leaderID, ca.RoleManager)
		resp, err := api.NewControlClient(a.conn).CreateService(fctx, &api.CreateServiceRequest{Spec: serviceSpec(fmt.Sprintf("forged-%d", i))})
		if err == nil {
			t.Errorf("%s forwarding as the leader's node: CreateService created %s", a.name, resp.GetService().GetId())
		} else {
			t.Logf("%s forwarding as the leader's node: %v", a.name, err)
		}
		// As itself, without metadata: no Control API either.
		if _, err := api.NewControlClient(a.conn).ListNodes(ctx, &api.ListNodesRequest{}); err == nil {
			t.Errorf("%s: ListNodes was served", a.name)
		}
	}

	// Raft on the shared port: only current managers.
	if err := raftProbe(ld.addr, c.found.Root, wMgrCert, wMgrKey); err == nil {
		t.Errorf("a worker with a manager certificate got a raft connection")
	}
	if err := rraft.call(); err == nil {
		t.Errorf("a removed manager's raft connection is still served")
	}
	waitFor(t, 5*time.Second, "the demoted manager loses raft", func() error {
		if err := raftProbe(ld.addr, demoted.root, demoted.cert, demoted.key); err == nil {
			return errors.New("a demoted manager got a raft connection")
		}
		return nil
	})
	// A current manager's certificate still works.
	if err := raftProbe(ld.addr, c.found.Root, c.found.Cert, c.found.Key); err != nil {
		t.Errorf("raft connection with the leader's certificate: %v", err)
	}
}

// TestRaftLeave: a manager may take only itself out of raft, and not when
// that would leave the rest without quorum.
func TestRaftLeave(t *testing.T) {
	c := startCluster(t, 3)
	c.waitMembership()
	li := c.leader()
	var fs []int
	for i := range c.nodes {
		if i != li {
			fs = append(fs, i)
		}
	}
	a, b := c.nodes[fs[0]], c.nodes[fs[1]]
	ctx, cancel := context.WithTimeout(context.Background(), settle)
	defer cancel()
	aMembership := api.NewRaftMembershipClient(dialAs(t, c.nodes[li].addr, a.root, a.cert, a.key))

	_, err := aMembership.Leave(ctx, &api.LeaveRequest{Node: &api.RaftMember{RaftId: b.id}})
	if err == nil {
		t.Fatalf("manager %s removed manager %s from raft", a.id, b.id)
	}
	t.Logf("Leave of another manager: %v", err)
	if v := c.raftVoters(li); len(v) != 3 {
		t.Fatalf("voters %v after a refused Leave", v)
	}

	// b is down: without a, the leader alone would be one of two.
	b.stop()
	waitFor(t, settle, "the stopped manager marked unreachable", func() error {
		var n *api.Node
		c.nodes[li].m.Store().View(func(tx raftstore.ReadTx) { n = tx.GetNode(b.id) })
		if n.GetManagerStatus().GetReachability() != api.ManagerStatus_UNREACHABLE {
			return fmt.Errorf("reachability %v", n.GetManagerStatus().GetReachability())
		}
		return nil
	})
	_, err = aMembership.Leave(ctx, &api.LeaveRequest{Node: &api.RaftMember{RaftId: a.id}})
	if err == nil || !strings.Contains(err.Error(), "quorum") {
		t.Fatalf("Leave that breaks quorum: %v, want refused", err)
	}
	t.Logf("Leave that breaks quorum: %v", err)

	b.restart()
	c.waitMembership()
	if _, err := aMembership.Leave(ctx, &api.LeaveRequest{Node: &api.RaftMember{RaftId: a.id}}); err != nil {
		t.Fatalf("Leave of itself with quorum kept: %v", err)
	}
	waitFor(t, settle, "a out of raft", func() error {
		if v := c.raftVoters(li); len(v) != 2 {
			return fmt.Errorf("voters %v", v)
		}
		return nil
	})
}

// forged is ctx with forwarding metadata naming node and role.
func forged(ctx context.Context, node, role string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, mdForwardedNode, node, mdForwardedRole, role, mdForwardedAddr, "10.9.9.9:1")
}

// demote sets node id's desired role to worker, as `node demote`.
func demote(t *testing.T, ctl api.ControlClient, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTTL)
	defer cancel()
	gn, err := ctl.GetNode(ctx, &api.GetNodeRequest{NodeId: id})
	if err != nil {
		t.Fatal(err)
	}
	spec := gn.GetNode().GetSpec()
	spec.DesiredRole = api.NodeRole_WORKER
	if _, err := ctl.UpdateNode(ctx, &api.UpdateNodeRequest{NodeId: id, NodeVersion: gn.GetNode().GetMeta().GetVersion(), Spec: spec}); err != nil {
		t.Fatalf("demote %s: %v", id, err)
	}
}

// issueCert is a certificate of root for node id in role, with its key.
func issueCert(t *testing.T, root *ca.RootCA, id, role string) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	key, csr, err := ca.NewNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := root.IssueNodeCertificate(csr, id, role, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// dialWorker is a connection with a worker's own certificate.
func dialWorker(t *testing.T, addr string, w *JoinResult) *grpc.ClientConn {
	t.Helper()
	return dialAs(t, addr, w.Root, w.Cert, w.Key)
}

// raftClient sends raft RPCs over one TLS connection (ALPN shoal-raft),
// with raft's own transport.
type raftClient struct {
	trans  *raft.NetworkTransport
	stream *oneConnStream
}

func dialRaft(addr string, root *ca.RootCA, cert []byte, key *ecdsa.PrivateKey) (*raftClient, error) {
	cfg, err := root.TLSConfig(cert, key, nil)
	if err != nil {
		return nil, err
	}
	cfg.NextProtos = []string{protoRaft}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	s := &oneConnStream{conn: c, done: make(chan struct{})}
	return &raftClient{trans: raft.NewNetworkTransport(s, 1, 2*time.Second, io.Discard), stream: s}, nil
}

// call sends a heartbeat of term 0, which any raft member answers (and
// refuses as stale); an error means the connection was not served.
func (r *raftClient) call() error {
	var resp raft.AppendEntriesResponse
	return r.trans.AppendEntries("leader", raft.ServerAddress(r.stream.conn.RemoteAddr().String()),
		&raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("attacker"), Addr: []byte("attacker")}}, &resp)
}

func (r *raftClient) Close() error {
	r.stream.conn.Close()
	return r.trans.Close()
}

// oneConnStream is a raft.StreamLayer that dials one given connection, once,
// and accepts nothing.
type oneConnStream struct {
	conn net.Conn
	mu   sync.Mutex
	used bool
	done chan struct{}
	once sync.Once
}

func (s *oneConnStream) Dial(raft.ServerAddress, time.Duration) (net.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.used {
		return nil, errors.New("the raft connection was closed")
	}
	s.used = true
	return s.conn, nil
}

func (s *oneConnStream) Accept() (net.Conn, error) {
	<-s.done
	return nil, net.ErrClosed
}

func (s *oneConnStream) Close() error {
	s.once.Do(func() { close(s.done) })
	return nil
}

func (s *oneConnStream) Addr() net.Addr { return s.conn.LocalAddr() }
