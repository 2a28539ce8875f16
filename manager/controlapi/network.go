package controlapi

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/manager/allocator"
	"github.com/shoal-project/shoal/raftstore"
	"google.golang.org/protobuf/proto"
)

// Network options a cluster network accepts (docker network create --opt).
// They are stored for the overlay data path, which applies them.
const (
	// OptionEncrypted asks for an encrypted data path.
	OptionEncrypted = "encrypted"
	// OptionMTU sets the MTU of the network's devices.
	OptionMTU = "com.docker.network.driver.mtu"
)

// networkAllocMu serialises the network creations of this process: a
// subnet and a VNI are chosen from a read of the store and written by a
// later proposal, and two creations interleaving between the two would
// choose the same. Only the leader writes, and a new leader starts from a
// store holding everything earlier leaders committed, so one lock per
// process is enough. It is package-wide, not per Server, so that in-process
// test clusters (several Servers in one process) are serialised too.
var networkAllocMu sync.Mutex

func getNetwork(tx raftstore.ReadTx, ref string) (*api.Network, error) {
	o, err := resolve(tx, raftstore.KindNetwork, "network", ref, specName)
	if err != nil {
		return nil, err
	}
	return o.(*api.Network), nil
}

func validateNetworkSpec(spec *api.NetworkSpec) error {
	if spec == nil {
		return invalid("network spec is required")
	}
	if err := validateName("network", spec.GetAnnotations().GetName()); err != nil {
		return err
	}
	if d := spec.GetDriverConfig().GetName(); d != "" && d != "overlay" {
		return invalid("network %s: driver %q is not supported: cluster networks use overlay", spec.GetAnnotations().GetName(), d)
	}
	for k, v := range spec.GetDriverConfig().GetOptions() {
		switch k {
		case OptionEncrypted:
			// Nodes carry its VXLAN packets inside ESP (AES-GCM)
			// (overlaynet/encrypt). Docker takes the option's presence;
			// a value that reads as "no" is refused rather than ignored.
			if v != "" && v != "true" {
				return invalid("network %s: option %s=%q: give it without a value (or =true)", spec.GetAnnotations().GetName(), k, v)
			}
		case OptionMTU:
			if m, err := strconv.Atoi(v); err != nil || m < 576 || m > 65535 {
				return invalid("network %s: option %s=%q: an MTU between 576 and 65535 is required", spec.GetAnnotations().GetName(), k, v)
			}
		default:
			return invalid("network %s: option %q is not supported (supported: %s, %s)", spec.GetAnnotations().GetName(), k, OptionEncrypted, OptionMTU)
		}
	}
	if spec.GetIngress() {
		return invalid("network %s: creating an ingress network is not supported: the cluster makes its own (%s) with the first service that publishes a port through the routing mesh", spec.GetAnnotations().GetName(), allocator.IngressNetworkName)
	}
	for _, c := range spec.GetIpam().GetConfigs() {
		p, err := netip.ParsePrefix(c.GetSubnet())
		if err != nil {
			return invalid("network %s: subnet %q is not a CIDR", spec.GetAnnotations().GetName(), c.GetSubnet())
		}
		if g := c.GetGateway(); g != "" {
			a, err := netip.ParseAddr(g)
			if err != nil || !p.Contains(a) {
				return invalid("network %s: gateway %q is not an address in %s", spec.GetAnnotations().GetName(), g, p)
			}
		}
	}
	return nil
}

// GetNetwork returns a network by ID, name or unique ID prefix.
func (s *Server) GetNetwork(ctx context.Context, req *api.GetNetworkRequest) (*api.GetNetworkResponse, error) {
	var n *api.Network
	var err error
	s.store.View(func(tx raftstore.ReadTx) { n, err = getNetwork(tx, req.GetNetworkId()) })
	if err != nil {
		return nil, api.ToGRPC(err)
	}
	return &api.GetNetworkResponse{Network: n}, nil
}

