// Package bridge is a node's default local bridge network: what `docker run
// --network bridge -p 8080:80` gives a container.
//
// A Network owns a Linux bridge holding the gateway address, a local IPAM over
// its subnet (persisted in a state file), and an nftables table of its own
// ("shoal-<bridge>") with outbound masquerade, published ports (DNAT) and
// hairpin NAT. Each endpoint is a sandbox (see overlaynet/sandbox): a network
// namespace bind-mounted at <NetNSDir>/<id>, joined by a veth whose host end is
// on the bridge and whose inner end is eth0 with the endpoint's address and a
// default route through the gateway.
//
// Several Networks with different bridge names and subnets coexist on one
// host (each test daemon has its own), and with Docker: the default subnet
// 172.31.0.0/16 avoids docker0's 172.17.0.0/16, overlapping subnets are
// refused, and iptables' FORWARD policy DROP is passed with accept rules of
// our own (see firewall.go).
//
// Published ports on 127.0.0.1 are handled in the kernel, not by a userland
// proxy: the output hook DNATs locally generated packets to the container,
// route_localnet=1 on the bridge lets a 127.0.0.1 source be routed out of it,
// and a masquerade rewrites that source to the gateway so that the
// container's reply comes back. A guard rule drops packets from the bridge to
// 127.0.0.0/8, so containers do not gain access to the host's loopback
// services through route_localnet.
//
// A daemon restart keeps containers' networking: New adopts the bridge, the
// table and the state file; only Remove tears everything down.
package bridge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"

	"github.com/shoal-project/shoal/overlaynet/sandbox"
)

// Defaults of Options.
const (
	DefaultName     = "shoal0"
	DefaultSubnet   = "172.31.0.0/16"
	DefaultStateDir = "/var/lib/shoal/network"
	DefaultNetNSDir = "/run/shoal/netns"
)

// Error classes; errors returned by this package wrap one of them.
var (
	ErrNotFound  = errors.New("bridge: not found")
	ErrConflict  = errors.New("bridge: conflict")
	ErrInvalid   = errors.New("bridge: invalid argument")
	ErrExhausted = errors.New("bridge: address pool exhausted")
)

// Options configure a Network. Zero fields take the defaults above.
type Options struct {
	// Name of the bridge link (at most 15 bytes); also names the nftables
	// table ("shoal-<Name>") and the state file.
	Name string
	// Subnet of the bridge, e.g. "172.31.0.0/16", or the gateway address with
	// its prefix like dockerd --bip ("172.31.0.1/16").
	Subnet string
	// StateDir holds the IPAM state file <Name>.json.
	StateDir string
	// NetNSDir holds the bind-mounted namespaces of endpoints, <NetNSDir>/<id>.
	NetNSDir string
	// MTU of the bridge and veths; 0 means 1500.
	MTU int
	// Isolated drops new connections forwarded into the bridge from any
	// other interface, except published ports: containers of another
	// network cannot reach this one's (a user-defined network).
	Isolated bool
	// Internal gives the network no route to or from the outside: no
	// default route in its endpoints, no masquerade, and nothing forwarded
	// between the bridge and another interface (docker network create
	// --internal).
	Internal bool
	// Spares, when set, gives endpoints their namespaces (sandbox.Spares:
	// made ahead of the starts that need them); else each is made then.
	Spares NetNSMaker
}

// NetNSMaker puts a fresh network namespace, lo up, on a path that does
// not exist.
type NetNSMaker interface {
	Take(path string) error
}

// Network is a bridge network on this node. Its methods are safe for
// concurrent use.
type Network struct {
	opts      Options
	statePath string
	bridge    netlink.Link

	// mu guards st and serializes every change of kernel objects with the
	// state file that describes them; it is held across netlink and nftables
	// calls because the two must change together.
	mu sync.Mutex
	st *state
}

// Endpoint is a container's attachment to the network.
type Endpoint struct {
	// NetNSPath is the bind-mounted network namespace to join.
	NetNSPath string
	// IP, Prefix and Gateway address eth0 inside the namespace.
	IP      net.IP
	Prefix  int
	Gateway net.IP
	// MAC of eth0.
	MAC net.HardwareAddr
	// IfName is the interface in the namespace (eth0 unless attached with
	// AttachOptions.IfName).
	IfName string
}

