package manager

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/manager/ca"
	"github.com/shoal-project/shoal/raftstore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// TestInit is `swarm init`: Found, New with Bootstrap, Run, Bootstrap; the
// first node's certificate then reads the cluster and its one node.
func TestInit(t *testing.T) {
	c := startCluster(t, 1)
	f := c.found
	ctl := c.control(0)
	ctx, cancel := context.WithTimeout(context.Background(), callTTL)
	defer cancel()

	gc, err := ctl.GetCluster(ctx, &api.GetClusterRequest{})
	if err != nil {
		t.Fatalf("GetCluster: %v", err)
	}
	cl := gc.GetCluster()
	if cl.GetId() != f.Cluster.GetId() {
		t.Errorf("cluster ID %q, want %q", cl.GetId(), f.Cluster.GetId())
	}
	if len(cl.GetRootCa().GetCaKey()) != 0 {
		t.Errorf("GetCluster returned the CA key")
	}
	if string(cl.GetRootCa().GetCaCert()) != string(f.Root.CertPEM()) {
		t.Errorf("GetCluster: root CA differs from the founding one")
	}
	if cl.GetSpec().GetTaskHistoryRetentionLimit() != DefaultTaskHistory {
		t.Errorf("task history limit %d, want %d", cl.GetSpec().GetTaskHistoryRetentionLimit(), DefaultTaskHistory)
	}
	tokens := cl.GetRootCa().GetJoinTokens()
	for _, tok := range []string{tokens.GetWorker(), tokens.GetManager()} {
		pt, err := ca.ParseToken(tok)
		if err != nil || !pt.MatchesCA(f.Root.Cert.Raw) {
			t.Errorf("join token %q does not pin the cluster CA (%v)", tok, err)
		}
	}
	if tokens.GetWorker() == tokens.GetManager() {
		t.Errorf("worker and manager tokens are the same")
	}

	waitFor(t, settle, "ListNodes shows the leader", func() error {
		ln, err := ctl.ListNodes(ctx, &api.ListNodesRequest{})
		if err != nil {
			return err
		}
		if len(ln.GetNodes()) != 1 {
			return fmt.Errorf("%d nodes, want 1", len(ln.GetNodes()))
		}
		n := ln.GetNodes()[0]
		ms := n.GetManagerStatus()
		if n.GetId() != f.Node.GetId() || n.GetRole() != api.NodeRole_MANAGER || !ms.GetLeader() ||
			ms.GetReachability() != api.ManagerStatus_REACHABLE || ms.GetAddr() != c.nodes[0].addr {
			return fmt.Errorf("node %s: role %v, manager status %v", n.GetId(), n.GetRole(), ms)
		}
		return nil
	})

	// The leader gives the cluster a gossip key at once; GetCluster shows
	// only when it was made, never the key.
	waitFor(t, settle, "a gossip key in the cluster object", func() error {
		var keys []*api.GossipKey
		c.nodes[0].m.Store().View(func(tx raftstore.ReadTx) { keys = tx.GetCluster(f.Cluster.GetId()).GetGossipKeys() })
		if len(keys) != 1 || len(keys[0].GetKey()) != 32 {
			return fmt.Errorf("gossip keys %v", keys)
		}
		return nil
	})
	if gc, err := ctl.GetCluster(ctx, &api.GetClusterRequest{}); err != nil || len(gc.GetCluster().GetGossipKeys()) != 1 ||
		gc.GetCluster().GetGossipKeys()[0].GetKey() != nil || gc.GetCluster().GetGossipKeys()[0].GetCreatedAt() == nil {
		t.Errorf("GetCluster: gossip keys %v, %v", gc.GetCluster().GetGossipKeys(), err)
	}

	// Bootstrap again (a restarted first manager) changes nothing.
	before := storeDigest(c.nodes[0].m.Store())
	if err := c.nodes[0].m.Bootstrap(ctx, f.Cluster, f.Node); err != nil {
		t.Fatalf("second Bootstrap: %v", err)
	}
	if after := storeDigest(c.nodes[0].m.Store()); after != before {
		t.Errorf("second Bootstrap changed the store")
	}
	if voters := c.raftVoters(0); !slices.Equal(voters, []string{f.Node.GetId()}) {
		t.Errorf("raft voters %v, want the first node only", voters)
	}
}

