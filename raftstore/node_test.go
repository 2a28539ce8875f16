package raftstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/shoal-project/shoal/api"
)

// faultNet wraps one node's listener and dialer so a test can cut the node
// off from every peer (and heal it) on real TCP.
type faultNet struct {
	blocked atomic.Bool
	mu      sync.Mutex // guards conns
	conns   map[net.Conn]struct{}
}

func (f *faultNet) track(c net.Conn) net.Conn {
	f.mu.Lock()
	defer f.mu.Unlock()
	// A dial or accept that began before isolate and ends after it would
	// otherwise carry traffic across the partition: checked again here,
	// under the lock isolate closes connections with.
	if f.blocked.Load() {
		c.Close()
		return c
	}
	if f.conns == nil {
		f.conns = map[net.Conn]struct{}{}
	}
	f.conns[c] = struct{}{}
	return c
}

// isolate drops every connection of the node and refuses new ones.
func (f *faultNet) isolate() {
	f.blocked.Store(true)
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.conns {
		c.Close()
	}
	f.conns = nil
}

func (f *faultNet) heal() { f.blocked.Store(false) }

func (f *faultNet) dial(addr string, timeout time.Duration) (net.Conn, error) {
	if f.blocked.Load() {
		return nil, errors.New("partitioned")
	}
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	return f.track(c), nil
}

type faultListener struct {
	net.Listener
	f *faultNet
}

func (l faultListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.f.blocked.Load() {
			c.Close()
			continue
		}
		return l.f.track(c), nil
	}
}

type testNode struct {
	*Node
	dir  string
	addr string
	net  *faultNet
}

