package convert

import (
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"
	"github.com/shoal-project/shoal/api"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestTaskStateNames(t *testing.T) {
	want := map[api.TaskState]swarm.TaskState{
		api.TaskState_NEW:       "new",
		api.TaskState_PENDING:   "pending",
		api.TaskState_ASSIGNED:  "assigned",
		api.TaskState_ACCEPTED:  "accepted",
		api.TaskState_PREPARING: "preparing",
		api.TaskState_READY:     "ready",
		api.TaskState_STARTING:  "starting",
		api.TaskState_RUNNING:   "running",
		api.TaskState_COMPLETE:  "complete",
		api.TaskState_SHUTDOWN:  "shutdown",
		api.TaskState_FAILED:    "failed",
		api.TaskState_REJECTED:  "rejected",
		api.TaskState_REMOVE:    "remove",
		api.TaskState_ORPHANED:  "orphaned",
	}
	// Every enum value of the api must be in the table: a state added to
	// types.proto without a Docker name fails here.
	for n, name := range api.TaskState_name {
		if _, ok := want[api.TaskState(n)]; !ok {
			t.Errorf("api state %s (%d) has no expected Docker name", name, n)
		}
	}
	for s, w := range want {
		if got := TaskStateToSwarm(s); got != w {
			t.Errorf("TaskStateToSwarm(%s) = %q, want %q", s, got, w)
		}
		back, ok := TaskStateFromSwarm(w)
		if !ok || back != s {
			t.Errorf("TaskStateFromSwarm(%q) = %s, %v, want %s", w, back, ok, s)
		}
	}
	if _, ok := TaskStateFromSwarm(swarm.TaskStateAllocated); ok {
		t.Error(`"allocated" has no shoal state but was accepted`)
	}
	if got := TaskStateToSwarm(api.TaskState(1000)); got != "1000" {
		t.Errorf("unknown state shown as %q", got)
	}
}

func TestTaskToSwarm(t *testing.T) {
	created := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	changed := created.Add(5 * time.Second)
	task := &api.Task{
		Id:                 "task1",
		Meta:               &api.Meta{Version: 7, CreatedAt: timestamppb.New(created), UpdatedAt: timestamppb.New(changed)},
		Annotations:        &api.Annotations{Name: "web.2.task1"},
		ServiceId:          "svc1",
		Slot:               2,
		NodeId:             "node1",
		Spec:               &api.TaskSpec{Container: &api.ContainerSpec{Image: "nginx:1.25"}, ForceUpdate: 1},
		SpecVersion:        3,
		ServiceAnnotations: &api.Annotations{Name: "web"},
		DesiredState:       api.TaskState_RUNNING,
		Status: &api.TaskStatus{
			Timestamp:       timestamppb.New(changed),
			State:           api.TaskState_FAILED,
			Message:         "started",
			Err:             "task: non-zero exit (1)",
			ContainerStatus: &api.ContainerStatus{ContainerId: "c0ffee", Pid: 4242, ExitCode: 1},
			PortStatus:      &api.PortStatus{Ports: []*api.PortConfig{{Protocol: api.PortConfig_UDP, TargetPort: 53, PublishedPort: 30053, PublishMode: api.PortConfig_HOST}}},
		},
		Networks: []*api.NetworkAttachment{{
			Network: &api.Network{
				Id:   "net1",
				Spec: &api.NetworkSpec{Annotations: &api.Annotations{Name: "app"}, DriverConfig: &api.Driver{Name: "overlay"}, Attachable: true},
				Ipam: &api.IPAMOptions{Driver: "default", Configs: []*api.IPAMConfig{{Subnet: "10.0.1.0/24", Gateway: "10.0.1.1"}}},
				Vni:  4097,
			},
			Addresses: []string{"10.0.1.5/24", "not an address"},
		}},
	}
	got := TaskToSwarm(task)
	checks := []struct {
		what      string
		got, want any
	}{
		{"id", got.ID, "task1"},
		{"version", got.Version.Index, uint64(7)},
		{"created", got.CreatedAt, created},
		{"updated", got.UpdatedAt, changed},
		{"name", got.Name, "web.2.task1"},
		{"service", got.ServiceID, "svc1"},
		{"slot", got.Slot, 2},
		{"node", got.NodeID, "node1"},
		{"image", got.Spec.ContainerSpec.Image, "nginx:1.25"},
		{"runtime", got.Spec.Runtime, swarm.RuntimeContainer},
		{"force update", got.Spec.ForceUpdate, uint64(1)},
		{"desired", got.DesiredState, swarm.TaskStateRunning},
		{"state", got.Status.State, swarm.TaskStateFailed},
		{"timestamp", got.Status.Timestamp, changed},
		{"message", got.Status.Message, "started"},
		{"err", got.Status.Err, "task: non-zero exit (1)"},
		{"container", got.Status.ContainerStatus.ContainerID, "c0ffee"},
		{"pid", got.Status.ContainerStatus.PID, 4242},
		{"exit code", got.Status.ContainerStatus.ExitCode, 1},
		{"port", got.Status.PortStatus.Ports[0].PublishedPort, uint32(30053)},
		{"port proto", string(got.Status.PortStatus.Ports[0].Protocol), "udp"},
		{"port mode", got.Status.PortStatus.Ports[0].PublishMode, swarm.PortConfigPublishModeHost},
		{"attachments", len(got.NetworksAttachments), 1},
		{"network id", got.NetworksAttachments[0].Network.ID, "net1"},
		{"network name", got.NetworksAttachments[0].Network.Spec.Name, "app"},
		{"network driver", got.NetworksAttachments[0].Network.DriverState.Name, "overlay"},
		{"vni", got.NetworksAttachments[0].Network.DriverState.Options[vxlanIDOption], "4097"},
		{"subnet", got.NetworksAttachments[0].Network.IPAMOptions.Configs[0].Subnet.String(), "10.0.1.0/24"},
		{"gateway", got.NetworksAttachments[0].Network.IPAMOptions.Configs[0].Gateway.String(), "10.0.1.1"},
		{"addresses", len(got.NetworksAttachments[0].Addresses), 1},
		{"address", got.NetworksAttachments[0].Addresses[0].String(), "10.0.1.5/24"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
}

// A task fresh from the orchestrator: no status, no node, no times.
func TestTaskToSwarmEmpty(t *testing.T) {
	got := TaskToSwarm(&api.Task{Id: "t", ServiceId: "s"})
	if !got.Status.Timestamp.IsZero() || !got.CreatedAt.IsZero() {
		t.Errorf("unset times became %v / %v, want the zero time", got.Status.Timestamp, got.CreatedAt)
	}
	if got.Status.State != swarm.TaskStateNew || got.DesiredState != swarm.TaskStateNew {
		t.Errorf("states %q / %q, want new", got.Status.State, got.DesiredState)
	}
	if got.Status.ContainerStatus != nil || got.Spec.ContainerSpec != nil || got.Spec.Runtime != "" {
		t.Errorf("empty task: %+v", got)
	}
}
