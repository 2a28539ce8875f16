package scheduler

import (
	"testing"

	"github.com/shoal-project/shoal/api"
)

func TestNewSnapshot(t *testing.T) {
	nodes := []*api.Node{mkNode("a").Node, mkNode("b").Node}
	resv := withReservation(spec(), 0.5, 100)
	mk := func(id, svc, node string, state, desired api.TaskState) *api.Task {
		return &api.Task{Id: id, ServiceId: svc, NodeId: node, Spec: resv, DesiredState: desired,
			Status: &api.TaskStatus{State: state}}
	}
	run := api.TaskState_RUNNING
	tasks := []*api.Task{
		mk("1", "web", "a", run, run),
		mk("2", "web", "a", api.TaskState_ASSIGNED, run),
		mk("3", "db", "a", run, api.TaskState_SHUTDOWN), // stopping: still there
		mk("4", "web", "a", api.TaskState_FAILED, run),  // gone
		mk("5", "web", "", api.TaskState_PENDING, run),  // not placed
		mk("6", "web", "zz", run, run),                  // unknown node
		mk("7", "web", "b", api.TaskState_COMPLETE, api.TaskState_SHUTDOWN),
	}
	tasks[0].Endpoint = &api.Endpoint{Ports: []*api.PortConfig{{PublishedPort: 80, PublishMode: api.PortConfig_HOST}}}
	snap := NewSnapshot(nodes, tasks)
	a, b := snap.Nodes[0], snap.Nodes[1]
	if a.Tasks != 3 || a.ServiceTasks["web"] != 2 || a.ServiceTasks["db"] != 1 || a.Backlog != 1 {
		t.Fatalf("node a: %+v", a)
	}
	if a.Reserved.NanoCpus != 1.5e9 || a.Reserved.MemoryBytes != 300 || len(a.HostPorts) != 1 {
		t.Fatalf("node a reserved %v ports %v", a.Reserved, a.HostPorts)
	}
	if b.Tasks != 0 {
		t.Fatalf("node b: %+v", b)
	}
	var pending []*api.Task
	for _, task := range tasks {
		if IsPending(task) {
			pending = append(pending, task)
		}
	}
	if len(pending) != 1 || pending[0].Id != "5" {
		t.Fatalf("pending %v", pending)
	}
	res := Schedule(snap, pending)
	if res.Decisions["5"] != "b" {
		t.Fatalf("decisions %v %v", res.Decisions, res.Unplaced)
	}
}
