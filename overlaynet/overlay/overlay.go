// Package overlay is the node side of a VXLAN overlay network: one sandbox per
// network (a network namespace holding a bridge and a VXLAN device), a veth per
// local endpoint joining a container to that bridge, and the static neighbour
// and FDB entries that tell the VXLAN device on which node (VTEP) a remote
// endpoint lives.
//
// The layout follows libnetwork's overlay driver: the VXLAN device is created
// in the host namespace (so its UDP socket and the underlay routing stay
// there) and then moved into the sandbox; learning is off and ARP proxying on,
// because every remote address is programmed from the peer table and nothing
// is learnt from the wire (no multicast, no flooding).
//
// All state lives in the kernel: a sandbox is found again by its file name
// (the VNI), its endpoints are its veth links. A daemon restarted after kill -9
// adopts what it finds and removes the sandboxes that no longer have any
// endpoint.
package overlay

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/overlaynet/encrypt"
	"github.com/shoal-project/shoal/overlaynet/sandbox"
)

// DefaultDataPort is the VXLAN UDP port (IANA's, as Docker's default).
const DefaultDataPort = 4789

// VXLANOverhead is what VXLAN encapsulation adds to a frame over IPv4
// (outer IP 20 + UDP 8 + VXLAN 8 + inner Ethernet 14).
const VXLANOverhead = 50

// MTUOption is the driver option that sets a network's MTU, as Docker's.
const MTUOption = "com.docker.network.driver.mtu"

// Link names inside a sandbox. They never clash with the host's: the
// sandbox is a namespace of its own.
const (
	bridgeName = "br0"
	vxlanName  = "vxlan0"
	nsPrefix   = "vni-"
)

// ErrNoSandbox reports that this node has no sandbox for a network (no local
// endpoint joined it), so there is nothing to program.
var ErrNoSandbox = errors.New("overlay: no sandbox for this network on this node")

// Config is a node's overlay setup.
type Config struct {
	// Root is the directory holding the sandboxes' namespace files.
	Root string
	// HostNetNS is the namespace VXLAN devices are created in (where their
	// UDP socket listens and the underlay is routed); "" is the caller's.
	HostNetNS string
	// LocalIP is the node's underlay address, the VXLAN source (VTEP) address.
	LocalIP net.IP
	// DataPort is the VXLAN UDP port; 0 means DefaultDataPort.
	DataPort int
}

// Network is one overlay network as the allocator gave it.
type Network struct {
	// VNI is the VXLAN network identifier (1 to 2^24-1).
	VNI uint32
	// Gateway is the bridge's address with the subnet's prefix length.
	Gateway *net.IPNet
	// MTU of the bridge, VXLAN device and veths; 0 means the underlay
	// link's MTU minus VXLANOverhead (and encrypt.Overhead if encrypted).
	MTU int
	// Key, when set, makes the network encrypted: its VXLAN packets leave
	// the sandbox only through an ESP tunnel keyed from it
	// (overlaynet/encrypt), never in plaintext.
	Key []byte
}

// Endpoint is one container's membership of a network.
type Endpoint struct {
	// ID is unique on the node (a task or container ID); it names the veth.
	ID string
	// NetNSPath is the container's network namespace.
	NetNSPath string
	// IfName is the interface name inside the container; "" means eth0.
	IfName string
	// Addr is the container's address and prefix length.
	Addr *net.IPNet
	// MAC of the container's interface; nil derives it from Addr (MACFromIP).
	MAC net.HardwareAddr
}

// Manager creates, finds and removes a node's overlay sandboxes. It is safe
// for concurrent use.
type Manager struct {
	cfg Config
	mu  sync.Mutex
	// tunnels are the encrypted networks' tunnels, by VNI. They
	// live in this process: after a restart an adopted encrypted sandbox
	// has none (and so no path out) until its next Attach opens it again.
	tunnels map[uint32]*encrypt.Tunnel
	// announced are the peers announced to each sandbox's containers
	// (announce.go).
	announced announced
}

