package orchestrator

import (
	"errors"
	"testing"
	"time"

	"github.com/shoal-project/shoal/api"
)

func TestReconcileGlobal(t *testing.T) {
	g := global()
	upd := global(image("busybox:2"))
	cases := []struct {
		name  string
		svc   *api.Service
		nodes []*api.Node
		tasks []*api.Task
		want  string
		next  time.Duration
	}{
		{name: "one task per node, drained node skipped", svc: g,
			nodes: []*api.Node{node("n1"), node("n2", drained), node("n3")},
			want:  "+0/n1:RUN +0/n3:RUN"},
		{name: "constraint excludes a node", svc: global(constraint("node.labels.gpu==yes")),
			nodes: []*api.Node{node("n1", nodeLabel("gpu", "yes")), node("n2"), node("n3", nodeLabel("gpu", "YES"))},
			want:  "+0/n1:RUN +0/n3:RUN"},
		{name: "paused, down and not-ready nodes get no new task", svc: g,
			nodes: []*api.Node{node("n1", paused), node("n2", down),
				node("n3", func(n *api.Node) { n.Status.State = api.NodeStatus_UNKNOWN })},
			want: ""},
		{name: "paused and down nodes keep their tasks", svc: g,
			nodes: []*api.Node{node("n1", paused), node("n2", down)},
			tasks: tasksOf(g, tk{id: "a", node: "n1", state: RUN}, tk{id: "b", node: "n2", state: RUN}),
			want:  ""},
		{name: "drain shuts the node's task down and makes none", svc: g,
			nodes: []*api.Node{node("n1", drained), node("n2")},
			tasks: tasksOf(g, tk{id: "a", node: "n1", state: RUN}, tk{id: "b", node: "n2", state: RUN}),
			want:  "a>SHUT"},
		{name: "node that stops matching the constraints loses its task", svc: global(constraint("node.labels.gpu==yes")),
			nodes: []*api.Node{node("n1")},
			tasks: tasksOf(global(constraint("node.labels.gpu==yes")), tk{id: "a", node: "n1", state: RUN}),
			want:  "a>SHUT"},
		{name: "node removed from the store: its task is shut down", svc: g, nodes: []*api.Node{node("n1")},
			tasks: tasksOf(g, tk{id: "a", node: "n1", state: RUN}, tk{id: "z", node: "gone", state: RUN}),
			want:  "z>SHUT"},
		{name: "failed task restarts on the same node after the delay", svc: g, nodes: []*api.Node{node("n1")},
			tasks: tasksOf(g, tk{id: "a", node: "n1", state: FAIL}),
			want:  "+0/n1:READY a>SHUT", next: 5 * time.Second},
		{name: "failed task on a paused node is not restarted", svc: g, nodes: []*api.Node{node("n1", paused)},
			tasks: tasksOf(g, tk{id: "a", node: "n1", state: FAIL}),
			want:  ""},
		{name: "held task released after its delay", svc: g, nodes: []*api.Node{node("n1")},
			tasks: tasksOf(g, tk{id: "a", node: "n1", state: FAIL, desired: SHUT, age: time.Minute},
				tk{id: "h", node: "n1", state: READY, desired: READY, age: 10 * time.Second}),
			want: "h>RUN"},
		{name: "update: stop-first, one node at a time", svc: upd, nodes: []*api.Node{node("n1"), node("n2")},
			tasks: tasksOf(g, tk{id: "a", node: "n1", state: RUN}, tk{id: "b", node: "n2", state: RUN}),
			want:  "a>SHUT"},
		{name: "update: stopped node's task replaced, next waits", svc: upd, nodes: []*api.Node{node("n1"), node("n2")},
			tasks: tasksOf(g, tk{id: "a", node: "n1", state: SHUT, desired: SHUT}, tk{id: "b", node: "n2", state: RUN}),
			want:  "+0/n1:RUN"},
		{name: "update: waits while a node's old task stops", svc: upd, nodes: []*api.Node{node("n1"), node("n2")},
			tasks: tasksOf(g, tk{id: "a", node: "n1", state: RUN, desired: SHUT}, tk{id: "b", node: "n2", state: RUN}),
			want:  ""},
		{name: "update skips paused nodes", svc: upd, nodes: []*api.Node{node("n1", paused)},
			tasks: tasksOf(g, tk{id: "a", node: "n1", state: RUN}),
			want:  ""},
		{name: "two tasks on one node: the older is shut down", svc: g, nodes: []*api.Node{node("n1")},
			tasks: tasksOf(g, tk{id: "a", node: "n1", state: RUN, age: time.Hour}, tk{id: "a2", node: "n1", state: RUN}),
			want:  "a>SHUT"},
		{name: "a global task without a node is dropped", svc: g, nodes: []*api.Node{node("n1")},
			tasks: tasksOf(g, tk{id: "a", node: "n1", state: RUN}, tk{id: "z", state: PEND}),
			want:  "-z"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := ReconcileGlobal(c.svc, c.nodes, c.tasks, t0, ids())
			if err != nil {
				t.Fatal(err)
			}
			if got := summary(r); got != c.want {
				t.Errorf("got  %q\nwant %q\nevents: %q", got, c.want, r.Events)
			}
			var next time.Duration
			if !r.NextEvaluation.IsZero() {
				next = r.NextEvaluation.Sub(t0)
			}
			if next != c.next {
				t.Errorf("next evaluation in %v, want %v", next, c.next)
			}
			checkCreated(t, c.svc, r)
			for _, x := range r.Create {
				if x.NodeId == "" || x.Slot != 0 {
					t.Errorf("global task %s: node %q slot %d", x.Id, x.NodeId, x.Slot)
				}
			}
		})
	}
}

func TestReconcileGlobalBadInput(t *testing.T) {
	if _, err := ReconcileGlobal(replicated(1), nil, nil, t0, ids()); !errors.Is(err, api.ErrInvalidArgument) {
		t.Errorf("replicated service: err %v", err)
	}
	if _, err := ReconcileGlobal(global(constraint("node.bogus==1")), nil, nil, t0, ids()); !errors.Is(err, api.ErrInvalidArgument) {
		t.Errorf("bad constraint: err %v", err)
	}
}