// TestJoin joins a worker and two managers with the tokens GetJoinTokens
// gives; the three managers replicate one store and the membership loop
// marks them all reachable, one of them leader.
func TestJoin(t *testing.T) {
	c := startCluster(t, 1)
	tokens := c.joinTokens()
	ctx, cancel := context.WithTimeout(context.Background(), settle)
	defer cancel()

	w, err := Join(ctx, c.nodes[0].addr, tokens.GetWorker(), "127.0.0.1:4789", api.NodeSpec_ACTIVE)
	if err != nil {
		t.Fatalf("Join as worker: %v", err)
	}
	if w.Role != api.NodeRole_WORKER || w.NodeID == "" {
		t.Fatalf("Join with the worker token: node %q role %v", w.NodeID, w.Role)
	}
	if id := certIdentity(t, w.Root, w.Cert); id.Role != ca.RoleWorker || id.NodeID != w.NodeID || id.ClusterID != c.found.Cluster.GetId() {
		t.Errorf("worker certificate says %+v", id)
	}
	if !w.Root.Cert.Equal(c.found.Root.Cert) {
		t.Errorf("Join returned another root CA")
	}

	m1 := c.addManager()
	m2 := c.addManager()
	for _, m := range []*testManager{m1, m2} {
		if id := certIdentity(t, m.root, m.cert); id.Role != ca.RoleManager || id.NodeID != m.id {
			t.Errorf("manager certificate says %+v", id)
		}
	}

	want := c.managerIDs()
	waitFor(t, settle, "three raft voters everywhere", func() error {
		for i := range c.nodes {
			if v := c.raftVoters(i); !slices.Equal(v, want) {
				return fmt.Errorf("manager %d: voters %v, want %v", i, v, want)
			}
		}
		return nil
	})
	c.waitMembership()
	c.waitSameStores()

	// Every manager answers ListNodes with the same four nodes.
	for i := range c.nodes {
		ln, err := c.control(i).ListNodes(ctx, &api.ListNodesRequest{})
		if err != nil {
			t.Fatalf("ListNodes at manager %d: %v", i, err)
		}
		var managers, workers int
		for _, n := range ln.GetNodes() {
			switch n.GetRole() {
			case api.NodeRole_MANAGER:
				managers++
			case api.NodeRole_WORKER:
				workers++
				if n.GetId() != w.NodeID {
					t.Errorf("unexpected worker %s", n.GetId())
				}
			}
		}
		if managers != 3 || workers != 1 {
			t.Errorf("ListNodes at manager %d: %d managers, %d workers; want 3 and 1", i, managers, workers)
		}
	}
}