// New checks cfg, then adopts the sandboxes left under cfg.Root by an earlier
// run: those still holding an endpoint are kept (their containers keep their
// connectivity), the others are removed.
func New(cfg Config) (*Manager, error) {
	if cfg.Root == "" {
		return nil, errors.New("overlay: no sandbox directory")
	}
	if cfg.LocalIP.To4() == nil {
		return nil, fmt.Errorf("overlay: local underlay address %q is not IPv4", cfg.LocalIP)
	}
	if cfg.DataPort == 0 {
		cfg.DataPort = DefaultDataPort
	}
	if cfg.DataPort < 1 || cfg.DataPort > 65535 {
		return nil, fmt.Errorf("overlay: data port %d out of range", cfg.DataPort)
	}
	if err := os.MkdirAll(cfg.Root, 0o700); err != nil {
		return nil, fmt.Errorf("overlay: %w", err)
	}
	m := &Manager{cfg: cfg, tunnels: map[uint32]*encrypt.Tunnel{}, announced: announced{}}
	if err := m.adopt(); err != nil {
		return nil, err
	}
	return m, nil
}

// MTUFromOptions returns the MTU a network's driver options ask for (0 when
// they do not set one). A value that is not a sane MTU is an error.
func MTUFromOptions(opts map[string]string) (int, error) {
	v, ok := opts[MTUOption]
	if !ok {
		return 0, nil
	}
	mtu, err := strconv.Atoi(v)
	if err != nil || mtu < 68 || mtu > 65535 {
		return 0, fmt.Errorf("invalid %s %q: want an integer from 68 to 65535", MTUOption, v)
	}
	return mtu, nil
}

// MACFromIP derives an endpoint's MAC from its IPv4 address as Docker does
// (02:42 then the four address bytes), so that peers need not store both.
func MACFromIP(ip net.IP) net.HardwareAddr {
	v4 := ip.To4()
	if v4 == nil {
		return nil
	}
	return net.HardwareAddr{0x02, 0x42, v4[0], v4[1], v4[2], v4[3]}
}

// SandboxPath is the namespace file of network vni's sandbox.
func (m *Manager) SandboxPath(vni uint32) string {
	return filepath.Join(m.cfg.Root, nsPrefix+strconv.FormatUint(uint64(vni), 10))
}

// Networks returns the VNIs of the sandboxes this node has.
func (m *Manager) Networks() ([]uint32, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.list()
}

func (m *Manager) list() ([]uint32, error) {
	ents, err := os.ReadDir(m.cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("overlay: list sandboxes: %w", err)
	}
	var vnis []uint32
	for _, e := range ents {
		v, ok := strings.CutPrefix(e.Name(), nsPrefix)
		if !ok {
			continue
		}
		vni, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			continue
		}
		vnis = append(vnis, uint32(vni))
	}
	return vnis, nil
}

// adopt keeps the sandboxes of an earlier run that still hold an endpoint and
// removes the rest (and anything half-made).
func (m *Manager) adopt() error {
	vnis, err := m.list()
	if err != nil {
		return err
	}
	for _, vni := range vnis {
		n, err := m.endpointCount(vni)
		if err == nil && n > 0 {
			continue
		}
		if err := m.removeSandbox(vni); err != nil {
			return fmt.Errorf("overlay: remove stale sandbox %d: %w", vni, err)
		}
	}
	return nil
}

// endpointCount counts the veths in a sandbox; a sandbox whose bridge or
// VXLAN device is missing is reported as an error (it is unusable).
func (m *Manager) endpointCount(vni uint32) (int, error) {
	path := m.SandboxPath(vni)
	if ok, err := sandbox.IsNetNS(path); err != nil || !ok {
		return 0, fmt.Errorf("sandbox %d is not a namespace (%v)", vni, err)
	}
	h, err := sandbox.Handle(path)
	if err != nil {
		return 0, err
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return 0, fmt.Errorf("list links of sandbox %d: %w", vni, err)
	}
	n, haveBridge, haveVXLAN := 0, false, false
	for _, l := range links {
		switch l.Attrs().Name {
		case bridgeName:
			haveBridge = true
		case vxlanName:
			haveVXLAN = true
		}
		if l.Type() == "veth" {
			n++
		}
	}
	if !haveBridge || !haveVXLAN {
		return n, fmt.Errorf("sandbox %d lacks its bridge or vxlan device", vni)
	}
	return n, nil
}

