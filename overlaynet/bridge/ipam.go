package bridge

import (
	"fmt"
	"net/netip"
)

// allocate returns the next free host address of subnet after last, wrapping
// around, skipping the network and broadcast addresses, the gateway and
// addresses in use. It is pure so that it can be tested without a kernel.
func allocate(subnet netip.Prefix, gateway, last netip.Addr, used map[netip.Addr]bool) (netip.Addr, error) {
	first := subnet.Masked().Addr()
	bcast := broadcast(subnet)
	start := last
	if !start.IsValid() || !subnet.Contains(start) {
		start = first
	}
	a := start
	for {
		a = a.Next()
		if !subnet.Contains(a) || !a.IsValid() {
			a = first
		}
		if a != first && a != bcast && a != gateway && !used[a] {
			return a, nil
		}
		if a == start {
			return netip.Addr{}, fmt.Errorf("%w: no available IPv4 addresses in %s", ErrExhausted, subnet)
		}
	}
}

// broadcast is the last address of an IPv4 prefix.
func broadcast(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// parseSubnet accepts a subnet ("172.31.0.0/16") or, like dockerd --bip, the
// gateway address with its prefix ("172.31.0.1/16"). Without an explicit
// gateway the first host address is used.
func parseSubnet(s string) (netip.Prefix, netip.Addr, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, netip.Addr{}, fmt.Errorf("%w: subnet %q: %v", ErrInvalid, s, err)
	}
	if !p.Addr().Is4() {
		return netip.Prefix{}, netip.Addr{}, fmt.Errorf("%w: subnet %q: only IPv4 is supported", ErrInvalid, s)
	}
	if p.Bits() > 30 {
		return netip.Prefix{}, netip.Addr{}, fmt.Errorf("%w: subnet %q: prefix longer than /30 leaves no container address", ErrInvalid, s)
	}
	gw := p.Addr()
	masked := p.Masked()
	if gw == masked.Addr() {
		gw = gw.Next()
	}
	if gw == broadcast(masked) {
		return netip.Prefix{}, netip.Addr{}, fmt.Errorf("%w: subnet %q: gateway is the broadcast address", ErrInvalid, s)
	}
	return masked, gw, nil
}

// macFor derives the endpoint MAC from its IPv4 address, as Docker does
// (02:42 + the four address bytes): stable across restarts and unique in the
// subnet.
func macFor(ip netip.Addr) string {
	b := ip.As4()
	return fmt.Sprintf("02:42:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3])
}
