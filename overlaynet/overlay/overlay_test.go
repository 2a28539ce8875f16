package overlay_test

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/shoal-project/shoal/overlaynet/overlay"
	"github.com/shoal-project/shoal/overlaynet/sandbox"
)

// TestPeersProgrammedByHandAndAdoption: two hosts, peers programmed by hand
// (idempotently), a TCP connection across the overlay; then host1's daemon
// "restarts" (a new Manager over the same directory, the old one simply
// dropped as kill -9 would): the live sandbox is kept and the connection
// still works, a sandbox without endpoints and a half-made one are removed.
// Finally the last Detach removes the sandbox.
func TestPeersProgrammedByHandAndAdoption(t *testing.T) {
	needRoot(t)
	hosts := makeHosts(t, 2)
	dir := t.TempDir()
	var mgrs []*overlay.Manager
	var ctrs []string
	n := testNet(4096)
	for i, h := range hosts {
		m := h.manager(t)
		c := newNetNS(t, filepath.Join(dir, h.name+"-ctr"))
		if err := m.Attach(n, overlay.Endpoint{ID: "task" + h.name, NetNSPath: c, Addr: containerAddr(i)}); err != nil {
			t.Fatal(err)
		}
		mgrs, ctrs = append(mgrs, m), append(ctrs, c)
	}
	// Underlay MTU 1500: the overlay's is 1450, up to the container.
	if mtu := linkMTU(t, ctrs[0], "eth0"); mtu != 1500-overlay.VXLANOverhead {
		t.Fatalf("container MTU %d, want %d", mtu, 1500-overlay.VXLANOverhead)
	}
	if mtu := linkMTU(t, mgrs[0].SandboxPath(4096), "vxlan0"); mtu != 1450 {
		t.Fatalf("vxlan MTU %d, want 1450", mtu)
	}
	// br_netfilter (built into these kernels, on in every new namespace)
	// does not see the sandbox bridge's frames: no rule waits for them.
	for _, f := range overlay.BridgeNetfilterSysctls {
		var v []byte
		err := sandbox.Do(mgrs[0].SandboxPath(4096), func() (err error) { v, err = os.ReadFile(f); return err })
		if err != nil {
			t.Fatalf("read %s in the sandbox: %v", f, err)
		}
		if string(v) != "0\n" {
			t.Errorf("%s is %q in the sandbox, want 0", f, v)
		}
	}
	for i, m := range mgrs {
		o := 1 - i
		ip := containerAddr(o).IP
		for range 2 { // programming twice is fine
			if err := m.AddPeer(4096, ip, overlay.MACFromIP(ip), hosts[o].ip); err != nil {
				t.Fatal(err)
			}
		}
	}
	echoServer(t, ctrs[1], containerAddr(1).IP)
	if err := reachable(ctrs[0], containerAddr(1).IP, 5e9); err != nil {
		t.Fatalf("host1's container cannot reach host2's over the overlay: %v", err)
	}
	conn, err := dial(ctrs[0], containerAddr(1).IP, 2e9)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := echo(conn, "before restart\n"); err != nil {
		t.Fatal(err)
	}

	// Leftovers a crash can leave: a sandbox whose only container went away
	// (its veth is gone) and a namespace that never got its devices.
	other := testNet(4097)
	c3 := newNetNS(t, filepath.Join(dir, "gone-ctr"))
	if err := mgrs[0].Attach(other, overlay.Endpoint{ID: "gone", NetNSPath: c3, Addr: containerAddr(3)}); err != nil {
		t.Fatal(err)
	}
	deleteVeths(t, mgrs[0].SandboxPath(4097))
	half := filepath.Join(hosts[0].root, "vni-4098")
	if err := sandbox.Create(half); err != nil {
		t.Fatal(err)
	}

	restarted := hosts[0].manager(t)
	// Attaching the running endpoint again (the agent adopting its task)
	// is a no-op.
	if err := restarted.Attach(n, overlay.Endpoint{ID: "task" + hosts[0].name, NetNSPath: ctrs[0], Addr: containerAddr(0)}); err != nil {
		t.Fatalf("attach of an attached endpoint: %v", err)
	}
	vnis, err := restarted.Networks()
	if err != nil {
		t.Fatal(err)
	}
	if len(vnis) != 1 || vnis[0] != 4096 {
		t.Fatalf("sandboxes after restart: %v, want only 4096", vnis)
	}
	if err := echo(conn, "after restart\n"); err != nil {
		t.Fatalf("connection across the restart: %v", err)
	}
	if fdb, neigh := fdbHas(t, restarted, 4096, containerAddr(1).IP, overlay.MACFromIP(containerAddr(1).IP)); !fdb || !neigh {
		t.Fatalf("peer entries after restart: fdb %v neigh %v", fdb, neigh)
	}

	// RemovePeer withdraws, twice is fine, and the peer is unreachable.
	ip := containerAddr(1).IP
	for range 2 {
		if err := restarted.RemovePeer(4096, ip, overlay.MACFromIP(ip), hosts[1].ip); err != nil {
			t.Fatal(err)
		}
	}
	if fdb, neigh := fdbHas(t, restarted, 4096, ip, overlay.MACFromIP(ip)); fdb || neigh {
		t.Fatalf("peer entries after RemovePeer: fdb %v neigh %v", fdb, neigh)
	}
	if err := restarted.AddPeer(4999, ip, overlay.MACFromIP(ip), hosts[1].ip); err != overlay.ErrNoSandbox {
		t.Fatalf("AddPeer on a network without sandbox: %v, want ErrNoSandbox", err)
	}

	// The last endpoint leaving removes the sandbox and its devices.
	if err := restarted.Detach(4096, "task"+hosts[0].name); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(restarted.SandboxPath(4096)); !os.IsNotExist(err) {
		t.Fatalf("sandbox still there after the last Detach: %v", err)
	}
	if err := restarted.Detach(4096, "task"+hosts[0].name); err != nil {
		t.Fatalf("second Detach: %v", err)
	}
}

