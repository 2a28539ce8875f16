package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"

	"github.com/vishvananda/netlink"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/overlaynet/bridge"
	"github.com/shoal-project/shoal/overlaynet/sandbox"
	"github.com/shoal-project/shoal/worker"
)

// The node's NAT bridge for tasks on overlay networks (Swarm's
// docker_gwbridge): a local bridge network with outbound masquerade that
// gives each task on a non-internal overlay network a second leg and its
// default route, while the overlay subnets stay on the overlay legs.
const (
	// GWBridgeName is the bridge link's name on every node.
	GWBridgeName = "shoal_gwbridge"
	// DefaultGWBridgeSubnet is outside dockerd's and shoal's default
	// address pools (172.17/16 is docker0, 172.18-31/16 and 192.168/16
	// the local networks' pools); a host that routes it already needs
	// --gwbridge-subnet.
	DefaultGWBridgeSubnet = "172.16.0.0/16"
)

// gwBridge is the node's NAT bridge, made when the first task needs it. It
// stays when the last task leaves (as Docker's): it holds no address of a
// task and costs a bridge and a few rules; `swarm leave` removes it.
type gwBridge struct {
	opts bridge.Options

	mu  sync.Mutex
	net *bridge.Network // nil until a task needs it or a restart adopts it
}

var _ worker.GatewayBridge = (*gwBridge)(nil)

// checkGWBridgeSubnet refuses a --gwbridge-subnet that is not an IPv4
// subnet (or gateway/prefix), before anything is made.
func checkGWBridgeSubnet(s string) error {
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is4() || p.Bits() > 30 {
		return fmt.Errorf("invalid --gwbridge-subnet %q: want an IPv4 subnet of at least 4 addresses, e.g. %s", s, DefaultGWBridgeSubnet)
	}
	return nil
}

// newGWBridge describes the NAT bridge of the swarm directory dir; nothing
// is made yet. Task legs live in the tasks' namespaces, named task-<ID>.
func newGWBridge(dir, subnet string) *gwBridge {
	if subnet == "" {
		subnet = DefaultGWBridgeSubnet
	}
	return &gwBridge{opts: bridge.Options{
		Name: GWBridgeName, Subnet: subnet,
		StateDir: filepath.Join(dir, "gwbridge"), NetNSDir: taskNetNSDir(dir),
		// Nothing outside reaches a task through its way out.
		Isolated: true,
	}}
}

// exists says whether an earlier run made the bridge (its state or link).
func (g *gwBridge) exists() bool {
	if _, err := os.Stat(filepath.Join(g.opts.StateDir, g.opts.Name+".json")); err == nil {
		return true
	}
	_, err := netlink.LinkByName(g.opts.Name)
	return err == nil
}

// adopt takes over the bridge an earlier run left, if any: its rules are
// made again and the legs of tasks whose namespace is gone are removed,
// while running tasks keep their way out.
func (g *gwBridge) adopt(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	_, err := g.openExisting(ctx)
	return err
}

// open returns the bridge, creating or adopting it. Called with mu held.
func (g *gwBridge) open(ctx context.Context) (*bridge.Network, error) {
	if g.net != nil {
		return g.net, nil
	}
	if err := os.MkdirAll(g.opts.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("gateway bridge: %w", err)
	}
	n, err := bridge.New(ctx, g.opts)
	if err != nil {
		return nil, fmt.Errorf("gateway bridge %s (--gwbridge-subnet): %w", g.opts.Name, err)
	}
	g.net = n
	return n, nil
}

// openExisting is open for a bridge that exists; nil, nil when there is
// none (nothing to leave or remove). Called with mu held.
func (g *gwBridge) openExisting(ctx context.Context) (*bridge.Network, error) {
	if g.net == nil && !g.exists() {
		return nil, nil
	}
	return g.open(ctx)
}

// hasLink says whether the namespace at path has a link named name.
func hasLink(path, name string) bool {
	h, err := sandbox.Handle(path)
	if err != nil {
		return false
	}
	defer h.Close()
	_, err = h.LinkByName(name)
	return err == nil
}