// TestJoinRefused: malformed, wrong, rotated and foreign tokens, and a
// manager address where nothing listens.
func TestJoinRefused(t *testing.T) {
	c := startCluster(t, 1)
	addr := c.nodes[0].addr
	tokens := c.joinTokens()
	ctx, cancel := context.WithTimeout(context.Background(), settle)
	defer cancel()

	_, err := Join(ctx, addr, "SWMTKN-1-nonsense", "", api.NodeSpec_ACTIVE)
	if !isClass(err, api.ErrInvalidArgument) {
		t.Errorf("malformed token: %v (class %v), want invalid argument", err, api.ClassOf(err))
	}

	wrong, err := ca.ParseToken(tokens.GetWorker())
	if err != nil {
		t.Fatal(err)
	}
	wrong.Secret[0] ^= 0xff
	_, err = Join(ctx, addr, wrong.String(), "", api.NodeSpec_ACTIVE)
	if err == nil || !strings.Contains(err.Error(), "A valid join token is necessary") || !isClass(err, api.ErrInvalidArgument) {
		t.Errorf("wrong secret: %v (class %v), want %q", err, api.ClassOf(err), errBadToken)
	}

	ctl := c.control(0)
	rot, err := ctl.RotateJoinToken(ctx, &api.RotateJoinTokenRequest{Role: api.NodeRole_WORKER})
	if err != nil {
		t.Fatalf("RotateJoinToken: %v", err)
	}
	if rot.GetTokens().GetWorker() == tokens.GetWorker() || rot.GetTokens().GetManager() != tokens.GetManager() {
		t.Fatalf("RotateJoinToken(worker): tokens %v, before %v", rot.GetTokens(), tokens)
	}
	_, err = Join(ctx, addr, tokens.GetWorker(), "", api.NodeSpec_ACTIVE)
	if err == nil || !strings.Contains(err.Error(), "A valid join token is necessary") {
		t.Errorf("rotated-out token: %v, want refused", err)
	}
	if res, err := Join(ctx, addr, rot.GetTokens().GetWorker(), "", api.NodeSpec_ACTIVE); err != nil || res.Role != api.NodeRole_WORKER {
		t.Errorf("new worker token: %v", err)
	}

	// A valid token with a request that cannot be signed.
	_, err = api.NewCAClient(dialAnonymous(t, addr)).IssueNodeCertificate(ctx,
		&api.IssueNodeCertificateRequest{Csr: []byte("not a CSR"), Token: rot.GetTokens().GetWorker()})
	if !isClass(api.FromGRPC(err), api.ErrInvalidArgument) {
		t.Errorf("IssueNodeCertificate with a bad CSR: %v, want invalid argument", err)
	}

	other, err := Found("127.0.0.1:1", nil, api.NodeSpec_ACTIVE, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, err = Join(ctx, addr, other.Cluster.GetRootCa().GetJoinTokens().GetManager(), "", api.NodeSpec_ACTIVE)
	if err == nil || !strings.Contains(err.Error(), "remote CA does not match") {
		t.Errorf("token of another cluster: %v, want remote CA does not match", err)
	}

	ln := listen(t)
	nothing := ln.Addr().String()
	ln.Close()
	start := time.Now()
	_, err = Join(ctx, nothing, tokens.GetManager(), "", api.NodeSpec_ACTIVE)
	took := time.Since(start)
	if err == nil || !isClass(err, api.ErrUnavailable) || !strings.Contains(err.Error(), nothing) {
		t.Errorf("join where nothing listens: %v (class %v)", err, api.ClassOf(err))
	}
	if took > 6*time.Second {
		t.Errorf("join where nothing listens took %s", took)
	}
	t.Logf("join where nothing listens: %v after %s", err, took.Round(time.Millisecond))

	// The refused joins left no node behind: the manager and the one worker.
	ln2, err := ctl.ListNodes(ctx, &api.ListNodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ln2.GetNodes()) != 2 {
		t.Errorf("%d nodes after the joins, want 2", len(ln2.GetNodes()))
	}
}

// TestAuthorization: anonymous clients reach the CA only, workers reach the
// dispatcher but not Control nor raft, and a removed node's certificate stops
// working.
func TestAuthorization(t *testing.T) {
	c := startCluster(t, 1)
	addr := c.nodes[0].addr
	tokens := c.joinTokens()
	ctx, cancel := context.WithTimeout(context.Background(), settle)
	defer cancel()

	anon := dialAnonymous(t, addr)
	if _, err := api.NewCAClient(anon).GetRootCACertificate(ctx, &api.GetRootCACertificateRequest{}); err != nil {
		t.Fatalf("anonymous GetRootCACertificate: %v", err)
	}
	if _, err := api.NewControlClient(anon).ListNodes(ctx, &api.ListNodesRequest{}); err == nil ||
		!strings.Contains(err.Error(), "needs a node certificate") {
		t.Errorf("anonymous ListNodes: %v, want refused", err)
	}
	if s, err := api.NewDispatcherClient(anon).Session(ctx, &api.SessionRequest{}); err == nil {
		if _, err = s.Recv(); err == nil {
			t.Errorf("anonymous Session was served")
		}
	}
	if _, err := api.NewCAClient(anon).IssueNodeCertificate(ctx, &api.IssueNodeCertificateRequest{Csr: newCSR(t)}); err == nil {
		t.Errorf("anonymous IssueNodeCertificate without a token was served")
	}

	w, err := Join(ctx, addr, tokens.GetWorker(), "127.0.0.1:4789", api.NodeSpec_ACTIVE)
	if err != nil {
		t.Fatal(err)
	}
	wconn := dialAs(t, addr, w.Root, w.Cert, w.Key)
	_, err = api.NewControlClient(wconn).ListNodes(ctx, &api.ListNodesRequest{})
	if err == nil || !strings.Contains(err.Error(), "not a swarm manager") || !isClass(api.FromGRPC(err), api.ErrFailedPrecondition) {
		t.Errorf("worker ListNodes: %v, want not a swarm manager", err)
	}
	if _, err := api.NewRaftMembershipClient(wconn).Join(ctx, &api.JoinRequest{Addr: "127.0.0.1:1"}); err == nil {
		t.Errorf("worker RaftMembership.Join was served")
	}

	// Raft's ALPN on the shared port takes managers only.
	if err := raftProbe(addr, c.found.Root, w.Cert, w.Key); err == nil {
		t.Errorf("a worker certificate got a raft connection")
	} else {
		t.Logf("raft connection with a worker certificate: %v", err)
	}
	if err := raftProbe(addr, c.found.Root, c.found.Cert, c.found.Key); err != nil {
		t.Errorf("raft connection with a manager certificate: %v", err)
	}

	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	sess, err := api.NewDispatcherClient(wconn).Session(sctx, &api.SessionRequest{Description: &api.NodeDescription{Hostname: "worker-1"}})
	if err != nil {
		t.Fatalf("worker Session: %v", err)
	}
	msg, err := sess.Recv()
	if err != nil {
		t.Fatalf("worker Session: %v", err)
	}
	if msg.GetSessionId() == "" || msg.GetNode().GetId() != w.NodeID {
		t.Fatalf("first session message: session %q node %q", msg.GetSessionId(), msg.GetNode().GetId())
	}
	if len(msg.GetManagers()) != 1 || msg.GetManagers()[0].GetAddr() != addr {
		t.Errorf("session managers %v, want [%s]", msg.GetManagers(), addr)
	}
	if _, err := api.NewDispatcherClient(wconn).Heartbeat(ctx, &api.HeartbeatRequest{SessionId: msg.GetSessionId()}); err != nil {
		t.Errorf("worker Heartbeat: %v", err)
	}

	// A renewal keeps the worker a worker.
	rn, err := Renew(ctx, wconn, "127.0.0.1:4789")
	if err != nil {
		t.Fatalf("Renew: %v", err)
	}
	if rn.NodeID != w.NodeID || rn.Role != api.NodeRole_WORKER {
		t.Errorf("Renew: node %q role %v", rn.NodeID, rn.Role)
	}
	if id := certIdentity(t, w.Root, rn.Cert); id.Role != ca.RoleWorker || id.NodeID != w.NodeID {
		t.Errorf("renewed certificate says %+v", id)
	}

	if _, err := c.control(0).RemoveNode(ctx, &api.RemoveNodeRequest{NodeId: w.NodeID, Force: true}); err != nil {
		t.Fatalf("RemoveNode: %v", err)
	}
	// The open session ends.
	for {
		if _, err := sess.Recv(); err != nil {
			if sctx.Err() != nil {
				t.Fatalf("session still open after RemoveNode")
			}
			break
		}
	}
	// The connection made before the removal is refused at every call ...
	if _, err := api.NewDispatcherClient(wconn).Heartbeat(ctx, &api.HeartbeatRequest{SessionId: msg.GetSessionId()}); err == nil {
		t.Errorf("removed worker's Heartbeat on its old connection was served")
	}
	// ... and a new one at the handshake or the call.
	fresh := dialAs(t, addr, w.Root, w.Cert, w.Key)
	s2, err := api.NewDispatcherClient(fresh).Session(ctx, &api.SessionRequest{})
	if err == nil {
		_, err = s2.Recv()
	}
	if err == nil {
		t.Errorf("removed worker opened a new session")
	} else {
		t.Logf("removed worker's new session: %v", err)
	}
	if _, err := Renew(ctx, fresh, ""); err == nil {
		t.Errorf("removed worker renewed its certificate")
	}
}

// TestForwarding: a follower forwards writes, reads, joins and worker
// sessions to the leader, with the caller's identity and address.
func TestForwarding(t *testing.T) {
	c := startCluster(t, 3)
	c.waitMembership()
	fi := c.follower()
	fol := c.nodes[fi]
	ctl := c.control(fi)
	ctx, cancel := context.WithTimeout(context.Background(), settle)
	defer cancel()

	cs, err := ctl.CreateService(ctx, &api.CreateServiceRequest{Spec: serviceSpec("web")})
	if err != nil {
		t.Fatalf("CreateService at a follower: %v", err)
	}
	for _, n := range c.nodes {
		waitFor(t, settle, "service replicated", func() error { return hasService(n, "web") })
	}
	gs, err := ctl.GetService(ctx, &api.GetServiceRequest{ServiceId: "web"})
	if err != nil || gs.GetService().GetId() != cs.GetService().GetId() {
		t.Fatalf("GetService at a follower: %v", err)
	}
	// An error keeps its class through the hop.
	_, err = ctl.CreateService(ctx, &api.CreateServiceRequest{Spec: serviceSpec("web")})
	if !isClass(api.FromGRPC(err), api.ErrConflict) {
		t.Errorf("duplicate CreateService at a follower: %v, want conflict", err)
	}
	_, err = ctl.CreateService(ctx, &api.CreateServiceRequest{Spec: &api.ServiceSpec{}})
	if !isClass(api.FromGRPC(err), api.ErrInvalidArgument) {
		t.Errorf("empty CreateService at a follower: %v, want invalid argument", err)
	}

	// An anonymous caller stays anonymous when forwarded: it gets no
	// certificate without a token (it must not pass as the follower).
	anon := api.NewCAClient(dialAnonymous(t, fol.addr))
	if resp, err := anon.IssueNodeCertificate(ctx, &api.IssueNodeCertificateRequest{Csr: newCSR(t)}); err == nil {
		t.Errorf("anonymous IssueNodeCertificate without a token at a follower: issued node %s role %v", resp.GetNodeId(), resp.GetRole())
	}

	// A worker joins through the follower and opens its session there,
	// from 127.0.0.2: the leader records the worker's address, not the
	// follower's.
	w, err := Join(ctx, fol.addr, c.joinTokens().GetWorker(), "", api.NodeSpec_ACTIVE)
	if err != nil {
		t.Fatalf("Join at a follower: %v", err)
	}
	if w.Role != api.NodeRole_WORKER {
		t.Fatalf("Join at a follower: role %v", w.Role)
	}
	wconn := dialFrom(t, fol.addr, "127.0.0.2", w.Root, w.Cert, w.Key)
	disp := api.NewDispatcherClient(wconn)
	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	sess, err := disp.Session(sctx, &api.SessionRequest{Description: &api.NodeDescription{Hostname: "far-worker"}})
	if err != nil {
		t.Fatalf("Session at a follower: %v", err)
	}
	msg, err := sess.Recv()
	if err != nil {
		t.Fatalf("Session at a follower: %v", err)
	}
	if msg.GetSessionId() == "" || msg.GetNode().GetId() != w.NodeID {
		t.Fatalf("first session message at a follower: session %q node %q", msg.GetSessionId(), msg.GetNode().GetId())
	}
	if len(msg.GetManagers()) != 3 {
		t.Errorf("session lists %d managers, want 3", len(msg.GetManagers()))
	}
	if _, err := disp.Heartbeat(ctx, &api.HeartbeatRequest{SessionId: msg.GetSessionId()}); err != nil {
		t.Errorf("Heartbeat at a follower: %v", err)
	}
	if _, err := disp.Heartbeat(ctx, &api.HeartbeatRequest{SessionId: "not-a-session"}); !isClass(api.FromGRPC(err), api.ErrNotFound) {
		t.Errorf("Heartbeat with a wrong session at a follower: %v, want not found", err)
	}
	// Each poll beats too: a silent worker is DOWN after three periods.
	beat := func() error {
		_, err := disp.Heartbeat(ctx, &api.HeartbeatRequest{SessionId: msg.GetSessionId()})
		return err
	}
	waitFor(t, settle, "worker READY with its own address", func() error {
		if err := beat(); err != nil {
			return err
		}
		var n *api.Node
		c.nodes[c.leader()].m.Store().View(func(tx raftstore.ReadTx) { n = tx.GetNode(w.NodeID) })
		if st := n.GetStatus(); st.GetState() != api.NodeStatus_READY || st.GetAddr() != "127.0.0.2" ||
			n.GetDescription().GetHostname() != "far-worker" {
			return fmt.Errorf("worker status %v, description %v", st, n.GetDescription())
		}
		return nil
	})
	// The orchestrator and scheduler run on the leader: web's task lands
	// on the only worker.
	waitFor(t, settle, "web's task assigned to the worker", func() error {
		if err := beat(); err != nil {
			return err
		}
		var tasks []*api.Task
		fol.m.Store().View(func(tx raftstore.ReadTx) { tasks = tx.TasksOfService(cs.GetService().GetId()) })
		if len(tasks) != 1 || tasks[0].GetNodeId() != w.NodeID {
			return fmt.Errorf("tasks %v", tasks)
		}
		return nil
	})
	scancel()
}

// TestLeaderLoss stops the leader of three: the two left elect a new one
// and take writes through either; then one more stops, and the last one
// answers reads from its copy but takes no write.
func TestLeaderLoss(t *testing.T) {
	c := startCluster(t, 3)
	c.waitMembership()
	old := c.leader()
	var rest []int
	for i := range c.nodes {
		if i != old {
			rest = append(rest, i)
		}
	}
	ctls := map[int]api.ControlClient{rest[0]: c.control(rest[0]), rest[1]: c.control(rest[1])}
	// Warm the connections, so the measurement is of the failover.
	for _, i := range rest {
		if _, err := ctls[i].ListServices(context.Background(), &api.ListServicesRequest{}); err != nil {
			t.Fatal(err)
		}
	}

	start := time.Now()
	c.nodes[old].stop()
	stopped := time.Since(start)
	var took time.Duration
	var via int
	waitFor(t, settle, "a write after the leader's loss", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		var errs []error
		for _, i := range rest {
			_, err := ctls[i].CreateService(ctx, &api.CreateServiceRequest{Spec: serviceSpec("after-failover")})
			if err == nil || isClass(api.FromGRPC(err), api.ErrConflict) {
				// Conflict: an earlier attempt with a timed-out answer committed.
				took, via = time.Since(start), i
				return nil
			}
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	})
	t.Logf("leader failover: first successful write %s after cancelling the leader's Run (Run took %s to return), through manager %d",
		took.Round(time.Millisecond), stopped.Round(time.Millisecond), via)
	if took > 15*time.Second {
		t.Errorf("failover took %s", took)
	}
	nl := c.leader()
	if nl == old {
		t.Fatalf("the stopped manager is still the leader")
	}
	for _, i := range rest {
		waitFor(t, settle, "service replicated to survivors", func() error { return hasService(c.nodes[i], "after-failover") })
		ctx, cancel := context.WithTimeout(context.Background(), callTTL)
		_, err := ctls[i].CreateService(ctx, &api.CreateServiceRequest{Spec: serviceSpec(fmt.Sprintf("via-%d", i))})
		cancel()
		if err != nil {
			t.Errorf("write through manager %d after failover: %v", i, err)
		}
	}

	// One manager of three left: a minority. It answers reads from its own
	// copy, and no write goes through. (Wait for the last writes to be
	// applied there first: a follower learns that an entry committed only
	// from the leader's next message.)
	c.waitSameStores()
	c.nodes[nl].stop()
	last := rest[0]
	if last == nl {
		last = rest[1]
	}
	waitFor(t, settle, "the last manager refuses writes for want of a leader", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := ctls[last].CreateService(ctx, &api.CreateServiceRequest{Spec: serviceSpec("minority")})
		if err == nil {
			t.Fatalf("a minority of one took a write")
		}
		if !strings.Contains(err.Error(), "does not have a leader") || !isClass(api.FromGRPC(err), api.ErrUnavailable) {
			return fmt.Errorf("write: %v", err)
		}
		ls, err := ctls[last].ListServices(ctx, &api.ListServicesRequest{})
		if err != nil {
			return fmt.Errorf("read: %v", err)
		}
		if len(ls.GetServices()) != 3 {
			return fmt.Errorf("read: %d services, want 3", len(ls.GetServices()))
		}
		return nil
	})
	if err := hasService(c.nodes[last], "minority"); err == nil {
		t.Errorf("the minority's write reached its store")
	}
}

