package scheduler

import "github.com/shoal-project/shoal/api"

// Occupies reports whether t holds a place on its node for scheduling: it is
// assigned and has not reported a terminal state. A task being shut down
// still counts until it has stopped, because until then it still uses its
// reservations and host ports (Swarm frees them at the shutdown request and
// can over-commit a node during rolling updates).
func Occupies(t *api.Task) bool {
	return t.GetNodeId() != "" && !t.GetStatus().GetState().IsTerminal()
}

// IsPending reports whether t waits for the scheduler: allocated (PENDING)
// and still wanted.
func IsPending(t *api.Task) bool {
	return t.GetStatus().GetState() == api.TaskState_PENDING && t.GetDesiredState() <= api.TaskState_RUNNING
}

// NewSnapshot builds the scheduler's view from store objects: per node, the
// tasks that occupy it (Occupies), their count per service, the sum of their
// reservations and their host-mode ports. Tasks on unknown nodes are ignored.
func NewSnapshot(nodes []*api.Node, tasks []*api.Task) Snapshot {
	snap := Snapshot{Nodes: make([]NodeInfo, len(nodes))}
	byID := make(map[string]*NodeInfo, len(nodes))
	for i, n := range nodes {
		snap.Nodes[i] = NodeInfo{Node: n, ServiceTasks: map[string]int{}, Reserved: &api.Resources{}}
		byID[n.GetId()] = &snap.Nodes[i]
	}
	for _, t := range tasks {
		ni := byID[t.GetNodeId()]
		if ni == nil || !Occupies(t) {
			continue
		}
		ni.ServiceTasks[t.GetServiceId()]++
		ni.Tasks++
		r := t.GetSpec().GetResources().GetReservations()
		ni.Reserved.NanoCpus += r.GetNanoCpus()
		ni.Reserved.MemoryBytes += r.GetMemoryBytes()
		ni.HostPorts = append(ni.HostPorts, hostPorts(t)...)
	}
	return snap
}
