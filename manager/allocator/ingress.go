package allocator

import (
	"slices"
	"strings"

	"github.com/shoal-project/shoal/api"
	"google.golang.org/protobuf/proto"
)

// The routing mesh's share of the allocation. A port published in mode
// ingress is reached through the ingress network: every node has an entry
// on it (its ingress sandbox, an address held in Node.Attachments, as
// Swarm's ingress-sbox), and every task of a service publishing such a port
// has an address on it besides its spec's networks (as Swarm, which does not
// list ingress in the task spec either). The network itself is made by the
// control API with the first service that needs it.

// IngressNetworkName is the name the ingress network is made with (Swarm's).
const IngressNetworkName = "ingress"

// IngressNetwork returns the ingress network among nets, or nil.
func IngressNetwork(nets []*api.Network) *api.Network {
	for _, n := range nets {
		if n.GetSpec().GetIngress() {
			return n
		}
	}
	return nil
}

// IngressPorts returns the ports of ps published through the routing mesh.
func IngressPorts(ps []*api.PortConfig) []*api.PortConfig {
	var out []*api.PortConfig
	for _, p := range ps {
		if p.GetPublishMode() == api.PortConfig_INGRESS {
			out = append(out, p)
		}
	}
	return out
}

// usesIngress reports whether t publishes a port through the routing mesh,
// and so needs an address on the ingress network.
func usesIngress(t *api.Task) bool {
	return len(IngressPorts(t.GetEndpoint().GetSpec().GetPorts())) > 0
}

// onIngress reports whether t holds an address on the ingress network.
func onIngress(t *api.Task) bool {
	return slices.ContainsFunc(t.GetNetworks(), func(a *api.NetworkAttachment) bool {
		return a.GetNetwork().GetSpec().GetIngress() && len(a.GetAddresses()) > 0
	})
}

// allocateNodes gives each node an address on the ingress network (when
// there is one) and one for each container attachment it asked for (an
// attachable network, `docker run --network`), and takes away attachments
// to networks that are gone. It returns the nodes that changed, sorted by ID.
// An attachment that cannot be given an address (a full subnet) stays
// pending and is tried again at every pass.
func allocateNodes(nodes []*api.Node, ingress *api.Network, nets map[string]*subnetState) []*api.Node {
	sorted := slices.Clone(nodes)
	slices.SortFunc(sorted, func(a, b *api.Node) int { return strings.Compare(a.GetId(), b.GetId()) })
	var out []*api.Node
	for _, n := range sorted {
		var keep []*api.NetworkAttachment
		changed, haveEntry := false, false
		for _, a := range n.GetAttachments() {
			st := nets[a.GetNetwork().GetId()]
			entry := a.GetContainerId() == ""
			if st == nil || (entry && (ingress == nil || a.GetNetwork().GetId() != ingress.GetId() || haveEntry)) {
				changed = true // the network is gone (its address with it), or a stray entry
				continue
			}
			if entry {
				haveEntry = true
			}
			if len(a.GetAddresses()) == 0 {
				addr, err := st.take()
				if err != nil {
					keep = append(keep, a)
					continue
				}
				a = proto.Clone(a).(*api.NetworkAttachment)
				a.Network = proto.Clone(st.net).(*api.Network)
				a.Addresses = []string{st.cidr(addr)}
				changed = true
			}
			keep = append(keep, a)
		}
		if ingress != nil && !haveEntry {
			st := nets[ingress.GetId()]
			if a, err := st.take(); err == nil {
				keep = append(keep, &api.NetworkAttachment{Network: proto.Clone(ingress).(*api.Network), Addresses: []string{st.cidr(a)}})
				changed = true
			}
		}
		if changed {
			nn := proto.Clone(n).(*api.Node)
			nn.Attachments = keep
			out = append(out, nn)
		}
	}
	return out
}
