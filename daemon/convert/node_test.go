package convert

import (
	"errors"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/swarm"
	"github.com/shoal-project/shoal/api"
)

func TestNodeStateNames(t *testing.T) {
	states := map[api.NodeStatus_State]swarm.NodeState{
		api.NodeStatus_UNKNOWN:      "unknown",
		api.NodeStatus_DOWN:         "down",
		api.NodeStatus_READY:        "ready",
		api.NodeStatus_DISCONNECTED: "disconnected",
	}
	if len(states) != len(api.NodeStatus_State_name) {
		t.Fatalf("table covers %d node states, api has %d", len(states), len(api.NodeStatus_State_name))
	}
	for s, w := range states {
		got := NodeToSwarm(&api.Node{Status: &api.NodeStatus{State: s}}).Status.State
		if got != w {
			t.Errorf("node state %s -> %q, want %q", s, got, w)
		}
	}
	reach := map[api.ManagerStatus_Reachability]swarm.Reachability{
		api.ManagerStatus_UNKNOWN:     "unknown",
		api.ManagerStatus_UNREACHABLE: "unreachable",
		api.ManagerStatus_REACHABLE:   "reachable",
	}
	if len(reach) != len(api.ManagerStatus_Reachability_name) {
		t.Fatalf("table covers %d reachabilities, api has %d", len(reach), len(api.ManagerStatus_Reachability_name))
	}
	for r, w := range reach {
		got := NodeToSwarm(&api.Node{ManagerStatus: &api.ManagerStatus{Reachability: r}}).ManagerStatus.Reachability
		if got != w {
			t.Errorf("reachability %s -> %q, want %q", r, got, w)
		}
	}
	avail := map[api.NodeSpec_Availability]swarm.NodeAvailability{
		api.NodeSpec_ACTIVE: "active",
		api.NodeSpec_PAUSE:  "pause",
		api.NodeSpec_DRAIN:  "drain",
	}
	if len(avail) != len(api.NodeSpec_Availability_name) {
		t.Fatalf("table covers %d availabilities, api has %d", len(avail), len(api.NodeSpec_Availability_name))
	}
	for a, w := range avail {
		got := NodeToSwarm(&api.Node{Spec: &api.NodeSpec{Availability: a}}).Spec.Availability
		if got != w {
			t.Errorf("availability %s -> %q, want %q", a, got, w)
		}
	}
}

func TestNodeToSwarm(t *testing.T) {
	manager := &api.Node{
		Id:   "n1",
		Meta: &api.Meta{Version: 9},
		Spec: &api.NodeSpec{Annotations: &api.Annotations{Labels: map[string]string{"az": "a"}}, DesiredRole: api.NodeRole_MANAGER, Availability: api.NodeSpec_DRAIN},
		Description: &api.NodeDescription{
			Hostname:  "host1",
			Platform:  &api.Platform{Architecture: "x86_64", Os: "linux"},
			Resources: &api.Resources{NanoCpus: 2e9, MemoryBytes: 4 << 30},
			Engine:    &api.EngineDescription{EngineVersion: "shoal-0.1", Labels: map[string]string{"ssd": "yes"}},
		},
		Status:        &api.NodeStatus{State: api.NodeStatus_READY, Message: "ok", Addr: "198.18.0.1"},
		ManagerStatus: &api.ManagerStatus{RaftId: "n1", Addr: "198.18.0.1:2377", Leader: true, Reachability: api.ManagerStatus_REACHABLE},
		Role:          api.NodeRole_MANAGER,
	}
	got := NodeToSwarm(manager)
	checks := []struct {
		what      string
		got, want any
	}{
		{"id", got.ID, "n1"},
		{"version", got.Version.Index, uint64(9)},
		{"role", got.Spec.Role, swarm.NodeRoleManager},
		{"availability", got.Spec.Availability, swarm.NodeAvailabilityDrain},
		{"label", got.Spec.Labels["az"], "a"},
		{"hostname", got.Description.Hostname, "host1"},
		{"arch", got.Description.Platform.Architecture, "x86_64"},
		{"os", got.Description.Platform.OS, "linux"},
		{"cpus", got.Description.Resources.NanoCPUs, int64(2e9)},
		{"memory", got.Description.Resources.MemoryBytes, int64(4 << 30)},
		{"engine", got.Description.Engine.EngineVersion, "shoal-0.1"},
		{"engine label", got.Description.Engine.Labels["ssd"], "yes"},
		{"state", got.Status.State, swarm.NodeStateReady},
		{"message", got.Status.Message, "ok"},
		{"addr", got.Status.Addr, "198.18.0.1"},
		{"leader", got.ManagerStatus.Leader, true},
		{"reachability", got.ManagerStatus.Reachability, swarm.ReachabilityReachable},
		{"manager addr", got.ManagerStatus.Addr, "198.18.0.1:2377"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
	worker := NodeToSwarm(&api.Node{Id: "n2", Status: &api.NodeStatus{State: api.NodeStatus_DOWN}})
	if worker.ManagerStatus != nil || worker.Spec.Role != swarm.NodeRoleWorker || worker.Spec.Availability != swarm.NodeAvailabilityActive || worker.Spec.Labels == nil {
		t.Errorf("worker: %+v", worker)
	}
}

func TestNodeSpecFromSwarm(t *testing.T) {
	ok := []struct {
		in   swarm.NodeSpec
		role api.NodeRole
		av   api.NodeSpec_Availability
	}{
		{swarm.NodeSpec{Role: "worker", Availability: "active"}, api.NodeRole_WORKER, api.NodeSpec_ACTIVE},
		{swarm.NodeSpec{Role: "manager", Availability: "pause"}, api.NodeRole_MANAGER, api.NodeSpec_PAUSE},
		{swarm.NodeSpec{Annotations: swarm.Annotations{Name: "n", Labels: map[string]string{"k": "v"}}, Role: "worker", Availability: "drain"}, api.NodeRole_WORKER, api.NodeSpec_DRAIN},
	}
	for _, tc := range ok {
		got, err := NodeSpecFromSwarm(tc.in)
		if err != nil {
			t.Errorf("%+v: %v", tc.in, err)
			continue
		}
		if got.GetDesiredRole() != tc.role || got.GetAvailability() != tc.av {
			t.Errorf("%+v -> role %s availability %s", tc.in, got.GetDesiredRole(), got.GetAvailability())
		}
		// What node update sends back is what node inspect showed.
		back := NodeToSwarm(&api.Node{Spec: got}).Spec
		jsonEqual(t, "node spec round trip", back, swarm.NodeSpec{Annotations: swarm.Annotations{Name: tc.in.Name, Labels: nonNil(tc.in.Labels)}, Role: tc.in.Role, Availability: tc.in.Availability})
	}
	bad := []struct {
		in  swarm.NodeSpec
		msg string
	}{
		{swarm.NodeSpec{Availability: "active"}, `invalid role: ""`},
		{swarm.NodeSpec{Role: "boss", Availability: "active"}, `invalid role: "boss"`},
		{swarm.NodeSpec{Role: "worker"}, `invalid availability: ""`},
		{swarm.NodeSpec{Role: "worker", Availability: "Active"}, `invalid availability: "Active"`},
	}
	for _, tc := range bad {
		_, err := NodeSpecFromSwarm(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.msg) || !errors.Is(err, api.ErrInvalidArgument) {
			t.Errorf("%+v: error %v, want %q (invalid argument)", tc.in, err, tc.msg)
		}
	}
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}
