package leader

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/raftstore"
	"google.golang.org/protobuf/types/known/durationpb"
)

// start runs the loops on a direct-apply store until the test ends.
func start(t *testing.T) *raftstore.MemoryStore {
	t.Helper()
	s := raftstore.NewMemoryStore(nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, s, RealClock{}) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Run did not stop after its context ended")
		}
	})
	return s
}

func addNodes(t testing.TB, s *raftstore.MemoryStore, n int) []string {
	t.Helper()
	var ids []string
	err := s.Update(context.Background(), func(tx raftstore.WriteTx) error {
		for i := range n {
			id := fmt.Sprintf("node%02d", i)
			ids = append(ids, id)
			if err := tx.Create(&api.Node{
				Id:          id,
				Spec:        &api.NodeSpec{Annotations: &api.Annotations{Name: id}},
				Description: &api.NodeDescription{Hostname: id},
				Status:      &api.NodeStatus{State: api.NodeStatus_READY},
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("create nodes: %v", err)
	}
	return ids
}

func newService(name string, replicas uint64, constraints ...string) *api.Service {
	spec := &api.ServiceSpec{
		Annotations: &api.Annotations{Name: name},
		Task: &api.TaskSpec{
			Container: &api.ContainerSpec{Image: "busybox:1"},
			// A short restart delay, so a replacement's hold (desired
			// READY) ends within the test through NextEvaluation.
			Restart: &api.RestartPolicy{Delay: durationpb.New(300 * time.Millisecond)},
		},
		Mode: &api.ServiceSpec_Replicated{Replicated: &api.ReplicatedService{Replicas: replicas}},
	}
	if len(constraints) > 0 {
		spec.Task.Placement = &api.Placement{Constraints: constraints}
	}
	return &api.Service{Spec: spec, SpecVersion: 1}
}

func createService(t testing.TB, s *raftstore.MemoryStore, svc *api.Service) string {
	t.Helper()
	svc.Id = raftstore.NewID()
	if err := s.Update(context.Background(), func(tx raftstore.WriteTx) error { return tx.Create(svc) }); err != nil {
		t.Fatalf("create service: %v", err)
	}
	return svc.GetId()
}

// update changes one stored object, retrying on conflicts with the loops.
func update[T raftstore.Object](t *testing.T, s *raftstore.MemoryStore, get func(raftstore.ReadTx) T, change func(T)) {
	t.Helper()
	for range 100 {
		err := s.Update(context.Background(), func(tx raftstore.WriteTx) error {
			o := get(tx)
			change(o)
			return tx.Update(o)
		})
		if err == nil {
			return
		}
		if !strings.Contains(err.Error(), "conflict") {
			t.Fatalf("update: %v", err)
		}
	}
	t.Fatalf("update: too many conflicts")
}

// eventually polls cond until it holds or the deadline passes; cond says
// what it saw, for the failure message.
func eventually(t *testing.T, timeout time.Duration, cond func() (bool, string)) time.Duration {
	t.Helper()
	begin := time.Now()
	var seen string
	for time.Since(begin) < timeout {
		var ok bool
		if ok, seen = cond(); ok {
			return time.Since(begin)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("not reached within %v; last seen: %s", timeout, seen)
	return 0
}

func live(t *api.Task) bool { return t.GetDesiredState() <= api.TaskState_RUNNING }

func tasksOf(s *raftstore.MemoryStore, svc string) []*api.Task {
	var out []*api.Task
	s.View(func(tx raftstore.ReadTx) { out = tx.TasksOfService(svc) })
	return out
}

// placed checks that svc has want live tasks, all assigned, none on avoid,
// and returns them per node.
func placed(s *raftstore.MemoryStore, svc string, want int, avoid string) (bool, string, map[string]int) {
	perNode := map[string]int{}
	n, assigned := 0, 0
	for _, t := range tasksOf(s, svc) {
		if !live(t) {
			continue
		}
		n++
		if t.GetStatus().GetState() == api.TaskState_ASSIGNED && t.GetNodeId() != "" && t.GetNodeId() != avoid {
			assigned++
			perNode[t.GetNodeId()]++
		}
	}
	return n == want && assigned == want, fmt.Sprintf("%d live, %d assigned: %v", n, assigned, perNode), perNode
}

func TestReplicatedScaleDownAndNodeLoss(t *testing.T) {
	s := start(t)
	nodes := addNodes(t, s, 5)
	svc := createService(t, s, newService("web", 30))

	took := eventually(t, 5*time.Second, func() (bool, string) {
		ok, seen, _ := placed(s, svc, 30, "")
		return ok, seen
	})
	t.Logf("30 replicas on 5 nodes assigned in %v", took)
	_, _, perNode := placed(s, svc, 30, "")
	for _, id := range nodes {
		if perNode[id] != 6 {
			t.Fatalf("want 6 tasks on every node, got %v", perNode)
		}
	}

	// Scale to 10: 20 tasks are asked to go (SHUTDOWN or REMOVE), none is
	// created.
	update(t, s, func(tx raftstore.ReadTx) *api.Service { return tx.GetService(svc) }, func(o *api.Service) {
		o.Spec.Mode = &api.ServiceSpec_Replicated{Replicated: &api.ReplicatedService{Replicas: 10}}
		o.SpecVersion++
	})
	eventually(t, 5*time.Second, func() (bool, string) {
		all := tasksOf(s, svc)
		stopping := 0
		for _, t := range all {
			if d := t.GetDesiredState(); d == api.TaskState_SHUTDOWN || d == api.TaskState_REMOVE {
				stopping++
			}
		}
		ok, seen, _ := placed(s, svc, 10, "")
		return ok && stopping == 20 && len(all) == 30, fmt.Sprintf("%s; %d tasks, %d stopping", seen, len(all), stopping)
	})

	// A node with live tasks goes DOWN: they are replaced on other nodes,
	// held for the restart delay, then released to RUNNING by the
	// NextEvaluation timer (nothing else writes to the store meanwhile).
	var lost string
	for _, tk := range tasksOf(s, svc) {
		if live(tk) {
			lost = tk.GetNodeId()
			break
		}
	}
	update(t, s, func(tx raftstore.ReadTx) *api.Node { return tx.GetNode(lost) }, func(n *api.Node) {
		n.Status.State = api.NodeStatus_DOWN
	})
	took = eventually(t, 5*time.Second, func() (bool, string) {
		ok, seen, _ := placed(s, svc, 10, lost)
		for _, tk := range tasksOf(s, svc) {
			if live(tk) && tk.GetDesiredState() != api.TaskState_RUNNING {
				return false, seen + "; a replacement is still held"
			}
		}
		return ok, seen
	})
	t.Logf("tasks of a lost node replaced and released in %v (restart delay 300ms)", took)
}

func TestUnplaceableTasksKeepTheSchedulerReason(t *testing.T) {
	s := start(t)
	addNodes(t, s, 5)
	svc := createService(t, s, newService("nowhere", 3, "node.labels.zone==mars"))

	var versions map[string]uint64
	eventually(t, 5*time.Second, func() (bool, string) {
		tasks := tasksOf(s, svc)
		versions = map[string]uint64{}
		for _, tk := range tasks {
			st := tk.GetStatus()
			if st.GetState() != api.TaskState_PENDING || tk.GetNodeId() != "" ||
				!strings.Contains(st.GetErr(), "no suitable node") || !strings.Contains(st.GetErr(), "constraints") || st.GetMessage() != PendingMessage {
				return false, fmt.Sprintf("%s %s %q %q", tk.GetId(), st.GetState(), st.GetMessage(), st.GetErr())
			}
			versions[tk.GetId()] = tk.GetMeta().GetVersion()
		}
		return len(tasks) == 3, fmt.Sprintf("%d tasks", len(tasks))
	})

	// A new node changes the reason, which is written.
	addNodesNamed(t, s, "extra")
	eventually(t, 5*time.Second, func() (bool, string) {
		versions = map[string]uint64{}
		for _, tk := range tasksOf(s, svc) {
			if m := tk.GetStatus().GetErr(); !strings.Contains(m, "on 6 nodes") {
				return false, m
			}
			versions[tk.GetId()] = tk.GetMeta().GetVersion()
		}
		return true, ""
	})

	// A change that makes the scheduler look again but leaves the reason as
	// it was (another label) must not rewrite the tasks.
	update(t, s, func(tx raftstore.ReadTx) *api.Node { return tx.GetNode("extra") }, func(n *api.Node) {
		n.Spec.Annotations.Labels = map[string]string{"zone": "earth"}
	})
	time.Sleep(200 * time.Millisecond)
	for _, tk := range tasksOf(s, svc) {
		if tk.GetMeta().GetVersion() != versions[tk.GetId()] {
			t.Errorf("task %s rewritten with the same reason %q", tk.GetId(), tk.GetStatus().GetErr())
		}
	}

	// Labelling a node so it matches places them all there.
	update(t, s, func(tx raftstore.ReadTx) *api.Node { return tx.GetNode("extra") }, func(n *api.Node) {
		n.Spec.Annotations.Labels = map[string]string{"zone": "mars"}
	})
	eventually(t, 5*time.Second, func() (bool, string) {
		ok, seen, perNode := placed(s, svc, 3, "")
		return ok && perNode["extra"] == 3, seen
	})
}

func addNodesNamed(t *testing.T, s *raftstore.MemoryStore, id string) {
	t.Helper()
	err := s.Update(context.Background(), func(tx raftstore.WriteTx) error {
		return tx.Create(&api.Node{
			Id:          id,
			Spec:        &api.NodeSpec{Annotations: &api.Annotations{Name: id}},
			Description: &api.NodeDescription{Hostname: id},
			Status:      &api.NodeStatus{State: api.NodeStatus_READY},
		})
	})
	if err != nil {
		t.Fatalf("create node: %v", err)
	}
}

func TestGlobalServiceOnePerNode(t *testing.T) {
	s := start(t)
	nodes := addNodes(t, s, 4)
	svc := newService("agent", 0)
	svc.Spec.Mode = &api.ServiceSpec_Global{Global: &api.GlobalService{}}
	id := createService(t, s, svc)
	eventually(t, 5*time.Second, func() (bool, string) {
		ok, seen, perNode := placed(s, id, 4, "")
		for _, n := range nodes {
			if perNode[n] != 1 {
				return false, seen
			}
		}
		return ok, seen
	})
}

// TestThousandReplicas measures convergence of 1,000 replicas on 10 nodes
// in-process (no raft): a figure for the cluster benchmark.
func TestThousandReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	s := start(t)
	addNodes(t, s, 10)
	begin := time.Now()
	svc := createService(t, s, newService("big", 1000))
	eventually(t, 30*time.Second, func() (bool, string) {
		ok, seen, _ := placed(s, svc, 1000, "")
		return ok, fmt.Sprint(seen[:min(len(seen), 40)])
	})
	took := time.Since(begin)
	_, _, perNode := placed(s, svc, 1000, "")
	for n, c := range perNode {
		if c != 100 {
			t.Fatalf("node %s has %d tasks, want 100", n, c)
		}
	}
	t.Logf("1000 replicas on 10 nodes created and assigned in %v", took)
}

// TestHistoryBoundedWhenRestarting fails a replica's task again and again:
// the pass that creates the replacement also trims the slot's history, so
// the store never shows more tasks in the slot than the limit (5), not even
// until the next pass.
func TestHistoryBoundedWhenRestarting(t *testing.T) {
	s := start(t)
	addNodes(t, s, 1)
	svc := createService(t, s, newService("crash", 1))
	seen := map[string]bool{}
	for round := range 8 {
		var cur *api.Task
		eventually(t, 10*time.Second, func() (bool, string) {
			cur = nil
			for _, tk := range tasksOf(s, svc) {
				if !seen[tk.GetId()] && tk.GetStatus().GetState() == api.TaskState_ASSIGNED {
					cur = tk
				}
			}
			return cur != nil, fmt.Sprintf("round %d: %d tasks", round, len(tasksOf(s, svc)))
		})
		if n := len(tasksOf(s, svc)); n > 5 {
			t.Fatalf("round %d: the slot holds %d tasks, limit 5", round, n)
		}
		seen[cur.GetId()] = true
		update(t, s, func(tx raftstore.ReadTx) *api.Task { return tx.GetTask(cur.GetId()) }, func(tk *api.Task) {
			tk.Status = &api.TaskStatus{State: api.TaskState_FAILED, Err: "exit 3"}
		})
		// The replacement's creation: the count right after it.
		eventually(t, 10*time.Second, func() (bool, string) {
			for _, tk := range tasksOf(s, svc) {
				if !seen[tk.GetId()] && tk.GetId() != cur.GetId() {
					return true, ""
				}
			}
			return false, "no replacement yet"
		})
		if n := len(tasksOf(s, svc)); n > 5 {
			t.Fatalf("round %d: the slot holds %d tasks right after the restart, limit 5", round, n)
		}
	}
}