// New creates the network, or adopts the one a previous run of the daemon
// left (bridge, table, state). It refuses a subnet that overlaps a route or
// address of another interface of the host.
func New(ctx context.Context, o Options) (*Network, error) {
	if o.Name == "" {
		o.Name = DefaultName
	}
	if o.Subnet == "" {
		o.Subnet = DefaultSubnet
	}
	if o.StateDir == "" {
		o.StateDir = DefaultStateDir
	}
	if o.NetNSDir == "" {
		o.NetNSDir = DefaultNetNSDir
	}
	if o.MTU == 0 {
		o.MTU = 1500
	}
	if len(o.Name) > 15 || strings.ContainsAny(o.Name, "/ \t\n") {
		return nil, fmt.Errorf("%w: bridge name %q", ErrInvalid, o.Name)
	}
	subnet, gw, err := parseSubnet(o.Subnet)
	if err != nil {
		return nil, err
	}
	n := &Network{opts: o, statePath: filepath.Join(o.StateDir, o.Name+".json")}
	st, err := loadState(n.statePath)
	if err != nil {
		return nil, fmt.Errorf("bridge %s: %w", o.Name, err)
	}
	if st == nil || len(st.Endpoints) == 0 {
		last := netip.Addr{}
		if st != nil && st.Subnet == subnet {
			last = st.Last
		}
		st = &state{Subnet: subnet, Gateway: gw, Last: last, Endpoints: map[string]*endpoint{}}
	} else if st.Subnet != subnet || st.Gateway != gw {
		return nil, fmt.Errorf("%w: bridge %s: subnet %s (gateway %s) requested but %d endpoints still use %s (gateway %s)",
			ErrConflict, o.Name, subnet, gw, len(st.Endpoints), st.Subnet, st.Gateway)
	}
	n.st = st
	if err := checkOverlap(o.Name, subnet); err != nil {
		return nil, err
	}
	created, err := n.setupBridge()
	if err != nil {
		if created {
			sandbox.DelLink(o.Name)
		}
		return nil, err
	}
	if err := n.setup(ctx); err != nil {
		if created && len(n.st.Endpoints) == 0 {
			// Do not leave a half-made network behind; an adopted one stays
			// for the containers that use it.
			removeTable(o.Name)
			DisallowForward(ctx, o.Name)
			sandbox.DelLink(o.Name)
		}
		return nil, fmt.Errorf("bridge %s: %w", o.Name, err)
	}
	return n, nil
}

// setup brings an existing bridge's surroundings in line with the state.
func (n *Network) setup(ctx context.Context) error {
	if err := enableForwarding(n.opts.Name); err != nil {
		return err
	}
	n.pruneLocked()
	if err := n.st.save(n.statePath); err != nil {
		return err
	}
	if err := program(n.opts, n.st); err != nil {
		return err
	}
	return AllowForward(ctx, n.opts.Name)
}

// Name is the bridge's link name.
func (n *Network) Name() string { return n.opts.Name }

// Subnet is the network's IPv4 subnet.
func (n *Network) Subnet() netip.Prefix { return n.st.Subnet }

// Gateway is the bridge's address, the endpoints' default gateway.
func (n *Network) Gateway() netip.Addr { return n.st.Gateway }

// checkOverlap refuses subnet if any route or address of another link
// overlaps it (docker0's 172.17.0.0/16, a LAN, another shoal bridge).
func checkOverlap(bridge string, subnet netip.Prefix) error {
	own := -1
	if l, err := netlink.LinkByName(bridge); err == nil {
		own = l.Attrs().Index
	}
	linkName := func(idx int) string {
		if l, err := netlink.LinkByIndex(idx); err == nil {
			return l.Attrs().Name
		}
		return fmt.Sprintf("link %d", idx)
	}
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("bridge %s: list routes: %w", bridge, err)
	}
	for _, r := range routes {
		if r.Dst == nil || r.LinkIndex == own {
			continue // default routes overlap everything and are not a conflict
		}
		if p, ok := prefixOf(r.Dst); ok && p.Bits() > 0 && p.Overlaps(subnet) {
			return fmt.Errorf("%w: bridge %s: subnet %s overlaps route %s on %s", ErrConflict, bridge, subnet, p, linkName(r.LinkIndex))
		}
	}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("bridge %s: list addresses: %w", bridge, err)
	}
	for _, a := range addrs {
		if a.LinkIndex == own || a.IPNet == nil {
			continue
		}
		if p, ok := prefixOf(a.IPNet); ok && p.Overlaps(subnet) {
			return fmt.Errorf("%w: bridge %s: subnet %s overlaps address %s on %s", ErrConflict, bridge, subnet, p, linkName(a.LinkIndex))
		}
	}
	return nil
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP.To4())
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a, ones).Masked(), true
}

