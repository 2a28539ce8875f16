package bridge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/overlaynet/sandbox"
)

func TestAttachTwoEndpointsTalk(t *testing.T) {
	n := newTestNetwork(t, "")
	ctx := context.Background()
	a, err := n.Attach(ctx, "a")
	if err != nil {
		t.Fatalf("Attach a: %v", err)
	}
	b, err := n.Attach(ctx, "b")
	if err != nil {
		t.Fatalf("Attach b: %v", err)
	}
	subnet := n.Subnet()
	ipA, _ := netip.AddrFromSlice(a.IP.To4())
	if !subnet.Contains(ipA) || ipA == n.Gateway() || a.Prefix != subnet.Bits() || !a.Gateway.Equal(n.Gateway().AsSlice()) {
		t.Fatalf("endpoint a = %+v in %s gw %s", a, subnet, n.Gateway())
	}
	if a.MAC.String() != macFor(ipA) || a.NetNSPath != n.opts.NetNSDir+"/a" {
		t.Fatalf("endpoint a = %+v", a)
	}
	if a.IP.Equal(b.IP) {
		t.Fatalf("a and b share %s", a.IP)
	}
	if err := ping(a.NetNSPath, b.IP); err != nil {
		t.Fatal(err)
	}
	if err := ping(b.NetNSPath, a.Gateway); err != nil {
		t.Fatal(err)
	}
	listenIn(t, b.NetNSPath, ":7000")
	saw, err := ask(a.NetNSPath, net.JoinHostPort(b.IP.String(), "7000"))
	if err != nil {
		t.Fatalf("a -> b tcp: %v", err)
	}
	if saw != a.IP.String() {
		t.Fatalf("b saw %s, want a's own address %s (no NAT inside the bridge)", saw, a.IP)
	}
	if _, err := n.Attach(ctx, "a"); !errors.Is(err, ErrConflict) {
		t.Fatalf("second Attach of a: err = %v, want ErrConflict", err)
	}
	if _, err := n.Attach(ctx, "../x"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Attach ../x: err = %v, want ErrInvalid", err)
	}
}

func TestPublishedPortFromHost(t *testing.T) {
	n := newTestNetwork(t, "")
	ctx := context.Background()
	c, err := n.Attach(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	other, err := n.Attach(ctx, "client")
	if err != nil {
		t.Fatal(err)
	}
	listenIn(t, c.NetNSPath, ":80")
	hp := freeHostPort(t)
	got, err := n.Publish(ctx, "web", c.IP, []PortMapping{{HostPort: hp, ContainerPort: 80}})
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if len(got) != 1 || got[0].HostPort != hp || got[0].Protocol != "tcp" {
		t.Fatalf("Publish returned %+v", got)
	}
	port := strconv.Itoa(int(hp))
	gw := n.Gateway().String()

	// From the host on loopback: the container sees the gateway (masquerade
	// of 127.0.0.1, which it could not answer).
	if saw, err := ask("", "127.0.0.1:"+port); err != nil || saw != gw {
		t.Fatalf("127.0.0.1:%s: saw %q, %v; want %s", port, saw, err, gw)
	}
	// From the host on the bridge's own address.
	if saw, err := ask("", gw+":"+port); err != nil || saw != gw {
		t.Fatalf("%s:%s: saw %q, %v", gw, port, saw, err)
	}
	// Hairpin: another container through the host's address, and the
	// container to itself.
	if saw, err := ask(other.NetNSPath, gw+":"+port); err != nil || saw != gw {
		t.Fatalf("client -> %s:%s: saw %q, %v; want hairpin-masqueraded %s", gw, port, saw, err, gw)
	}
	if _, err := ask(c.NetNSPath, gw+":"+port); err != nil {
		t.Fatalf("web -> its own published port: %v", err)
	}
	// Published port on HostPort 0 gets one chosen.
	auto, err := n.Publish(ctx, "web", nil, []PortMapping{{ContainerPort: 80, HostIP: netip.MustParseAddr("127.0.0.1")}})
	if err != nil || auto[0].HostPort == 0 {
		t.Fatalf("Publish with host port 0: %+v, %v", auto, err)
	}
	if _, err := ask("", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(auto[0].HostPort)))); err != nil {
		t.Fatalf("auto port %d: %v", auto[0].HostPort, err)
	}
	// Inside the container 127.0.0.1 is its own loopback, where nothing
	// listens on the host port: the host's DNAT must not apply there.
	if _, err := ask(c.NetNSPath, "127.0.0.1:"+port); err == nil {
		t.Fatalf("container's own 127.0.0.1:%s reached the published port", port)
	}
}