// TestRestart stops all three managers and starts them again on the same
// directories and addresses: the state, raft membership included, is back.
func TestRestart(t *testing.T) {
	c := startCluster(t, 3)
	c.waitMembership()
	ctx, cancel := context.WithTimeout(context.Background(), settle)
	defer cancel()
	if _, err := c.control(c.follower()).CreateService(ctx, &api.CreateServiceRequest{Spec: serviceSpec("kept")}); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.nodes {
		waitFor(t, settle, "service replicated", func() error { return hasService(n, "kept") })
	}
	want := c.managerIDs()
	for _, n := range c.nodes {
		n.stop()
	}
	for _, n := range c.nodes {
		n.restart()
	}
	// The first manager is started as by `swarm init` again: Bootstrap is a
	// no-op on existing state, whether this manager leads or not.
	if err := c.nodes[0].m.Bootstrap(ctx, c.found.Cluster, c.found.Node); err != nil {
		t.Errorf("Bootstrap after restart: %v", err)
	}
	c.leader()
	for _, n := range c.nodes {
		waitFor(t, settle, "service back after restart", func() error { return hasService(n, "kept") })
	}
	c.waitMembership()
	for i := range c.nodes {
		if v := c.raftVoters(i); !slices.Equal(v, want) {
			t.Errorf("manager %d after restart: voters %v, want %v", i, v, want)
		}
	}
	var clusters int
	c.nodes[0].m.Store().View(func(tx raftstore.ReadTx) { clusters = len(tx.Clusters()) })
	if clusters != 1 {
		t.Errorf("%d cluster objects after restart", clusters)
	}
	if _, err := c.control(c.follower()).CreateService(ctx, &api.CreateServiceRequest{Spec: serviceSpec("new")}); err != nil {
		t.Errorf("write after restart: %v", err)
	}
	c.waitSameStores()
}

