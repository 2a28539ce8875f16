package controlapi

import (
	"context"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/raftstore"
	"google.golang.org/protobuf/proto"
)

// nodeNames are the names a node is looked up by: its spec name and hostname.
func nodeNames(o raftstore.Object) []string {
	n := o.(*api.Node)
	var out []string
	if name := n.GetSpec().GetAnnotations().GetName(); name != "" {
		out = append(out, name)
	}
	if h := n.GetDescription().GetHostname(); h != "" {
		out = append(out, h)
	}
	return out
}

func getNode(tx raftstore.ReadTx, ref string) (*api.Node, error) {
	o, err := resolve(tx, raftstore.KindNode, "node", ref, nodeNames)
	if err != nil {
		return nil, err
	}
	return o.(*api.Node), nil
}

// nodeLabel is how errors name a node: its hostname when it has one.
func nodeLabel(n *api.Node) string {
	if h := n.GetDescription().GetHostname(); h != "" {
		return h
	}
	return n.GetId()
}

// isManager reports whether n is, or is about to become, a manager.
func isManager(n *api.Node) bool {
	return n.GetRole() == api.NodeRole_MANAGER || n.GetSpec().GetDesiredRole() == api.NodeRole_MANAGER
}

// reachable reports whether manager n counts towards quorum (see the package doc).
func reachable(n *api.Node) bool {
	switch n.GetManagerStatus().GetReachability() {
	case api.ManagerStatus_REACHABLE:
		return true
	case api.ManagerStatus_UNKNOWN:
		return n.GetStatus().GetState() == api.NodeStatus_READY
	}
	return false
}

// checkManagerLoss refuses to demote or remove manager n when that would
// leave the cluster without a manager, or when the managers left reachable
// would not be a majority of the raft group without n: raft would lose
// quorum and the cluster could not be changed any more (Swarm's rule,
// swarmkit's CanRemoveMember). verb is "demote" or "remove".
func checkManagerLoss(tx raftstore.ReadTx, n *api.Node, verb string) error {
	var keepers, voters, reachableRest int
	for _, m := range tx.Nodes() {
		if m.GetId() == n.GetId() {
			continue
		}
		if m.GetSpec().GetDesiredRole() == api.NodeRole_MANAGER {
			keepers++
		}
		// Voters are the raft members now: node.role, not the desired role,
		// which the manager loop has not acted on yet.
		if m.GetRole() == api.NodeRole_MANAGER {
			voters++
			if reachable(m) {
				reachableRest++
			}
		}
	}
	if keepers == 0 {
		return precondition("cannot %s node %s: it is the last manager of the cluster", verb, nodeLabel(n))
	}
	if n.GetRole() != api.NodeRole_MANAGER {
		return nil // not a raft member yet: losing it changes no quorum
	}
	if quorum := voters/2 + 1; reachableRest < quorum {
		return precondition("cannot %s node %s: only %d of the other %d managers are reachable, and the cluster needs %d to keep quorum",
			verb, nodeLabel(n), reachableRest, voters, quorum)
	}
	return nil
}

// GetNode returns a node by ID, hostname or unique ID prefix.
func (s *Server) GetNode(ctx context.Context, req *api.GetNodeRequest) (*api.GetNodeResponse, error) {
	var n *api.Node
	var err error
	s.store.View(func(tx raftstore.ReadTx) { n, err = getNode(tx, req.GetNodeId()) })
	if err != nil {
		return nil, api.ToGRPC(err)
	}
	return &api.GetNodeResponse{Node: n}, nil
}