func testConfig(t testing.TB, id, dir, addr string, fn *faultNet) Config {
	t.Helper()
	var ln net.Listener
	var err error
	for range 50 { // the port of a node just closed may take a moment to free
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	return Config{
		ID: id, Dir: dir, Listener: faultListener{ln, fn}, Dial: fn.dial,
		// Short enough for quick failover, long enough for a loaded 2-core
		// machine (and -race) not to miss heartbeats.
		HeartbeatTimeout: 300 * time.Millisecond, ElectionTimeout: 300 * time.Millisecond,
		LeaderLeaseTimeout: 150 * time.Millisecond, CommitTimeout: 5 * time.Millisecond,
		SnapshotThreshold: 40, TrailingLogs: 10, SnapshotInterval: 100 * time.Millisecond,
		Logger: hclog.NewNullLogger(),
		// Encrypted as the managers' are: snapshots sent to followers too.
		DEK: testDEK,
	}
}

func startNode(t testing.TB, id, dir, addr string, bootstrap bool) *testNode {
	t.Helper()
	fn := &faultNet{}
	cfg := testConfig(t, id, dir, addr, fn)
	cfg.Bootstrap = bootstrap
	n, err := NewNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return &testNode{Node: n, dir: dir, addr: n.Addr(), net: fn}
}

// startCluster bootstraps n1 and adds the others as voters.
func startCluster(t testing.TB, size int) []*testNode {
	t.Helper()
	nodes := []*testNode{startNode(t, "n1", t.TempDir(), "127.0.0.1:0", true)}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := nodes[0].WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 2; i <= size; i++ {
		tn := startNode(t, fmt.Sprintf("n%d", i), t.TempDir(), "127.0.0.1:0", false)
		if err := nodes[0].AddVoter(ctx, tn.ID(), tn.Addr()); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, tn)
	}
	return nodes
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func leaderOf(t testing.TB, nodes []*testNode) *testNode {
	t.Helper()
	var l *testNode
	waitFor(t, "a leader", func() bool {
		for _, n := range nodes {
			if n != nil && n.IsLeader() {
				l = n
				return true
			}
		}
		return false
	})
	return l
}

func createService(ctx context.Context, s *MemoryStore, id string) error {
	return s.Update(ctx, func(tx WriteTx) error { return tx.Create(svc(id, id, 0)) })
}

// writeOnLeader creates service id through whichever node leads, retrying
// while leadership moves (a loaded 2-core machine can delay heartbeats). A
// conflict after an attempt whose outcome was unknown means that attempt
// committed.
func writeOnLeader(ctx context.Context, nodes []*testNode, id string) error {
	uncertain := false
	for {
		for _, n := range nodes {
			if !n.IsLeader() {
				continue
			}
			err := createService(ctx, n.Store(), id)
			switch {
			case err == nil, uncertain && errors.Is(err, api.ErrConflict):
				return nil
			case errors.Is(err, api.ErrUnavailable):
				uncertain = true
			case !errors.Is(err, api.ErrNotLeader):
				return err
			}
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("write %s: %w", id, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func hasService(n *testNode, id string) bool {
	found := false
	n.Store().View(func(tx ReadTx) { found = tx.GetService(id) != nil })
	return found
}

func TestClusterReplicatesAndFailsOver(t *testing.T) {
	nodes := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	leader := leaderOf(t, nodes)
	follower := nodes[0]
	if follower == leader {
		follower = nodes[1]
	}
	w := follower.Store().Watch(KindService)
	defer w.Close()
	if err := writeOnLeader(ctx, nodes, "before"); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		waitFor(t, n.ID()+" to have the write", func() bool { return hasService(n, "before") })
	}
	select {
	case b := <-w.C():
		if len(b.Events) != 1 || b.Events[0].Object.GetId() != "before" || b.Events[0].Object.GetMeta().GetVersion() != b.Version {
			t.Fatalf("follower's watcher got %+v", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("follower's watcher got nothing")
	}
	// Writes on a follower are refused with the leader's name.
	for _, n := range nodes {
		if n != leader {
			err := createService(ctx, n.Store(), "x")
			if !errors.Is(err, api.ErrNotLeader) {
				t.Fatalf("write on follower: %v", err)
			}
			break
		}
	}
	members, err := leader.Members()
	if err != nil || len(members) != 3 {
		t.Fatalf("members %v, %v", members, err)
	}

	leader = leaderOf(t, nodes)
	var rest []*testNode
	for _, n := range nodes {
		if n != leader {
			rest = append(rest, n)
		}
	}
	changed := rest[0].LeaderChanged()
	if err := leader.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("no leader change observed")
	}
	leaderOf(t, rest)
	if err := writeOnLeader(ctx, rest, "after"); err != nil {
		t.Fatal(err)
	}
	for _, n := range rest {
		waitFor(t, n.ID()+" to have the write after failover", func() bool { return hasService(n, "after") })
	}
	if err := createService(ctx, leader.Store(), "closed"); err == nil {
		t.Fatal("closed node accepted a write")
	}
}

// TestClusterRestartKeepsAcknowledgedWrites writes concurrently (so entries
// are batched and snapshots taken), stops every node, starts them again from
// disk and checks that every acknowledged write is there.
func TestClusterRestartKeepsAcknowledgedWrites(t *testing.T) {
	nodes := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	leader := leaderOf(t, nodes)

	const writers, perWriter = 20, 10
	var (
		mu    sync.Mutex
		acked []string
		wg    sync.WaitGroup
	)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				id := fmt.Sprintf("w%02d-%02d", w, i)
				if err := writeOnLeader(ctx, nodes, id); err != nil {
					t.Errorf("write %s: %v", id, err)
					return
				}
				mu.Lock()
				acked = append(acked, id)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(acked) != writers*perWriter {
		t.Fatalf("%d writes acknowledged", len(acked))
	}
	var entries uint64
	leader.Store().View(func(tx ReadTx) { entries = tx.Version() })
	t.Logf("%d writes in raft entries up to index %d", len(acked), entries)

	// Force a snapshot so the restart exercises restore + log tail, and
	// check that the log was compacted.
	if err := leader.Snapshot(); err != nil {
		t.Fatal(err)
	}
	if first, _ := leader.wal.FirstIndex(); first <= 1 {
		t.Errorf("log not compacted after a snapshot: first index %d", first)
	}
	if err := writeOnLeader(ctx, nodes, "after-snapshot"); err != nil {
		t.Fatal(err)
	}
	acked = append(acked, "after-snapshot")
	for _, n := range nodes {
		waitFor(t, n.ID()+" to catch up", func() bool { return hasService(n, "after-snapshot") })
	}

	for _, n := range nodes {
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
	}
	restarted := make([]*testNode, len(nodes))
	for i, n := range nodes {
		restarted[i] = startNode(t, n.ID(), n.dir, n.addr, false)
	}
	leaderOf(t, restarted)
	for _, n := range restarted {
		waitFor(t, n.ID()+" to replay", func() bool { return hasService(n, "after-snapshot") })
		n.Store().View(func(tx ReadTx) {
			for _, id := range acked {
				if tx.GetService(id) == nil {
					t.Errorf("%s lost acknowledged write %s", n.ID(), id)
				}
			}
		})
	}
}

// TestMinorityCannotCommit cuts the leader off: it cannot commit, the
// majority elects a new leader and goes on, and after healing the old leader
// holds the majority's state, without its own uncommitted write.
func TestMinorityCannotCommit(t *testing.T) {
	nodes := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := writeOnLeader(ctx, nodes, "base"); err != nil {
		t.Fatal(err)
	}
	old := leaderOf(t, nodes)
	old.net.isolate()

	short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
	err := createService(short, old.Store(), "minority")
	cancelShort()
	if err == nil {
		t.Fatal("isolated leader committed a write")
	}
	t.Logf("isolated leader's write: %v", err)

	var rest []*testNode
	for _, n := range nodes {
		if n != old {
			rest = append(rest, n)
		}
	}
	leaderOf(t, rest)
	if err := writeOnLeader(ctx, rest, "majority"); err != nil {
		t.Fatal(err)
	}
	if hasService(old, "majority") {
		t.Fatal("isolated node received a write")
	}
	old.net.heal()
	waitFor(t, "the old leader to catch up", func() bool { return hasService(old, "majority") })
	for _, n := range nodes {
		if hasService(n, "minority") {
			t.Errorf("%s has the minority's write", n.ID())
		}
	}
}

// TestProposeBatches checks that concurrent proposals share raft entries.
func TestProposeBatches(t *testing.T) {
	n := startNode(t, "solo", t.TempDir(), "127.0.0.1:0", true)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := n.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	leaderOf(t, []*testNode{n})
	var before uint64
	n.Store().View(func(tx ReadTx) { before = tx.Version() })
	const writes = 500
	var wg sync.WaitGroup
	errs := make(chan error, writes)
	for i := range writes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- createService(ctx, n.Store(), fmt.Sprintf("s%03d", i))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var after uint64
	n.Store().View(func(tx ReadTx) { after = tx.Version() })
	t.Logf("%d proposals in %d raft entries", writes, after-before)
	if after-before >= writes/2 {
		t.Errorf("%d proposals took %d entries: not batched", writes, after-before)
	}
	// A refused proposal in a batch does not fail its neighbours.
	err := createService(ctx, n.Store(), "s001")
	if !errors.Is(err, api.ErrConflict) {
		t.Fatalf("duplicate create: %v", err)
	}
}

func TestNewNodeRefusesBadConfig(t *testing.T) {
	if _, err := NewNode(Config{ID: "x"}); !errors.Is(err, api.ErrInvalidArgument) {
		t.Fatalf("missing dir/listener: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewNode(Config{ID: "x", Dir: t.TempDir(), Listener: ln, AdvertiseAddr: "not an address", Logger: hclog.NewNullLogger()})
	if err == nil {
		t.Fatal("bad advertise address accepted")
	}
	if _, err := ln.Accept(); err == nil {
		t.Fatal("listener left open after a failed start")
	}
}

// BenchmarkPropose3Nodes measures committed writes per second on a 3-node
// cluster on this disk, with 512 writers proposing concurrently (each write
// one small object update, as task status reports are).
func BenchmarkPropose3Nodes(b *testing.B) {
	nodes := startCluster(b, 3)
	leader := leaderOf(b, nodes)
	ctx := context.Background()
	if err := createService(ctx, leader.Store(), "svc"); err != nil {
		b.Fatal(err)
	}
	var next atomic.Int64
	b.SetParallelism(256) // x GOMAXPROCS(2) = 512 writers
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := fmt.Sprintf("t%d", next.Add(1))
			if err := leader.Store().Update(ctx, func(tx WriteTx) error {
				return tx.Create(task(id, "svc", "n1", api.TaskState_NEW, 0))
			}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	var index uint64
	leader.Store().View(func(tx ReadTx) { index = tx.Version() })
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
	b.ReportMetric(float64(b.N)/float64(index), "writes/entry")
}

// TestJoinAfterCompactionAndRemove: a manager added after the log was
// compacted catches up from a snapshot; removing it shrinks the membership.
func TestJoinAfterCompactionAndRemove(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n1 := startNode(t, "n1", t.TempDir(), "127.0.0.1:0", true)
	leaderOf(t, []*testNode{n1})
	for i := range 60 {
		if err := createService(ctx, n1.Store(), fmt.Sprintf("s%02d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := n1.Snapshot(); err != nil {
		t.Fatal(err)
	}
	if first, _ := n1.wal.FirstIndex(); first <= 1 {
		t.Fatalf("log not compacted: first index %d", first)
	}
	n2 := startNode(t, "n2", t.TempDir(), "127.0.0.1:0", false)
	if err := n1.AddVoter(ctx, n2.ID(), n2.Addr()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "n2 to catch up from the snapshot", func() bool { return hasService(n2, "s59") && hasService(n2, "s00") })
	if id, _ := n2.Leader(); id != "n1" {
		t.Fatalf("n2 sees leader %q", id)
	}
	if err := n1.RemoveServer(ctx, "n2"); err != nil {
		t.Fatal(err)
	}
	members, err := n1.Members()
	if err != nil || len(members) != 1 || members[0].RaftId != "n1" {
		t.Fatalf("members after remove: %v, %v", members, err)
	}
	// With n2 gone, n1 alone is a majority again and keeps committing.
	if err := createService(ctx, n1.Store(), "after-remove"); err != nil {
		t.Fatal(err)
	}
}