func TestPortConflicts(t *testing.T) {
	n := newTestNetwork(t, "")
	ctx := context.Background()
	for _, id := range []string{"one", "two"} {
		if _, err := n.Attach(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	hp := freeHostPort(t)
	if _, err := n.Publish(ctx, "one", nil, []PortMapping{{HostPort: hp, ContainerPort: 80}}); err != nil {
		t.Fatal(err)
	}
	_, err := n.Publish(ctx, "two", nil, []PortMapping{{HostPort: hp, ContainerPort: 80}})
	want := "Bind for 0.0.0.0:" + strconv.Itoa(int(hp)) + " failed: port is already allocated"
	if !errors.Is(err, ErrPortAllocated) || !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), want) {
		t.Fatalf("same port twice: err = %v, want %q", err, want)
	}
	// A specific address overlaps 0.0.0.0 too; the other protocol does not.
	if _, err := n.Publish(ctx, "two", nil, []PortMapping{{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: hp, ContainerPort: 80}}); !errors.Is(err, ErrPortAllocated) {
		t.Fatalf("127.0.0.1 after 0.0.0.0: err = %v", err)
	}
	if _, err := n.Publish(ctx, "two", nil, []PortMapping{{HostPort: hp, ContainerPort: 80, Protocol: "udp"}}); err != nil {
		t.Fatalf("udp on a tcp-published port: %v", err)
	}
	// A port held by a listening socket of the host.
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busy := uint16(l.Addr().(*net.TCPAddr).Port)
	if _, err := n.Publish(ctx, "two", nil, []PortMapping{{HostPort: busy, ContainerPort: 80}}); !errors.Is(err, ErrPortAllocated) {
		t.Fatalf("port with a host listener: err = %v", err)
	}
	// A failing call applies nothing of itself, even its valid mappings.
	before := portRuleCount(t, n.opts.Name)
	free := freeHostPort(t)
	if _, err := n.Publish(ctx, "two", nil, []PortMapping{{HostPort: free, ContainerPort: 81}, {HostPort: hp, ContainerPort: 80}}); err == nil {
		t.Fatal("mixed publish succeeded")
	}
	if after := portRuleCount(t, n.opts.Name); after != before {
		t.Fatalf("failed Publish changed the ports chain: %d -> %d rules", before, after)
	}
	for _, bad := range []PortMapping{{HostPort: 1, ContainerPort: 0}, {HostPort: 1, ContainerPort: 1, Protocol: "sctp"}, {HostIP: netip.MustParseAddr("::1"), HostPort: 1, ContainerPort: 1}} {
		if _, err := n.Publish(ctx, "two", nil, []PortMapping{bad}); !errors.Is(err, ErrInvalid) {
			t.Errorf("Publish(%+v): err = %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := n.Publish(ctx, "nobody", nil, []PortMapping{{HostPort: free, ContainerPort: 1}}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Publish to unknown endpoint: err = %v", err)
	}
}

func TestIPAMExhaustionReleaseAndRestart(t *testing.T) {
	base := freeSubnet(t)
	subnet := netip.PrefixFrom(base.Addr(), 29).String() // 5 usable addresses: .2 to .6
	n := newTestNetwork(t, subnet)
	ctx := context.Background()
	ips := map[string]string{}
	for _, id := range []string{"e1", "e2", "e3", "e4", "e5"} {
		ep, err := n.Attach(ctx, id)
		if err != nil {
			t.Fatalf("Attach %s: %v", id, err)
		}
		ips[id] = ep.IP.String()
	}
	if _, err := n.Attach(ctx, "e6"); !errors.Is(err, ErrExhausted) {
		t.Fatalf("sixth Attach: err = %v, want ErrExhausted", err)
	}
	if _, err := os.Stat(n.opts.NetNSDir + "/e6"); !os.IsNotExist(err) {
		t.Fatalf("failed Attach left its netns: %v", err)
	}
	if err := n.Detach(ctx, "e3"); err != nil {
		t.Fatal(err)
	}
	e1, _ := n.Endpoint("e1")
	listenIn(t, e1.NetNSPath, ":80")
	hp := freeHostPort(t)
	if _, err := n.Publish(ctx, "e1", nil, []PortMapping{{HostPort: hp, ContainerPort: 80}}); err != nil {
		t.Fatal(err)
	}
	// Simulated restart: the old *Network is dropped, a new one adopts the
	// bridge and the state file. Meanwhile a firewall reload flushed our
	// table, and e5's namespace vanished (as after a reboot of /run).
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := removeTable(n.opts.Name); err != nil {
		t.Fatal(err)
	}
	e5, _ := n.Endpoint("e5")
	if err := sandbox.Remove(e5.NetNSPath); err != nil {
		t.Fatal(err)
	}
	n2, err := New(ctx, n.opts)
	if err != nil {
		t.Fatalf("re-open: %v", err)
	}
	if _, err := ask("", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(hp)))); err != nil {
		t.Fatalf("published port after restart: %v", err)
	}
	for id, ip := range ips {
		ep, err := n2.Endpoint(id)
		if id == "e3" || id == "e5" {
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("detached e3 after restart: %v", err)
			}
			continue
		}
		if err != nil || ep.IP.String() != ip {
			t.Fatalf("after restart %s = %+v, %v; want %s", id, ep, err, ip)
		}
	}
	if linkExists(vethName(n.opts.Name, "e5")) {
		t.Fatal("veth of the vanished e5 was not removed")
	}
	// Released addresses come back in allocation order after the cursor (.6).
	e7, err := n2.Attach(ctx, "e7")
	if err != nil || e7.IP.String() != ips["e3"] {
		t.Fatalf("Attach after release: %+v, %v; want the released %s", e7, err, ips["e3"])
	}
	e8, err := n2.Attach(ctx, "e8")
	if err != nil || e8.IP.String() != ips["e5"] {
		t.Fatalf("Attach after prune: %+v, %v; want e5's %s", e8, err, ips["e5"])
	}
	// Networking of endpoints survives the restart.
	if err := ping(e7.NetNSPath, e1.IP); err != nil {
		t.Fatal(err)
	}
	// A different subnet while endpoints exist is refused.
	o := n.opts
	o.Subnet = freeSubnet(t).String()
	if _, err := New(ctx, o); !errors.Is(err, ErrConflict) {
		t.Fatalf("New with another subnet over live endpoints: err = %v", err)
	}
}

