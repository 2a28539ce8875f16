package orchestrator

import (
	"fmt"
	"testing"

	"github.com/shoal-project/shoal/api"
)

// bigService is a service with n replicas, half of them running on 100
// nodes and half not assigned yet, as after a large scale-up.
func bigService(n int) ([]*api.Node, []*api.Task) {
	svc := replicated(uint64(n))
	var nodes []*api.Node
	for i := range 100 {
		nodes = append(nodes, node(fmt.Sprintf("n%02d", i)))
	}
	tasks := make([]*api.Task, 0, n)
	for i := range n {
		k := tk{id: fmt.Sprintf("t%05d", i), slot: uint64(i + 1), state: PEND}
		if i%2 == 0 {
			k.node, k.state = fmt.Sprintf("n%02d", i%100), RUN
		}
		tasks = append(tasks, k.of(svc))
	}
	return nodes, tasks
}

// TestScaleDown20000: scaling 20,000 replicas to 1 removes 19,999 slots:
// the unassigned ones deleted, the running ones asked to go (REMOVE). The
// decision is linear in the tasks (sets, not list searches);
// BenchmarkScaleDown shows the cost per size without timing this test.
func TestScaleDown20000(t *testing.T) {
	nodes, tasks := bigService(20000)
	r := mustReplicated(t, replicated(1), nodes, tasks, t0, ids())
	if len(r.Create) != 0 || len(r.Delete)+len(r.Update) != 19999 {
		t.Fatalf("scale 20000 to 1: %d created, %d deleted, %d updated", len(r.Create), len(r.Delete), len(r.Update))
	}
	if len(r.Delete) != 10000 {
		t.Fatalf("deleted %d unassigned tasks, want all 10000", len(r.Delete))
	}
	for _, u := range r.Update {
		if u.Task.GetDesiredState() != api.TaskState_REMOVE {
			t.Fatalf("task %s: desired %s", u.Task.GetId(), u.Task.GetDesiredState())
		}
	}
}

// BenchmarkScaleDown: scale n replicas to 1. The time per op should grow
// about linearly with n (it grew with n squared when the removed slots and
// deleted IDs were searched in lists).
func BenchmarkScaleDown(b *testing.B) {
	for _, n := range []int{5000, 10000, 20000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			nodes, tasks := bigService(n)
			svc := replicated(1)
			for b.Loop() {
				if _, err := ReconcileReplicated(svc, nodes, tasks, t0, ids()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
