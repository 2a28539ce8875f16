package daemon

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/swarm"
	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/manager/allocator"
)

// Data path port range and default (swarm init --data-path-port), Docker's.
const (
	DefaultDataPathPort = 4789
	minDataPathPort     = 1024
	maxDataPathPort     = 49151
)

// initNetworks is what `swarm init` sets about cluster networks: where
// overlay subnets come from and the VXLAN UDP port.
type initNetworks struct {
	pools        []string
	subnetSize   uint32
	dataPathPort uint32
}

// initNetworksOf checks the network settings of a swarm init request.
func initNetworksOf(req swarm.InitRequest) (initNetworks, error) {
	var n initNetworks
	for _, p := range req.DefaultAddrPool {
		n.pools = append(n.pools, p.String())
	}
	n.subnetSize = req.SubnetSize
	if n.subnetSize == 0 {
		n.subnetSize = allocator.DefaultSubnetSize
	}
	if err := allocator.ValidatePool(n.pools, n.subnetSize); err != nil {
		return n, badRequest("%s", err)
	}
	if p := req.DataPathPort; p != 0 && (p < minDataPathPort || p > maxDataPathPort) {
		return n, badRequest("data path port %d is out of range %d-%d", p, minDataPathPort, maxDataPathPort)
	}
	n.dataPathPort = req.DataPathPort
	return n, nil
}

// apply stores n in the new cluster object.
func (n initNetworks) apply(c *api.Cluster) {
	c.DefaultAddressPool = n.pools
	if len(n.pools) == 0 {
		c.DefaultAddressPool = []string{allocator.DefaultPool}
	}
	c.SubnetSize = n.subnetSize
	c.DataPathPort = n.dataPathPort
	if c.DataPathPort == 0 {
		c.DataPathPort = DefaultDataPathPort
	}
}

// clusterControl is the Control API of this node's manager; ok is false
// when the node holds no cluster state to read (in no swarm, a worker, a
// locked manager): it then has no cluster networks to show.
func (d *Daemon) clusterControl() (c api.ControlClient, ok bool, err error) {
	conn, err := d.swarm.managerConn()
	if err != nil {
		return nil, false, err
	}
	return api.NewControlClient(conn), true, nil
}

// clusterNetworkCreate creates an overlay network in the cluster; its subnet
// and VNI are allocated before it returns. Options the cluster does not
// support are refused with one line, and nothing is made.
func (d *Daemon) clusterNetworkCreate(ctx context.Context, req network.CreateRequest) (network.CreateResponse, error) {
	spec, err := clusterNetworkSpec(req)
	if err != nil {
		return network.CreateResponse{}, err
	}
	c, _, err := d.clusterControl()
	if errors.Is(err, errWorkerNode) {
		return network.CreateResponse{}, withStatus(http.StatusForbidden, errors.New("Cannot create a multi-host network from a worker node. Please create the network from a manager node."))
	}
	if err != nil {
		return network.CreateResponse{}, err
	}
	resp, err := c.CreateNetwork(ctx, &api.CreateNetworkRequest{Spec: spec})
	if err != nil {
		return network.CreateResponse{}, api.FromGRPC(err)
	}
	return network.CreateResponse{ID: resp.GetNetwork().GetId()}, nil
}

// clusterNetworkSpec turns a create request into a network spec, refusing
// what cluster networks do not have.
func clusterNetworkSpec(req network.CreateRequest) (*api.NetworkSpec, error) {
	name := req.Name
	switch {
	case name == "":
		return nil, badRequest("network name is required")
	case req.Driver != "" && req.Driver != allocator.DriverOverlay:
		return nil, badRequest("network %s: driver %q is not a cluster driver (overlay)", name, req.Driver)
	case req.Scope != "" && req.Scope != "swarm":
		return nil, badRequest("network %s: scope %q: overlay networks are swarm-scoped", name, req.Scope)
	case req.EnableIPv6 != nil && *req.EnableIPv6:
		return nil, badRequest("network %s: IPv6 is not supported on overlay networks", name)
	case req.EnableIPv4 != nil && !*req.EnableIPv4:
		return nil, badRequest("network %s: IPv4 cannot be disabled on overlay networks", name)
	case req.Ingress:
		return nil, badRequest("network %s: creating an ingress network is not supported: the swarm makes its own (%s) with the first service that publishes a port", name, allocator.IngressNetworkName)
	case req.ConfigOnly || req.ConfigFrom != nil:
		return nil, badRequest("network %s: config-only networks are not supported", name)
	}
	spec := &api.NetworkSpec{
		Annotations:  &api.Annotations{Name: name, Labels: req.Labels},
		DriverConfig: &api.Driver{Name: allocator.DriverOverlay, Options: req.Options},
		Internal:     req.Internal,
		Attachable:   req.Attachable,
	}
	if ipam := req.IPAM; ipam != nil {
		if ipam.Driver != "" && ipam.Driver != "default" {
			return nil, badRequest("network %s: IPAM driver %q is not supported (only default)", name, ipam.Driver)
		}
		if len(ipam.Options) > 0 {
			return nil, badRequest("network %s: IPAM options are not supported", name)
		}
		spec.Ipam = &api.IPAMOptions{Driver: ipam.Driver}
		for _, c := range ipam.Config {
			switch {
			case !c.Subnet.IsValid():
				return nil, badRequest("network %s: an IPAM config needs a subnet", name)
			case c.IPRange.IsValid():
				return nil, badRequest("network %s: --ip-range is not supported on overlay networks", name)
			case len(c.AuxAddress) > 0:
				return nil, badRequest("network %s: --aux-address is not supported on overlay networks", name)
			}
			cfg := &api.IPAMConfig{Subnet: c.Subnet.String()}
			if c.Gateway.IsValid() {
				cfg.Gateway = c.Gateway.String()
			}
			spec.Ipam.Configs = append(spec.Ipam.Configs, cfg)
		}
	}
	return spec, nil
}

