package orchestrator

import (
	"errors"
	"testing"
	"time"

	"github.com/shoal-project/shoal/api"
)

func TestReconcileReplicated(t *testing.T) {
	n1, n2, n3 := node("n1"), node("n2"), node("n3")
	three := []*api.Node{n1, n2, n3}
	old := replicated(3)                     // the template the tasks were made from
	upd := replicated(3, image("busybox:2")) // the service after `service update --image`
	anyMax2 := restartPolicy(api.RestartPolicy_ANY, 5*time.Second, 2, 0)
	oldMax2 := replicated(1, image("busybox:0"), anyMax2)

	cases := []struct {
		name  string
		svc   *api.Service
		nodes []*api.Node
		tasks []*api.Task
		want  string
		next  time.Duration // NextEvaluation - t0, 0 for none
	}{
		// Scaling.
		{name: "scale 0 to 3", svc: replicated(3), nodes: three,
			want: "+1:RUN +2:RUN +3:RUN"},
		{name: "scale 3 to 5", svc: replicated(5), nodes: three,
			tasks: tasksOf(old, tk{id: "a", slot: 1, node: "n1", state: RUN}, tk{id: "b", slot: 2, node: "n2", state: RUN},
				tk{id: "c", slot: 3, node: "n3", state: RUN}),
			want: "+4:RUN +5:RUN"},
		{name: "scale 5 to 2: unassigned first, then the most loaded node, highest copy first", svc: replicated(2), nodes: three,
			tasks: tasksOf(old, tk{id: "a", slot: 1, node: "n1", state: RUN}, tk{id: "b", slot: 2, node: "n1", state: RUN},
				tk{id: "c", slot: 3, node: "n1", state: RUN}, tk{id: "d", slot: 4, node: "n2", state: RUN},
				tk{id: "e", slot: 5, state: PEND}),
			want: "b>REM c>REM -e"},
		{name: "scale down prefers a node's task that is not running", svc: replicated(2), nodes: three,
			tasks: tasksOf(old, tk{id: "a", slot: 1, node: "n1", state: PREP}, tk{id: "b", slot: 2, node: "n1", state: RUN},
				tk{id: "c", slot: 3, node: "n2", state: RUN}),
			want: "a>REM"},
		{name: "scale down on balanced nodes removes the highest slot", svc: replicated(2), nodes: three,
			tasks: tasksOf(old, tk{id: "a", slot: 1, node: "n1", state: RUN}, tk{id: "b", slot: 2, node: "n2", state: RUN},
				tk{id: "c", slot: 3, node: "n3", state: RUN}),
			want: "c>REM"},
		{name: "scale down removes a slot being vacated first", svc: replicated(2), nodes: three,
			tasks: tasksOf(old, tk{id: "a", slot: 1, node: "n1", state: RUN}, tk{id: "b", slot: 2, node: "n1", state: RUN, desired: SHUT},
				tk{id: "c", slot: 3, node: "n2", state: RUN}),
			want: "b>REM"},
		{name: "scale down deletes a removed slot's finished history", svc: replicated(1), nodes: three,
			tasks: tasksOf(old, tk{id: "a", slot: 1, node: "n1", state: RUN}, tk{id: "b", slot: 2, node: "n2", state: RUN},
				tk{id: "b0", slot: 2, node: "n2", state: FAIL, desired: SHUT, age: time.Hour}),
			want: "b>REM -b0"},
		{name: "scale to 0", svc: replicated(0), nodes: three,
			tasks: tasksOf(old, tk{id: "a", slot: 1, node: "n1", state: RUN}, tk{id: "b", slot: 2, state: PEND}),
			want:  "a>REM -b"},
		{name: "scale up reuses the lowest free slot number", svc: replicated(3), nodes: three,
			tasks: tasksOf(old, tk{id: "b", slot: 2, node: "n2", state: RUN}, tk{id: "x", slot: 1, node: "n1", state: SHUT, desired: REM},
				tk{id: "d", slot: 4, node: "n1", state: RUN}),
			want: "+1:RUN"},
		{name: "scale up fills gaps, then new numbers", svc: replicated(4), nodes: three,
			tasks: tasksOf(old, tk{id: "b", slot: 2, node: "n2", state: RUN}, tk{id: "x", slot: 1, node: "n1", state: SHUT, desired: REM}),
			want:  "+1:RUN +3:RUN +4:RUN"},
		{name: "steady state does nothing", svc: replicated(2), nodes: three,
			tasks: tasksOf(old, tk{id: "a", slot: 1, node: "n1", state: RUN}, tk{id: "b", slot: 2, node: "n2", state: RUN},
				tk{id: "a0", slot: 1, node: "n1", state: FAIL, desired: SHUT, age: time.Hour}),
			want: ""},
		{name: "scaling alone does not replace tasks", svc: func() *api.Service { s := replicated(3); s.SpecVersion = 9; return s }(), nodes: three,
			tasks: tasksOf(old, tk{id: "a", slot: 1, node: "n1", state: RUN}, tk{id: "b", slot: 2, node: "n2", state: RUN}),
			want:  "+3:RUN"},

		// Nodes.
		{name: "node down: replaced in the same slot at once (no restart delay)", svc: replicated(2),
			nodes: []*api.Node{node("n1", down), n2},
			tasks: tasksOf(old, tk{id: "a", slot: 1, node: "n1", state: RUN}, tk{id: "b", slot: 2, node: "n2", state: RUN}),
			want:  "+1:RUN a>SHUT"},
		{name: "node removed from the store: replaced", svc: replicated(1), nodes: three,
			tasks: tasksOf(old, tk{id: "a", slot: 1, node: "gone", state: RUN}),
			want:  "+1:RUN a>SHUT"},
		{name: "node disconnected (not down): kept", svc: replicated(1),
			nodes: []*api.Node{node("n1", func(n *api.Node) { n.Status.State = api.NodeStatus_DISCONNECTED })},
			tasks: tasksOf(old, tk{id: "a", slot: 1, node: "n1", state: RUN}),
			want:  ""},
		{name: "held replacement waits for its delay", svc: replicated(1), nodes: []*api.Node{node("n1", down), n2},
			tasks: tasksOf(old, tk{id: "a", slot: 1, node: "n1", state: RUN, desired: SHUT, age: time.Hour},
				tk{id: "h", slot: 1, node: "n2", state: PREP, desired: READY, age: 2 * time.Second}),
			want: "", next: 3 * time.Second},
		{name: "held replacement starts after its delay", svc: replicated(1), nodes: []*api.Node{node("n1", down), n2},
			tasks: tasksOf(old, tk{id: "a", slot: 1, node: "n1", state: RUN, desired: SHUT, age: time.Hour},
				tk{id: "h", slot: 1, node: "n2", state: READY, desired: READY, age: 6 * time.Second}),
			want: "h>RUN"},
		{name: "held replacement waits while its predecessor still runs", svc: replicated(1), nodes: three,
			tasks: tasksOf(old, tk{id: "a", slot: 1, node: "n1", state: RUN, desired: SHUT, age: time.Hour},
				tk{id: "h", slot: 1, node: "n2", state: READY, desired: READY, age: 6 * time.Second}),
			want: ""},
		{name: "drain: shut down first, replaced once stopped", svc: replicated(2), nodes: []*api.Node{node("n1", drained), n2},
			tasks: tasksOf(old, tk{id: "a", slot: 1, node: "n1", state: RUN}, tk{id: "b", slot: 2, node: "n2", state: RUN}),
			want:  "a>SHUT"},
		{name: "drain: stopped task's slot refilled without delay", svc: replicated(2), nodes: []*api.Node{node("n1", drained), n2},
			tasks: tasksOf(old, tk{id: "a", slot: 1, node: "n1", state: SHUT, desired: SHUT}, tk{id: "b", slot: 2, node: "n2", state: RUN}),
			want:  "+1:RUN"},
		{name: "drain: a failed task is restarted without delay", svc: replicated(1), nodes: []*api.Node{node("n1", drained), n2},
			tasks: tasksOf(old, tk{id: "a", slot: 1, node: "n1", state: FAIL}),
			want:  "+1:RUN a>SHUT"},
		{name: "pause keeps tasks", svc: replicated(1), nodes: []*api.Node{node("n1", paused)},
			tasks: tasksOf(old, tk{id: "a", slot: 1, node: "n1", state: RUN}),
			want:  ""},
		{name: "node that no longer matches the constraints is left stop-first", svc: replicated(2, constraint("node.labels.zone==a")),
			nodes: []*api.Node{node("n1", nodeLabel("zone", "b")), node("n2", nodeLabel("zone", "a"))},
			tasks: tasksOf(replicated(2, constraint("node.labels.zone==a")),
				tk{id: "a", slot: 1, node: "n1", state: RUN}, tk{id: "b", slot: 2, node: "n2", state: RUN}),
			want: "a>SHUT"},

		// Restart policy.
		{name: "restart any: a completed task is restarted after the delay", svc: replicated(1), nodes: three,
			tasks: tasksOf(old, tk{id: "a", slot: 1, node: "n1", state: DONE}),
			want:  "+1:READY a>SHUT", next: 5 * time.Second},
		{name: "restart on-failure: a completed task stays", svc: replicated(1, restartPolicy(api.RestartPolicy_ON_FAILURE, time.Second, 0, 0)),
			nodes: three,
			tasks: tasksOf(replicated(1, restartPolicy(api.RestartPolicy_ON_FAILURE, time.Second, 0, 0)), tk{id: "a", slot: 1, node: "n1", state: DONE}),
			want:  ""},
		{name: "restart on-failure: a failed task is restarted", svc: replicated(1, restartPolicy(api.RestartPolicy_ON_FAILURE, time.Second, 0, 0)),
			nodes: three,
			tasks: tasksOf(replicated(1, restartPolicy(api.RestartPolicy_ON_FAILURE, time.Second, 0, 0)), tk{id: "a", slot: 1, node: "n1", state: FAIL}),
			want:  "+1:READY a>SHUT", next: time.Second},
		{name: "restart none: a failed task stays", svc: replicated(1, restartPolicy(api.RestartPolicy_NONE, 0, 0, 0)), nodes: three,
			tasks: tasksOf(replicated(1, restartPolicy(api.RestartPolicy_NONE, 0, 0, 0)), tk{id: "a", slot: 1, node: "n1", state: FAIL}),
			want:  ""},
		{name: "restart with zero delay starts at once", svc: replicated(1, restartPolicy(api.RestartPolicy_ANY, 0, 0, 0)), nodes: three,
			tasks: tasksOf(replicated(1, restartPolicy(api.RestartPolicy_ANY, 0, 0, 0)), tk{id: "a", slot: 1, node: "n1", state: FAIL}),
			want:  "+1:RUN a>SHUT"},
		{name: "max attempts reached: no restart", svc: replicated(1, anyMax2), nodes: three,
			tasks: tasksOf(replicated(1, anyMax2),
				tk{id: "a0", slot: 1, node: "n1", state: FAIL, desired: SHUT, age: 3 * time.Minute, ended: 170 * time.Second},
				tk{id: "a1", slot: 1, node: "n1", state: FAIL, desired: SHUT, age: 2 * time.Minute, ended: 110 * time.Second},
				tk{id: "a2", slot: 1, node: "n1", state: FAIL, age: time.Minute, ended: 30 * time.Second}),
			want: ""},
		{name: "max attempts not reached: restart", svc: replicated(1, anyMax2), nodes: three,
			tasks: tasksOf(replicated(1, anyMax2),
				tk{id: "a1", slot: 1, node: "n1", state: FAIL, desired: SHUT, age: 2 * time.Minute, ended: 110 * time.Second},
				tk{id: "a2", slot: 1, node: "n1", state: FAIL, age: time.Minute, ended: 30 * time.Second}),
			want: "+1:READY a2>SHUT", next: 5 * time.Second},
		{name: "max attempts: attempts before the window do not count",
			svc:   replicated(1, restartPolicy(api.RestartPolicy_ANY, 5*time.Second, 2, 90*time.Second)),
			nodes: three,
			tasks: tasksOf(replicated(1, restartPolicy(api.RestartPolicy_ANY, 5*time.Second, 2, 90*time.Second)),
				tk{id: "a0", slot: 1, node: "n1", state: FAIL, desired: SHUT, age: 10 * time.Minute, ended: 9 * time.Minute},
				tk{id: "a1", slot: 1, node: "n1", state: FAIL, desired: SHUT, age: 5 * time.Minute, ended: 4 * time.Minute},
				tk{id: "a2", slot: 1, node: "n1", state: FAIL, age: time.Minute, ended: 30 * time.Second}),
			want: "+1:READY a2>SHUT", next: 5 * time.Second},
		{name: "max attempts: attempts inside the window count",
			svc:   replicated(1, restartPolicy(api.RestartPolicy_ANY, 5*time.Second, 2, 10*time.Minute)),
			nodes: three,
			tasks: tasksOf(replicated(1, restartPolicy(api.RestartPolicy_ANY, 5*time.Second, 2, 10*time.Minute)),
				tk{id: "a0", slot: 1, node: "n1", state: FAIL, desired: SHUT, age: 5 * time.Minute, ended: 4 * time.Minute},
				tk{id: "a1", slot: 1, node: "n1", state: FAIL, desired: SHUT, age: 3 * time.Minute, ended: 2 * time.Minute},
				tk{id: "a2", slot: 1, node: "n1", state: FAIL, age: time.Minute, ended: 30 * time.Second}),
			want: ""},
		{name: "max attempts: a spec update starts the count afresh", svc: replicated(1, anyMax2), nodes: three,
			tasks: append(tasksOf(oldMax2,
				tk{id: "a0", slot: 1, node: "n1", state: FAIL, desired: SHUT, age: 3 * time.Minute},
				tk{id: "a1", slot: 1, node: "n1", state: FAIL, desired: SHUT, age: 2 * time.Minute}),
				tasksOf(replicated(1, anyMax2), tk{id: "a2", slot: 1, node: "n1", state: FAIL, age: time.Minute})...),
			want: "+1:READY a2>SHUT", next: 5 * time.Second},
		{name: "an ended task with an outdated template is replaced at once", svc: upd, nodes: three,
			tasks: tasksOf(replicated(1, restartPolicy(api.RestartPolicy_NONE, 0, 0, 0)), tk{id: "a", slot: 1, node: "n1", state: FAIL}),
			want:  "+1:RUN +2:RUN +3:RUN a>SHUT"},

		// Rolling update.
		{name: "update: stop-first, one slot at a time", svc: upd, nodes: three,
			tasks: tasksOf(old, tk{id: "a", slot: 1, node: "n1", state: RUN}, tk{id: "b", slot: 2, node: "n2", state: RUN},
				tk{id: "c", slot: 3, node: "n3", state: RUN}),
			want: "a>SHUT"},
		{name: "update: parallelism 0 replaces all at once", svc: replicated(3, image("busybox:2"), parallelism(0)), nodes: three,
			tasks: tasksOf(old, tk{id: "a", slot: 1, node: "n1", state: RUN}, tk{id: "b", slot: 2, node: "n2", state: RUN},
				tk{id: "c", slot: 3, node: "n3", state: RUN}),
			want: "a>SHUT b>SHUT c>SHUT"},
		{name: "update: parallelism 2", svc: replicated(3, image("busybox:2"), parallelism(2)), nodes: three,
			tasks: tasksOf(old, tk{id: "a", slot: 1, node: "n1", state: RUN}, tk{id: "b", slot: 2, node: "n2", state: RUN},
				tk{id: "c", slot: 3, node: "n3", state: RUN}),
			want: "a>SHUT b>SHUT"},
		{name: "update: tasks not running go first, unassigned ones are replaced at once", svc: replicated(2, image("busybox:2")), nodes: three,
			tasks: tasksOf(old, tk{id: "a", slot: 1, node: "n1", state: RUN}, tk{id: "b", slot: 2, state: PEND}),
			want:  "+2:RUN a>SHUT b>SHUT"},
		{name: "update: unassigned tasks do not use up the parallelism", svc: replicated(3, image("busybox:2")), nodes: three,
			tasks: tasksOf(old, tk{id: "a", slot: 1, node: "n1", state: RUN}, tk{id: "b", slot: 2, node: "n2", state: PREP},
				tk{id: "c", slot: 3, state: PEND}),
			want: "+3:RUN b>SHUT c>SHUT"},
		{name: "update: the stopped slot is refilled with the new template", svc: upd, nodes: three,
			tasks: tasksOf(old, tk{id: "a", slot: 1, node: "n1", state: SHUT, desired: SHUT}, tk{id: "b", slot: 2, node: "n2", state: RUN},
				tk{id: "c", slot: 3, node: "n3", state: RUN}),
			want: "+1:RUN"},
		{name: "update: next slot waits until the replacement runs", svc: upd, nodes: three,
			tasks: append(tasksOf(old, tk{id: "a", slot: 1, node: "n1", state: SHUT, desired: SHUT, age: time.Minute},
				tk{id: "b", slot: 2, node: "n2", state: RUN}, tk{id: "c", slot: 3, node: "n3", state: RUN}),
				tasksOf(upd, tk{id: "a2", slot: 1, node: "n1", state: PREP})...),
			want: ""},
		{name: "update: goes on once the replacement runs", svc: upd, nodes: three,
			tasks: append(tasksOf(old, tk{id: "a", slot: 1, node: "n1", state: SHUT, desired: SHUT, age: time.Minute},
				tk{id: "b", slot: 2, node: "n2", state: RUN}, tk{id: "c", slot: 3, node: "n3", state: RUN}),
				tasksOf(upd, tk{id: "a2", slot: 1, node: "n1", state: RUN})...),
			want: "b>SHUT"},
		{name: "update: force_update replaces", svc: func() *api.Service { s := replicated(1); s.Spec.Task.ForceUpdate = 1; return s }(),
			nodes: three, tasks: tasksOf(old, tk{id: "a", slot: 1, node: "n1", state: RUN}),
			want: "a>SHUT"},
		{name: "update: published port change replaces", svc: func() *api.Service {
			s := replicated(1)
			s.Spec.Endpoint = &api.EndpointSpec{Ports: []*api.PortConfig{{TargetPort: 80, PublishedPort: 8080}}}
			return s
		}(),
			nodes: three,
			tasks: func() []*api.Task {
				ts := tasksOf(old, tk{id: "a", slot: 1, node: "n1", state: RUN})
				ts[0].Endpoint = &api.Endpoint{}
				return ts
			}(),
			want: "a>SHUT"},

		// Invariants.
		{name: "two tasks wanted in one slot: the older is shut down", svc: replicated(1), nodes: three,
			tasks: tasksOf(old, tk{id: "a", slot: 1, node: "n1", state: RUN, age: time.Hour}, tk{id: "a2", slot: 1, node: "n2", state: RUN}),
			want:  "a>SHUT"},
		{name: "an older ended task still desired running is marked, never revived", svc: replicated(1), nodes: three,
			tasks: tasksOf(old, tk{id: "a", slot: 1, node: "n1", state: FAIL, age: time.Hour}, tk{id: "a2", slot: 1, node: "n2", state: RUN}),
			want:  "a>SHUT"},
		{name: "a task without a slot is removed", svc: replicated(1), nodes: three,
			tasks: tasksOf(old, tk{id: "a", slot: 1, node: "n1", state: RUN}, tk{id: "z", slot: 0, node: "n2", state: RUN}),
			want:  "z>REM"},
		{name: "other services' tasks are ignored", svc: replicated(1), nodes: three,
			tasks: func() []*api.Task {
				ts := tasksOf(old, tk{id: "a", slot: 1, node: "n1", state: RUN}, tk{id: "o", slot: 1, node: "n2", state: FAIL})
				ts[1].ServiceId = "other"
				return ts
			}(),
			want: ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := mustReplicated(t, c.svc, c.nodes, c.tasks, t0, ids())
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
		})
	}
}

