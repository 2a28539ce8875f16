package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"syscall"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/overlaynet/ingress"
	"github.com/shoal-project/shoal/overlaynet/overlay"
	"github.com/shoal-project/shoal/overlaynet/peers"
)

// The routing mesh on a node (docs/network.md, "Routing mesh"). The
// managers give every node an address on the ingress network
// (Node.Attachments); with it the node makes its entry sandbox, joins it to
// the ingress overlay and announces it in the gossip as an entry. Every
// task of a service publishing a port through the mesh is on the ingress
// network too, and its endpoint carries the published ports. From the
// gossip each node derives
//
//   - its Mesh table: each published port DNATed to the serving tasks'
//     ingress addresses, wherever they run;
//   - each local ingress task's return path: the entries' MACs and
//     addresses, so a reply goes back through the node the connection came
//     in by (the client's address is kept, no SNAT).
//
// Both are recomputed whole after every gossip change, as Discovery's VIP
// tables are.

// entryID is the entry sandbox's endpoint ID on the ingress overlay.
const entryID = "ingress-sbox"

// meshTable is the name of the node's published-port table.
const meshTable = "shoal-mesh"

// IngressSource is the gossip as the mesh uses it; *peers.Peers is one.
type IngressSource interface {
	Announcer
	EndpointSource
}

// Ingress runs the node's side of the routing mesh.
type Ingress struct {
	// Source is the gossip; set before Run and the first AddTask.
	Source IngressSource

	overlay   *overlay.Manager
	entryPath string
	mesh      *ingress.Mesh
	log       *slog.Logger
	kick      chan struct{}

	mu    sync.Mutex
	want  *api.NetworkAttachment // the node's entry, as the managers gave it
	tasks map[string]ingressTask

	// syncMu serialises the programming below, which it owns.
	syncMu  sync.Mutex
	entry   *peers.Endpoint // announced
	ports   []ingress.Port  // in the Mesh table
	returns map[string][]ingress.Entry
	bound   map[string]bool // published ports found bound locally (logged once)
}

// ingressTask is a local task on the ingress network.
type ingressTask struct {
	netnsPath, iface string
	udp              []uint16 // its published UDP target ports
}

// NewIngress returns the mesh of a node whose entry sandbox lives at
// entryPath; Run applies what SetEntry, AddTask and the gossip say.
func NewIngress(ov *overlay.Manager, entryPath string) (*Ingress, error) {
	m, err := ingress.New("", meshTable)
	if err != nil {
		return nil, err
	}
	return &Ingress{overlay: ov, entryPath: entryPath, mesh: m, log: slog.Default(),
		kick: make(chan struct{}, 1), tasks: map[string]ingressTask{},
		returns: map[string][]ingress.Entry{}, bound: map[string]bool{}}, nil
}

// Changed tells Run that the gossip may have changed; it never blocks.
func (g *Ingress) Changed() {
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

// SetEntry sets the node's address on the ingress network (nil: the
// cluster has no ingress network, or took the node's entry away).
func (g *Ingress) SetEntry(a *api.NetworkAttachment) {
	g.mu.Lock()
	g.want = a
	g.mu.Unlock()
	g.Changed()
}

// Run keeps the entry, the Mesh table and the return paths in line with
// the gossip until ctx ends. It leaves them in place: running tasks keep
// their published ports across a daemon restart; Remove takes them down.
func (g *Ingress) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-g.kick:
		}
		if err := g.sync(ctx); err != nil && ctx.Err() == nil {
			g.log.Warn("ingress: routing mesh", "err", err)
		}
	}
}

// AddTask programs the return path of local task t on the ingress network
// (its namespace and its interface there) and keeps it up to date.
func (g *Ingress) AddTask(ctx context.Context, t *api.Task, netnsPath, iface string) error {
	it := ingressTask{netnsPath: netnsPath, iface: iface}
	for _, p := range t.GetEndpoint().GetPorts() {
		if p.GetPublishMode() == api.PortConfig_INGRESS && p.GetProtocol() == api.PortConfig_UDP && p.GetTargetPort() <= 65535 &&
			!slices.Contains(it.udp, uint16(p.GetTargetPort())) {
			it.udp = append(it.udp, uint16(p.GetTargetPort()))
		}
	}
	taskID := t.GetId()
	g.mu.Lock()
	g.tasks[taskID] = it
	g.mu.Unlock()
	vni := g.vni()
	eps, err := g.Source.Endpoints(ctx, vni)
	if err != nil {
		return err
	}
	g.syncMu.Lock()
	defer g.syncMu.Unlock()
	return g.syncReturn(taskID, it, entriesOf(eps, vni))
}

