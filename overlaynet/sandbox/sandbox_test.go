package sandbox

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/vishvananda/netlink"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

func TestCreateRemove(t *testing.T) {
	needRoot(t)
	path := filepath.Join(t.TempDir(), "sub", "ns1")
	t.Cleanup(func() { Remove(path) })
	if err := Create(path); err != nil {
		t.Fatal(err)
	}
	if ok, err := IsNetNS(path); !ok || err != nil {
		t.Fatalf("IsNetNS after Create = %v, %v", ok, err)
	}
	if err := Create(path); err == nil {
		t.Fatal("Create over an existing namespace succeeded")
	}
	// The namespace is not ours: its interfaces differ from the test's.
	var inside []string
	err := Do(path, func() error {
		ifs, err := net.Interfaces()
		for _, i := range ifs {
			inside = append(inside, i.Name)
			if i.Flags&net.FlagUp == 0 {
				t.Errorf("%s is down", i.Name)
			}
		}
		return err
	})
	if err != nil || len(inside) != 1 || inside[0] != "lo" {
		t.Fatalf("interfaces inside = %v, %v; want only lo", inside, err)
	}
	if err := Remove(path); err != nil {
		t.Fatal(err)
	}
	if ok, _ := IsNetNS(path); ok {
		t.Fatal("still a namespace after Remove")
	}
	if err := Remove(path); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
}

func TestAddVethIntoNamespace(t *testing.T) {
	needRoot(t)
	path := filepath.Join(t.TempDir(), "ns")
	host := "sbx" + strconv.Itoa(os.Getpid())
	t.Cleanup(func() {
		DelLink(host)
		Remove(path)
	})
	if err := Create(path); err != nil {
		t.Fatal(err)
	}
	mac, _ := net.ParseMAC("02:42:c6:13:00:02")
	addr := &net.IPNet{IP: net.IPv4(198, 19, 0, 2), Mask: net.CIDRMask(24, 32)}
	err := AddVeth(Veth{HostName: host, NetNSPath: path, IfName: "eth0", MAC: mac, Addr: addr, Gateway: net.IPv4(198, 19, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	h, err := Handle(path)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if eth0.Attrs().HardwareAddr.String() != mac.String() {
		t.Errorf("MAC = %s", eth0.Attrs().HardwareAddr)
	}
	addrs, _ := h.AddrList(eth0, netlink.FAMILY_V4)
	if len(addrs) != 1 || addrs[0].IPNet.String() != addr.String() {
		t.Errorf("addresses = %v", addrs)
	}
	routes, _ := h.RouteList(eth0, netlink.FAMILY_V4)
	var def bool
	for _, r := range routes {
		if (r.Dst == nil || r.Dst.IP.IsUnspecified()) && r.Gw.Equal(net.IPv4(198, 19, 0, 1)) {
			def = true
		}
	}
	if !def {
		t.Errorf("no default route via the gateway: %v", routes)
	}
	// Deleting the host end removes the peer too.
	if err := DelLink(host); err != nil {
		t.Fatal(err)
	}
	if _, err := h.LinkByName("eth0"); err == nil {
		t.Fatal("eth0 survived its host end")
	}
	if err := DelLink(host); err != nil {
		t.Fatalf("DelLink of a missing link: %v", err)
	}
}

func TestAddVethRollsBack(t *testing.T) {
	needRoot(t)
	path := filepath.Join(t.TempDir(), "ns")
	host := "sbr" + strconv.Itoa(os.Getpid())
	t.Cleanup(func() {
		DelLink(host)
		Remove(path)
	})
	if err := Create(path); err != nil {
		t.Fatal(err)
	}
	// An unreachable gateway makes the route fail after the link exists.
	err := AddVeth(Veth{HostName: host, NetNSPath: path, IfName: "eth0",
		Addr: &net.IPNet{IP: net.IPv4(198, 19, 0, 2), Mask: net.CIDRMask(24, 32)}, Gateway: net.IPv4(10, 99, 0, 1)})
	if err == nil {
		t.Fatal("AddVeth with an off-link gateway succeeded")
	}
	if _, err := netlink.LinkByName(host); err == nil {
		t.Fatal("failed AddVeth left its host link")
	}
	if err := AddVeth(Veth{HostName: "this-name-is-too-long", NetNSPath: path, IfName: "eth0"}); err == nil {
		t.Fatal("AddVeth accepted a 21-byte link name")
	}
}