// removeSandbox deletes the VXLAN device first (so its VNI and port are free
// at once, not when the kernel gets round to destroying the namespace), then
// the namespace with the bridge and veths in it.
func (m *Manager) removeSandbox(vni uint32) error {
	if t := m.tunnels[vni]; t != nil {
		t.Close()
		delete(m.tunnels, vni)
	}
	delete(m.announced, vni)
	path := m.SandboxPath(vni)
	if ok, _ := sandbox.IsNetNS(path); ok {
		if h, err := sandbox.Handle(path); err == nil {
			if l, err := h.LinkByName(vxlanName); err == nil {
				h.LinkDel(l)
			}
			h.Close()
		}
	}
	return sandbox.Remove(path)
}

// hostHandle opens netlink in the namespace VXLAN devices are born in.
func (m *Manager) hostHandle() (*netlink.Handle, error) {
	if m.cfg.HostNetNS == "" {
		h, err := netlink.NewHandle()
		if err != nil {
			return nil, fmt.Errorf("netlink handle: %w", err)
		}
		return h, nil
	}
	return sandbox.Handle(m.cfg.HostNetNS)
}

// networkMTU is the MTU of n's bridge, VXLAN device and veths: n's own, or
// the underlay's minus the VXLAN overhead, or for an encrypted network
// encrypt.MTU minus it: the tunnel cuts its packets to the underlay's MTU
// itself, and a large MTU inside makes far fewer packets through user
// space, whose cost is per packet.
func (m *Manager) networkMTU(host *netlink.Handle, n Network) (int, error) {
	if n.MTU != 0 {
		return n.MTU, nil
	}
	if n.Key != nil {
		return encrypt.MTU - VXLANOverhead, nil
	}
	under, err := m.underlayMTU(host)
	if err != nil {
		return 0, err
	}
	return under - VXLANOverhead, nil
}

// underlayMTU is the MTU of the host link that carries LocalIP.
func (m *Manager) underlayMTU(h *netlink.Handle) (int, error) {
	addrs, err := h.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return 0, fmt.Errorf("list host addresses: %w", err)
	}
	for _, a := range addrs {
		if a.IP.Equal(m.cfg.LocalIP) {
			l, err := h.LinkByIndex(a.LinkIndex)
			if err != nil {
				return 0, fmt.Errorf("underlay link of %s: %w", m.cfg.LocalIP, err)
			}
			return l.Attrs().MTU, nil
		}
	}
	return 0, fmt.Errorf("no host link has the underlay address %s", m.cfg.LocalIP)
}

// ensureSandbox returns the sandbox of n, creating it if needed.
func (m *Manager) ensureSandbox(n Network) error {
	if n.VNI == 0 || n.VNI >= 1<<24 {
		return fmt.Errorf("VNI %d out of range", n.VNI)
	}
	if n.Gateway == nil || n.Gateway.IP.To4() == nil {
		return fmt.Errorf("network %d: no IPv4 gateway", n.VNI)
	}
	if _, err := m.endpointCount(n.VNI); err == nil {
		return m.ensureTunnel(n)
	}
	// Missing or unusable: start from nothing.
	if err := m.removeSandbox(n.VNI); err != nil {
		return err
	}
	if err := m.createSandbox(n); err != nil {
		m.removeSandbox(n.VNI)
		return fmt.Errorf("create sandbox of network %d: %w", n.VNI, err)
	}
	return nil
}