// checkCreated checks what every created task must carry.
func checkCreated(t *testing.T, svc *api.Service, r Result) {
	t.Helper()
	for _, c := range r.Create {
		switch {
		case c.Id == "" || c.ServiceId != svc.Id || c.SpecVersion != svc.SpecVersion:
			t.Errorf("created task %v: wrong identity", c)
		case Dirty(svc, c):
			t.Errorf("created task %s is not made from the current template", c.Id)
		case c.Status.GetState() != api.TaskState_NEW || !created(c).Equal(t0):
			t.Errorf("created task %s: status %v created %v", c.Id, c.Status, created(c))
		case c.Annotations.GetName() == "":
			t.Errorf("created task %s has no name", c.Id)
		}
	}
}

func TestReconcileReplicatedBadInput(t *testing.T) {
	for name, svc := range map[string]*api.Service{
		"nil":         nil,
		"no id":       {Spec: replicated(1).Spec},
		"no spec":     {Id: "x"},
		"global mode": global(),
	} {
		if _, err := ReconcileReplicated(svc, nil, nil, t0, ids()); !errors.Is(err, api.ErrInvalidArgument) {
			t.Errorf("%s: err %v, want invalid argument", name, err)
		}
	}
	if _, err := ReconcileReplicated(replicated(1), nil, nil, t0, nil); !errors.Is(err, api.ErrInvalidArgument) {
		t.Errorf("nil ID source: err %v", err)
	}
	// nil entries in the inputs are skipped, not dereferenced.
	if _, err := ReconcileReplicated(replicated(1), []*api.Node{nil}, []*api.Task{nil}, t0, ids()); err != nil {
		t.Errorf("nil entries: %v", err)
	}
}

