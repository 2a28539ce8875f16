package worker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/overlaynet/encrypt"
	"github.com/shoal-project/shoal/overlaynet/overlay"
	"github.com/shoal-project/shoal/overlaynet/peers"
	"github.com/shoal-project/shoal/overlaynet/sandbox"
)

// Network is what a task on overlay networks needs from the node's
// networking: its container joins the task's networks (api
// NetworkAttachment) before it starts and leaves them once it stopped.
// Implementations must be safe for concurrent use.
type Network interface {
	// Attach makes the task's network namespace (TaskNetNSPath) and joins
	// it to each of t's networks. Attaching an attached task (an agent
	// adopting a running one after a restart) changes nothing.
	Attach(ctx context.Context, t *api.Task) error
	// Detach leaves t's networks and removes its namespace; what is gone
	// already is fine.
	Detach(ctx context.Context, t *api.Task) error
}

// TaskNetNSPath is where the network namespace of task taskID is mounted,
// under dir: both the runtime (the namespace the container joins) and the
// Network (the namespace it plumbs) derive it, so a restarted agent finds it.
func TaskNetNSPath(dir, taskID string) string { return filepath.Join(dir, "task-"+taskID) }

// Announcer publishes the node's endpoints to the other nodes; *peers.Peers
// is one.
type Announcer interface {
	Announce(ctx context.Context, e peers.Endpoint) error
	Withdraw(ctx context.Context, e peers.Endpoint) error
}

// OverlayNetwork is the Network over the node's VXLAN sandboxes and its
// gossip of endpoints.
type OverlayNetwork struct {
	Overlay *overlay.Manager
	Peers   Announcer
	// NetNSDir holds the tasks' namespaces (EngineRuntime.NetNSDir).
	NetNSDir string
	// Discovery, if set, serves each attached task DNS and its VIPs.
	Discovery *Discovery
	// Gateway is the node's NAT bridge: a task on a non-internal network
	// gets a leg on it, after its overlay interfaces, holding its default
	// route. Nil: tasks have no way out of the cluster.
	Gateway GatewayBridge
	// Ingress is the node's routing mesh: a task on the ingress network
	// gets its return path from it. Nil: such tasks cannot be attached.
	Ingress *Ingress
	// DataKey gives an encrypted network's key by VNI (derived from the
	// managers' newest cluster key). Nil, or a nil key: tasks on encrypted
	// networks fail rather than run in plaintext.
	DataKey func(vni uint32) []byte
}

// GatewayBridge is a node's way out of the cluster for tasks (Swarm's
// docker_gwbridge). Implementations must be safe for concurrent use.
type GatewayBridge interface {
	// Join gives the namespace at netnsPath an interface ifName on the
	// bridge and its default route through it; joining again changes
	// nothing.
	Join(ctx context.Context, taskID, netnsPath, ifName string) error
	// Leave removes task taskID's leg; one that is gone already is fine.
	Leave(ctx context.Context, taskID string) error
	// PublishHost publishes the mode=host ones of ports on this node to
	// task taskID's leg (joined first); publishing again changes nothing.
	// A port bound on the node already is an error saying so.
	PublishHost(ctx context.Context, taskID string, ports []*api.PortConfig) error
}

var _ Network = (*OverlayNetwork)(nil)

// attachment is one of a task's networks, ready for the overlay.
type attachment struct {
	net      overlay.Network
	ep       overlay.Endpoint
	task     peers.TaskInfo
	internal bool // the network is --internal: no way out through it
	ingress  bool // the routing mesh's network
}

// attachments turns t's network attachments into overlay terms; anything
// missing or malformed is an error naming the network.
func (o *OverlayNetwork) attachments(t *api.Task) ([]attachment, error) {
	var out []attachment
	for i, a := range t.GetNetworks() {
		n := a.GetNetwork()
		name := n.GetSpec().GetAnnotations().GetName()
		if name == "" {
			name = n.GetId()
		}
		if n.GetVni() == 0 {
			return nil, fmt.Errorf("network %s has no VXLAN ID", name)
		}
		if len(a.GetAddresses()) == 0 {
			return nil, fmt.Errorf("network %s has no address for task %s", name, t.GetId())
		}
		ip, subnet, err := net.ParseCIDR(a.GetAddresses()[0])
		if err != nil || ip.To4() == nil {
			return nil, fmt.Errorf("network %s: task address %q is not an IPv4 CIDR", name, a.GetAddresses()[0])
		}
		var gw net.IP
		for _, c := range n.GetIpam().GetConfigs() {
			if g := net.ParseIP(c.GetGateway()); g != nil && subnet.Contains(g) {
				gw = g.To4()
			}
		}
		if gw == nil {
			return nil, fmt.Errorf("network %s has no gateway in %s", name, subnet)
		}
		mtu, err := overlay.MTUFromOptions(n.GetSpec().GetDriverConfig().GetOptions())
		if err != nil {
			return nil, fmt.Errorf("network %s: %w", name, err)
		}
		var key []byte
		if _, ok := n.GetSpec().GetDriverConfig().GetOptions()[encrypt.Option]; ok {
			if o.DataKey != nil {
				key = o.DataKey(n.GetVni())
			}
			if key == nil {
				return nil, fmt.Errorf("network %s is encrypted and this node has no key for it yet", name)
			}
		}
		out = append(out, attachment{
			net: overlay.Network{VNI: n.GetVni(), Gateway: &net.IPNet{IP: gw, Mask: subnet.Mask}, MTU: mtu, Key: key},
			ep: overlay.Endpoint{ID: t.GetId(), NetNSPath: TaskNetNSPath(o.NetNSDir, t.GetId()),
				IfName: fmt.Sprintf("eth%d", i), Addr: &net.IPNet{IP: ip.To4(), Mask: subnet.Mask}},
			task:     taskInfo(t, n.GetId(), a.GetAliases()),
			internal: n.GetSpec().GetInternal(),
			ingress:  n.GetSpec().GetIngress(),
		})
	}
	return out, nil
}

