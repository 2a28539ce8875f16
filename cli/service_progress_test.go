package cli

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/swarm"
)

func replicatedService(n uint64) swarm.Service {
	return swarm.Service{ID: "S", Spec: swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: "web"},
		Mode:        swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &n}},
	}}
}

func task(id string, slot int, node string, desired, state swarm.TaskState) swarm.Task {
	return swarm.Task{ID: id, ServiceID: "S", Slot: slot, NodeID: node, DesiredState: desired, Status: swarm.TaskStatus{State: state}}
}

func lineTexts(r progressReport) []string {
	var out []string
	for _, l := range r.Lines {
		out = append(out, l.String())
	}
	return out
}

const full = "[==================================================>]"

func TestProgressReplicatedSequence(t *testing.T) {
	svc := replicatedService(3)
	R, P, S := swarm.TaskStateRunning, swarm.TaskStatePending, swarm.TaskStateShutdown
	nodes := []swarm.Node{{ID: "n1", Status: swarm.NodeStatus{State: swarm.NodeStateReady}}}
	var tr progressTracker

	r := tr.step(svc, nil, nodes)
	want := []string{"overall progress: 0 out of 3 tasks", "1/3:", "2/3:", "3/3:"}
	if got := lineTexts(r); !reflect.DeepEqual(got, want) || r.Converged || r.Failed != "" {
		t.Fatalf("no tasks: %q %+v", got, r)
	}

	r = tr.step(svc, []swarm.Task{
		task("a", 1, "n1", R, R), task("b", 2, "n1", R, P), task("c", 3, "", R, swarm.TaskStateNew),
	}, nodes)
	want = []string{
		"overall progress: 1 out of 3 tasks",
		"1/3: running   " + full,
		"2/3: pending   [================>                                  ]",
		"3/3: new       [=====>                                             ]",
	}
	if got := lineTexts(r); !reflect.DeepEqual(got, want) || r.Converged {
		t.Fatalf("mixed:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	before := r.Score

	r = tr.step(svc, []swarm.Task{
		task("a", 1, "n1", R, R), task("b", 2, "n1", R, R), task("c", 3, "n1", R, R),
		task("old", 2, "n1", S, swarm.TaskStateFailed), // history of slot 2: ignored for the bar
	}, nodes)
	if !r.Converged || r.Running != 3 || r.Score <= before || r.Lines[0].String() != "overall progress: 3 out of 3 tasks" {
		t.Fatalf("converged: %+v", r)
	}
	for _, l := range r.Lines[1:] {
		if !strings.HasSuffix(l.String(), "running   "+full) {
			t.Errorf("bar %q", l.String())
		}
	}
}

func TestProgressPendingWithSchedulerError(t *testing.T) {
	svc := replicatedService(3)
	R, P := swarm.TaskStateRunning, swarm.TaskStatePending
	tasks := []swarm.Task{task("a", 1, "n1", R, R), task("b", 2, "n1", R, R), task("c", 3, "", R, P)}
	tasks[2].Status.Err = "no suitable node (scheduling constraints not satisfied on 3 nodes)"
	tasks[2].Status.Message = "pending task scheduling"
	var tr progressTracker
	r := tr.step(svc, tasks, nil)
	if r.Converged || r.Failed != "" {
		t.Fatalf("verdict %+v", r)
	}
	if got := r.Lines[3].String(); got != "3/3: no suitable node (scheduling constraints not satisfied on 3 nodes)" {
		t.Errorf("line %q", got)
	}
	if r.Stuck != "3/3: no suitable node (scheduling constraints not satisfied on 3 nodes)" {
		t.Errorf("stuck %q", r.Stuck)
	}
	// Same poll again: no progress, same score.
	if r2 := tr.step(svc, tasks, nil); r2.Score != r.Score {
		t.Errorf("score moved without progress: %d -> %d", r.Score, r2.Score)
	}
}

func TestProgressRepeatedFailures(t *testing.T) {
	svc := replicatedService(1)
	R, S, F := swarm.TaskStateRunning, swarm.TaskStateShutdown, swarm.TaskStateFailed
	var tasks []swarm.Task
	for _, id := range []string{"f1", "f2"} {
		tk := task(id, 1, "n1", S, F)
		tk.Status.Err = "task: non-zero exit (1)"
		tasks = append(tasks, tk)
	}
	tasks = append(tasks, task("cur", 1, "n1", R, swarm.TaskStateStarting))
	var tr progressTracker
	if r := tr.step(svc, tasks, nil); r.Failed != "" {
		t.Fatalf("two failures already fatal: %q", r.Failed)
	}
	third := task("f3", 1, "n1", S, swarm.TaskStateRejected)
	third.Status.Err = "invalid mount config"
	r := tr.step(svc, append(tasks, third), nil)
	if !strings.Contains(r.Failed, "1/1: 3 tasks failed") || !strings.Contains(r.Failed, "invalid mount config") {
		t.Fatalf("failed %q", r.Failed)
	}
}

func TestProgressGlobalAndDownNodes(t *testing.T) {
	svc := swarm.Service{ID: "S", Spec: swarm.ServiceSpec{Mode: swarm.ServiceMode{Global: &swarm.GlobalService{}}}}
	R := swarm.TaskStateRunning
	var tr progressTracker
	r := tr.step(svc, nil, nil)
	if got := lineTexts(r); !reflect.DeepEqual(got, []string{"overall progress: waiting for new tasks"}) || r.Converged {
		t.Fatalf("empty global: %q", got)
	}
	nodes := []swarm.Node{
		{ID: "node1aaaaaaaaaaaaaa", Status: swarm.NodeStatus{State: swarm.NodeStateReady}},
		{ID: "node2bbbbbbbbbbbbbb", Status: swarm.NodeStatus{State: swarm.NodeStateDown}},
	}
	tasks := []swarm.Task{
		task("a", 0, "node1aaaaaaaaaaaaaa", R, R),
		task("b", 0, "node2bbbbbbbbbbbbbb", R, swarm.TaskStateAssigned), // on a down node: ignored
	}
	r = tr.step(svc, tasks, nodes)
	want := []string{"overall progress: 1 out of 1 tasks", "node1aaaaaaa: running   " + full}
	if got := lineTexts(r); !reflect.DeepEqual(got, want) || !r.Converged {
		t.Fatalf("global:\n%q\nwant\n%q", got, want)
	}
}

func TestProgressManyReplicasNoBars(t *testing.T) {
	svc := replicatedService(25)
	var tasks []swarm.Task
	for i := 1; i <= 25; i++ {
		tasks = append(tasks, task("t", i, "n", swarm.TaskStateRunning, swarm.TaskStateRunning))
	}
	var tr progressTracker
	r := tr.step(svc, tasks, nil)
	if got := lineTexts(r); !reflect.DeepEqual(got, []string{"overall progress: 25 out of 25 tasks"}) || !r.Converged {
		t.Fatalf("got %q", got)
	}
}

func TestProgressPrinter(t *testing.T) {
	var buf bytes.Buffer
	pp := newProgressPrinter(&buf, false)
	pp.show([]progressLine{{"overall progress", "0 out of 1 tasks"}, {"1/1", ""}})
	pp.show([]progressLine{{"overall progress", "0 out of 1 tasks"}, {"1/1", ""}})
	pp.show([]progressLine{{"overall progress", "1 out of 1 tasks"}, {"1/1", "running   " + full}, {"verify", "Service converged"}})
	want := "overall progress: 0 out of 1 tasks\n1/1:\noverall progress: 1 out of 1 tasks\n1/1: running   " + full + "\nverify: Service converged\n"
	if buf.String() != want {
		t.Fatalf("non-tty:\n%q\nwant\n%q", buf.String(), want)
	}
	buf.Reset()
	pp = newProgressPrinter(&buf, true)
	pp.show([]progressLine{{"a", "1"}, {"b", "2"}})
	pp.show([]progressLine{{"a", "1"}, {"b", "3"}})
	want = "\x1b[2Ka: 1\n\x1b[2Kb: 2\n\x1b[2A\x1b[2Ka: 1\n\x1b[2Kb: 3\n"
	if buf.String() != want {
		t.Fatalf("tty:\n%q\nwant\n%q", buf.String(), want)
	}
}

func TestTruncError(t *testing.T) {
	long := strings.Repeat("x", 100)
	if got := truncError(long); len([]rune(got)) != 75 || !strings.HasSuffix(got, "…") {
		t.Errorf("long %q", got)
	}
	if got := truncError("a\nb"); got != "a b" {
		t.Errorf("newline %q", got)
	}
}
