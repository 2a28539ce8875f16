package bridge

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/overlaynet/sandbox"
)

// vethPrefix starts the host-side name of every endpoint veth, as with Docker.
const vethPrefix = "veth"

// idPattern keeps ids usable as file names (container ids, names, tests).
var idPattern = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`) })

func checkID(id string) error {
	if !idPattern().MatchString(id) {
		return fmt.Errorf("%w: endpoint id %q", ErrInvalid, id)
	}
	return nil
}

// vethName derives the host-side veth name from the bridge and the id: stable
// (Detach finds it after a crash even without state) and distinct across
// networks that reuse ids.
func vethName(bridge, id string) string {
	sum := sha256.Sum256([]byte(bridge + "/" + id))
	return vethPrefix + hex.EncodeToString(sum[:])[:7]
}

func (n *Network) netnsPath(id string) string { return filepath.Join(n.opts.NetNSDir, id) }

func (n *Network) endpointOf(ep *endpoint) Endpoint {
	e := Endpoint{NetNSPath: ep.NetNS, IfName: ep.IfName}
	if e.IfName == "" {
		e.IfName = "eth0"
	}
	if ep.IP.IsValid() {
		e.IP = ep.IP.AsSlice()
		e.Prefix = n.st.Subnet.Bits()
		e.Gateway = n.st.Gateway.AsSlice()
		e.MAC, _ = net.ParseMAC(ep.MAC)
	}
	return e
}

// AttachOptions change what Attach makes.
type AttachOptions struct {
	// IfName is the interface inside the namespace; "" means eth0.
	IfName string
	// Shared attaches to the namespace another network made for id (a
	// second network of a container): it must exist, gets no default route
	// from this network, and stays when this endpoint is detached.
	Shared bool
	// IP is a fixed address in the subnet (--ip); invalid means the next
	// free one.
	IP netip.Addr
	// Route gives a Shared endpoint the namespace's default route through
	// this network's gateway all the same: the overlay's NAT bridge, whose
	// leg is a task's only way out while its namespace is the overlay's.
	Route bool
}

// Attach gives the container id a sandbox on the network: a namespace at
// <NetNSDir>/<id> with lo up and eth0 holding the next free address, a default
// route through the gateway, and the other end of eth0's veth on the bridge.
// A namespace already mounted at that path is reused (it may have been made by
// the caller, or left by a crash); a veth of this endpoint left by a crash is
// replaced.
func (n *Network) Attach(ctx context.Context, id string) (Endpoint, error) {
	return n.AttachWith(ctx, id, AttachOptions{})
}

// AttachWith is Attach with options.
func (n *Network) AttachWith(ctx context.Context, id string, o AttachOptions) (Endpoint, error) {
	if err := checkID(id); err != nil {
		return Endpoint{}, err
	}
	if err := ctx.Err(); err != nil {
		return Endpoint{}, fmt.Errorf("attach %s: %w", id, err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.st.Endpoints[id]; ok {
		return Endpoint{}, fmt.Errorf("%w: attach %s: endpoint already exists on %s", ErrConflict, id, n.opts.Name)
	}
	used := map[netip.Addr]bool{}
	for _, ep := range n.st.Endpoints {
		if ep.IP.IsValid() {
			used[ep.IP] = true
		}
	}
	ip, last := o.IP, n.st.Last
	if ip.IsValid() {
		switch {
		case !ip.Is4() || !n.st.Subnet.Contains(ip) || ip == n.st.Subnet.Addr() || ip == broadcast(n.st.Subnet) || ip == n.st.Gateway:
			return Endpoint{}, fmt.Errorf("%w: attach %s: address %s is not a free host address of %s", ErrInvalid, id, ip, n.st.Subnet)
		case used[ip]:
			return Endpoint{}, fmt.Errorf("%w: attach %s: address %s is already in use on %s", ErrConflict, id, ip, n.opts.Name)
		}
	} else {
		var err error
		if ip, err = allocate(n.st.Subnet, n.st.Gateway, n.st.Last, used); err != nil {
			return Endpoint{}, fmt.Errorf("attach %s: %w", id, err)
		}
		last = ip
	}
	if o.Shared {
		if ok, err := sandbox.IsNetNS(n.netnsPath(id)); err != nil || !ok {
			return Endpoint{}, fmt.Errorf("%w: attach %s: no namespace of it to share at %s", ErrNotFound, id, n.netnsPath(id))
		}
	}
	ep := &endpoint{NetNS: n.netnsPath(id), Veth: vethName(n.opts.Name, id), IP: ip, MAC: macFor(ip), IfName: o.IfName, Shared: o.Shared, Route: o.Shared && o.Route}
	prevLast := n.st.Last
	// Recorded before any kernel object exists, so that whatever a crash
	// leaves behind is found by Detach or by the next New.
	n.st.Endpoints[id] = ep
	n.st.Last = last
	if err := n.st.save(n.statePath); err != nil {
		delete(n.st.Endpoints, id)
		n.st.Last = prevLast
		return Endpoint{}, fmt.Errorf("attach %s: %w", id, err)
	}
	if err := n.plumb(ep); err != nil {
		n.teardown(ep)
		delete(n.st.Endpoints, id)
		n.st.Last = prevLast
		n.st.save(n.statePath)
		return Endpoint{}, fmt.Errorf("attach %s: %w", id, err)
	}
	return n.endpointOf(ep), nil
}

// plumb makes the kernel objects of ep: namespace, veth, address, route.
func (n *Network) plumb(ep *endpoint) error {
	// A veth left by a crash goes first, taking its peer (a stale eth0 in a
	// reused namespace) with it. Any other eth0 there belongs to someone else
	// and makes AddVeth fail rather than be deleted.
	if err := sandbox.DelLink(ep.Veth); err != nil {
		return err
	}
	if err := n.ensureNetNS(ep.NetNS); err != nil {
		return err
	}
	mac, _ := net.ParseMAC(ep.MAC)
	ifName, gw := ep.IfName, n.gatewayRoute()
	if ifName == "" {
		ifName = "eth0"
	}
	if ep.Shared && !ep.Route {
		gw = nil // the namespace's own network routes the rest
	}
	return sandbox.AddVeth(sandbox.Veth{
		HostName:    ep.Veth,
		MasterIndex: n.bridge.Attrs().Index,
		MTU:         n.opts.MTU,
		Hairpin:     true,
		NetNSPath:   ep.NetNS,
		IfName:      ifName,
		MAC:         mac,
		Addr:        &net.IPNet{IP: ep.IP.AsSlice(), Mask: net.CIDRMask(n.st.Subnet.Bits(), 32)},
		Gateway:     gw,
	})
}

// gatewayRoute is the default gateway of endpoints; none on an internal
// network.
func (n *Network) gatewayRoute() net.IP {
	if n.opts.Internal {
		return nil
	}
	return n.st.Gateway.AsSlice()
}

// ensureNetNS reuses a namespace mounted at path or makes one (takes one
// of the spares, given some); a plain file there (a crash between creating
// and mounting) is replaced.
func (n *Network) ensureNetNS(path string) error {
	ok, err := sandbox.IsNetNS(path)
	if err != nil {
		return err
	}
	if ok {
		return nil
	}
	if err := sandbox.Remove(path); err != nil {
		return err
	}
	if n.opts.Spares != nil {
		return n.opts.Spares.Take(path)
	}
	return sandbox.Create(path)
}

// NewEmpty gives the container id a namespace with only lo up, for
// `--network none`. Detach removes it.
func (n *Network) NewEmpty(ctx context.Context, id string) (Endpoint, error) {
	if err := checkID(id); err != nil {
		return Endpoint{}, err
	}
	if err := ctx.Err(); err != nil {
		return Endpoint{}, fmt.Errorf("new empty sandbox %s: %w", id, err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.st.Endpoints[id]; ok {
		return Endpoint{}, fmt.Errorf("%w: new empty sandbox %s: endpoint already exists", ErrConflict, id)
	}
	// Not saved: an empty sandbox's one kernel object is the namespace at
	// the path its id names, which Detach finds without a record (as an
	// unknown id's) after a crash. The state is saved with the next
	// change that needs it; the endpoint is then in it, which is harmless:
	// New drops endpoints whose namespace is gone.
	ep := &endpoint{NetNS: n.netnsPath(id)}
	n.st.Endpoints[id] = ep
	if err := n.ensureNetNS(ep.NetNS); err != nil {
		sandbox.Remove(ep.NetNS)
		delete(n.st.Endpoints, id)
		return Endpoint{}, fmt.Errorf("new empty sandbox %s: %w", id, err)
	}
	return n.endpointOf(ep), nil
}

// empty reports whether ep is an empty sandbox (NewEmpty's): no veth, no
// address, no ports.
func (ep *endpoint) empty() bool {
	return ep.Veth == "" && !ep.IP.IsValid() && len(ep.Ports) == 0 && !ep.Shared
}

// Endpoint returns the attachment of id, e.g. for a restarted daemon.
func (n *Network) Endpoint(id string) (Endpoint, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	ep, ok := n.st.Endpoints[id]
	if !ok {
		return Endpoint{}, fmt.Errorf("%w: endpoint %s on %s", ErrNotFound, id, n.opts.Name)
	}
	return n.endpointOf(ep), nil
}

// Detach removes id's published ports, veth and namespace and releases its
// address. It is idempotent: an unknown id still gets a namespace file at its
// would-be path removed, in case a crash left one (a file of a namespace
// whose mount a reboot took). It has no veth to delete: an endpoint is
// recorded before any of its kernel objects exists (AttachWith, NewEmpty),
// and New deletes the veths on the bridge that no endpoint owns. So an
// unknown id costs one lstat, not a netlink round trip and three calls that
// fail (a `run --rm` detached an unknown id three times).
func (n *Network) Detach(ctx context.Context, id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	ep, ok := n.st.Endpoints[id]
	if !ok {
		path := n.netnsPath(id)
		if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err := sandbox.Remove(path); err != nil {
			return fmt.Errorf("detach %s: %w", id, err)
		}
		return nil
	}
	if len(ep.Ports) > 0 {
		// Rules go first: a DNAT must never outlive the address it points to.
		ports := ep.Ports
		ep.Ports = nil
		if err := program(n.opts, n.st); err != nil {
			ep.Ports = ports
			return fmt.Errorf("detach %s: %w", id, err)
		}
	}
	var errs []error
	if err := n.teardown(ep); err != nil {
		errs = append(errs, err)
	} else {
		delete(n.st.Endpoints, id)
		forgetFlows(ep.IP)
	}
	// An empty sandbox is not saved by NewEmpty, nor its end here: if a
	// save recorded it meanwhile, New drops it, its namespace being gone.
	if !ep.empty() {
		if err := n.st.save(n.statePath); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("detach %s: %w", id, err)
	}
	return nil
}

// forgetFlows deletes the conntrack entries of a released address. Without
// this a UDP client that keeps sending to a published port keeps its old
// entry alive, and with it the DNAT to the departed container, even after
// another container publishes the port (Docker clears them for the same
// reason). Best effort: if it fails, the entries still expire once idle.
func forgetFlows(ip netip.Addr) {
	if !ip.IsValid() {
		return
	}
	var any, orig netlink.ConntrackFilter
	if any.AddIP(netlink.ConntrackReplyAnyIP, ip.AsSlice()) != nil || orig.AddIP(netlink.ConntrackOrigSrcIP, ip.AsSlice()) != nil {
		return
	}
	netlink.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, &any, &orig)
}
