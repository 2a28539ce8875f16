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
