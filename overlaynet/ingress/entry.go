package ingress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"

	"github.com/shoal-project/shoal/overlaynet/bridge"
	"github.com/shoal-project/shoal/overlaynet/sandbox"
)

// The entry sandbox is a node's way into the ingress network (Swarm's
// ingress-sbox): a namespace that routes between the host and the ingress
// overlay. Its overlay leg (eth0, the node's address on the ingress network)
// is an ordinary endpoint of the overlay, attached by the caller; this file
// makes the rest:
//
//	host ns: shoal_ingress 169.254.77.1/30, route <ingress subnet> via 169.254.77.2
//	entry ns: host0 169.254.77.2/30, default via 169.254.77.1, ip_forward=1
//
// The link addresses are link-local and private to the pair, the same on
// every node. Connections DNATed by the Mesh to a task's ingress address
// leave the host through shoal_ingress; the entry forwards them onto the
// overlay, so they reach the task from the entry's eth0 MAC, which is what
// ReturnPath keys the replies on.

// Names and addresses of the host link.
const (
	HostLink  = "shoal_ingress"
	entryLink = "host0"
)

var (
	hostLinkAddr  = netip.MustParsePrefix("169.254.77.1/30")
	entryLinkAddr = netip.MustParsePrefix("169.254.77.2/30")
)

// EnsureEntry makes the entry sandbox at path (a namespace file) and its
// link to the caller's namespace, routes subnet (the ingress network's)
// through it and accepts the forwarded traffic in iptables' FORWARD (a
// Docker host drops it otherwise). What exists already is kept; calling it
// again with another subnet moves the route.
func EnsureEntry(ctx context.Context, path string, subnet netip.Prefix) error {
	if !subnet.Addr().Is4() {
		return fmt.Errorf("ingress entry: subnet %s is not IPv4", subnet)
	}
	if ok, err := sandbox.IsNetNS(path); err != nil {
		return fmt.Errorf("ingress entry: %w", err)
	} else if !ok {
		sandbox.Remove(path) // a file a crash left before the mount
		// A host link whose peer died with an earlier namespace is gone
		// with it; one left half-made is removed.
		if err := sandbox.DelLink(HostLink); err != nil {
			return fmt.Errorf("ingress entry: %w", err)
		}
		if err := sandbox.Create(path); err != nil {
			return fmt.Errorf("ingress entry: %w", err)
		}
	}
	if err := ensureLink(path); err != nil {
		return fmt.Errorf("ingress entry: %w", err)
	}
	if err := sandbox.Do(path, func() error {
		// Forwarding on; no reverse-path filter: the entry routes
		// packets of outside clients between two links by design.
		for f, v := range map[string]string{
			"/proc/sys/net/ipv4/ip_forward":             "1",
			"/proc/sys/net/ipv4/conf/all/rp_filter":     "0",
			"/proc/sys/net/ipv4/conf/default/rp_filter": "0",
		} {
			if err := os.WriteFile(f, []byte(v), 0o644); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("ingress entry: sysctls: %w", err)
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
		return fmt.Errorf("ingress entry: host forwarding: %w", err)
	}
	host, err := netlink.LinkByName(HostLink)
	if err != nil {
		return fmt.Errorf("ingress entry: %w", err)
	}
	route := &netlink.Route{LinkIndex: host.Attrs().Index, Dst: prefixNet(subnet.Masked()), Gw: net.IP(entryLinkAddr.Addr().AsSlice())}
	if err := netlink.RouteReplace(route); err != nil {
		return fmt.Errorf("ingress entry: route %s: %w", subnet, err)
	}
	if err := bridge.AllowForward(ctx, HostLink); err != nil {
		return fmt.Errorf("ingress entry: %w", err)
	}
	return nil
}

// ensureLink makes the veth pair between the host and the entry at path,
// unless both ends are there.
func ensureLink(path string) error {
	if _, err := netlink.LinkByName(HostLink); err == nil {
		h, err := sandbox.Handle(path)
		if err != nil {
			return err
		}
		_, perr := h.LinkByName(entryLink)
		h.Close()
		if perr == nil {
			return nil
		}
		if err := sandbox.DelLink(HostLink); err != nil {
			return err
		}
	}
	err := sandbox.AddVeth(sandbox.Veth{HostName: HostLink, NetNSPath: path, IfName: entryLink,
		Addr: prefixNet(entryLinkAddr), Gateway: net.IP(hostLinkAddr.Addr().AsSlice())})
	if err != nil {
		return err
	}
	host, err := netlink.LinkByName(HostLink)
	if err == nil {
		err = netlink.AddrAdd(host, &netlink.Addr{IPNet: prefixNet(hostLinkAddr)})
	}
	if err != nil {
		sandbox.DelLink(HostLink)
		return fmt.Errorf("address %s: %w", HostLink, err)
	}
	return nil
}

// RemoveEntry removes the entry sandbox at path, its host link (and the
// route through it) and its FORWARD rules; what is gone already is fine.
func RemoveEntry(ctx context.Context, path string) error {
	errs := []error{sandbox.DelLink(HostLink), bridge.DisallowForward(ctx, HostLink), sandbox.Remove(path)}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove ingress entry: %w", err)
	}
	return nil
}

// prefixNet is p as a net.IPNet keeping its address (not masked).
func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), 32)}
}