func (m *Manager) createSandbox(n Network) error {
	host, err := m.hostHandle()
	if err != nil {
		return err
	}
	defer host.Close()
	mtu, err := m.networkMTU(host, n)
	if err != nil {
		return err
	}
	path := m.SandboxPath(n.VNI)
	if err := sandbox.Create(path); err != nil {
		return err
	}
	if err := sandbox.Do(path, bridgeNetfilterOff); err != nil {
		return err
	}
	sb, err := sandbox.Handle(path)
	if err != nil {
		return err
	}
	defer sb.Close()

	la := netlink.NewLinkAttrs()
	la.Name = bridgeName
	la.MTU = mtu
	br := &netlink.Bridge{LinkAttrs: la}
	if err := sb.LinkAdd(br); err != nil {
		return fmt.Errorf("add bridge: %w", err)
	}
	if err := sb.AddrAdd(br, &netlink.Addr{IPNet: n.Gateway}); err != nil {
		return fmt.Errorf("address bridge %s: %w", n.Gateway, err)
	}
	if err := sb.LinkSetUp(br); err != nil {
		return fmt.Errorf("set bridge up: %w", err)
	}

	// The host-side name only lives until the move; a leftover of a crash
	// between create and move is deleted first.
	tmp := "vxs" + strconv.FormatUint(uint64(n.VNI), 10)
	if l, err := host.LinkByName(tmp); err == nil {
		host.LinkDel(l)
	}
	vla := netlink.NewLinkAttrs()
	vla.Name = tmp
	vla.MTU = mtu
	vx := &netlink.Vxlan{
		LinkAttrs: vla,
		VxlanId:   int(n.VNI),
		SrcAddr:   m.cfg.LocalIP,
		Port:      m.cfg.DataPort,
		Learning:  false,
		Proxy:     true,
	}
	if n.Key != nil {
		// Born in the sandbox: its socket is there, where the only
		// route out is the tunnel.
		vx.Name = vxlanName
		if err := sb.LinkAdd(vx); err != nil {
			return fmt.Errorf("add vxlan %d: %w", n.VNI, err)
		}
		if err := sb.LinkSetMaster(vx, br); err != nil {
			return fmt.Errorf("enslave vxlan: %w", err)
		}
		if err := sb.LinkSetUp(vx); err != nil {
			return fmt.Errorf("set vxlan up: %w", err)
		}
		return m.openTunnel(host, n, mtu+VXLANOverhead)
	}
	if err := host.LinkAdd(vx); err != nil {
		return fmt.Errorf("add vxlan %d: %w", n.VNI, err)
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		host.LinkDel(vx)
		return fmt.Errorf("open sandbox: %w", err)
	}
	err = host.LinkSetNsFd(vx, int(ns))
	ns.Close()
	if err != nil {
		host.LinkDel(vx)
		return fmt.Errorf("move vxlan into sandbox: %w", err)
	}
	inner, err := sb.LinkByName(tmp)
	if err != nil {
		return fmt.Errorf("find vxlan in sandbox: %w", err)
	}
	if err := sb.LinkSetName(inner, vxlanName); err != nil {
		return fmt.Errorf("rename vxlan: %w", err)
	}
	if err := sb.LinkSetMaster(inner, br); err != nil {
		return fmt.Errorf("enslave vxlan: %w", err)
	}
	if err := sb.LinkSetUp(inner); err != nil {
		return fmt.Errorf("set vxlan up: %w", err)
	}
	return nil
}

// Rekey moves every encrypted network's tunnel to the key keyFor gives its
// VNI (the managers rotated the cluster's keys); a nil key leaves a tunnel as
// it is.
func (m *Manager) Rekey(keyFor func(vni uint32) []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	for vni, t := range m.tunnels {
		if k := keyFor(vni); k != nil {
			errs = append(errs, t.SetKey(k))
		}
	}
	return errors.Join(errs...)
}

// CloseTunnels stops every encrypted network's tunnel (the daemon is leaving
// the swarm or stopping: its process carries them). Their sandboxes stay,
// with no way out, until a later Attach opens them again.
func (m *Manager) CloseTunnels() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for vni, t := range m.tunnels {
		t.Close()
		delete(m.tunnels, vni)
	}
}

// ensureTunnel opens the tunnel of an encrypted network whose sandbox exists
// without one (adopted after a restart) and moves it to n's key if that is
// new (rotation).
func (m *Manager) ensureTunnel(n Network) error {
	if n.Key == nil {
		return nil
	}
	if t := m.tunnels[n.VNI]; t != nil {
		return t.SetKey(n.Key)
	}
	host, err := m.hostHandle()
	if err != nil {
		return err
	}
	defer host.Close()
	mtu, err := m.networkMTU(host, n)
	if err != nil {
		return err
	}
	return m.openTunnel(host, n, mtu+VXLANOverhead)
}

