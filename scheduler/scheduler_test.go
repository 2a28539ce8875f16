package scheduler

import (
	"fmt"
	"maps"
	"math/rand"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/api"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// nodeOpt changes a test node.
type nodeOpt func(*NodeInfo)

func mkNode(id string, opts ...nodeOpt) NodeInfo {
	ni := NodeInfo{Node: &api.Node{
		Id:     id,
		Spec:   &api.NodeSpec{Annotations: &api.Annotations{Labels: map[string]string{}}},
		Status: &api.NodeStatus{State: api.NodeStatus_READY, Addr: "198.18.0.1"},
		Description: &api.NodeDescription{
			Hostname:  "host-" + id,
			Platform:  &api.Platform{Os: "linux", Architecture: "x86_64"},
			Resources: &api.Resources{NanoCpus: 4e9, MemoryBytes: 8 << 30},
			Engine:    &api.EngineDescription{Labels: map[string]string{}},
		},
	}}
	for _, o := range opts {
		o(&ni)
	}
	return ni
}

func label(k, v string) nodeOpt {
	return func(n *NodeInfo) { n.Node.Spec.Annotations.Labels[k] = v }
}
func availability(a api.NodeSpec_Availability) nodeOpt {
	return func(n *NodeInfo) { n.Node.Spec.Availability = a }
}
func state(s api.NodeStatus_State) nodeOpt {
	return func(n *NodeInfo) { n.Node.Status.State = s }
}
func capacity(cpus float64, mem int64) nodeOpt {
	return func(n *NodeInfo) {
		n.Node.Description.Resources = &api.Resources{NanoCpus: int64(cpus * 1e9), MemoryBytes: mem}
	}
}
func reserved(cpus float64, mem int64) nodeOpt {
	return func(n *NodeInfo) { n.Reserved = &api.Resources{NanoCpus: int64(cpus * 1e9), MemoryBytes: mem} }
}
func running(svc string, count int) nodeOpt {
	return func(n *NodeInfo) {
		if n.ServiceTasks == nil {
			n.ServiceTasks = map[string]int{}
		}
		n.ServiceTasks[svc] += count
		n.Tasks += count
	}
}
func manager() nodeOpt { return func(n *NodeInfo) { n.Node.Role = api.NodeRole_MANAGER } }

// tasks makes n pending tasks of svc from spec (IDs svc-1..svc-n).
func tasks(svc string, n int, spec *api.TaskSpec) []*api.Task {
	out := make([]*api.Task, n)
	for i := range out {
		out[i] = &api.Task{Id: fmt.Sprintf("%s-%d", svc, i+1), ServiceId: svc, Slot: uint64(i + 1),
			Spec: spec, DesiredState: api.TaskState_RUNNING}
	}
	return out
}

func spec(constraints ...string) *api.TaskSpec {
	return &api.TaskSpec{Placement: &api.Placement{Constraints: constraints}}
}

func withReservation(s *api.TaskSpec, cpus float64, mem int64) *api.TaskSpec {
	s.Resources = &api.ResourceRequirements{Reservations: &api.Resources{NanoCpus: int64(cpus * 1e9), MemoryBytes: mem}}
	return s
}

func withHostPort(ts []*api.Task, port uint32) []*api.Task {
	for _, t := range ts {
		t.Endpoint = &api.Endpoint{Ports: []*api.PortConfig{{TargetPort: 80, PublishedPort: port, PublishMode: api.PortConfig_HOST}}}
	}
	return ts
}

func withMax(s *api.TaskSpec, m uint64) *api.TaskSpec { s.Placement.MaxReplicas = m; return s }

func withSpread(s *api.TaskSpec, descs ...string) *api.TaskSpec {
	for _, d := range descs {
		s.Placement.Preferences = append(s.Placement.Preferences,
			&api.PlacementPreference{Preference: &api.PlacementPreference_Spread{Spread: &api.SpreadOver{SpreadDescriptor: d}}})
	}
	return s
}

// perNode counts decisions per node.
func perNode(r Result) map[string]int {
	out := map[string]int{}
	for _, n := range r.Decisions {
		out[n]++
	}
	return out
}

func TestSchedule(t *testing.T) {
	tests := []struct {
		name     string
		nodes    []NodeInfo
		pending  []*api.Task
		want     map[string]int    // decisions per node
		unplaced map[string]string // task ID -> reason
	}{
		{
			name:    "even spread, ties by node ID",
			nodes:   []NodeInfo{mkNode("c"), mkNode("a"), mkNode("b")},
			pending: tasks("web", 7, spec()),
			want:    map[string]int{"a": 3, "b": 2, "c": 2},
		},
		{
			name:    "fewest tasks of the service first",
			nodes:   []NodeInfo{mkNode("a", running("web", 2)), mkNode("b"), mkNode("c", running("web", 1))},
			pending: tasks("web", 3, spec()),
			want:    map[string]int{"b": 2, "c": 1},
		},
		{
			name:    "tie-break on fewest tasks overall",
			nodes:   []NodeInfo{mkNode("a", running("db", 5)), mkNode("b", running("db", 1)), mkNode("c", running("db", 3))},
			pending: tasks("web", 2, spec()),
			want:    map[string]int{"b": 1, "c": 1},
		},
		{
			name: "constraints on labels, role, hostname",
			nodes: []NodeInfo{mkNode("a", label("zone", "east")), mkNode("b", label("zone", "west")),
				mkNode("c", label("zone", "East"), manager()), mkNode("d")},
			pending: append(append(tasks("east", 4, spec("node.labels.zone==east")),
				tasks("notmgr", 3, spec("node.role!=manager", "node.hostname!=host-a"))...),
				tasks("noz", 1, spec("node.labels.zone!=east", "node.labels.zone!=west"))...),
			want: map[string]int{"a": 2, "c": 2, "b": 2, "d": 2},
		},
		{
			name: "only ready and active nodes",
			nodes: []NodeInfo{mkNode("a", availability(api.NodeSpec_DRAIN)), mkNode("b", availability(api.NodeSpec_PAUSE)),
				mkNode("c", state(api.NodeStatus_DOWN)), mkNode("d", state(api.NodeStatus_DISCONNECTED)), mkNode("e")},
			pending: tasks("web", 3, spec()),
			want:    map[string]int{"e": 3},
		},
		{
			name: "reservations against capacity minus reserved",
			nodes: []NodeInfo{mkNode("a", capacity(2, 1<<30), reserved(1, 0)),
				mkNode("b", capacity(2, 1<<30)), mkNode("c", capacity(8, 256<<20))},
			pending: tasks("web", 4, withReservation(spec(), 1, 512<<20)),
			want:    map[string]int{"a": 1, "b": 2},
			unplaced: map[string]string{
				"web-4": "no suitable node (insufficient resources on 3 nodes)",
			},
		},
		{
			name:    "max replicas per node",
			nodes:   []NodeInfo{mkNode("a"), mkNode("b", running("web", 1)), mkNode("c")},
			pending: tasks("web", 3, withMax(spec(), 1)),
			want:    map[string]int{"a": 1, "c": 1},
			unplaced: map[string]string{
				"web-3": "no suitable node (max replicas per node reached on 3 nodes)",
			},
		},
		{
			name: "spread over a label first, nodes without it form one group",
			nodes: []NodeInfo{mkNode("a1", label("az", "a")), mkNode("b1", label("az", "b")),
				mkNode("b2", label("az", "b")), mkNode("b3", label("az", "b")), mkNode("x")},
			pending: tasks("web", 6, withSpread(spec(), "node.labels.az")),
			want:    map[string]int{"a1": 2, "b1": 1, "b2": 1, "x": 2},
		},
		{
			name: "nested preferences",
			nodes: []NodeInfo{
				mkNode("n1", label("dc", "1"), label("rack", "r1")), mkNode("n2", label("dc", "1"), label("rack", "r1")),
				mkNode("n3", label("dc", "1"), label("rack", "r2")),
				mkNode("n4", label("dc", "2"), label("rack", "r1")), mkNode("n5", label("dc", "2"), label("rack", "r1"))},
			pending: tasks("web", 4, withSpread(spec(), "node.labels.dc", "node.labels.rack")),
			// dc1 gets 2 (one per rack), dc2 gets 2 (one rack, two nodes).
			want: map[string]int{"n1": 1, "n3": 1, "n4": 1, "n5": 1},
		},
		{
			name: "unplaceable: reasons ordered by count",
			nodes: []NodeInfo{mkNode("a", capacity(0.5, 1<<30)), mkNode("b", capacity(0.5, 1<<30)),
				mkNode("c", capacity(0.5, 1<<30)), mkNode("d", label("gpu", "no")), mkNode("e", label("gpu", "no")),
				mkNode("f", availability(api.NodeSpec_DRAIN), label("gpu", "yes"))},
			pending: tasks("ml", 2, withReservation(spec("node.labels.gpu==yes"), 1, 0)),
			unplaced: map[string]string{
				"ml-1": "no suitable node (insufficient resources on 3 nodes; scheduling constraints not satisfied on 2 nodes; 1 node not available for new tasks)",
				"ml-2": "no suitable node (insufficient resources on 3 nodes; scheduling constraints not satisfied on 2 nodes; 1 node not available for new tasks)",
			},
		},
		{
			name:     "no nodes",
			pending:  tasks("web", 1, spec()),
			unplaced: map[string]string{"web-1": "no suitable node (the cluster has no nodes)"},
		},
		{
			name:    "invalid constraint is reported, not guessed",
			nodes:   []NodeInfo{mkNode("a")},
			pending: tasks("web", 1, spec("node.labels.zone=east")),
			unplaced: map[string]string{
				"web-1": `invalid placement: constraint "node.labels.zone=east": expected key==value or key!=value`,
			},
		},
		{
			name: "platforms",
			nodes: []NodeInfo{mkNode("a"), mkNode("b", func(n *NodeInfo) {
				n.Node.Description.Platform = &api.Platform{Os: "linux", Architecture: "aarch64"}
			})},
			pending: tasks("arm", 2, &api.TaskSpec{Placement: &api.Placement{Platforms: []*api.Platform{{Architecture: "arm64"}}}}),
			want:    map[string]int{"b": 2},
		},
		{
			name: "host-mode ports: one task per node and port",
			nodes: []NodeInfo{mkNode("a"), mkNode("b", func(n *NodeInfo) {
				n.HostPorts = []HostPort{{api.PortConfig_TCP, 8080}}
			}), mkNode("c", func(n *NodeInfo) { n.HostPorts = []HostPort{{api.PortConfig_UDP, 8080}} })},
			pending: withHostPort(tasks("web", 3, spec()), 8080),
			want:    map[string]int{"a": 1, "c": 1},
			unplaced: map[string]string{
				"web-3": "no suitable node (host-mode port already in use on 3 nodes)",
			},
		},
		{
			name:  "global tasks name their node and are only checked",
			nodes: []NodeInfo{mkNode("a"), mkNode("b", availability(api.NodeSpec_DRAIN)), mkNode("c", capacity(1, 1<<30))},
			pending: []*api.Task{
				{Id: "g-a", ServiceId: "g", NodeId: "a", Spec: withReservation(spec(), 1, 0)},
				{Id: "g-b", ServiceId: "g", NodeId: "b", Spec: withReservation(spec(), 1, 0)},
				{Id: "g-c", ServiceId: "g", NodeId: "c", Spec: withReservation(spec(), 2, 0)},
				{Id: "g-z", ServiceId: "g", NodeId: "z", Spec: spec()},
			},
			want: map[string]int{"a": 1},
			unplaced: map[string]string{
				"g-b": "no suitable node (1 node not available for new tasks)",
				"g-c": "no suitable node (insufficient resources on 1 node)",
				"g-z": "no suitable node (node z not found)",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap := Snapshot{Nodes: tt.nodes}
			before := fmt.Sprint(tt.nodes)
			got := Schedule(snap, tt.pending)
			if tt.want == nil {
				tt.want = map[string]int{}
			}
			if tt.unplaced == nil {
				tt.unplaced = map[string]string{}
			}
			if pn := perNode(got); !maps.Equal(pn, tt.want) {
				t.Errorf("decisions per node = %v, want %v (decisions %v, unplaced %v)", pn, tt.want, got.Decisions, got.Unplaced)
			}
			if !maps.Equal(got.Unplaced, tt.unplaced) {
				t.Errorf("unplaced =\n%v\nwant\n%v", got.Unplaced, tt.unplaced)
			}
			if len(got.Decisions)+len(got.Unplaced) != len(tt.pending) {
				t.Errorf("%d decisions + %d unplaced for %d tasks", len(got.Decisions), len(got.Unplaced), len(tt.pending))
			}
			if after := fmt.Sprint(tt.nodes); after != before {
				t.Errorf("Schedule modified its snapshot")
			}
			// Same input, same output.
			if again := Schedule(snap, tt.pending); !maps.Equal(again.Decisions, got.Decisions) {
				t.Errorf("not deterministic: %v vs %v", again.Decisions, got.Decisions)
			}
		})
	}
}

func TestParseConstraint(t *testing.T) {
	good := []struct {
		in   string
		want string
	}{
		{"node.id==abc", "node.id==abc"},
		{" node.labels.Zone != East ", "node.labels.Zone!=East"},
		{"engine.labels.storage==ssd", "engine.labels.storage==ssd"},
		{"node.role==Manager", "node.role==Manager"},
		{"node.ip==198.18.0.0/15", "node.ip==198.18.0.0/15"},
		{"NODE.PLATFORM.OS==linux", "NODE.PLATFORM.OS==linux"},
	}
	for _, tt := range good {
		c, err := ParseConstraint(tt.in)
		if err != nil || c.String() != tt.want {
			t.Errorf("ParseConstraint(%q) = %v, %v; want %s", tt.in, c, err, tt.want)
		}
	}
	bad := map[string]string{
		"node.labels.zone=east": "expected key==value or key!=value",
		"==east":                "missing key",
		"node.id==":             "missing value",
		"node.id==a==b":         "more than one operator",
		"node.foo==x":           `unknown key "node.foo"`,
		"node.labels.==x":       "missing label name",
		"node.role==boss":       "node.role is manager or worker",
		"node.ip==nope":         "node.ip wants an IP address or CIDR",
	}
	for in, wantSub := range bad {
		_, err := ParseConstraint(in)
		if err == nil || !strings.Contains(err.Error(), wantSub) || strings.Contains(err.Error(), "\n") {
			t.Errorf("ParseConstraint(%q) error = %v, want one line containing %q", in, err, wantSub)
		}
		if api.ClassOf(err) != api.ErrInvalidArgument {
			t.Errorf("ParseConstraint(%q): class %v", in, api.ClassOf(err))
		}
	}
	if err := ValidatePlacement(withSpread(spec("node.id==a"), "node.az").Placement); err == nil {
		t.Error("ValidatePlacement accepted spread=node.az")
	}
	if err := ValidatePlacement(withSpread(spec("node.id==a"), "engine.labels.az").Placement); err != nil {
		t.Error(err)
	}
}

func TestConstraintMatch(t *testing.T) {
	n := mkNode("n1", label("zone", "East"), manager(), func(ni *NodeInfo) {
		ni.Node.Status.Addr = "198.18.0.7:4567"
		ni.Node.Description.Engine.Labels["disk"] = "ssd"
	}).Node
	cases := map[string]bool{
		"node.id==n1":                true,
		"node.id!=n1":                false,
		"node.hostname==HOST-N1":     true,
		"node.role==manager":         true,
		"node.role!=manager":         false,
		"node.labels.zone==east":     true,  // values ignore case
		"node.labels.Zone==east":     false, // label names do not
		"node.labels.missing!=x":     true,
		"node.labels.missing==x":     false,
		"engine.labels.disk==ssd":    true,
		"node.ip==198.18.0.0/15":     true,
		"node.ip==198.18.0.8":        false,
		"node.ip!=10.0.0.0/8":        true,
		"node.platform.os==linux":    true,
		"node.platform.arch==x86_64": true,
		"node.platform.arch!=x86_64": false,
	}
	for in, want := range cases {
		c, err := ParseConstraint(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Match(n); got != want {
			t.Errorf("%s on node = %v, want %v", in, got, want)
		}
	}
}

// TestScheduleProperties runs random clusters and checks that no decision
// breaks a filter and that unconstrained services spread evenly.
func TestScheduleProperties(t *testing.T) {
	for seed := int64(1); seed <= 200; seed++ {
		rng := rand.New(rand.NewSource(seed))
		var nodes []NodeInfo
		for i := range 1 + rng.Intn(30) {
			var opts []nodeOpt
			if rng.Intn(6) == 0 {
				opts = append(opts, availability(api.NodeSpec_Availability(1+rng.Intn(2))))
			}
			if rng.Intn(8) == 0 {
				opts = append(opts, state(api.NodeStatus_DOWN))
			}
			opts = append(opts, label("zone", []string{"a", "b", "c"}[rng.Intn(3)]),
				capacity(float64(1+rng.Intn(4)), int64(1+rng.Intn(4))<<30))
			if rng.Intn(3) == 0 {
				opts = append(opts, running("old", rng.Intn(5)), reserved(float64(rng.Intn(2)), 0))
			}
			nodes = append(nodes, mkNode(fmt.Sprintf("n%02d", i), opts...))
		}
		var pending []*api.Task
		specs := map[string]*api.TaskSpec{}
		for s := range 1 + rng.Intn(4) {
			svc := fmt.Sprintf("s%d", s)
			sp := spec()
			plain := rng.Intn(2) == 0
			if !plain {
				if rng.Intn(2) == 0 {
					sp.Placement.Constraints = []string{"node.labels.zone!=" + []string{"a", "b", "c"}[rng.Intn(3)]}
				}
				if rng.Intn(2) == 0 {
					withReservation(sp, float64(rng.Intn(3))/2, int64(rng.Intn(3))<<29)
				}
				if rng.Intn(2) == 0 {
					withMax(sp, uint64(1+rng.Intn(3)))
				}
				if rng.Intn(2) == 0 {
					withSpread(sp, "node.labels.zone")
				}
			}
			specs[svc] = sp
			pending = append(pending, tasks(svc, rng.Intn(60), sp)...)
		}
		rng.Shuffle(len(pending), func(i, j int) { pending[i], pending[j] = pending[j], pending[i] })

		res := Schedule(Snapshot{Nodes: nodes}, pending)
		if len(res.Decisions)+len(res.Unplaced) != len(pending) {
			t.Fatalf("seed %d: %d+%d != %d", seed, len(res.Decisions), len(res.Unplaced), len(pending))
		}
		byID := map[string]NodeInfo{}
		for _, n := range nodes {
			byID[n.Node.Id] = n
		}
		cpu, mem := map[string]int64{}, map[string]int64{}
		count := map[string]map[string]int{} // service -> node -> new tasks
		for _, task := range pending {
			nid, ok := res.Decisions[task.Id]
			if !ok {
				continue
			}
			n := byID[nid]
			if n.Node.Status.State != api.NodeStatus_READY || n.Node.Spec.Availability != api.NodeSpec_ACTIVE {
				t.Fatalf("seed %d: task %s on unavailable node %s", seed, task.Id, nid)
			}
			cs, _ := ParseConstraints(task.Spec.Placement.Constraints)
			for _, c := range cs {
				if !c.Match(n.Node) {
					t.Fatalf("seed %d: task %s on %s breaks %s", seed, task.Id, nid, c)
				}
			}
			r := task.Spec.GetResources().GetReservations()
			cpu[nid] += r.GetNanoCpus()
			mem[nid] += r.GetMemoryBytes()
			if count[task.ServiceId] == nil {
				count[task.ServiceId] = map[string]int{}
			}
			count[task.ServiceId][nid]++
		}
		for nid, n := range byID {
			res := n.Node.Description.Resources
			if cpu[nid]+n.Reserved.GetNanoCpus() > res.NanoCpus && cpu[nid] > 0 ||
				mem[nid]+n.Reserved.GetMemoryBytes() > res.MemoryBytes && mem[nid] > 0 {
				t.Fatalf("seed %d: node %s over-reserved", seed, nid)
			}
			for svc, per := range count {
				if m := specs[svc].Placement.MaxReplicas; m > 0 && uint64(per[nid]) > m {
					t.Fatalf("seed %d: %s has %d tasks of %s, max %d", seed, nid, per[nid], svc, m)
				}
			}
		}
		for svc, sp := range specs {
			if len(sp.Placement.Constraints) > 0 || sp.Resources != nil || sp.Placement.MaxReplicas > 0 {
				continue
			}
			if len(sp.Placement.Preferences) > 0 {
				// Spread over zones: per zone (with an eligible node), counts differ by at most one.
				perZone := map[string]int{}
				for nid, n := range byID {
					if n.Node.Status.State == api.NodeStatus_READY && n.Node.Spec.Availability == api.NodeSpec_ACTIVE {
						perZone[n.Node.Spec.Annotations.Labels["zone"]] += count[svc][nid]
					}
				}
				zc := slices.Collect(maps.Values(perZone))
				if len(zc) > 0 && slices.Max(zc)-slices.Min(zc) > 1 {
					t.Fatalf("seed %d: %s spread unevenly over zones: %v", seed, svc, perZone)
				}
				continue
			}
			var counts []int
			for nid, n := range byID {
				if n.Node.Status.State == api.NodeStatus_READY && n.Node.Spec.Availability == api.NodeSpec_ACTIVE {
					counts = append(counts, count[svc][nid])
				}
			}
			if len(counts) > 0 && slices.Max(counts)-slices.Min(counts) > 1 {
				t.Fatalf("seed %d: %s spread unevenly: %v", seed, svc, counts)
			}
		}
	}
}

// BenchmarkSchedule100kOn10k places 100,000 tasks of 100 services (some
// constrained, some reserving resources, some spread over a label) onto
// 10,000 nodes in one call.
func BenchmarkSchedule100kOn10k(b *testing.B) {
	var nodes []NodeInfo
	for i := range 10000 {
		nodes = append(nodes, mkNode(fmt.Sprintf("node-%05d", i),
			label("zone", fmt.Sprintf("z%d", i%5)), label("tier", []string{"web", "db"}[i%2]),
			capacity(64, 256<<30), running("existing", i%3)))
	}
	var pending []*api.Task
	for s := range 100 {
		svc := fmt.Sprintf("svc-%03d", s)
		sp := spec()
		switch s % 4 {
		case 1:
			sp.Placement.Constraints = []string{"node.labels.tier==web"}
		case 2:
			withReservation(sp, 0.1, 64<<20)
		case 3:
			withSpread(sp, "node.labels.zone")
		}
		for _, task := range tasks(svc, 1000, sp) {
			task.Spec = &api.TaskSpec{Placement: sp.Placement, Resources: sp.Resources} // a copy per task, as the orchestrator makes
			pending = append(pending, task)
		}
	}
	snap := Snapshot{Nodes: nodes}
	b.ResetTimer()
	for b.Loop() {
		res := Schedule(snap, pending)
		if len(res.Decisions) != len(pending) {
			b.Fatalf("placed %d of %d: %v", len(res.Decisions), len(pending), res.Unplaced)
		}
	}
}

// FuzzParseConstraint: no input panics, and what parses prints back to
// something that parses to the same constraint.
func FuzzParseConstraint(f *testing.F) {
	for _, s := range []string{"node.id==a", "node.labels.az!=b", "engine.labels.x==y", "node.ip==10.0.0.0/8",
		"node.role==manager", "a=b", "==", "node.labels.==", "node.hostname!=h==", " node.platform.os == linux "} {
		f.Add(s)
	}
	n := mkNode("n").Node
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseConstraint(s)
		if err != nil {
			if strings.Contains(err.Error(), "\n") && !strings.Contains(s, "\n") {
				t.Fatalf("multi-line error for %q: %v", s, err)
			}
			return
		}
		c2, err := ParseConstraint(c.String())
		if err != nil || c2.String() != c.String() {
			t.Fatalf("%q -> %q -> %v, %v", s, c.String(), c2, err)
		}
		if c.Match(n) != c2.Match(n) {
			t.Fatalf("%q and %q match differently", s, c.String())
		}
	})
}