// dropDefaultRoutes removes the IPv4 default routes of the namespace at
// path.
func dropDefaultRoutes(path string) error {
	h, err := sandbox.Handle(path)
	if err != nil {
		return err
	}
	defer h.Close()
	routes, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: nil}, netlink.RT_FILTER_DST)
	if err != nil {
		return fmt.Errorf("list default routes: %w", err)
	}
	for _, r := range routes {
		if err := h.RouteDel(&r); err != nil {
			return fmt.Errorf("remove default route via %s: %w", r.Gw, err)
		}
	}
	return nil
}

func gwEndpointID(taskID string) string { return "task-" + taskID }

// Join implements worker.GatewayBridge.
func (g *gwBridge) Join(ctx context.Context, taskID, netnsPath, ifName string) error {
	id := gwEndpointID(taskID)
	if want := filepath.Join(g.opts.NetNSDir, id); want != netnsPath {
		return fmt.Errorf("gateway bridge: task %s's namespace %s is not %s", taskID, netnsPath, want)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	n, err := g.open(ctx)
	if err != nil {
		return err
	}
	if ep, err := n.Endpoint(id); err == nil {
		if hasLink(netnsPath, ep.IfName) {
			return nil // adopted after a restart: it is plumbed
		}
		// Recorded but not made (a crash in between): made again.
		if err := n.Detach(ctx, id); err != nil {
			return fmt.Errorf("gateway bridge: %w", err)
		}
	}
	// A task started by an earlier shoal has its default route through
	// the overlay gateway; the leg's replaces it rather than failing (and
	// taking the running task off its networks).
	if err := dropDefaultRoutes(netnsPath); err != nil {
		return fmt.Errorf("gateway bridge: task %s: %w", taskID, err)
	}
	if _, err := n.AttachWith(ctx, id, bridge.AttachOptions{IfName: ifName, Shared: true, Route: true}); err != nil {
		return fmt.Errorf("gateway bridge: %w", err)
	}
	return nil
}

// PublishHost implements worker.GatewayBridge: the task's mode=host ports
// are DNATed to its leg's address by the bridge's own port code, as `docker
// run -p` is, so a port bound on the node (by a process or another task) is
// refused with the bridge's "port is already allocated".
func (g *gwBridge) PublishHost(ctx context.Context, taskID string, ports []*api.PortConfig) error {
	var pms []bridge.PortMapping
	for _, p := range ports {
		if p.GetPublishMode() != api.PortConfig_HOST {
			continue
		}
		pm := bridge.PortMapping{HostPort: uint16(p.GetPublishedPort()), ContainerPort: uint16(p.GetTargetPort()), Protocol: "tcp"}
		switch p.GetProtocol() {
		case api.PortConfig_TCP:
		case api.PortConfig_UDP:
			pm.Protocol = "udp"
		default:
			return fmt.Errorf("gateway bridge: task %s: port %d: only tcp and udp can be published in mode host", taskID, p.GetTargetPort())
		}
		pms = append(pms, pm)
	}
	if len(pms) == 0 {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	n, err := g.open(ctx)
	if err != nil {
		return err
	}
	id := gwEndpointID(taskID)
	if len(n.Published(id)) > 0 {
		return nil // adopted after a restart: published already
	}
	if _, err := n.Publish(ctx, id, nil, pms); err != nil {
		return fmt.Errorf("gateway bridge: task %s: %w", taskID, err)
	}
	return nil
}

// Leave implements worker.GatewayBridge. The task's namespace is not
// touched (the overlay's Detach removes it).
func (g *gwBridge) Leave(ctx context.Context, taskID string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	n, err := g.openExisting(ctx)
	if n == nil {
		return err
	}
	id := gwEndpointID(taskID)
	if _, err := n.Endpoint(id); err != nil {
		return nil // never joined, or gone already
	}
	if err := n.Detach(ctx, id); err != nil {
		return fmt.Errorf("gateway bridge: %w", err)
	}
	return nil
}

// remove takes the bridge down with everything of it (link, rules, state),
// when the node leaves the swarm.
func (g *gwBridge) remove(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	n, err := g.openExisting(ctx)
	if n == nil {
		return err
	}
	g.net = nil
	if err := n.Remove(ctx); err != nil {
		return fmt.Errorf("gateway bridge: %w", err)
	}
	if err := os.Remove(g.opts.StateDir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("gateway bridge: %w", err)
	}
	return nil
}