func TestReconcileReplicatedDeterministic(t *testing.T) {
	svc := replicated(2, image("busybox:2"))
	tasks := tasksOf(replicated(5), tk{id: "a", slot: 1, node: "n1", state: RUN}, tk{id: "b", slot: 2, node: "n1", state: FAIL},
		tk{id: "c", slot: 3, node: "n2", state: RUN}, tk{id: "d", slot: 4, state: PEND}, tk{id: "e", slot: 5, node: "n3", state: RUN})
	nodes := []*api.Node{node("n1"), node("n2", down), node("n3")}
	want := mustReplicated(t, svc, nodes, tasks, t0, ids())
	for range 20 {
		// Reverse the input order: the result must not depend on it.
		rt := append([]*api.Task(nil), tasks...)
		for i, j := 0, len(rt)-1; i < j; i, j = i+1, j-1 {
			rt[i], rt[j] = rt[j], rt[i]
		}
		got := mustReplicated(t, svc, nodes, rt, t0, ids())
		if summary(got) != summary(want) || len(got.Events) != len(want.Events) {
			t.Fatalf("result depends on input order:\n%s\n%s", summary(got), summary(want))
		}
		for i := range got.Events {
			if got.Events[i] != want.Events[i] {
				t.Fatalf("events depend on input order: %q vs %q", got.Events, want.Events)
			}
		}
	}
	// Inputs are not modified.
	if tasks[1].DesiredState != RUN {
		t.Fatalf("input task modified")
	}
}
