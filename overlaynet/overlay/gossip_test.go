package overlay_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/shoal-project/shoal/overlaynet/overlay"
	"github.com/shoal-project/shoal/overlaynet/peers"
	"github.com/shoal-project/shoal/overlaynet/sandbox"
)

var (
	clusterKey = []byte("0123456789abcdef0123456789abcdef")
	otherKey   = []byte("fedcba9876543210fedcba9876543210")
)

// startPeers runs h's gossip member; it stops when the test ends.
func startPeers(t *testing.T, h *host, m *overlay.Manager, key []byte) (*peers.Peers, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p, err := peers.Start(ctx, peers.Config{
		NodeName: h.name, BindAddr: h.ip, VTEP: h.ip, Keys: [][]byte{key},
		Program: m, NetNS: h.ns, LocalNetwork: true, LogOutput: testLog{t, h.name},
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Shutdown(); cancel() })
	return p, cancel
}

// testLog sends memberlist's log to the test's, when it runs with -v.
type testLog struct {
	t    *testing.T
	name string
}

func (l testLog) Write(b []byte) (int, error) {
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "%s %s", l.name, b)
	}
	return len(b), nil
}

// waitFor polls cond for up to d.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cond()
}

// TestGossipAcrossHosts: three hosts learn each other's endpoints over
// encrypted memberlist and reach each other over the overlay; a host that
// dies (gossip shut down without leaving, its namespace deleted) has its
// FDB and neighbour entries withdrawn on the others.
func TestGossipAcrossHosts(t *testing.T) {
	needRoot(t)
	hosts := makeHosts(t, 3)
	dir := t.TempDir()
	n := testNet(4096)
	var mgrs []*overlay.Manager
	var ps []*peers.Peers
	var ctrs []string
	for i, h := range hosts {
		m := h.manager(t)
		p, _ := startPeers(t, h, m, clusterKey)
		if i > 0 {
			// A host's link may not pass traffic yet the moment it is
			// made (CI once saw the first dial time out under load); the
			// daemon retries its joins on a timer, so does the test.
			var err error
			for try := 0; try < 5; try++ {
				if err = p.Join([]string{hosts[0].ip.String()}); err == nil {
					break
				}
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		mgrs, ps = append(mgrs, m), append(ps, p)
	}
	if !waitFor(5*time.Second, func() bool { return len(ps[0].Members()) == 3 && len(ps[2].Members()) == 3 }) {
		t.Fatalf("members: %v / %v", ps[0].Members(), ps[2].Members())
	}
	start := time.Now()
	for i, h := range hosts {
		c := newNetNS(t, filepath.Join(dir, h.name+"-ctr"))
		ep := overlay.Endpoint{ID: "task" + h.name, NetNSPath: c, Addr: containerAddr(i)}
		if err := mgrs[i].Attach(n, ep); err != nil {
			t.Fatal(err)
		}
		echoServer(t, c, ep.Addr.IP)
		err := ps[i].Announce(context.Background(), peers.Endpoint{VNI: n.VNI, IP: ep.Addr.IP, MAC: overlay.MACFromIP(ep.Addr.IP)})
		if err != nil {
			t.Fatal(err)
		}
		ctrs = append(ctrs, c)
	}
	for i := range hosts {
		for j := range hosts {
			if i == j {
				continue
			}
			if err := reachable(ctrs[i], containerAddr(j).IP, 5*time.Second); err != nil {
				t.Fatalf("%s's container cannot reach %s's: %v", hosts[i].name, hosts[j].name, err)
			}
		}
	}
	t.Logf("all containers reach each other %v after their announcements started", time.Since(start))

	// host3 dies: no leave message, its namespace goes.
	ip3 := containerAddr(2).IP
	mac3 := overlay.MACFromIP(ip3)
	if fdb, neigh := fdbHas(t, mgrs[0], n.VNI, ip3, mac3); !fdb || !neigh {
		t.Fatalf("host1 has no entries for host3's endpoint: fdb %v neigh %v", fdb, neigh)
	}
	ps[2].Shutdown()
	removeSandboxes(hosts[2].root)
	sandbox.Remove(hosts[2].ns)
	died := time.Now()
	for i := range 2 {
		if !waitFor(20*time.Second, func() bool {
			fdb, neigh := fdbHas(t, mgrs[i], n.VNI, ip3, mac3)
			return !fdb && !neigh
		}) {
			t.Fatalf("%s still has entries for the dead host's endpoint", hosts[i].name)
		}
		if slices.Contains(ps[i].Members(), "host3") {
			t.Fatalf("%s still lists host3: %v", hosts[i].name, ps[i].Members())
		}
	}
	t.Logf("dead host's entries withdrawn after %v", time.Since(died))
	if err := reachable(ctrs[0], containerAddr(1).IP, 2*time.Second); err != nil {
		t.Fatalf("host1 -> host2 after host3 died: %v", err)
	}

	// A graceful leave withdraws at once, and a withdrawn endpoint goes too.
	ip2 := containerAddr(1).IP
	if err := ps[1].Withdraw(context.Background(), peers.Endpoint{VNI: n.VNI, IP: ip2, MAC: overlay.MACFromIP(ip2)}); err != nil {
		t.Fatal(err)
	}
	if !waitFor(5*time.Second, func() bool {
		fdb, neigh := fdbHas(t, mgrs[0], n.VNI, ip2, overlay.MACFromIP(ip2))
		return !fdb && !neigh
	}) {
		t.Fatal("host1 still has entries for host2's withdrawn endpoint")
	}
}

// TestGossipWrongKeyCannotJoin: a node whose key is not the cluster's is
// refused, and learns nothing.
func TestGossipWrongKeyCannotJoin(t *testing.T) {
	needRoot(t)
	hosts := makeHosts(t, 2)
	m1, m2 := hosts[0].manager(t), hosts[1].manager(t)
	p1, _ := startPeers(t, hosts[0], m1, clusterKey)
	p2, _ := startPeers(t, hosts[1], m2, otherKey)
	if err := p2.Join([]string{hosts[0].ip.String()}); err == nil {
		t.Fatal("a node with another key joined the gossip")
	} else {
		t.Logf("join refused: %v", err)
	}
	time.Sleep(2 * time.Second) // let any gossip that slipped through arrive
	if got := p1.Members(); len(got) != 1 {
		t.Fatalf("members of the cluster: %v, want only host1", got)
	}
	if got := p2.Members(); len(got) != 1 {
		t.Fatalf("members seen by the outsider: %v, want only itself", got)
	}
	if _, err := peers.Start(context.Background(), peers.Config{NodeName: "x", BindAddr: hosts[0].ip, VTEP: hosts[0].ip, Program: m1, NetNS: hosts[0].ns, Port: 7950}); err == nil {
		t.Fatal("gossip without a key was started")
	}
}

// TestGossipKeyRotation: two members rotate to a new key without a gap
// (add, use, drop the old); gossip keeps flowing, and a node holding only
// the old key can no longer join.
func TestGossipKeyRotation(t *testing.T) {
	needRoot(t)
	hosts := makeHosts(t, 3)
	m1, m2, m3 := hosts[0].manager(t), hosts[1].manager(t), hosts[2].manager(t)
	p1, _ := startPeers(t, hosts[0], m1, clusterKey)
	p2, _ := startPeers(t, hosts[1], m2, clusterKey)
	if err := p2.Join([]string{hosts[0].ip.String()}); err != nil {
		t.Fatal(err)
	}
	if err := p1.SetKeys([][]byte{[]byte("short")}); err == nil {
		t.Fatal("a 5-byte key was accepted")
	}
	for _, step := range [][][]byte{{clusterKey, otherKey}, {otherKey, clusterKey}, {otherKey}} {
		for _, p := range []*peers.Peers{p1, p2} {
			if err := p.SetKeys(step); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Gossip still flows: host2 learns host1's endpoint.
	dir := t.TempDir()
	n := testNet(4096)
	for i, h := range hosts[:2] {
		c := newNetNS(t, filepath.Join(dir, h.name+"-ctr"))
		m := []*overlay.Manager{m1, m2}[i]
		if err := m.Attach(n, overlay.Endpoint{ID: "t" + h.name, NetNSPath: c, Addr: containerAddr(i)}); err != nil {
			t.Fatal(err)
		}
		p := []*peers.Peers{p1, p2}[i]
		if err := p.Announce(context.Background(), peers.Endpoint{VNI: n.VNI, IP: containerAddr(i).IP, MAC: overlay.MACFromIP(containerAddr(i).IP)}); err != nil {
			t.Fatal(err)
		}
	}
	ip1 := containerAddr(0).IP
	if !waitFor(5*time.Second, func() bool {
		fdb, neigh := fdbHas(t, m2, n.VNI, ip1, overlay.MACFromIP(ip1))
		return fdb && neigh
	}) {
		t.Fatal("host2 did not learn host1's endpoint after the rotation")
	}
	p3, _ := startPeers(t, hosts[2], m3, clusterKey)
	if err := p3.Join([]string{hosts[0].ip.String()}); err == nil {
		t.Fatal("a node with the retired key joined")
	}
}
