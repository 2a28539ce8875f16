package worker

import (
	"slices"
	"testing"

	"github.com/shoal-project/shoal/api"
)

// TestContainerConfigKeepsGroups: a service's --group reaches the engine
// (which applies it as supplementary groups) instead of being dropped.
func TestContainerConfigKeepsGroups(t *testing.T) {
	task := &api.Task{Id: "t1", Spec: &api.TaskSpec{Container: &api.ContainerSpec{
		Image: "busybox", Groups: []string{"audio", "1234"},
	}}}
	cfg, err := ContainerConfig(task, "bridge")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.GroupAdd, []string{"audio", "1234"}) {
		t.Fatalf("GroupAdd %v, want the service's groups", cfg.GroupAdd)
	}
}

// TestContainerConfigKeepsTTY: a service's --tty gives its tasks a terminal.
func TestContainerConfigKeepsTTY(t *testing.T) {
	task := &api.Task{Id: "t1", Spec: &api.TaskSpec{Container: &api.ContainerSpec{Image: "busybox", Tty: true}}}
	cfg, err := ContainerConfig(task, "bridge")
	if err != nil || !cfg.Tty {
		t.Fatalf("Tty %v, %v: want the service's", cfg.Tty, err)
	}
}

// TestContainerConfigLabels: a task's container carries Docker Swarm's
// labels, the service's name among them (`ps --filter label=...`).
func TestContainerConfigLabels(t *testing.T) {
	task := &api.Task{Id: "t1", ServiceId: "s1", NodeId: "n1", Annotations: &api.Annotations{Name: "web.1"},
		ServiceAnnotations: &api.Annotations{Name: "web"},
		Spec:               &api.TaskSpec{Container: &api.ContainerSpec{Image: "busybox"}}}
	cfg, err := ContainerConfig(task, "bridge")
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{LabelTaskID: "t1", LabelTaskName: "web.1", LabelServiceID: "s1", LabelServiceName: "web", LabelNodeID: "n1"} {
		if cfg.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, cfg.Labels[k], v)
		}
	}
}
