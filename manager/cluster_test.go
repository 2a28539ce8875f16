package manager

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/manager/ca"
	"github.com/shoal-project/shoal/manager/heartbeat"
	"github.com/shoal-project/shoal/raftstore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/tap"
	"google.golang.org/protobuf/proto"
)

// An in-process test cluster: real managers (real raft on t.TempDir(), real
// mutual TLS with the cluster CA) on 127.0.0.1 ports the kernel picked.
// Every manager's Run is cancelled, and waited for, in t.Cleanup.

// Timeouts are generous: the tests run on a shared 2-core VM, also under -race.
const (
	settle  = 30 * time.Second // a cluster reaching a state (leader, replication, membership)
	callTTL = 10 * time.Second // one RPC
)

// testLogger keeps the managers' logs to warnings: go test shows them for a
// failing package only.
var testLogger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

type testCluster struct {
	t     *testing.T
	found *Founding
	nodes []*testManager
	// stats observes the calls every manager serves (nil: none).
	stats stats.Handler
}

// testManager is one manager of a testCluster; stop and start it again on
// the same directory and address to restart it.
type testManager struct {
	t         *testing.T
	id        string
	addr      string
	dir       string
	root      *ca.RootCA
	cert      []byte
	key       *ecdsa.PrivateKey
	bootstrap bool
	stats     stats.Handler

	m      *Manager
	cancel context.CancelFunc
	done   chan error
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// startCluster founds a cluster on a first manager, bootstraps it and joins
// n-1 more managers.
func startCluster(t *testing.T, n int) *testCluster {
	t.Helper()
	return startClusterObserved(t, n, nil)
}

// startClusterObserved is startCluster with sh observing every call the
// managers serve.
func startClusterObserved(t *testing.T, n int, sh stats.Handler) *testCluster {
	t.Helper()
	ln := listen(t)
	addr := ln.Addr().String()
	f, err := Found(addr, nil, api.NodeSpec_ACTIVE, time.Now())
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	c := &testCluster{t: t, found: f, stats: sh}
	first := &testManager{t: t, id: f.Node.GetId(), addr: addr, dir: t.TempDir(),
		root: f.Root, cert: f.Cert, key: f.Key, bootstrap: true, stats: sh}
	first.start(ln)
	c.nodes = append(c.nodes, first)
	ctx, cancel := context.WithTimeout(context.Background(), settle)
	defer cancel()
	if err := first.m.Bootstrap(ctx, f.Cluster, f.Node); err != nil {
		t.Fatalf("Bootstrap: %v", err)
	}
	for i := 1; i < n; i++ {
		c.addManager()
	}
	return c
}

// addManager joins one more manager with the manager token, starts it and
// adds it to raft through the first manager, as `swarm join` does.
func (c *testCluster) addManager() *testManager {
	t := c.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), settle)
	defer cancel()
	tokens := c.joinTokens()
	ln := listen(t)
	addr := ln.Addr().String()
	res, err := Join(ctx, c.nodes[0].addr, tokens.GetManager(), addr, api.NodeSpec_ACTIVE)
	if err != nil {
		ln.Close()
		t.Fatalf("Join as manager: %v", err)
	}
	if res.Role != api.NodeRole_MANAGER {
		ln.Close()
		t.Fatalf("Join with the manager token: role %v, want MANAGER", res.Role)
	}
	if res.Root.Key != nil {
		t.Errorf("Join handed out the CA key")
	}
	nm := &testManager{t: t, id: res.NodeID, addr: addr, dir: t.TempDir(), root: res.Root, cert: res.Cert, key: res.Key, stats: c.stats}
	nm.start(ln)
	c.nodes = append(c.nodes, nm)
	conn := dialAs(t, c.nodes[0].addr, nm.root, nm.cert, nm.key)
	var jr *api.JoinResponse
	for attempt := 1; ; attempt++ {
		jr, err = api.NewRaftMembershipClient(conn).Join(ctx, &api.JoinRequest{Addr: addr})
		if err == nil {
			break
		}
		// As the daemon does: an unknown outcome (leadership lost while the
		// new configuration committed) is retried; AddVoter is idempotent.
		err = api.FromGRPC(err)
		if !errors.Is(err, api.ErrUnavailable) || ctx.Err() != nil {
			t.Fatalf("RaftMembership.Join of %s: %v", nm.id, err)
		}
		t.Logf("RaftMembership.Join of %s, attempt %d: %v; retrying", nm.id, attempt, err)
		time.Sleep(200 * time.Millisecond)
	}
	if jr.GetRaftId() != nm.id {
		t.Errorf("RaftMembership.Join: raft ID %q, want %q", jr.GetRaftId(), nm.id)
	}
	// The new manager has caught up once it holds the cluster object.
	waitFor(t, settle, "new manager replicates the store", func() error {
		var n int
		nm.m.Store().View(func(tx raftstore.ReadTx) { n = len(tx.Clusters()) })
		if n != 1 {
			return fmt.Errorf("%d cluster objects", n)
		}
		return nil
	})
	return nm
}