// TestMTUOptionAndBadInput: the driver option sets the MTU; bad values and
// bad endpoints are refused with nothing left behind.
func TestMTUOptionAndBadInput(t *testing.T) {
	needRoot(t)
	hosts := makeHosts(t, 1)
	m := hosts[0].manager(t)
	mtu, err := overlay.MTUFromOptions(map[string]string{overlay.MTUOption: "1400"})
	if err != nil || mtu != 1400 {
		t.Fatalf("MTUFromOptions = %d, %v", mtu, err)
	}
	for _, bad := range []string{"x", "20", "70000"} {
		if _, err := overlay.MTUFromOptions(map[string]string{overlay.MTUOption: bad}); err == nil {
			t.Errorf("MTU %q accepted", bad)
		}
	}
	c := newNetNS(t, filepath.Join(t.TempDir(), "ctr"))
	n := testNet(4100)
	n.MTU = mtu
	if err := m.Attach(n, overlay.Endpoint{ID: "a", NetNSPath: c, Addr: containerAddr(1)}); err != nil {
		t.Fatal(err)
	}
	if got := linkMTU(t, c, "eth0"); got != 1400 {
		t.Fatalf("container MTU %d, want 1400", got)
	}
	// A second endpoint with a name already taken in the container fails
	// and leaves the network as it was.
	if err := m.Attach(n, overlay.Endpoint{ID: "b", NetNSPath: c, Addr: containerAddr(2)}); err == nil {
		t.Fatal("a second eth0 in the same container was accepted")
	}
	if err := m.Attach(testNet(1<<24), overlay.Endpoint{ID: "c", NetNSPath: c, Addr: containerAddr(3), IfName: "eth1"}); err == nil {
		t.Fatal("VNI 2^24 accepted")
	}
	bad := overlay.Endpoint{ID: "d", NetNSPath: filepath.Join(t.TempDir(), "missing"), Addr: containerAddr(4), IfName: "eth1"}
	if err := m.Attach(testNet(4101), bad); err == nil {
		t.Fatal("a missing container namespace was accepted")
	}
	vnis, _ := m.Networks()
	if len(vnis) != 1 || vnis[0] != 4100 {
		t.Fatalf("sandboxes after failed attaches: %v, want only 4100", vnis)
	}
	// One endpoint on two networks, detached from both without naming them.
	if err := m.Attach(testNet(4102), overlay.Endpoint{ID: "a", NetNSPath: c, Addr: containerAddr(5), IfName: "eth1"}); err != nil {
		t.Fatal(err)
	}
	if err := m.DetachAll("a"); err != nil {
		t.Fatal(err)
	}
	if vnis, _ := m.Networks(); len(vnis) != 0 {
		t.Fatalf("sandboxes after the last detach: %v", vnis)
	}
	if _, err := overlay.New(overlay.Config{Root: t.TempDir(), LocalIP: net.ParseIP("::1")}); err == nil {
		t.Fatal("an IPv6 VTEP was accepted")
	}
}

// deleteVeths removes a sandbox's endpoints as the kernel does when their
// containers' namespaces go away.
func deleteVeths(t *testing.T, path string) {
	t.Helper()
	h, err := sandbox.Handle(path)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if l.Type() == "veth" {
			if err := h.LinkDel(l); err != nil {
				t.Fatal(err)
			}
		}
	}
}