// ListNetworks returns the networks matching every filter, sorted by ID.
func (s *Server) ListNetworks(ctx context.Context, req *api.ListNetworksRequest) (*api.ListNetworksResponse, error) {
	f := req.GetFilters()
	flt := filter{names: f.GetNames(), prefixes: f.GetIdPrefixes(), labels: f.GetLabels()}
	resp := &api.ListNetworksResponse{}
	s.store.View(func(tx raftstore.ReadTx) {
		for _, n := range tx.Networks() {
			a := n.GetSpec().GetAnnotations()
			if flt.match(n.GetId(), []string{a.GetName()}, a.GetLabels()) {
				resp.Networks = append(resp.Networks, n)
			}
		}
	})
	return resp, nil
}

// CreateNetwork stores an overlay network with its subnet and VNI, given
// synchronously (allocator.AllocateNetwork over the store in the same write),
// so that the response holds them. An overlapping subnet or an exhausted
// pool refuses the create: nothing is stored.
func (s *Server) CreateNetwork(ctx context.Context, req *api.CreateNetworkRequest) (*api.CreateNetworkResponse, error) {
	if err := validateNetworkSpec(req.GetSpec()); err != nil {
		return nil, api.ToGRPC(err)
	}
	spec := proto.Clone(req.GetSpec()).(*api.NetworkSpec)
	if spec.DriverConfig == nil {
		spec.DriverConfig = &api.Driver{}
	}
	spec.DriverConfig.Name = allocator.DriverOverlay
	name := spec.GetAnnotations().GetName()
	n := &api.Network{Id: s.newID(), Spec: spec}
	networkAllocMu.Lock()
	defer networkAllocMu.Unlock()
	err := s.store.Update(ctx, func(tx raftstore.WriteTx) error {
		if tx.GetByName(raftstore.KindNetwork, name) != nil {
			return conflict("network %s already exists", name)
		}
		snap := allocator.Snapshot{Networks: tx.Networks()}
		if cs := tx.Clusters(); len(cs) > 0 {
			snap.Cluster = cs[0]
		}
		an, err := allocator.AllocateNetwork(snap, n)
		if err != nil {
			return api.Wrap(api.ErrInvalidArgument, err)
		}
		n = an
		return tx.Create(n)
	})
	if err != nil {
		return nil, api.ToGRPC(uniqueNameRace(err, "network", name))
	}
	var out *api.Network
	s.store.View(func(tx raftstore.ReadTx) { out = tx.GetNetwork(n.Id) })
	if out == nil {
		return nil, api.ToGRPC(notFound("network %s not found", name))
	}
	return &api.CreateNetworkResponse{Network: out}, nil
}

// ensureIngress makes the ingress network (the routing mesh's) if the store
// has none, from the default address pool. The caller holds networkAllocMu.
func (s *Server) ensureIngress(tx raftstore.WriteTx) error {
	if allocator.IngressNetwork(tx.Networks()) != nil {
		return nil
	}
	if tx.GetByName(raftstore.KindNetwork, allocator.IngressNetworkName) != nil {
		return precondition("publishing through the routing mesh needs the ingress network, and a network named %s that is not one exists: remove or rename it", allocator.IngressNetworkName)
	}
	n := &api.Network{Id: s.newID(), Spec: &api.NetworkSpec{
		Annotations:  &api.Annotations{Name: allocator.IngressNetworkName},
		DriverConfig: &api.Driver{Name: allocator.DriverOverlay},
		Ingress:      true,
	}}
	snap := allocator.Snapshot{Networks: tx.Networks()}
	if cs := tx.Clusters(); len(cs) > 0 {
		snap.Cluster = cs[0]
	}
	an, err := allocator.AllocateNetwork(snap, n)
	if err != nil {
		return precondition("the ingress network: %w", err)
	}
	return tx.Create(an)
}