// setupBridge creates the bridge or adopts an existing one, making sure it
// carries exactly our gateway address and is up. It reports whether it
// created the bridge.
func (n *Network) setupBridge() (created bool, err error) {
	name := n.opts.Name
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			return created, fmt.Errorf("bridge %s: %w", name, err)
		}
		la := netlink.NewLinkAttrs()
		la.Name = name
		la.MTU = n.opts.MTU
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: la}); err != nil {
			return created, fmt.Errorf("bridge %s: create: %w", name, err)
		}
		created = true
		if l, err = netlink.LinkByName(name); err != nil {
			return created, fmt.Errorf("bridge %s: %w", name, err)
		}
	} else if l.Type() != "bridge" {
		return created, fmt.Errorf("%w: bridge %s: a link of type %s has that name", ErrConflict, name, l.Type())
	}
	n.bridge = l
	want := &net.IPNet{IP: n.st.Gateway.AsSlice(), Mask: net.CIDRMask(n.st.Subnet.Bits(), 32)}
	addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return created, fmt.Errorf("bridge %s: list addresses: %w", name, err)
	}
	have := false
	for _, a := range addrs {
		if a.IPNet.String() == want.String() {
			have = true
			continue
		}
		// A leftover address of an earlier subnet would route part of it here.
		if err := netlink.AddrDel(l, &a); err != nil {
			return created, fmt.Errorf("bridge %s: remove stale address %s: %w", name, a.IPNet, err)
		}
	}
	if !have {
		if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: want}); err != nil {
			return created, fmt.Errorf("bridge %s: add gateway %s: %w", name, want, err)
		}
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return created, fmt.Errorf("bridge %s: set up: %w", name, err)
	}
	return created, nil
}

// enableForwarding turns on IPv4 forwarding (host-wide, as Docker does; it is
// never turned off again, other networks may need it) and route_localnet on
// the bridge (see the package comment).
func enableForwarding(bridge string) error {
	for _, p := range []string{
		"/proc/sys/net/ipv4/ip_forward",
		"/proc/sys/net/ipv4/conf/" + bridge + "/route_localnet",
	} {
		if err := os.WriteFile(p, []byte("1\n"), 0o644); err != nil {
			return fmt.Errorf("enable %s: %w", p, err)
		}
	}
	return nil
}

// pruneLocked drops endpoints whose namespace is gone (the host rebooted, or
// someone removed it) and deletes veths on our bridge that no endpoint owns
// (a crash between creating a veth and recording it).
func (n *Network) pruneLocked() {
	owned := map[string]bool{}
	for id, ep := range n.st.Endpoints {
		if ok, _ := sandbox.IsNetNS(ep.NetNS); !ok {
			if ep.Veth != "" {
				sandbox.DelLink(ep.Veth)
			}
			delete(n.st.Endpoints, id)
			continue
		}
		owned[ep.Veth] = true
	}
	links, err := netlink.LinkList()
	if err != nil {
		return
	}
	for _, l := range links {
		a := l.Attrs()
		if a.MasterIndex == n.bridge.Attrs().Index && l.Type() == "veth" && strings.HasPrefix(a.Name, vethPrefix) && !owned[a.Name] {
			netlink.LinkDel(l)
		}
	}
}

// Close releases the Network's resources in this process. Kernel objects and
// state stay: containers keep their networking across a daemon restart.
func (n *Network) Close() error { return nil }

// Remove tears the network down: every endpoint (veth and namespace), the
// nftables table, the FORWARD accept rules, the bridge and the state file.
// It is for tests and for a daemon shutdown that is asked to clean up.
func (n *Network) Remove(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	var errs []error
	for id, ep := range n.st.Endpoints {
		if err := n.teardown(ep); err != nil {
			errs = append(errs, fmt.Errorf("endpoint %s: %w", id, err))
			continue
		}
		delete(n.st.Endpoints, id)
	}
	if err := removeTable(n.opts.Name); err != nil {
		errs = append(errs, err)
	}
	if err := DisallowForward(ctx, n.opts.Name); err != nil {
		errs = append(errs, err)
	}
	if err := sandbox.DelLink(n.opts.Name); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		if err := os.Remove(n.statePath); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	} else if err := n.st.save(n.statePath); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove bridge %s: %w", n.opts.Name, err)
	}
	return nil
}

// teardown removes an endpoint's kernel objects. Deleting the host end of the
// veth deletes the peer too; the namespace goes once unmounted and unused.
func (n *Network) teardown(ep *endpoint) error {
	if ep.Veth != "" {
		if err := sandbox.DelLink(ep.Veth); err != nil {
			return err
		}
	}
	if ep.Shared {
		return nil
	}
	return sandbox.Remove(ep.NetNS)
}