// ListNodes returns a page of the nodes matching every filter, sorted by ID
// (see listPage). Names match the spec name or the hostname; roles match the
// current role.
func (s *Server) ListNodes(ctx context.Context, req *api.ListNodesRequest) (*api.ListNodesResponse, error) {
	f := req.GetFilters()
	flt := filter{names: f.GetNames(), prefixes: f.GetIdPrefixes(), labels: f.GetLabels()}
	keep := func(n *api.Node) bool {
		if len(f.GetRoles()) > 0 && !in(n.GetRole(), f.GetRoles()) {
			return false
		}
		return flt.match(n.GetId(), nodeNames(n), n.GetSpec().GetAnnotations().GetLabels())
	}
	resp := &api.ListNodesResponse{}
	s.store.View(func(tx raftstore.ReadTx) {
		resp.Nodes, resp.NextPageToken = listPage(shared[*api.Node](tx, raftstore.KindNode), keep, req.GetPageToken(), req.GetPageSize())
	})
	return resp, nil
}

// UpdateNode replaces a node's spec: availability, labels, desired role.
// Demoting is refused when it would cost the cluster its quorum or its last
// manager.
func (s *Server) UpdateNode(ctx context.Context, req *api.UpdateNodeRequest) (*api.UpdateNodeResponse, error) {
	return wire(s.updateNode(ctx, req))
}

func (s *Server) updateNode(ctx context.Context, req *api.UpdateNodeRequest) (*api.UpdateNodeResponse, error) {
	spec := req.GetSpec()
	if spec == nil {
		return nil, invalid("node spec is required")
	}
	if err := validateEnum("node availability", spec.GetAvailability(), api.NodeSpec_Availability_name); err != nil {
		return nil, err
	}
	if err := validateEnum("node role", spec.GetDesiredRole(), api.NodeRole_name); err != nil {
		return nil, err
	}
	var id string
	err := s.store.Update(ctx, func(tx raftstore.WriteTx) error {
		n, err := getNode(tx, req.GetNodeId())
		if err != nil {
			return err
		}
		id = n.GetId()
		if v := n.GetMeta().GetVersion(); req.GetNodeVersion() != v {
			return conflict("node %s: update out of sequence (version %d, current %d): read it again and retry",
				nodeLabel(n), req.GetNodeVersion(), v)
		}
		if n.GetSpec().GetDesiredRole() == api.NodeRole_MANAGER && spec.GetDesiredRole() == api.NodeRole_WORKER {
			if err := checkManagerLoss(tx, n, "demote"); err != nil {
				return err
			}
		}
		if proto.Equal(spec, n.GetSpec()) {
			return nil
		}
		n.Spec = proto.Clone(spec).(*api.NodeSpec)
		return tx.Update(n)
	})
	if err != nil {
		return nil, err
	}
	var out *api.Node
	s.store.View(func(tx raftstore.ReadTx) { out = tx.GetNode(id) })
	if out == nil {
		return nil, notFound("node %s not found", req.GetNodeId())
	}
	return &api.UpdateNodeResponse{Node: out}, nil
}

// RemoveNode deletes a node from the cluster. A node that is up, or a
// manager, is removed only with force, and a manager never when that would
// cost quorum or the last manager.
func (s *Server) RemoveNode(ctx context.Context, req *api.RemoveNodeRequest) (*api.RemoveNodeResponse, error) {
	return wire(s.removeNode(ctx, req))
}

func (s *Server) removeNode(ctx context.Context, req *api.RemoveNodeRequest) (*api.RemoveNodeResponse, error) {
	err := s.store.Update(ctx, func(tx raftstore.WriteTx) error {
		n, err := getNode(tx, req.GetNodeId())
		if err != nil {
			return err
		}
		if isManager(n) {
			if !req.GetForce() {
				return precondition("node %s is a manager: demote it first or use --force", nodeLabel(n))
			}
			if err := checkManagerLoss(tx, n, "remove"); err != nil {
				return err
			}
		}
		if !req.GetForce() && n.GetStatus().GetState() == api.NodeStatus_READY {
			return precondition("node %s is not down and can't be removed: stop it first or use --force", nodeLabel(n))
		}
		return tx.Delete(raftstore.KindNode, n.GetId())
	})
	if err != nil {
		return nil, err
	}
	return &api.RemoveNodeResponse{}, nil
}
