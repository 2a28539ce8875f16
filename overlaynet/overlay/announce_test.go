package overlay_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/shoal-project/shoal/overlaynet/overlay"
	"github.com/shoal-project/shoal/overlaynet/sandbox"
)

// TestPeerAnnouncedToWaitingContainer: a container asks for a peer's
// address before its node has programmed the peer (the ARP proxy has no
// answer; the container's neighbour entry stays incomplete). Once AddPeer
// programs the peer, a connection gets through at once: the peer is
// announced to the sandbox's containers. Without the announcement the
// entry waits for the kernel's next ARP retransmission, set to 30 s here
// (the default is 1 s), and the dial's 2 s run out. The same for a task
// attached on the container's own node.
func TestPeerAnnouncedToWaitingContainer(t *testing.T) {
	needRoot(t)
	hosts := makeHosts(t, 2)
	dir := t.TempDir()
	n := testNet(4096)
	var mgrs []*overlay.Manager
	var ctrs []string
	for i, h := range hosts {
		m := h.manager(t)
		c := newNetNS(t, filepath.Join(dir, h.name+"-ctr"))
		if err := m.Attach(n, overlay.Endpoint{ID: "task" + h.name, NetNSPath: c, Addr: containerAddr(i)}); err != nil {
			t.Fatal(err)
		}
		mgrs, ctrs = append(mgrs, m), append(ctrs, c)
	}
	err := sandbox.Do(ctrs[0], func() error {
		return os.WriteFile("/proc/sys/net/ipv4/neigh/eth0/retrans_time_ms", []byte("30000"), 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	ip0, ip1 := containerAddr(0).IP, containerAddr(1).IP
	// Host 2 knows host 1's container, so replies can come back.
	if err := mgrs[1].AddPeer(4096, ip0, overlay.MACFromIP(ip0), hosts[0].ip); err != nil {
		t.Fatal(err)
	}
	echoServer(t, ctrs[1], ip1)
	if c, err := dial(ctrs[0], ip1, 300*time.Millisecond); err == nil {
		c.Close()
		t.Fatal("reached a peer that was never programmed")
	}
	if state := neighState(t, ctrs[0], "eth0", ip1.String()); state != netlink.NUD_INCOMPLETE {
		t.Fatalf("container's neighbour entry of the unprogrammed peer: state %#x, want incomplete", state)
	}
	for range 2 {
		if err := mgrs[0].AddPeer(4096, ip1, overlay.MACFromIP(ip1), hosts[1].ip); err != nil {
			t.Fatal(err)
		}
	}
	c, err := dial(ctrs[0], ip1, 2*time.Second)
	if err != nil {
		t.Fatalf("the container waiting for the peer's address did not get through once it was programmed: %v", err)
	}
	defer c.Close()
	if err := echo(c, "announced\n"); err != nil {
		t.Fatal(err)
	}

	// The same on one node: the container asks for a task's address
	// before the task is attached next to it; it answers for itself, but
	// only to the next question.
	ip2 := containerAddr(2).IP
	if c, err := dial(ctrs[0], ip2, 300*time.Millisecond); err == nil {
		c.Close()
		t.Fatal("reached an address nobody has")
	}
	c2 := newNetNS(t, filepath.Join(dir, "local-ctr"))
	if err := mgrs[0].Attach(n, overlay.Endpoint{ID: "local", NetNSPath: c2, Addr: containerAddr(2)}); err != nil {
		t.Fatal(err)
	}
	echoServer(t, c2, ip2)
	c, err = dial(ctrs[0], ip2, 2*time.Second)
	if err != nil {
		t.Fatalf("the container waiting for a local task's address did not get through once it was attached: %v", err)
	}
	defer c.Close()
	if err := echo(c, "announced locally\n"); err != nil {
		t.Fatal(err)
	}
}

// neighState is the state of ns's neighbour entry for ip on link (0: none).
func neighState(t *testing.T, ns, link, ip string) int {
	t.Helper()
	h, err := sandbox.Handle(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := h.LinkByName(link)
	if err != nil {
		t.Fatal(err)
	}
	neighs, err := h.NeighList(l.Attrs().Index, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range neighs {
		if n.IP.String() == ip {
			return n.State
		}
	}
	return 0
}
