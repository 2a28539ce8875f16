package orchestrator

import (
	"testing"
	"time"

	"github.com/shoal-project/shoal/api"
)

func TestHistoryLimit(t *testing.T) {
	for _, c := range []struct {
		set  int64
		want int
		nil  bool
	}{{nil: true, want: 5}, {set: 0, want: 5}, {set: 2, want: 2}, {set: -1, want: -1}} {
		cl := &api.Cluster{Spec: &api.ClusterSpec{TaskHistoryRetentionLimit: c.set}}
		if c.nil {
			cl = nil
		}
		if got := HistoryLimit(cl); got != c.want {
			t.Errorf("limit %d (nil %v): got %d want %d", c.set, c.nil, got, c.want)
		}
	}
}

func TestReapHistory(t *testing.T) {
	svc := replicated(2)
	max3 := replicated(1, restartPolicy(api.RestartPolicy_ANY, time.Second, 3, 0))
	max3.Id = "m"
	g := global()
	g.Id = "g"
	// slot history: current running task plus n failed ones, oldest first.
	slotHistory := func(s *api.Service, slot uint64, n int) []*api.Task {
		var ks []tk
		for i := range n {
			ks = append(ks, tk{id: s.Id + string(rune('a'+i)), slot: slot, node: "n1", state: FAIL, desired: SHUT, age: time.Duration(n-i+1) * time.Minute})
		}
		ks = append(ks, tk{id: s.Id + "-cur", slot: slot, node: "n1", state: RUN})
		return tasksOf(s, ks...)
	}
	cases := []struct {
		name     string
		services []*api.Service
		tasks    []*api.Task
		limit    int
		want     string
	}{
		{name: "at the limit nothing goes", services: []*api.Service{svc}, limit: 5,
			tasks: slotHistory(svc, 1, 4), want: ""},
		{name: "beyond the limit the oldest go", services: []*api.Service{svc}, limit: 5,
			tasks: slotHistory(svc, 1, 6), want: "-svca -svcb"},
		{name: "limit counts per slot", services: []*api.Service{svc}, limit: 2,
			tasks: append(slotHistory(svc, 1, 2), slotHistory(replicated(2), 2, 1)...), want: "-svca"},
		{name: "negative limit keeps everything", services: []*api.Service{svc}, limit: -1,
			tasks: slotHistory(svc, 1, 9), want: ""},
		{name: "limit 0 keeps only the current task", services: []*api.Service{svc}, limit: 0,
			tasks: slotHistory(svc, 1, 2), want: "-svca -svcb"},
		{name: "a finished current task is kept", services: []*api.Service{svc}, limit: 1,
			tasks: tasksOf(svc, tk{id: "old", slot: 1, node: "n1", state: FAIL, desired: SHUT, age: time.Hour},
				tk{id: "last", slot: 1, node: "n1", state: DONE}),
			want: "-old"},
		{name: "running tasks are never trimmed", services: []*api.Service{svc}, limit: 1,
			tasks: tasksOf(svc, tk{id: "stopping", slot: 1, node: "n1", state: RUN, desired: SHUT, age: time.Hour},
				tk{id: "cur", slot: 1, node: "n2", state: RUN}),
			want: ""},
		{name: "tasks the restart policy counts are kept", services: []*api.Service{max3}, limit: 2,
			tasks: slotHistory(max3, 1, 4), want: "-ma"},
		{name: "desired REMOVE: deleted once terminal", services: []*api.Service{svc}, limit: 5,
			tasks: tasksOf(svc, tk{id: "r1", slot: 3, node: "n1", state: SHUT, desired: REM},
				tk{id: "r2", slot: 4, node: "n1", state: RUN, desired: REM}),
			want: "-r1"},
		{name: "never assigned and no longer wanted: deleted", services: []*api.Service{svc}, limit: 5,
			tasks: tasksOf(svc, tk{id: "p", slot: 1, state: PEND, desired: SHUT}, tk{id: "q", slot: 1, state: PEND}),
			want:  "-p"},
		{name: "service gone: over tasks deleted, running ones removed", services: nil, limit: 5,
			tasks: tasksOf(svc, tk{id: "x", slot: 1, node: "n1", state: RUN}, tk{id: "y", slot: 2, node: "n1", state: FAIL}),
			want:  "x>REM -y"},
		{name: "global history is per node", services: []*api.Service{g}, limit: 2,
			tasks: tasksOf(g, tk{id: "a1", node: "n1", state: FAIL, desired: SHUT, age: 3 * time.Minute},
				tk{id: "a2", node: "n1", state: FAIL, desired: SHUT, age: 2 * time.Minute}, tk{id: "a3", node: "n1", state: RUN},
				tk{id: "b1", node: "n2", state: FAIL, desired: SHUT, age: 2 * time.Minute}, tk{id: "b2", node: "n2", state: RUN}),
			want: "-a1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := ReapHistory(c.services, c.tasks, c.limit)
			if got := summary(r); got != c.want {
				t.Errorf("got %q want %q", got, c.want)
			}
		})
	}
}

func TestOrphanTasks(t *testing.T) {
	svc := replicated(3)
	tasks := tasksOf(svc, tk{id: "a", slot: 1, node: "long", state: RUN, desired: SHUT},
		tk{id: "b", slot: 2, node: "short", state: RUN}, tk{id: "c", slot: 3, node: "up", state: RUN},
		tk{id: "d", slot: 4, node: "long", state: FAIL, desired: SHUT}, tk{id: "e", slot: 5, node: "gone", state: PREP},
		tk{id: "f", slot: 6, state: PEND})
	nodes := []*api.Node{node("long", downSince(25*time.Hour)), node("short", downSince(23*time.Hour)), node("up")}
	r := OrphanTasks(nodes, tasks, t0, DefaultOrphanPeriod)
	if got, want := summary(r), "a>ORPHANED e>ORPHANED"; got != want {
		t.Errorf("got %q want %q", got, want)
	}
	if want := t0.Add(time.Hour); !r.NextEvaluation.Equal(want) {
		t.Errorf("next evaluation %v, want %v (when the short-down node passes 24 h)", r.NextEvaluation, want)
	}
	for _, u := range r.Update {
		if u.Task.Status.GetMessage() == "" || !u.Task.Status.GetTimestamp().AsTime().Equal(t0) {
			t.Errorf("orphaned %s: status %v", u.Task.Id, u.Task.Status)
		}
	}
	if tasks[0].Status.State != RUN {
		t.Errorf("input modified")
	}
	// With the period as a parameter, 23 h down is enough for a 12 h period.
	if got := summary(OrphanTasks(nodes, tasks, t0, 12*time.Hour)); got != "a>ORPHANED b>ORPHANED e>ORPHANED" {
		t.Errorf("12h period: got %q", got)
	}
}