// openTunnel opens n's ESP tunnel with a TUN device of MTU mtu in its
// sandbox, its UDP socket in the host namespace (host: a handle on it),
// cutting packets for the underlay link's MTU.
func (m *Manager) openTunnel(host *netlink.Handle, n Network, mtu int) error {
	underlayMTU, err := m.underlayMTU(host)
	if err != nil {
		return err
	}
	var t *encrypt.Tunnel
	open := func() error {
		var err error
		t, err = encrypt.Open(m.SandboxPath(n.VNI), n.VNI, m.cfg.LocalIP, mtu, underlayMTU, n.Key)
		return err
	}
	if m.cfg.HostNetNS == "" {
		err = open()
	} else {
		err = sandbox.Do(m.cfg.HostNetNS, open)
	}
	if err != nil {
		return err
	}
	// An adopted sandbox may hold peers programmed before the tunnel was
	// opened again (after a restart): their VTEPs become its peers.
	vteps, err := m.fdbVTEPs(n.VNI)
	for _, v := range vteps {
		if err == nil {
			err = t.AddPeer(v)
		}
	}
	if err != nil {
		t.Close()
		return err
	}
	m.tunnels[n.VNI] = t
	return nil
}

// fdbVTEPs lists the remote VTEPs of network vni's FDB entries.
func (m *Manager) fdbVTEPs(vni uint32) ([]net.IP, error) {
	sb, err := sandbox.Handle(m.SandboxPath(vni))
	if err != nil {
		return nil, err
	}
	defer sb.Close()
	vx, err := sb.LinkByName(vxlanName)
	if err != nil {
		return nil, fmt.Errorf("find vxlan: %w", err)
	}
	entries, err := sb.NeighList(vx.Attrs().Index, unix.AF_BRIDGE)
	if err != nil {
		return nil, fmt.Errorf("list fdb of network %d: %w", vni, err)
	}
	var out []net.IP
	for _, e := range entries {
		if e.IP.To4() != nil && !e.IP.IsUnspecified() {
			out = append(out, e.IP)
		}
	}
	return out, nil
}

// vethName names an endpoint's link in the sandbox from its ID: short, and
// the same after a restart.
func vethName(id string) string {
	sum := sha256.Sum256([]byte(id))
	return "ve" + hex.EncodeToString(sum[:6])
}

// Attach joins a container to network n: it creates n's sandbox if this is
// the node's first endpoint on it, then a veth whose sandbox end is on the
// bridge and whose other end, in the container, carries ep's address and
// MAC. The container gets no default route from the overlay, only the
// route to n's subnet on that interface: its way out of the cluster is the
// node's NAT bridge (the daemon's gwbridge), and a task on internal
// networks only has none at all. Attaching an endpoint that is attached already (a
// restarted daemon adopting a running task) changes nothing. On error
// nothing is left behind.
func (m *Manager) Attach(n Network, ep Endpoint) error {
	if ep.ID == "" || ep.NetNSPath == "" || ep.Addr == nil || ep.Addr.IP.To4() == nil {
		return fmt.Errorf("attach to network %d: endpoint %q needs an ID, a namespace and an IPv4 address", n.VNI, ep.ID)
	}
	if ep.IfName == "" {
		ep.IfName = "eth0"
	}
	if ep.MAC == nil {
		ep.MAC = MACFromIP(ep.Addr.IP)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.ensureSandbox(n); err != nil {
		return fmt.Errorf("attach %s: %w", ep.ID, err)
	}
	if err := m.addVeth(n, ep); err != nil {
		if c, cerr := m.endpointCount(n.VNI); cerr == nil && c == 0 {
			m.removeSandbox(n.VNI)
		}
		return fmt.Errorf("attach %s to network %d: %w", ep.ID, n.VNI, err)
	}
	return nil
}

func (m *Manager) addVeth(n Network, ep Endpoint) error {
	sb, err := sandbox.Handle(m.SandboxPath(n.VNI))
	if err != nil {
		return err
	}
	defer sb.Close()
	br, err := sb.LinkByName(bridgeName)
	if err != nil {
		return fmt.Errorf("find bridge: %w", err)
	}
	if _, err := sb.LinkByName(vethName(ep.ID)); err == nil {
		return nil
	}
	cns, err := netns.GetFromPath(ep.NetNSPath)
	if err != nil {
		return fmt.Errorf("open container netns %s: %w", ep.NetNSPath, err)
	}
	defer cns.Close()
	la := netlink.NewLinkAttrs()
	la.Name = vethName(ep.ID)
	la.MTU = br.Attrs().MTU
	la.MasterIndex = br.Attrs().Index
	veth := &netlink.Veth{
		LinkAttrs:        la,
		PeerName:         ep.IfName,
		PeerHardwareAddr: ep.MAC,
		PeerNamespace:    netlink.NsFd(cns),
	}
	if err := sb.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth: %w", err)
	}
	if err := m.configurePeer(ep, br.Attrs().MTU); err != nil {
		sb.LinkDel(veth)
		return err
	}
	if err := sb.LinkSetUp(veth); err != nil {
		sb.LinkDel(veth)
		return fmt.Errorf("set veth up: %w", err)
	}
	// A container on this node that asked for the address before it was
	// here has the same wait as for a remote peer (announce.go).
	if err := sendGARP(m.SandboxPath(n.VNI), br.Attrs().Index, ep.Addr.IP, ep.MAC); err != nil {
		sb.LinkDel(veth)
		return err
	}
	return nil
}