func certIdentity(t *testing.T, root *ca.RootCA, certPEM []byte) ca.NodeIdentity {
	t.Helper()
	blk, _ := pem.Decode(certPEM)
	if blk == nil {
		t.Fatal("certificate is not PEM")
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	id, err := root.Identify(cert, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func newCSR(t *testing.T) []byte {
	t.Helper()
	_, csr, err := ca.NewNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

// dialFrom is dialAs from a chosen local address.
func dialFrom(t *testing.T, addr, local string, root *ca.RootCA, cert []byte, key *ecdsa.PrivateKey) *grpc.ClientConn {
	t.Helper()
	cfg, err := ClientTLS(root, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return d.DialContext(ctx, "tcp", a) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// raftProbe opens a raft (ALPN shoal-raft) connection to addr with a node
// certificate. The manager's raft transport waits for a request on a
// connection it accepted; nil means the connection stayed open like that,
// an error that it was refused or closed.
func raftProbe(addr string, root *ca.RootCA, cert []byte, key *ecdsa.PrivateKey) error {
	cfg, err := root.TLSConfig(cert, key, nil)
	if err != nil {
		return err
	}
	cfg.NextProtos = []string{protoRaft}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	if p := c.ConnectionState().NegotiatedProtocol; p != protoRaft {
		return fmt.Errorf("negotiated %q", p)
	}
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	_, err = c.Read(make([]byte, 1))
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil
	}
	if err == nil {
		return errors.New("the manager sent data on a raft connection")
	}
	return err
}

// TestForwardedWriteReadHere: a write made through a follower is in that
// follower's store when the call returns, so that its caller's next read
// there (the registry's token check, a new node's handshake) sees it. A
// follower learns that an entry is committed only with the leader's next
// append, up to CommitTimeout (50 ms) later.
func TestForwardedWriteReadHere(t *testing.T) {
	c := startCluster(t, 3)
	c.waitMembership()
	fi := c.follower()
	ctl := c.control(fi)
	ctx, cancel := context.WithTimeout(context.Background(), settle)
	defer cancel()
	for i := range 10 {
		name := fmt.Sprintf("ryw%d", i)
		if _, err := ctl.CreateService(ctx, &api.CreateServiceRequest{Spec: serviceSpec(name)}); err != nil {
			t.Fatalf("CreateService at a follower: %v", err)
		}
		if err := hasService(c.nodes[fi], name); err != nil {
			t.Fatalf("right after CreateService %s returned at the follower: %v", name, err)
		}
	}
}
