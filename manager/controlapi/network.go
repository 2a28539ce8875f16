package controlapi

import (
	"context"
	"net/netip"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/raftstore"
	"google.golang.org/protobuf/proto"
)

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

// CreateNetwork stores an overlay network; the allocator gives it its
// subnet and VNI.
func (s *Server) CreateNetwork(ctx context.Context, req *api.CreateNetworkRequest) (*api.CreateNetworkResponse, error) {
	if err := validateNetworkSpec(req.GetSpec()); err != nil {
		return nil, api.ToGRPC(err)
	}
	spec := proto.Clone(req.GetSpec()).(*api.NetworkSpec)
	if spec.DriverConfig == nil {
		spec.DriverConfig = &api.Driver{}
	}
	spec.DriverConfig.Name = "overlay"
	name := spec.GetAnnotations().GetName()
	n := &api.Network{Id: s.newID(), Spec: spec}
	err := s.store.Update(ctx, func(tx raftstore.WriteTx) error {
		if tx.GetByName(raftstore.KindNetwork, name) != nil {
			return conflict("network %s already exists", name)
		}
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

// RemoveNetwork deletes a network no service uses.
func (s *Server) RemoveNetwork(ctx context.Context, req *api.RemoveNetworkRequest) (*api.RemoveNetworkResponse, error) {
	err := s.store.Update(ctx, func(tx raftstore.WriteTx) error {
		n, err := getNetwork(tx, req.GetNetworkId())
		if err != nil {
			return err
		}
		for _, svc := range tx.Services() {
			for _, a := range svc.GetSpec().GetTask().GetNetworks() {
				if a.GetTarget() == n.GetId() {
					return precondition("network %s is in use by service %s", n.GetSpec().GetAnnotations().GetName(), svc.GetSpec().GetAnnotations().GetName())
				}
			}
		}
		return tx.Delete(raftstore.KindNetwork, n.GetId())
	})
	if err != nil {
		return nil, api.ToGRPC(err)
	}
	return &api.RemoveNetworkResponse{}, nil
}