// A node where a task of the service failed lately is picked last: the
// replacement of a task that failed for lack of the image goes to a node
// that may have it, even against spreading.
func TestRecentFailuresRankLast(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	failed := func(svc, node string, state api.TaskState, at time.Time) *api.Task {
		return &api.Task{Id: svc + node + at.String(), ServiceId: svc, NodeId: node,
			Status: &api.TaskStatus{State: state, Timestamp: timestamppb.New(at)}}
	}
	snap := Snapshot{Nodes: []NodeInfo{mkNode("a"), mkNode("b", running("web", 2)), mkNode("c", running("web", 2))}}
	snap.CountFailures([]*api.Task{
		failed("web", "a", api.TaskState_FAILED, now.Add(-time.Minute)),
		failed("web", "b", api.TaskState_FAILED, now.Add(-time.Hour)),     // too old
		failed("db", "c", api.TaskState_REJECTED, now.Add(-time.Minute)),  // another service
		failed("web", "c", api.TaskState_COMPLETE, now.Add(-time.Minute)), // not a failure
	}, now.Add(-FailureWindow))
	if got := snap.Nodes[0].RecentFailures["web"]; got != 1 {
		t.Fatalf("failures of web on a = %d, want 1", got)
	}
	if len(snap.Nodes[1].RecentFailures)+len(snap.Nodes[2].RecentFailures) != 1 {
		t.Fatalf("failures on b, c: %v %v", snap.Nodes[1].RecentFailures, snap.Nodes[2].RecentFailures)
	}
	res := Schedule(snap, tasks("web", 2, spec()))
	if got := perNode(res); got["a"] != 0 || got["b"]+got["c"] != 2 {
		t.Fatalf("placed %v, want nothing on a (it failed web a minute ago)", got)
	}
	// With nowhere else to go, the failing node still takes the task.
	only := Snapshot{Nodes: []NodeInfo{mkNode("a")}}
	only.CountFailures([]*api.Task{failed("web", "a", api.TaskState_FAILED, now)}, now.Add(-FailureWindow))
	if got := perNode(Schedule(only, tasks("web", 1, spec()))); got["a"] != 1 {
		t.Fatalf("placed %v, want the one node used", got)
	}
}

// TestBacklogBreaksTies: among nodes with as many of the service's tasks,
// the one with fewer tasks not yet running (queued in its start window)
// takes the next task; the spread of the service still comes first.
func TestBacklogBreaksTies(t *testing.T) {
	queued := func(n int) nodeOpt { return func(ni *NodeInfo) { ni.Backlog += n } }
	snap := Snapshot{Nodes: []NodeInfo{
		mkNode("a", running("web", 1), running("db", 3)),
		mkNode("b", running("web", 1), queued(4)),
		mkNode("c", running("web", 1)),
	}}
	// b has the fewest tasks in all, but 4 of them wait to start.
	if got := perNode(Schedule(snap, tasks("web", 2, spec()))); got["a"] != 1 || got["b"] != 0 || got["c"] != 1 {
		t.Fatalf("placed %v, want a:1 c:1 and nothing on b (4 tasks queued there)", got)
	}
	if got := perNode(Schedule(snap, tasks("web", 4, spec()))); got["a"] != 1 || got["b"] != 1 || got["c"] != 2 {
		t.Fatalf("placed %v, want the service spread first (one each), then c (fewer tasks than a, none queued)", got)
	}
}