// RemoveTask forgets a task (its return path goes with its namespace).
func (g *Ingress) RemoveTask(taskID string) {
	g.mu.Lock()
	delete(g.tasks, taskID)
	g.mu.Unlock()
	g.syncMu.Lock()
	delete(g.returns, taskID)
	g.syncMu.Unlock()
}

func (g *Ingress) vni() uint32 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.want.GetNetwork().GetVni()
}

// sync applies the entry, then the table and return paths.
func (g *Ingress) sync(ctx context.Context) error {
	g.mu.Lock()
	want := g.want
	tasks := make(map[string]ingressTask, len(g.tasks))
	for id, t := range g.tasks {
		tasks[id] = t
	}
	g.mu.Unlock()
	g.syncMu.Lock()
	defer g.syncMu.Unlock()

	e, n, err := entryOf(want)
	if err != nil {
		return err
	}
	if g.entry != nil && (e == nil || !sameEndpoint(*g.entry, *e)) {
		if err := g.removeEntry(ctx); err != nil {
			return err
		}
	}
	if e == nil {
		return nil
	}
	if g.entry == nil {
		if err := g.makeEntry(ctx, *e, n); err != nil {
			return err
		}
	}
	eps, err := g.Source.Endpoints(ctx, e.VNI)
	if err != nil {
		return err
	}
	ports := portsOf(eps)
	if !slices.EqualFunc(ports, g.ports, samePort) {
		if err := g.mesh.Sync(ports); err != nil {
			return err
		}
		g.ports = ports
		g.checkBound(ports)
	}
	entries := entriesOf(eps, e.VNI)
	var errs []error
	for id, t := range tasks {
		errs = append(errs, g.syncReturn(id, t, entries))
	}
	return errors.Join(errs...)
}

// syncReturn programs task id's return path if its entries changed.
func (g *Ingress) syncReturn(id string, t ingressTask, entries []ingress.Entry) error {
	if old, ok := g.returns[id]; ok && slices.EqualFunc(old, entries, sameEntry) {
		return nil
	}
	if err := ingress.ReturnPath(t.netnsPath, t.iface, entries, t.udp); err != nil {
		return fmt.Errorf("task %s: %w", id, err)
	}
	g.returns[id] = entries
	return nil
}

// makeEntry makes the entry sandbox, joins it to the ingress overlay and
// announces it.
func (g *Ingress) makeEntry(ctx context.Context, e peers.Endpoint, n overlay.Network) error {
	subnet, err := netip.ParsePrefix(n.Gateway.String())
	if err != nil {
		return fmt.Errorf("ingress entry: subnet %s: %w", n.Gateway, err)
	}
	if err := ingress.EnsureEntry(ctx, g.entryPath, subnet.Masked()); err != nil {
		return err
	}
	ep := overlay.Endpoint{ID: entryID, NetNSPath: g.entryPath, IfName: "eth0",
		Addr: &net.IPNet{IP: e.IP, Mask: n.Gateway.Mask}}
	if err := g.overlay.Attach(n, ep); err != nil {
		return fmt.Errorf("ingress entry: %w", err)
	}
	if err := g.Source.Announce(ctx, e); err != nil {
		return fmt.Errorf("ingress entry: %w", err)
	}
	g.entry = &e
	g.log.Info("ingress: entry up", "address", e.IP, "vni", e.VNI)
	return nil
}

// removeEntry withdraws the entry and removes it with the Mesh table.
func (g *Ingress) removeEntry(ctx context.Context) error {
	errs := []error{g.Source.Withdraw(ctx, *g.entry), g.mesh.Delete(),
		g.overlay.Detach(g.entry.VNI, entryID), ingress.RemoveEntry(ctx, g.entryPath)}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	g.entry, g.ports = nil, nil
	return nil
}

// RemoveIngress takes a node's routing mesh down (swarm leave): the Mesh
// table, the entry's overlay endpoint and the entry sandbox.
func RemoveIngress(ctx context.Context, ov *overlay.Manager, entryPath string) error {
	m, err := ingress.New("", meshTable)
	if err != nil {
		return err
	}
	return errors.Join(m.Delete(), ov.DetachAll(entryID), ingress.RemoveEntry(ctx, entryPath))
}

