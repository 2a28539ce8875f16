package bridge

import (
	"errors"
	"net/netip"
	"testing"
)

func TestAllocateSequentialSkipsReservedAndWraps(t *testing.T) {
	subnet := netip.MustParsePrefix("10.9.0.0/29") // .0 network, .1 gateway, .7 broadcast
	gw := netip.MustParseAddr("10.9.0.1")
	used := map[netip.Addr]bool{}
	var last netip.Addr
	var got []string
	for i := 0; i < 5; i++ {
		a, err := allocate(subnet, gw, last, used)
		if err != nil {
			t.Fatalf("allocation %d: %v", i, err)
		}
		used[a], last = true, a
		got = append(got, a.String())
	}
	want := []string{"10.9.0.2", "10.9.0.3", "10.9.0.4", "10.9.0.5", "10.9.0.6"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("allocations = %v, want %v", got, want)
		}
	}
	if _, err := allocate(subnet, gw, last, used); !errors.Is(err, ErrExhausted) {
		t.Fatalf("full subnet: err = %v, want ErrExhausted", err)
	}
	delete(used, netip.MustParseAddr("10.9.0.4"))
	a, err := allocate(subnet, gw, last, used)
	if err != nil || a.String() != "10.9.0.4" {
		t.Fatalf("after release: %v, %v; want 10.9.0.4 (wrapped around)", a, err)
	}
	// The cursor moves on instead of reusing a just-released address.
	delete(used, netip.MustParseAddr("10.9.0.2"))
	a, _ = allocate(subnet, gw, netip.MustParseAddr("10.9.0.2"), used)
	if a.String() != "10.9.0.4" {
		t.Fatalf("cursor after .2 gave %v, want 10.9.0.4", a)
	}
}

func TestAllocateGatewayNotFirst(t *testing.T) {
	subnet := netip.MustParsePrefix("10.9.0.0/30")
	a, err := allocate(subnet, netip.MustParseAddr("10.9.0.2"), netip.Addr{}, nil)
	if err != nil || a.String() != "10.9.0.1" {
		t.Fatalf("got %v, %v; want 10.9.0.1", a, err)
	}
}

func TestParseSubnet(t *testing.T) {
	for _, tc := range []struct{ in, subnet, gw string }{
		{"172.31.0.0/16", "172.31.0.0/16", "172.31.0.1"},
		{"172.31.5.9/16", "172.31.0.0/16", "172.31.5.9"}, // --bip style
		{"198.18.7.0/24", "198.18.7.0/24", "198.18.7.1"},
	} {
		p, gw, err := parseSubnet(tc.in)
		if err != nil || p.String() != tc.subnet || gw.String() != tc.gw {
			t.Errorf("parseSubnet(%q) = %v %v %v, want %s %s", tc.in, p, gw, err, tc.subnet, tc.gw)
		}
	}
	for _, bad := range []string{"", "172.31.0.0", "fd00::/64", "10.0.0.0/31", "10.0.0.3/30", "nonsense/8"} {
		if _, _, err := parseSubnet(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("parseSubnet(%q) err = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestMACFromIP(t *testing.T) {
	if m := macFor(netip.MustParseAddr("172.17.0.2")); m != "02:42:ac:11:00:02" {
		t.Fatalf("macFor = %s", m)
	}
}

func TestPortMappingOverlap(t *testing.T) {
	any80 := PortMapping{HostPort: 80, ContainerPort: 80, Protocol: "tcp"}
	lo80 := PortMapping{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 80, ContainerPort: 80, Protocol: "tcp"}
	other80 := PortMapping{HostIP: netip.MustParseAddr("127.0.0.2"), HostPort: 80, ContainerPort: 80, Protocol: "tcp"}
	udp80 := PortMapping{HostPort: 80, ContainerPort: 80, Protocol: "udp"}
	if !any80.overlaps(lo80) || !lo80.overlaps(any80) {
		t.Error("0.0.0.0:80 and 127.0.0.1:80 must overlap")
	}
	if lo80.overlaps(other80) {
		t.Error("127.0.0.1:80 and 127.0.0.2:80 must not overlap")
	}
	if any80.overlaps(udp80) {
		t.Error("tcp and udp must not overlap")
	}
}
