package scheduler

import (
	"time"

	"github.com/shoal-project/shoal/api"
)

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
// tasks that occupy it (Occupies), their count per service, how many of them
// are not running yet (Backlog), the sum of their reservations and their
// host-mode ports. Tasks on unknown nodes are ignored.
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
		if t.GetStatus().GetState() < api.TaskState_RUNNING && t.GetDesiredState() <= api.TaskState_RUNNING {
			ni.Backlog++
		}
		r := t.GetSpec().GetResources().GetReservations()
		ni.Reserved.NanoCpus += r.GetNanoCpus()
		ni.Reserved.MemoryBytes += r.GetMemoryBytes()
		ni.HostPorts = append(ni.HostPorts, hostPorts(t)...)
	}
	return snap
}

// FailureWindow is how long a failed task counts against its node, as
// swarmkit's scheduler (which only acts after 5 failures; shoal ranks a node
// after every one, so a node without the service's image is not picked again
// while others can take the task).
const FailureWindow = 5 * time.Minute

// CountFailures records in snap, per node and service, the tasks that ended
// FAILED or REJECTED at or after since. The caller passes the time (now -
// FailureWindow): Schedule has no clock.
func (snap *Snapshot) CountFailures(tasks []*api.Task, since time.Time) {
	byID := make(map[string]*NodeInfo, len(snap.Nodes))
	for i := range snap.Nodes {
		byID[snap.Nodes[i].Node.GetId()] = &snap.Nodes[i]
	}
	for _, t := range tasks {
		st := t.GetStatus()
		if st.GetState() != api.TaskState_FAILED && st.GetState() != api.TaskState_REJECTED {
			continue
		}
		ni := byID[t.GetNodeId()]
		if ni == nil || st.GetTimestamp().AsTime().Before(since) {
			continue
		}
		if ni.RecentFailures == nil {
			ni.RecentFailures = map[string]int{}
		}
		ni.RecentFailures[t.GetServiceId()]++
	}
}