// networkUser names what holds network id: a service that attaches to it,
// a container attached on a node, or a task. leaving says that every user
// is a task on its way out (desired to stop, or its service removed): those
// give the network up by themselves, shortly.
func networkUser(tx raftstore.ReadTx, id string) (user string, leaving bool) {
	ingress := allocator.IngressNetwork(tx.Networks())
	services := map[string]bool{}
	for _, svc := range tx.Services() {
		services[svc.GetId()] = true
		if ingress != nil && ingress.GetId() == id && len(allocator.IngressPorts(svc.GetEndpoint().GetPorts())) > 0 {
			return "service " + svc.GetSpec().GetAnnotations().GetName(), false
		}
		for _, a := range svc.GetSpec().GetTask().GetNetworks() {
			if a.GetTarget() == id {
				return "service " + svc.GetSpec().GetAnnotations().GetName(), false
			}
		}
	}
	for _, n := range tx.Nodes() {
		for _, a := range n.GetAttachments() {
			if a.GetContainerId() != "" && a.GetNetwork().GetId() == id {
				return fmt.Sprintf("container %.12s on node %s", a.GetContainerId(), n.GetDescription().GetHostname()), false
			}
		}
	}
	leaving = true
	tx.ForEach(raftstore.KindTask, func(o raftstore.Object) bool {
		t := o.(*api.Task)
		uses := false
		for _, a := range t.GetNetworks() {
			uses = uses || a.GetNetwork().GetId() == id && (len(a.GetAddresses()) > 0 || !t.GetStatus().GetState().IsTerminal())
		}
		for _, a := range t.GetSpec().GetNetworks() {
			uses = uses || a.GetTarget() == id && !t.GetStatus().GetState().IsTerminal()
		}
		if !uses {
			return true
		}
		if user == "" {
			user = fmt.Sprintf("task %s", t.GetAnnotations().GetName())
		}
		if t.GetDesiredState() <= api.TaskState_RUNNING && services[t.GetServiceId()] {
			user, leaving = fmt.Sprintf("task %s", t.GetAnnotations().GetName()), false
			return false
		}
		return true
	})
	return user, leaving && user != ""
}

// leavingWait bounds how long RemoveNetwork waits for leaving tasks: a
// task's stop grace period (10 s by default) and its removal.
var leavingWait = 30 * time.Second

// RemoveNetwork deletes a network no service, container or task uses; its
// subnet and VNI are free again. A network held only by tasks on their way
// out is deleted once they are gone, the call waiting for that (up to
// leavingWait): `docker stack rm` removes a stack's networks right after
// its services, whose tasks are still stopping, and Docker accepts that.
func (s *Server) RemoveNetwork(ctx context.Context, req *api.RemoveNetworkRequest) (*api.RemoveNetworkResponse, error) {
	deadline := time.Now().Add(leavingWait)
	expired := time.NewTimer(leavingWait)
	defer expired.Stop()
	// Task changes wake the wait. The watch opens after the first check
	// finds leaving tasks, and the check runs again once it is open: a task
	// gone in between is not missed.
	var tasks *raftstore.Watcher
	defer func() {
		if tasks != nil {
			tasks.Close()
		}
	}()
	for {
		var waitFor string
		err := s.store.Update(ctx, func(tx raftstore.WriteTx) error {
			n, err := getNetwork(tx, req.GetNetworkId())
			if err != nil {
				return err
			}
			u, leaving := networkUser(tx, n.GetId())
			switch {
			case u == "":
				return tx.Delete(raftstore.KindNetwork, n.GetId())
			case leaving && time.Now().Before(deadline):
				waitFor = u
				return nil
			case leaving:
				return precondition("network %s is in use by %s, still stopping after %s", n.GetSpec().GetAnnotations().GetName(), u, leavingWait)
			}
			return precondition("network %s is in use by %s", n.GetSpec().GetAnnotations().GetName(), u)
		})
		if err != nil {
			return nil, api.ToGRPC(err)
		}
		if waitFor == "" {
			return &api.RemoveNetworkResponse{}, nil
		}
		if tasks == nil {
			tasks = s.store.Watch(raftstore.KindTask)
			continue
		}
		select {
		case <-ctx.Done():
			return nil, api.ToGRPC(ctx.Err())
		case <-expired.C:
		case _, ok := <-tasks.C():
			if !ok { // fell behind: watch again, and check again
				tasks = s.store.Watch(raftstore.KindTask)
			}
		}
	}
}