// clusterNetworkList lists the cluster's networks (none on a node that is
// not a manager).
func (d *Daemon) clusterNetworkList(ctx context.Context) ([]network.Inspect, error) {
	_, nets, err := d.clusterNetworks(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]network.Inspect, 0, len(nets))
	for _, n := range nets {
		out = append(out, clusterNetworkInspect(n))
	}
	return out, nil
}

// clusterNetworks lists the cluster's networks and returns the client it
// used (nil, and no networks, on a node that holds no cluster state).
func (d *Daemon) clusterNetworks(ctx context.Context) (api.ControlClient, []*api.Network, error) {
	c, ok, _ := d.clusterControl()
	if !ok {
		return nil, nil, nil
	}
	resp, err := c.ListNetworks(ctx, &api.ListNetworksRequest{})
	if err != nil {
		return nil, nil, api.FromGRPC(err)
	}
	return c, resp.GetNetworks(), nil
}

// clusterNetworkInspect finds a cluster network by ID, name or unique ID
// prefix; found is false when there is none (or no cluster state here).
func (d *Daemon) clusterNetworkInspect(ctx context.Context, idOrName string) (network.Inspect, bool, error) {
	n, found, err := d.clusterNetworkGet(ctx, idOrName)
	if !found || err != nil {
		return network.Inspect{}, found, err
	}
	return clusterNetworkInspect(n), true, nil
}

func (d *Daemon) clusterNetworkGet(ctx context.Context, idOrName string) (*api.Network, bool, error) {
	c, ok, _ := d.clusterControl()
	if !ok {
		return nil, false, nil
	}
	resp, err := c.GetNetwork(ctx, &api.GetNetworkRequest{NetworkId: idOrName})
	if err != nil {
		err = api.FromGRPC(err)
		if errors.Is(err, api.ErrNotFound) {
			return nil, false, nil
		}
		return nil, false, err
	}
	return resp.GetNetwork(), true, nil
}

// clusterNetworkRemove removes a cluster network no service or task uses;
// found is false when there is no such network.
func (d *Daemon) clusterNetworkRemove(ctx context.Context, idOrName string) (bool, error) {
	n, found, err := d.clusterNetworkGet(ctx, idOrName)
	if !found || err != nil {
		return found, err
	}
	c, _, err := d.clusterControl()
	if err != nil {
		return true, err
	}
	if _, err := c.RemoveNetwork(ctx, &api.RemoveNetworkRequest{NetworkId: n.GetId()}); err != nil {
		err = api.FromGRPC(err)
		if errors.Is(err, api.ErrNotFound) {
			return false, nil // removed meanwhile
		}
		return true, err
	}
	return true, nil
}

// clusterNetworkPrune removes every cluster network no service or task
// uses and returns their names (as Docker reports them).
func (d *Daemon) clusterNetworkPrune(ctx context.Context) ([]string, error) {
	c, nets, err := d.clusterNetworks(ctx)
	if err != nil {
		return nil, err
	}
	var deleted []string
	for _, n := range nets {
		_, err := c.RemoveNetwork(ctx, &api.RemoveNetworkRequest{NetworkId: n.GetId()})
		if err == nil {
			deleted = append(deleted, n.GetSpec().GetAnnotations().GetName())
			continue
		}
		// In use, or removed meanwhile: not this prune's to report.
		if err = api.FromGRPC(err); errors.Is(err, api.ErrFailedPrecondition) || errors.Is(err, api.ErrNotFound) {
			continue
		}
		return deleted, fmt.Errorf("prune network %s: %w", n.GetSpec().GetAnnotations().GetName(), err)
	}
	return deleted, nil
}

