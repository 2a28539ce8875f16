package convert

import (
	"github.com/moby/moby/api/types/swarm"
	"github.com/shoal-project/shoal/api"
)

// NodeToSwarm is a node as GET /nodes answers it. Spec.Role is the desired
// role (what `node promote/demote` set), as dockerd shows it; ManagerStatus
// is nil unless the node has a manager status (workers).
func NodeToSwarm(n *api.Node) swarm.Node {
	spec := n.GetSpec()
	out := swarm.Node{
		ID:   n.GetId(),
		Meta: MetaToSwarm(n.GetMeta()),
		Spec: swarm.NodeSpec{
			Annotations:  annotationsToSwarm(spec.GetAnnotations()),
			Role:         nodeRoleToSwarm(spec.GetDesiredRole()),
			Availability: availabilityToSwarm(spec.GetAvailability()),
		},
		Status: swarm.NodeStatus{
			State:   nodeStateToSwarm(n.GetStatus().GetState()),
			Message: n.GetStatus().GetMessage(),
			Addr:    n.GetStatus().GetAddr(),
		},
	}
	if d := n.GetDescription(); d != nil {
		out.Description = swarm.NodeDescription{
			Hostname: d.GetHostname(),
			Platform: swarm.Platform{Architecture: d.GetPlatform().GetArchitecture(), OS: d.GetPlatform().GetOs()},
			Resources: swarm.Resources{
				NanoCPUs:    d.GetResources().GetNanoCpus(),
				MemoryBytes: d.GetResources().GetMemoryBytes(),
			},
			Engine: swarm.EngineDescription{
				EngineVersion: d.GetEngine().GetEngineVersion(),
				Labels:        copyMap(d.GetEngine().GetLabels()),
			},
		}
	}
	if m := n.GetManagerStatus(); m != nil {
		out.ManagerStatus = &swarm.ManagerStatus{
			Leader:       m.GetLeader(),
			Reachability: reachabilityToSwarm(m.GetReachability()),
			Addr:         m.GetAddr(),
		}
	}
	return out
}

func nodeRoleToSwarm(r api.NodeRole) swarm.NodeRole {
	if r == api.NodeRole_MANAGER {
		return swarm.NodeRoleManager
	}
	return swarm.NodeRoleWorker
}

func availabilityToSwarm(a api.NodeSpec_Availability) swarm.NodeAvailability {
	switch a {
	case api.NodeSpec_PAUSE:
		return swarm.NodeAvailabilityPause
	case api.NodeSpec_DRAIN:
		return swarm.NodeAvailabilityDrain
	}
	return swarm.NodeAvailabilityActive
}

func nodeStateToSwarm(s api.NodeStatus_State) swarm.NodeState {
	switch s {
	case api.NodeStatus_READY:
		return swarm.NodeStateReady
	case api.NodeStatus_DOWN:
		return swarm.NodeStateDown
	case api.NodeStatus_DISCONNECTED:
		return swarm.NodeStateDisconnected
	}
	return swarm.NodeStateUnknown
}

func reachabilityToSwarm(r api.ManagerStatus_Reachability) swarm.Reachability {
	switch r {
	case api.ManagerStatus_REACHABLE:
		return swarm.ReachabilityReachable
	case api.ManagerStatus_UNREACHABLE:
		return swarm.ReachabilityUnreachable
	}
	return swarm.ReachabilityUnknown
}

// NodeSpecFromSwarm converts the NodeSpec of POST /nodes/{id}/update, which
// clients send whole (as read, then edited). Role and Availability must be
// one of Docker's values; an empty one is refused, as dockerd does.
func NodeSpecFromSwarm(s swarm.NodeSpec) (*api.NodeSpec, error) {
	out := &api.NodeSpec{Annotations: annotationsToAPI(s.Annotations)}
	role, err := NodeRoleFromSwarm(s.Role)
	if err != nil {
		return nil, err
	}
	out.DesiredRole = role
	if out.Availability, err = NodeAvailabilityFromSwarm(s.Availability); err != nil {
		return nil, err
	}
	return out, nil
}

// NodeAvailabilityFromSwarm is the api value of Docker's "active", "pause"
// or "drain" (also for the Availability of swarm init and join requests).
func NodeAvailabilityFromSwarm(a swarm.NodeAvailability) (api.NodeSpec_Availability, error) {
	switch a {
	case swarm.NodeAvailabilityActive:
		return api.NodeSpec_ACTIVE, nil
	case swarm.NodeAvailabilityPause:
		return api.NodeSpec_PAUSE, nil
	case swarm.NodeAvailabilityDrain:
		return api.NodeSpec_DRAIN, nil
	}
	return 0, invalid("invalid availability: %q: must be active, pause or drain", a)
}

// NodeRoleFromSwarm is the api.NodeRole of Docker's "worker" or "manager".
func NodeRoleFromSwarm(r swarm.NodeRole) (api.NodeRole, error) {
	switch r {
	case swarm.NodeRoleWorker:
		return api.NodeRole_WORKER, nil
	case swarm.NodeRoleManager:
		return api.NodeRole_MANAGER, nil
	}
	return 0, invalid("invalid role: %q: must be worker or manager", r)
}