func TestDetachLeavesNothing(t *testing.T) {
	n := newTestNetwork(t, "")
	ctx := context.Background()
	ep, err := n.Attach(ctx, "gone")
	if err != nil {
		t.Fatal(err)
	}
	listenIn(t, ep.NetNSPath, ":80")
	hp := freeHostPort(t)
	if _, err := n.Publish(ctx, "gone", nil, []PortMapping{{HostPort: hp, ContainerPort: 80}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ask("", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(hp)))); err != nil {
		t.Fatal(err)
	}
	if flows(t, ep.IP) == 0 {
		t.Fatal("no conntrack entry for the connection through the published port")
	}
	veth := vethName(n.opts.Name, "gone")
	if !linkExists(veth) || portRuleCount(t, n.opts.Name) != 1 {
		t.Fatalf("before Detach: veth %v, rules %d", linkExists(veth), portRuleCount(t, n.opts.Name))
	}
	if err := n.Detach(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if linkExists(veth) {
		t.Error("veth still exists")
	}
	if _, err := os.Stat(ep.NetNSPath); !os.IsNotExist(err) {
		t.Errorf("netns file still there: %v", err)
	}
	if c := portRuleCount(t, n.opts.Name); c != 0 {
		t.Errorf("%d port rules left", c)
	}
	if _, err := n.Endpoint("gone"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Endpoint after Detach: %v", err)
	}
	if c := flows(t, ep.IP); c != 0 {
		t.Errorf("%d conntrack entries of the released address left", c)
	}
	if err := n.Detach(ctx, "gone"); err != nil {
		t.Errorf("second Detach: %v", err)
	}
	if err := n.Detach(ctx, "never"); err != nil {
		t.Errorf("Detach of unknown id: %v", err)
	}
	// A namespace a crash left at an unknown id's path goes: mounted, or
	// the plain file of one whose mount a reboot took.
	for _, mounted := range []bool{true, false} {
		path := n.netnsPath("left")
		var err error
		if mounted {
			err = sandbox.Create(path)
		} else {
			err = os.WriteFile(path, nil, 0o444)
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Detach(ctx, "left"); err != nil {
			t.Errorf("Detach of an unknown id with a namespace left (mounted %v): %v", mounted, err)
		}
		if _, err := os.Lstat(path); !os.IsNotExist(err) {
			sandbox.Remove(path)
			t.Errorf("namespace left at an unknown id's path (mounted %v) not removed: %v", mounted, err)
		}
	}
}

// TestNewEmptyNotSaved: an empty sandbox (--network none) does not rewrite
// the network's state, coming or going; one a crash left (its Network
// gone, a new one knowing nothing of it) is still removed by Detach.
func TestNewEmptyNotSaved(t *testing.T) {
	n := newTestNetwork(t, "")
	ctx := context.Background()
	inode := func() uint64 {
		var st unix.Stat_t
		if err := unix.Stat(n.statePath, &st); err != nil {
			t.Fatal(err)
		}
		return st.Ino
	}
	before := inode()
	ep, err := n.NewEmpty(ctx, "none")
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Detach(ctx, "none"); err != nil {
		t.Fatal(err)
	}
	if inode() != before {
		t.Error("the state was written for an empty sandbox")
	}
	if ep, err = n.NewEmpty(ctx, "crashed"); err != nil {
		t.Fatal(err)
	}
	again, err := New(ctx, n.opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := again.Detach(ctx, "crashed"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(ep.NetNSPath); !os.IsNotExist(err) {
		t.Errorf("namespace of an empty sandbox a crash left: %v", err)
	}
}

func TestNewEmpty(t *testing.T) {
	n := newTestNetwork(t, "")
	ctx := context.Background()
	ep, err := n.NewEmpty(ctx, "none")
	if err != nil {
		t.Fatal(err)
	}
	if ep.IP != nil {
		t.Fatalf("empty sandbox has IP %s", ep.IP)
	}
	h, err := sandbox.Handle(ep.NetNSPath)
	if err != nil {
		t.Fatal(err)
	}
	links, err := h.LinkList()
	h.Close()
	if err != nil || len(links) != 1 || links[0].Attrs().Name != "lo" || links[0].Attrs().OperState != 0 && links[0].Attrs().Flags&net.FlagUp == 0 {
		t.Fatalf("links in empty sandbox: %v, %v", links, err)
	}
	if links[0].Attrs().Flags&net.FlagUp == 0 {
		t.Fatal("lo is down")
	}
	if err := n.Detach(ctx, "none"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ep.NetNSPath); !os.IsNotExist(err) {
		t.Fatalf("netns still there: %v", err)
	}
}

// TestCrashLeftovers: a netns file and veth left by a crashed run under the
// same names do not break Attach, and a lost state file is survived.
func TestCrashLeftovers(t *testing.T) {
	n := newTestNetwork(t, "")
	ctx := context.Background()
	path := n.opts.NetNSDir + "/crashed"
	if err := sandbox.Create(path); err != nil {
		t.Fatal(err)
	}
	if err := sandbox.AddVeth(sandbox.Veth{HostName: vethName(n.opts.Name, "crashed"), NetNSPath: path, IfName: "eth0"}); err != nil {
		t.Fatal(err)
	}
	ep, err := n.Attach(ctx, "crashed")
	if err != nil {
		t.Fatalf("Attach over leftovers: %v", err)
	}
	if err := ping(ep.NetNSPath, ep.Gateway); err != nil {
		t.Fatal(err)
	}
	// A plain file (crash between create and mount) is replaced too.
	if err := os.WriteFile(n.opts.NetNSDir+"/plain", nil, 0o444); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Attach(ctx, "plain"); err != nil {
		t.Fatalf("Attach over a plain file: %v", err)
	}
}

func TestSubnetOverlapRefused(t *testing.T) {
	n := newTestNetwork(t, "")
	o := Options{Name: testName(t, "x"), Subnet: netip.PrefixFrom(n.Gateway(), 25).Masked().String(), StateDir: t.TempDir(), NetNSDir: t.TempDir()}
	t.Cleanup(func() { cleanupNetwork(t, o) })
	_, err := New(context.Background(), o)
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), n.opts.Name) {
		t.Fatalf("overlapping subnet: err = %v, want ErrConflict naming %s", err, n.opts.Name)
	}
	if linkExists(o.Name) {
		t.Fatal("refused New left a bridge behind")
	}
}

func TestRemoveCleansEverything(t *testing.T) {
	n := newTestNetwork(t, "")
	ctx := context.Background()
	ep, err := n.Attach(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	if !hasForwardRules(t, n.opts.Name) {
		t.Fatal("no FORWARD accept rules after New")
	}
	if err := n.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	if linkExists(n.opts.Name) || linkExists(vethName(n.opts.Name, "r")) {
		t.Error("bridge or veth left")
	}
	if _, err := os.Stat(ep.NetNSPath); !os.IsNotExist(err) {
		t.Error("netns left")
	}
	if hasForwardRules(t, n.opts.Name) {
		t.Error("FORWARD rules left")
	}
	if out, _ := exec.Command("nft", "list", "table", "ip", tableName(n.opts.Name)).CombinedOutput(); !strings.Contains(string(out), "No such file") {
		t.Errorf("table left: %s", out)
	}
}

func hasForwardRules(t *testing.T, bridge string) bool {
	t.Helper()
	out, err := exec.Command("iptables", "-w", "-S", "FORWARD").CombinedOutput()
	if err != nil {
		t.Fatalf("iptables -S: %v: %s", err, out)
	}
	return strings.Contains(string(out), "shoal bridge "+bridge+"\"")
}

// flows counts conntrack entries involving ip.
func flows(t *testing.T, ip net.IP) int {
	t.Helper()
	list, err := netlink.ConntrackTableList(netlink.ConntrackTable, unix.AF_INET)
	if err != nil {
		t.Fatalf("conntrack list: %v", err)
	}
	c := 0
	for _, f := range list {
		if f.Forward.SrcIP.Equal(ip) || f.Forward.DstIP.Equal(ip) || f.Reverse.SrcIP.Equal(ip) || f.Reverse.DstIP.Equal(ip) {
			c++
		}
	}
	return c
}

func TestConcurrentAttachDetach(t *testing.T) {
	n := newTestNetwork(t, "")
	ctx := context.Background()
	const k = 8
	ips := make([]string, k)
	errs := make(chan error, k)
	for i := 0; i < k; i++ {
		go func() {
			ep, err := n.Attach(ctx, "c"+strconv.Itoa(i))
			if err == nil {
				ips[i] = ep.IP.String()
			}
			errs <- err
		}()
	}
	for i := 0; i < k; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	for _, ip := range ips {
		if seen[ip] {
			t.Fatalf("address %s given twice: %v", ip, ips)
		}
		seen[ip] = true
	}
	for i := 0; i < k; i++ {
		go func() { errs <- n.Detach(ctx, "c"+strconv.Itoa(i)) }()
	}
	for i := 0; i < k; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if left, _ := os.ReadDir(n.opts.NetNSDir); len(left) != 0 {
		t.Fatalf("namespaces left: %d", len(left))
	}
}

// TestSharedRoute: a second network's leg in a namespace it does not own
// gets the default route only with Route (the overlay's NAT bridge), and
// leaving takes only the leg, never the namespace.
func TestSharedRoute(t *testing.T) {
	n := newTestNetwork(t, "")
	ctx := context.Background()
	for _, route := range []bool{true, false} {
		id := fmt.Sprintf("shared-%v", route)
		path := filepath.Join(n.opts.NetNSDir, id)
		if err := sandbox.Create(path); err != nil {
			t.Fatal(err)
		}
		if _, err := n.AttachWith(ctx, id, AttachOptions{IfName: "eth1", Shared: true, Route: route}); err != nil {
			t.Fatal(err)
		}
		h, err := sandbox.Handle(path)
		if err != nil {
			t.Fatal(err)
		}
		defaults, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: nil}, netlink.RT_FILTER_DST)
		h.Close()
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case route && (len(defaults) != 1 || !defaults[0].Gw.Equal(n.Gateway().AsSlice())):
			t.Errorf("Route: default routes %v, want one via %s", defaults, n.Gateway())
		case !route && len(defaults) != 0:
			t.Errorf("without Route: default routes %v, want none", defaults)
		}
		if err := n.Detach(ctx, id); err != nil {
			t.Fatal(err)
		}
		if ok, _ := sandbox.IsNetNS(path); !ok {
			t.Errorf("Detach of a shared leg removed the namespace %s", path)
		}
		if linkExists(vethName(n.opts.Name, id)) {
			t.Errorf("leg %s still exists after Detach", id)
		}
	}
}