// clusterNetworkInspect is a cluster network as Docker shows it: scope
// swarm, driver overlay, the allocated IPAM, and the VNI in the
// vxlanid_list option.
func clusterNetworkInspect(n *api.Network) network.Inspect {
	spec := n.GetSpec()
	out := network.Inspect{
		Network: network.Network{
			Name:       spec.GetAnnotations().GetName(),
			ID:         n.GetId(),
			Created:    n.GetMeta().GetCreatedAt().AsTime(),
			Scope:      "swarm",
			Driver:     allocator.DriverOverlay,
			EnableIPv4: true,
			IPAM:       network.IPAM{Driver: "default", Config: []network.IPAMConfig{}},
			Internal:   spec.GetInternal(),
			Attachable: spec.GetAttachable(),
			Ingress:    spec.GetIngress(),
			Options:    map[string]string{},
			Labels:     map[string]string{},
		},
		Containers: map[string]network.EndpointResource{},
	}
	maps.Copy(out.Options, spec.GetDriverConfig().GetOptions())
	maps.Copy(out.Labels, spec.GetAnnotations().GetLabels())
	if v := n.GetVni(); v != 0 {
		out.Options[allocator.OptionVNIList] = strconv.FormatUint(uint64(v), 10)
	}
	for _, c := range n.GetIpam().GetConfigs() {
		var cfg network.IPAMConfig
		cfg.Subnet, _ = netip.ParsePrefix(c.GetSubnet())
		cfg.Gateway, _ = netip.ParseAddr(c.GetGateway())
		out.IPAM.Config = append(out.IPAM.Config, cfg)
	}
	return out
}

// errNoSuchNetwork is Docker's message for an unknown network.
func errNoSuchNetwork(ref string) error {
	return fmt.Errorf("network %s not found", ref)
}

// clusterNetworkServices is `network inspect --verbose` of a cluster
// network: each service on it with its VIP there, its published ports and
// its running tasks' addresses there, from the managers' store (dockerd
// shows the node's own view of the gossip; the store is the whole
// cluster's). Ports are PUBLISHED/PROTOCOL->TARGET as the mesh's.
func (d *Daemon) clusterNetworkServices(ctx context.Context, networkID string) (map[string]network.ServiceInfo, error) {
	c, ok, err := d.clusterControl()
	if err != nil || !ok {
		return nil, err
	}
	svcs, err := listServices(ctx, c, nil)
	if err != nil {
		return nil, err
	}
	tasks, err := listTasks(ctx, c, &api.ListTasksRequest_Filters{DesiredStates: []api.TaskState{api.TaskState_RUNNING}})
	if err != nil {
		return nil, err
	}
	nodes, err := listNodes(ctx, c, nil)
	if err != nil {
		return nil, err
	}
	hostIP := map[string]string{}
	for _, n := range nodes {
		hostIP[n.GetId()] = n.GetStatus().GetAddr()
	}
	out := map[string]network.ServiceInfo{}
	for _, s := range svcs {
		info := network.ServiceInfo{Ports: []string{}, Tasks: []network.Task{}}
		on := false
		for _, v := range s.GetEndpoint().GetVirtualIps() {
			if v.GetNetworkId() == networkID {
				on = true
				if p, err := netip.ParsePrefix(v.GetAddr()); err == nil {
					info.VIP = p.Addr()
				}
			}
		}
		for _, t := range tasks {
			if t.GetServiceId() != s.GetId() || t.GetStatus().GetState() != api.TaskState_RUNNING {
				continue
			}
			for _, a := range t.GetNetworks() {
				if a.GetNetwork().GetId() != networkID || len(a.GetAddresses()) == 0 {
					continue
				}
				on = true
				ip, _ := netip.ParsePrefix(a.GetAddresses()[0])
				info.Tasks = append(info.Tasks, network.Task{Name: t.GetAnnotations().GetName(), EndpointID: t.GetId(),
					EndpointIP: ip.Addr(), Info: map[string]string{"Host IP": hostIP[t.GetNodeId()]}})
			}
		}
		if !on {
			continue
		}
		for _, p := range s.GetEndpoint().GetPorts() {
			info.Ports = append(info.Ports, fmt.Sprintf("%d/%s->%d", p.GetPublishedPort(), strings.ToLower(p.GetProtocol().String()), p.GetTargetPort()))
		}
		out[s.GetSpec().GetAnnotations().GetName()] = info
	}
	return out, nil
}