// start creates and runs the manager on ln.
func (tm *testManager) start(ln net.Listener) {
	t := tm.t
	t.Helper()
	ctls, err := ClientTLS(tm.root, tm.cert, tm.key)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	cfg := Config{
		NodeID: tm.id, Dir: tm.dir, Listener: ln, AdvertiseAddr: tm.addr,
		Root: tm.root, Cert: tm.cert, Key: tm.key, Bootstrap: tm.bootstrap,
		Dial:   func(addr string) (*grpc.ClientConn, error) { return Dial(addr, ctls) },
		Logger: testLogger, StatsHandler: tm.stats,
	}
	// The heartbeat fast path as the daemon runs it: on the manager port's
	// number over UDP, answered by a process of its own (this test binary,
	// TestMain).
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok {
		if uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: tcp.IP, Port: tcp.Port}); err == nil {
			cfg.BeatConn = uc
			cfg.BeatCommand = func() *exec.Cmd {
				cmd := exec.Command(os.Args[0], heartbeat.ServerArg)
				cmd.Stderr = os.Stderr
				return cmd
			}
		}
	}
	// A stats handler that also taps (the scale bench's heartbeatTimer)
	// sees each call's headers read too.
	if tp, ok := tm.stats.(interface {
		InTap(context.Context, *tap.Info) (context.Context, error)
	}); ok {
		cfg.InTap = tp.InTap
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatalf("New %s: %v", tm.id, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tm.m, tm.cancel, tm.done = m, cancel, make(chan error, 1)
	done := tm.done
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(tm.stop)
}

// restart starts the manager again on its address and directory.
func (tm *testManager) restart() {
	t := tm.t
	t.Helper()
	var ln net.Listener
	waitFor(t, 10*time.Second, "listen on "+tm.addr+" again", func() (err error) {
		ln, err = net.Listen("tcp", tm.addr)
		return err
	})
	tm.start(ln)
}

// stop cancels Run and waits for it; a no-op on a stopped manager.
func (tm *testManager) stop() {
	if tm.cancel == nil {
		return
	}
	tm.cancel()
	tm.cancel = nil
	select {
	case err := <-tm.done:
		if err != nil {
			tm.t.Errorf("Run of %s: %v", tm.id, err)
		}
	case <-time.After(30 * time.Second):
		tm.t.Errorf("Run of %s did not return 30 s after its context ended", tm.id)
	}
}

func (tm *testManager) running() bool { return tm.cancel != nil }

// dialAs is a mutual-TLS connection to addr with a node's certificate.
func dialAs(t *testing.T, addr string, root *ca.RootCA, cert []byte, key *ecdsa.PrivateKey) *grpc.ClientConn {
	t.Helper()
	cfg, err := ClientTLS(root, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := Dial(addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// dialAnonymous is a TLS connection without a client certificate, as a
// joining node has.
func dialAnonymous(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(
		credentials.NewTLS(&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// control is a Control client to manager i with the first manager's
// certificate (the identity `swarm init` made).
func (c *testCluster) control(i int) api.ControlClient {
	f := c.found
	return api.NewControlClient(dialAs(c.t, c.nodes[i].addr, f.Root, f.Cert, f.Key))
}

func (c *testCluster) joinTokens() *api.JoinTokens {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTTL)
	defer cancel()
	var resp *api.GetJoinTokensResponse
	// Through the leader's store: a follower answers reads at the leader too.
	waitFor(c.t, settle, "GetJoinTokens", func() (err error) {
		resp, err = c.control(c.leader()).GetJoinTokens(ctx, &api.GetJoinTokensRequest{})
		return err
	})
	return resp.GetTokens()
}

// leader waits until exactly one running manager leads and returns its index.
func (c *testCluster) leader() int {
	c.t.Helper()
	var idx int
	waitFor(c.t, settle, "a leader", func() error {
		var leaders []int
		for i, n := range c.nodes {
			if n.running() && n.m.Raft().IsLeader() {
				leaders = append(leaders, i)
			}
		}
		if len(leaders) != 1 {
			return fmt.Errorf("leaders: %v", leaders)
		}
		idx = leaders[0]
		return nil
	})
	return idx
}

// follower returns the index of a running manager that is not the leader.
func (c *testCluster) follower() int {
	c.t.Helper()
	l := c.leader()
	for i, n := range c.nodes {
		if i != l && n.running() {
			return i
		}
	}
	c.t.Fatal("no follower")
	return -1
}

// storeDigest is a comparable summary of a manager's store: every cluster,
// node and service object, versions included.
func storeDigest(s *raftstore.MemoryStore) string {
	var b strings.Builder
	s.View(func(tx raftstore.ReadTx) {
		var objs []proto.Message
		for _, o := range tx.Clusters() {
			objs = append(objs, o)
		}
		for _, o := range tx.Nodes() {
			objs = append(objs, o)
		}
		for _, o := range tx.Services() {
			objs = append(objs, o)
		}
		for _, o := range objs {
			data, err := proto.MarshalOptions{Deterministic: true}.Marshal(o)
			if err != nil {
				panic(err)
			}
			fmt.Fprintf(&b, "%x\n", data)
		}
	})
	return b.String()
}

// waitSameStores waits until every running manager's store holds the same objects.
func (c *testCluster) waitSameStores() {
	c.t.Helper()
	waitFor(c.t, settle, "all managers hold the same store", func() error {
		var want string
		for i, n := range c.nodes {
			if !n.running() {
				continue
			}
			d := storeDigest(n.m.Store())
			if want == "" {
				want = d
			} else if d != want {
				return fmt.Errorf("manager %d's store differs", i)
			}
		}
		return nil
	})
}

// waitMembership waits until the leader's store shows every running manager
// REACHABLE and exactly one of them, the raft leader, as leader.
func (c *testCluster) waitMembership() {
	c.t.Helper()
	waitFor(c.t, settle, "membership reconciled", func() error {
		l := c.leader()
		var nodes []*api.Node
		c.nodes[l].m.Store().View(func(tx raftstore.ReadTx) { nodes = tx.Nodes() })
		byID := map[string]*api.Node{}
		for _, n := range nodes {
			byID[n.GetId()] = n
		}
		leaders := 0
		for _, tm := range c.nodes {
			if !tm.running() {
				continue
			}
			n := byID[tm.id]
			if n == nil {
				return fmt.Errorf("manager %s is not in the store", tm.id)
			}
			ms := n.GetManagerStatus()
			if n.GetRole() != api.NodeRole_MANAGER || ms.GetReachability() != api.ManagerStatus_REACHABLE {
				return fmt.Errorf("manager %s: role %v, reachability %v", tm.id, n.GetRole(), ms.GetReachability())
			}
			if ms.GetAddr() != tm.addr {
				return fmt.Errorf("manager %s: address %q, want %q", tm.id, ms.GetAddr(), tm.addr)
			}
			if ms.GetLeader() {
				leaders++
				if tm.id != c.nodes[l].id {
					return fmt.Errorf("manager %s is marked leader, the raft leader is %s", tm.id, c.nodes[l].id)
				}
			}
		}
		if leaders != 1 {
			return fmt.Errorf("%d managers marked leader", leaders)
		}
		return nil
	})
}

// raftVoters returns the sorted IDs of manager i's raft configuration.
func (c *testCluster) raftVoters(i int) []string {
	c.t.Helper()
	members, err := c.nodes[i].m.Raft().Members()
	if err != nil {
		c.t.Fatal(err)
	}
	var ids []string
	for _, m := range members {
		if m.GetVoter() {
			ids = append(ids, m.GetRaftId())
		}
	}
	sort.Strings(ids)
	return ids
}

func (c *testCluster) managerIDs() []string {
	var ids []string
	for _, n := range c.nodes {
		ids = append(ids, n.id)
	}
	sort.Strings(ids)
	return ids
}

// waitFor polls f until it returns nil, failing the test with f's last
// error after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// serviceSpec is the simplest spec the control API accepts.
func serviceSpec(name string) *api.ServiceSpec {
	return &api.ServiceSpec{
		Annotations: &api.Annotations{Name: name},
		Task:        &api.TaskSpec{Container: &api.ContainerSpec{Image: "busybox:latest"}},
		Mode:        &api.ServiceSpec_Replicated{Replicated: &api.ReplicatedService{Replicas: 1}},
	}
}

// hasService reports whether manager tm's own store holds a service named name.
func hasService(tm *testManager, name string) error {
	var found bool
	tm.m.Store().View(func(tx raftstore.ReadTx) {
		found = slices.ContainsFunc(tx.Services(), func(s *api.Service) bool {
			return s.GetSpec().GetAnnotations().GetName() == name
		})
	})
	if !found {
		return fmt.Errorf("manager %s has no service %q", tm.id, name)
	}
	return nil
}

func isClass(err, class error) bool {
	return errors.Is(err, class) && api.ClassOf(err) == class
}
