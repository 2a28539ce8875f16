package overlay_test

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/overlaynet/overlay"
	"github.com/shoal-project/shoal/overlaynet/sandbox"
)

// The test's "hosts" are network namespaces joined by a bridge in a
// "switch" namespace, with underlay addresses 198.18.250.x/24. Every link
// lives inside a namespace of the test (under its TempDir), never in the
// machine's own, so a crashed run leaves at most unreachable mounts and
// concurrent runs never share a name.

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (netns, netlink)")
	}
}

type host struct {
	name string
	ns   string
	ip   net.IP
	root string
}

// newNetNS makes a namespace removed when the test ends.
func newNetNS(t *testing.T, path string) string {
	t.Helper()
	if err := sandbox.Create(path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sandbox.Remove(path) })
	return path
}

// makeHosts builds n hosts on one underlay segment.
func makeHosts(t *testing.T, n int) []*host {
	t.Helper()
	dir := t.TempDir()
	sw := newNetNS(t, filepath.Join(dir, "switch"))
	swh, err := sandbox.Handle(sw)
	if err != nil {
		t.Fatal(err)
	}
	defer swh.Close()
	la := netlink.NewLinkAttrs()
	la.Name = "sw0"
	br := &netlink.Bridge{LinkAttrs: la}
	if err := swh.LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	if err := swh.LinkSetUp(br); err != nil {
		t.Fatal(err)
	}
	var hosts []*host
	for i := range n {
		h := &host{
			name: fmt.Sprintf("host%d", i+1),
			ns:   newNetNS(t, filepath.Join(dir, fmt.Sprintf("host%d", i+1))),
			ip:   net.IPv4(198, 18, 250, byte(i+1)).To4(),
			root: filepath.Join(dir, fmt.Sprintf("sandboxes%d", i+1)),
		}
		root := h.root
		t.Cleanup(func() { removeSandboxes(root) })
		hns, err := netns.GetFromPath(h.ns)
		if err != nil {
			t.Fatal(err)
		}
		pla := netlink.NewLinkAttrs()
		pla.Name = fmt.Sprintf("port%d", i+1)
		pla.MasterIndex = br.Attrs().Index
		pla.MTU = 1500
		veth := &netlink.Veth{LinkAttrs: pla, PeerName: "eth0", PeerNamespace: netlink.NsFd(hns)}
		err = swh.LinkAdd(veth)
		hns.Close()
		if err != nil {
			t.Fatal(err)
		}
		if err := swh.LinkSetUp(veth); err != nil {
			t.Fatal(err)
		}
		hh, err := sandbox.Handle(h.ns)
		if err != nil {
			t.Fatal(err)
		}
		eth0, err := hh.LinkByName("eth0")
		if err == nil {
			err = hh.AddrAdd(eth0, &netlink.Addr{IPNet: &net.IPNet{IP: h.ip, Mask: net.CIDRMask(24, 32)}})
		}
		if err == nil {
			err = hh.LinkSetUp(eth0)
		}
		hh.Close()
		if err != nil {
			t.Fatal(err)
		}
		hosts = append(hosts, h)
	}
	return hosts
}

// removeSandboxes unmounts what a Manager left under root (a test that
// failed half-way, or one that simulates a crash).
func removeSandboxes(root string) {
	ents, _ := os.ReadDir(root)
	for _, e := range ents {
		sandbox.Remove(filepath.Join(root, e.Name()))
	}
}

func (h *host) manager(t *testing.T) *overlay.Manager {
	t.Helper()
	m, err := overlay.New(overlay.Config{Root: h.root, HostNetNS: h.ns, LocalIP: h.ip})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// testNet is the overlay network of the tests (198.19.250.0/24, VNI 4096).
func testNet(vni uint32) overlay.Network {
	return overlay.Network{VNI: vni, Gateway: &net.IPNet{IP: net.IPv4(198, 19, 250, 1).To4(), Mask: net.CIDRMask(24, 32)}}
}

func containerAddr(i int) *net.IPNet {
	return &net.IPNet{IP: net.IPv4(198, 19, 250, byte(10+i)).To4(), Mask: net.CIDRMask(24, 32)}
}

// echoServer listens on addr:7000 inside ns and echoes every connection.
func echoServer(t *testing.T, ns string, addr net.IP) {
	t.Helper()
	var ln net.Listener
	err := sandbox.Do(ns, func() error {
		var err error
		ln, err = net.Listen("tcp", net.JoinHostPort(addr.String(), "7000"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
}

// dial connects from inside ns to addr:7000.
func dial(ns string, addr net.IP, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := sandbox.Do(ns, func() error {
		var err error
		c, err = net.DialTimeout("tcp", net.JoinHostPort(addr.String(), "7000"), timeout)
		return err
	})
	return c, err
}

// echo sends a line over c and checks it comes back.
func echo(c net.Conn, msg string) error { return echoWithin(c, msg, 2*time.Second) }

// reachable retries a connection and an echo until deadline.
func reachable(ns string, addr net.IP, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		c, err := dial(ns, addr, 500*time.Millisecond)
		if err == nil {
			err = echo(c, "hello over the overlay\n")
			c.Close()
			if err == nil {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// fdbHas reports whether h's sandbox of vni forwards mac to some VTEP, and
// whether it has a neighbour entry for ip.
func fdbHas(t *testing.T, m *overlay.Manager, vni uint32, ip net.IP, mac net.HardwareAddr) (fdb, neigh bool) {
	t.Helper()
	sb, err := sandbox.Handle(m.SandboxPath(vni))
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	vx, err := sb.LinkByName("vxlan0")
	if err != nil {
		t.Fatal(err)
	}
	fdbs, err := sb.NeighList(vx.Attrs().Index, unix.AF_BRIDGE)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range fdbs {
		if n.HardwareAddr.String() == mac.String() && n.IP != nil && !n.IP.IsUnspecified() {
			fdb = true
		}
	}
	neighs, err := sb.NeighList(vx.Attrs().Index, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range neighs {
		if n.IP.Equal(ip) && n.State == netlink.NUD_PERMANENT {
			neigh = true
		}
	}
	return fdb, neigh
}

func linkMTU(t *testing.T, ns, name string) int {
	t.Helper()
	h, err := sandbox.Handle(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().MTU
}