func peerOf(a attachment) peers.Endpoint {
	return peers.Endpoint{VNI: a.net.VNI, IP: a.ep.Addr.IP, MAC: overlay.MACFromIP(a.ep.Addr.IP), Task: a.task}
}

// Attach implements Network. On error what it made is undone.
func (o *OverlayNetwork) Attach(ctx context.Context, t *api.Task) error {
	atts, err := o.attachments(t)
	if err != nil {
		return fmt.Errorf("attach task %s: %w", t.GetId(), err)
	}
	if len(atts) == 0 {
		if hostPorts(t) {
			return fmt.Errorf("attach task %s: ports published in mode host need the task on an overlay network", t.GetId())
		}
		return nil
	}
	path := TaskNetNSPath(o.NetNSDir, t.GetId())
	if ok, err := sandbox.IsNetNS(path); err != nil {
		return fmt.Errorf("attach task %s: %w", t.GetId(), err)
	} else if !ok {
		sandbox.Remove(path) // a file a crash left before the mount
		if err := sandbox.Create(path); err != nil {
			return fmt.Errorf("attach task %s: %w", t.GetId(), err)
		}
	}
	for _, a := range atts {
		if a.ingress && o.Ingress == nil {
			o.Detach(context.WithoutCancel(ctx), t)
			return fmt.Errorf("attach task %s: the routing mesh does not run on this node", t.GetId())
		}
		err := o.Overlay.Attach(a.net, a.ep)
		if err == nil && a.ingress {
			// Before the task is announced: its first replies need it.
			err = o.Ingress.AddTask(ctx, t, a.ep.NetNSPath, a.ep.IfName)
		}
		if err == nil {
			err = o.Peers.Announce(ctx, peerOf(a))
		}
		if err != nil {
			o.Detach(context.WithoutCancel(ctx), t)
			return fmt.Errorf("attach task %s: %w", t.GetId(), err)
		}
	}
	if o.Gateway != nil && slices.ContainsFunc(atts, func(a attachment) bool { return !a.internal }) {
		// A leg on the NAT bridge holds the default route; internal
		// networks only: no leg, no default route.
		if err := o.Gateway.Join(ctx, t.GetId(), path, fmt.Sprintf("eth%d", len(atts))); err != nil {
			o.Detach(context.WithoutCancel(ctx), t)
			return fmt.Errorf("attach task %s: %w", t.GetId(), err)
		}
		if err := o.Gateway.PublishHost(ctx, t.GetId(), t.GetEndpoint().GetSpec().GetPorts()); err != nil {
			o.Detach(context.WithoutCancel(ctx), t)
			return fmt.Errorf("attach task %s: %w", t.GetId(), err)
		}
	} else if hostPorts(t) {
		return fmt.Errorf("attach task %s: ports published in mode host need the node's gateway bridge and a network that is not --internal", t.GetId())
	}
	if o.Discovery != nil {
		if err := o.Discovery.Add(ctx, t, path); err != nil {
			o.Detach(context.WithoutCancel(ctx), t)
			return fmt.Errorf("attach task %s: %w", t.GetId(), err)
		}
	}
	return nil
}

// hostPorts reports whether t publishes a port in mode host.
func hostPorts(t *api.Task) bool {
	return slices.ContainsFunc(t.GetEndpoint().GetSpec().GetPorts(), func(p *api.PortConfig) bool {
		return p.GetPublishMode() == api.PortConfig_HOST
	})
}

// Serve implements ServingNetwork: the task's endpoints are announced
// again with on as their Serving flag, if the task is attached and the
// flag changes.
func (o *OverlayNetwork) Serve(ctx context.Context, t *api.Task, on bool) error {
	if o.Discovery == nil || !o.Discovery.servingChanges(t.GetId(), on) {
		return nil
	}
	atts, err := o.attachments(t)
	if err != nil {
		return fmt.Errorf("serve task %s: %w", t.GetId(), err)
	}
	for _, a := range atts {
		e := peerOf(a)
		e.Task.Serving = on
		if err := o.Peers.Announce(ctx, e); err != nil {
			return fmt.Errorf("serve task %s: %w", t.GetId(), err)
		}
	}
	// Recorded only once announced: a failed announce is tried again at
	// the runner's next step instead of being taken as done.
	o.Discovery.setServing(t.GetId(), on)
	return nil
}

// Detach implements Network. A task known only by its ID (an orphan whose
// assignment is gone) is taken out of every network it may be on.
func (o *OverlayNetwork) Detach(ctx context.Context, t *api.Task) error {
	// Attachments that do not parse were never announced (Attach refuses
	// them); DetachAll finds the task's veths without them.
	atts, _ := o.attachments(t)
	if o.Discovery != nil {
		o.Discovery.Remove(t.GetId())
	}
	if o.Ingress != nil {
		o.Ingress.RemoveTask(t.GetId())
	}
	var errs []error
	for _, a := range atts {
		if err := o.Peers.Withdraw(ctx, peerOf(a)); err != nil {
			errs = append(errs, err)
		}
	}
	if err := o.Overlay.DetachAll(t.GetId()); err != nil {
		errs = append(errs, err)
	}
	if o.Gateway != nil {
		if err := o.Gateway.Leave(ctx, t.GetId()); err != nil {
			errs = append(errs, err)
		}
	}
	if err := sandbox.Remove(TaskNetNSPath(o.NetNSDir, t.GetId())); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("detach task %s: %w", t.GetId(), err)
	}
	return nil
}
