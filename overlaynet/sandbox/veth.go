package sandbox

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Veth describes a veth pair joining the host namespace to a sandbox.
type Veth struct {
	// HostName is the host-side link name (at most 15 bytes).
	HostName string
	// MasterIndex, if not zero, enslaves the host side to that link (a bridge).
	MasterIndex int
	// MTU of both ends; 0 keeps the kernel default.
	MTU int
	// Hairpin lets the bridge send a frame back out of the port it came in on.
	Hairpin bool

	// NetNSPath is the sandbox namespace the peer is created in.
	NetNSPath string
	// IfName is the peer's name inside the sandbox (e.g. eth0).
	IfName string
	// MAC of the peer; nil lets the kernel choose.
	MAC net.HardwareAddr
	// Addr is the peer's address and prefix; nil leaves it unaddressed.
	Addr *net.IPNet
	// Gateway, if set, becomes the sandbox's default route through the peer.
	Gateway net.IP
}

// AddVeth creates the pair with its peer born directly inside the sandbox
// (so the inner name never clashes with host links), then addresses and
// routes the peer. On error nothing is left behind.
func AddVeth(v Veth) error {
	if v.HostName == "" || len(v.HostName) > 15 || v.IfName == "" || len(v.IfName) > 15 {
		return fmt.Errorf("add veth %q/%q: invalid link name", v.HostName, v.IfName)
	}
	ns, err := netns.GetFromPath(v.NetNSPath)
	if err != nil {
		return fmt.Errorf("add veth %s: open netns %s: %w", v.HostName, v.NetNSPath, err)
	}
	defer ns.Close()

	la := netlink.NewLinkAttrs()
	la.Name = v.HostName
	la.MasterIndex = v.MasterIndex
	la.MTU = v.MTU
	link := &netlink.Veth{
		LinkAttrs:        la,
		PeerName:         v.IfName,
		PeerHardwareAddr: v.MAC,
		PeerNamespace:    netlink.NsFd(ns),
	}
	if err := netlink.LinkAdd(link); err != nil {
		return fmt.Errorf("add veth %s: %w", v.HostName, err)
	}
	if err := configure(v, link); err != nil {
		// Deleting one end deletes the pair, the peer inside the sandbox included.
		netlink.LinkDel(link)
		return fmt.Errorf("add veth %s: %w", v.HostName, err)
	}
	return nil
}

func configure(v Veth, host netlink.Link) error {
	if v.Hairpin {
		if err := netlink.LinkSetHairpin(host, true); err != nil {
			return fmt.Errorf("set hairpin: %w", err)
		}
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return fmt.Errorf("set up: %w", err)
	}
	h, err := Handle(v.NetNSPath)
	if err != nil {
		return err
	}
	defer h.Close()
	peer, err := h.LinkByName(v.IfName)
	if err != nil {
		return fmt.Errorf("find %s in sandbox: %w", v.IfName, err)
	}
	if v.Addr != nil {
		if err := h.AddrAdd(peer, &netlink.Addr{IPNet: v.Addr}); err != nil {
			return fmt.Errorf("address %s: %w", v.Addr, err)
		}
	}
	if err := h.LinkSetUp(peer); err != nil {
		return fmt.Errorf("set %s up: %w", v.IfName, err)
	}
	if v.Gateway != nil {
		r := &netlink.Route{LinkIndex: peer.Attrs().Index, Gw: v.Gateway}
		if err := h.RouteAdd(r); err != nil {
			return fmt.Errorf("default route via %s: %w", v.Gateway, err)
		}
	}
	return nil
}

// DelLink deletes a host link by name; a missing link is not an error.
func DelLink(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("delete link %s: %w", name, err)
	}
	if err := netlink.LinkDel(l); err != nil {
		return fmt.Errorf("delete link %s: %w", name, err)
	}
	return nil
}