func (m *Manager) configurePeer(ep Endpoint, mtu int) error {
	h, err := sandbox.Handle(ep.NetNSPath)
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := h.LinkByName(ep.IfName)
	if err != nil {
		return fmt.Errorf("find %s in container: %w", ep.IfName, err)
	}
	if err := h.LinkSetMTU(l, mtu); err != nil {
		return fmt.Errorf("set %s mtu: %w", ep.IfName, err)
	}
	if err := h.AddrAdd(l, &netlink.Addr{IPNet: ep.Addr}); err != nil {
		return fmt.Errorf("address %s: %w", ep.Addr, err)
	}
	// The subnet route comes with the address once the link is up.
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", ep.IfName, err)
	}
	return nil
}

// Detach removes a container's endpoint from network vni (a missing one is
// fine) and the network's sandbox with it if that was the node's last
// endpoint on the network.
func (m *Manager) Detach(vni uint32, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.detach(vni, id)
}

// DetachAll removes endpoint id from every network of the node, for a
// caller that no longer knows which networks it was on (a task whose
// assignment is gone); sandboxes left without endpoints go too.
func (m *Manager) DetachAll(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	vnis, err := m.list()
	if err != nil {
		return err
	}
	var errs []error
	for _, vni := range vnis {
		if err := m.detach(vni, id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) detach(vni uint32, id string) error {
	path := m.SandboxPath(vni)
	if ok, _ := sandbox.IsNetNS(path); !ok {
		return nil
	}
	sb, err := sandbox.Handle(path)
	if err != nil {
		return fmt.Errorf("detach %s from network %d: %w", id, vni, err)
	}
	if l, err := sb.LinkByName(vethName(id)); err == nil {
		if err := sb.LinkDel(l); err != nil {
			sb.Close()
			return fmt.Errorf("detach %s from network %d: %w", id, vni, err)
		}
	}
	sb.Close()
	if n, err := m.endpointCount(vni); err != nil || n == 0 {
		if err := m.removeSandbox(vni); err != nil {
			return fmt.Errorf("detach %s: remove sandbox of network %d: %w", id, vni, err)
		}
	}
	return nil
}

// AddPeer tells network vni's sandbox that the endpoint ip/mac lives behind
// the VTEP vtep: a permanent neighbour entry (answered by the VXLAN device's
// ARP proxy) and a permanent FDB entry sending mac's frames to vtep; a peer
// new to the sandbox is also announced to its containers (announce.go).
// Programming the same peer again is fine. ErrNoSandbox: no local endpoint
// is on vni.
func (m *Manager) AddPeer(vni uint32, ip net.IP, mac net.HardwareAddr, vtep net.IP) error {
	return m.peer(vni, ip, mac, vtep, true)
}

// RemovePeer withdraws what AddPeer programmed; entries already gone are fine.
func (m *Manager) RemovePeer(vni uint32, ip net.IP, mac net.HardwareAddr, vtep net.IP) error {
	return m.peer(vni, ip, mac, vtep, false)
}

func (m *Manager) peer(vni uint32, ip net.IP, mac net.HardwareAddr, vtep net.IP, add bool) error {
	if ip.To4() == nil || len(mac) != 6 || vtep.To4() == nil {
		return fmt.Errorf("peer %s/%s at %s on network %d: need IPv4 addresses and a MAC", ip, mac, vtep, vni)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	path := m.SandboxPath(vni)
	if ok, _ := sandbox.IsNetNS(path); !ok {
		return ErrNoSandbox
	}
	sb, err := sandbox.Handle(path)
	if err != nil {
		return fmt.Errorf("peer %s on network %d: %w", ip, vni, err)
	}
	defer sb.Close()
	vx, err := sb.LinkByName(vxlanName)
	if err != nil {
		return fmt.Errorf("peer %s on network %d: find vxlan: %w", ip, vni, err)
	}
	idx := vx.Attrs().Index
	neigh := &netlink.Neigh{LinkIndex: idx, State: netlink.NUD_PERMANENT, IP: ip.To4(), HardwareAddr: mac}
	fdb := &netlink.Neigh{
		LinkIndex: idx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF,
		State: netlink.NUD_PERMANENT, IP: vtep.To4(), HardwareAddr: mac,
	}
	if add {
		if t := m.tunnels[vni]; t != nil {
			if err := t.AddPeer(vtep); err != nil {
				return fmt.Errorf("peer %s on network %d: %w", ip, vni, err)
			}
		}
		if err := sb.NeighSet(neigh); err != nil {
			return fmt.Errorf("peer %s on network %d: neighbour: %w", ip, vni, err)
		}
		if err := sb.NeighSet(fdb); err != nil {
			return fmt.Errorf("peer %s on network %d: fdb to %s: %w", ip, vni, vtep, err)
		}
		if !m.announced.fresh(vni, ip, mac) {
			return nil
		}
		br, err := sb.LinkByName(bridgeName)
		if err == nil {
			err = sendGARP(path, br.Attrs().Index, ip, mac)
		}
		if err != nil {
			m.announced.forget(vni, ip) // the next programming tries again
			return fmt.Errorf("peer %s on network %d: %w", ip, vni, err)
		}
		return nil
	}
	m.announced.forget(vni, ip)
	if err := sb.NeighDel(neigh); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove peer %s on network %d: neighbour: %w", ip, vni, err)
	}
	if err := sb.NeighDel(fdb); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove peer %s on network %d: fdb: %w", ip, vni, err)
	}
	return nil
}

// BridgeNetfilterSysctls are br_netfilter's switches that hand bridged
// frames to the IP, IPv6 and ARP hooks, per network namespace.
var BridgeNetfilterSysctls = []string{
	"/proc/sys/net/bridge/bridge-nf-call-iptables",
	"/proc/sys/net/bridge/bridge-nf-call-ip6tables",
	"/proc/sys/net/bridge/bridge-nf-call-arptables",
}

// bridgeNetfilterOff turns br_netfilter off in the calling thread's
// namespace. A sandbox's bridge joins task veths to the VXLAN device and no
// netfilter rule is written for its frames (a task's load balancing and the
// routing mesh's rules live in the tasks' namespaces and the ingress
// sandbox), yet wherever br_netfilter is in the kernel (loaded by a Docker
// host, say) its switches start at 1 in every new namespace, and every
// frame would pay for its hooks on the overlay's data path. Without
// br_netfilter the files do not exist and there is nothing to turn off.
func bridgeNetfilterOff() error {
	for _, f := range BridgeNetfilterSysctls {
		if err := os.WriteFile(f, []byte("0"), 0o644); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("turn off %s: %w", f, err)
		}
	}
	return nil
}