// entryOf is the node's entry endpoint and the ingress network in overlay
// terms, from its attachment; nil when there is none.
func entryOf(a *api.NetworkAttachment) (*peers.Endpoint, overlay.Network, error) {
	if a == nil || len(a.GetAddresses()) == 0 {
		return nil, overlay.Network{}, nil
	}
	n := a.GetNetwork()
	ip, subnet, err := net.ParseCIDR(a.GetAddresses()[0])
	if err != nil || ip.To4() == nil || n.GetVni() == 0 {
		return nil, overlay.Network{}, fmt.Errorf("ingress entry: address %q on network %s (VNI %d) is not usable", a.GetAddresses()[0], n.GetId(), n.GetVni())
	}
	var gw net.IP
	for _, c := range n.GetIpam().GetConfigs() {
		if g := net.ParseIP(c.GetGateway()); g != nil && subnet.Contains(g) {
			gw = g.To4()
		}
	}
	if gw == nil {
		return nil, overlay.Network{}, fmt.Errorf("ingress entry: network %s has no gateway in %s", n.GetId(), subnet)
	}
	mtu, err := overlay.MTUFromOptions(n.GetSpec().GetDriverConfig().GetOptions())
	if err != nil {
		return nil, overlay.Network{}, fmt.Errorf("ingress entry: %w", err)
	}
	e := &peers.Endpoint{VNI: n.GetVni(), IP: ip.To4(), MAC: overlay.MACFromIP(ip), Task: peers.TaskInfo{Entry: true}}
	return e, overlay.Network{VNI: n.GetVni(), Gateway: &net.IPNet{IP: gw, Mask: subnet.Mask}, MTU: mtu}, nil
}

// portsOf is the Mesh table the endpoints call for: every port a serving
// task publishes, with the serving tasks as its backends.
func portsOf(eps []peers.Endpoint) []ingress.Port {
	byKey := map[string]*ingress.Port{}
	for _, e := range eps {
		addr, ok := netip.AddrFromSlice(e.IP.To4())
		if e.Task.Entry || !e.Task.Serving || !ok {
			continue
		}
		for _, p := range e.Task.Ports {
			if p.Protocol != "tcp" && p.Protocol != "udp" || p.Published == 0 || p.Target == 0 {
				continue
			}
			k := strconv.Itoa(int(p.Published)) + "/" + p.Protocol
			if byKey[k] == nil {
				byKey[k] = &ingress.Port{Protocol: p.Protocol, Published: p.Published, Target: p.Target}
			}
			if !slices.Contains(byKey[k].Backends, addr) {
				byKey[k].Backends = append(byKey[k].Backends, addr)
			}
		}
	}
	out := make([]ingress.Port, 0, len(byKey))
	for _, p := range byKey {
		slices.SortFunc(p.Backends, func(a, b netip.Addr) int { return a.Compare(b) })
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b ingress.Port) int {
		if a.Published != b.Published {
			return int(a.Published) - int(b.Published)
		}
		return cmp.Compare(a.Protocol, b.Protocol)
	})
	return out
}

// entriesOf is every node's entry on the ingress network vni, sorted.
func entriesOf(eps []peers.Endpoint, vni uint32) []ingress.Entry {
	var out []ingress.Entry
	for _, e := range eps {
		addr, ok := netip.AddrFromSlice(e.IP.To4())
		if e.VNI != vni || !e.Task.Entry || !ok || len(e.MAC) != 6 {
			continue
		}
		out = append(out, ingress.Entry{MAC: e.MAC, Gateway: addr})
	}
	slices.SortFunc(out, func(a, b ingress.Entry) int { return a.Gateway.Compare(b.Gateway) })
	return out
}

func sameEndpoint(a, b peers.Endpoint) bool {
	return a.VNI == b.VNI && a.IP.Equal(b.IP) && a.MAC.String() == b.MAC.String()
}

func samePort(a, b ingress.Port) bool {
	return a.Protocol == b.Protocol && a.Published == b.Published && a.Target == b.Target && slices.Equal(a.Backends, b.Backends)
}

func sameEntry(a, b ingress.Entry) bool {
	return a.Gateway == b.Gateway && a.MAC.String() == b.MAC.String()
}

// checkBound logs, once per port, a published port that a process of this
// node listens on too: the mesh takes the connections other hosts make to
// it (its DNAT comes first), which its owner should know.
func (g *Ingress) checkBound(ports []ingress.Port) {
	for _, p := range ports {
		k := strconv.Itoa(int(p.Published)) + "/" + p.Protocol
		if g.bound[k] {
			continue
		}
		addr := ":" + strconv.Itoa(int(p.Published))
		var err error
		if p.Protocol == "udp" {
			var c net.PacketConn
			if c, err = net.ListenPacket("udp4", addr); err == nil {
				c.Close()
			}
		} else {
			var l net.Listener
			if l, err = net.Listen("tcp4", addr); err == nil {
				l.Close()
			}
		}
		if errors.Is(err, syscall.EADDRINUSE) {
			g.bound[k] = true
			g.log.Warn("ingress: a published port is also bound by a process on this node; the routing mesh takes the connections other hosts make to it", "port", k)
		}
	}
}
