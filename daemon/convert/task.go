package convert

import (
	"strconv"

	"github.com/moby/moby/api/types/swarm"
	"github.com/shoal-project/shoal/api"
)

// taskStates pairs every api.TaskState with Docker's name for it. Docker's
// "allocated" has no shoal counterpart (shoal allocates between NEW and
// PENDING without a state of its own).
var taskStates = map[api.TaskState]swarm.TaskState{
	api.TaskState_NEW:       swarm.TaskStateNew,
	api.TaskState_PENDING:   swarm.TaskStatePending,
	api.TaskState_ASSIGNED:  swarm.TaskStateAssigned,
	api.TaskState_ACCEPTED:  swarm.TaskStateAccepted,
	api.TaskState_PREPARING: swarm.TaskStatePreparing,
	api.TaskState_READY:     swarm.TaskStateReady,
	api.TaskState_STARTING:  swarm.TaskStateStarting,
	api.TaskState_RUNNING:   swarm.TaskStateRunning,
	api.TaskState_COMPLETE:  swarm.TaskStateComplete,
	api.TaskState_SHUTDOWN:  swarm.TaskStateShutdown,
	api.TaskState_FAILED:    swarm.TaskStateFailed,
	api.TaskState_REJECTED:  swarm.TaskStateRejected,
	api.TaskState_REMOVE:    swarm.TaskStateRemove,
	api.TaskState_ORPHANED:  swarm.TaskStateOrphaned,
}

// TaskStateToSwarm is Docker's lowercase name of s ("running"). A number
// that is no api.TaskState is shown as that number.
func TaskStateToSwarm(s api.TaskState) swarm.TaskState {
	if name, ok := taskStates[s]; ok {
		return name
	}
	return swarm.TaskState(strconv.Itoa(int(s)))
}

// TaskStateFromSwarm is the api.TaskState Docker's name s stands for.
func TaskStateFromSwarm(s swarm.TaskState) (api.TaskState, bool) {
	for k, v := range taskStates {
		if v == s {
			return k, true
		}
	}
	return 0, false
}

// TaskToSwarm is a task as GET /tasks answers it. Status.Timestamp is the
// time of the last state change (the CLI's CURRENT STATE "Running 5 seconds
// ago") and Status.Err the failure (its ERROR column).
func TaskToSwarm(t *api.Task) swarm.Task {
	st := t.GetStatus()
	out := swarm.Task{
		ID:           t.GetId(),
		Meta:         MetaToSwarm(t.GetMeta()),
		Annotations:  annotationsToSwarm(t.GetAnnotations()),
		Spec:         TaskSpecToSwarm(t.GetSpec()),
		ServiceID:    t.GetServiceId(),
		Slot:         int(t.GetSlot()),
		NodeID:       t.GetNodeId(),
		DesiredState: TaskStateToSwarm(t.GetDesiredState()),
		Status: swarm.TaskStatus{
			Timestamp:  timeToSwarm(st.GetTimestamp()),
			State:      TaskStateToSwarm(st.GetState()),
			Message:    st.GetMessage(),
			Err:        st.GetErr(),
			PortStatus: swarm.PortStatus{Ports: portsToSwarm(st.GetPortStatus().GetPorts())},
		},
	}
	if cs := st.GetContainerStatus(); cs != nil {
		out.Status.ContainerStatus = &swarm.ContainerStatus{ContainerID: cs.GetContainerId(), PID: int(cs.GetPid()), ExitCode: int(cs.GetExitCode())}
	}
	for _, na := range t.GetNetworks() {
		a := swarm.NetworkAttachment{Network: networkToSwarm(na.GetNetwork())}
		for _, addr := range na.GetAddresses() {
			if p, ok := parsePrefix(addr); ok {
				a.Addresses = append(a.Addresses, p)
			}
		}
		out.NetworksAttachments = append(out.NetworksAttachments, a)
	}
	return out
}

// vxlanIDOption is the driver state key dockerd shows an overlay's VNI under.
const vxlanIDOption = "com.docker.network.driver.overlay.vxlanid_list"

// networkToSwarm is the copy of a network a task's attachment carries.
func networkToSwarm(n *api.Network) swarm.Network {
	spec := n.GetSpec()
	out := swarm.Network{
		ID:   n.GetId(),
		Meta: MetaToSwarm(n.GetMeta()),
		Spec: swarm.NetworkSpec{
			Annotations: annotationsToSwarm(spec.GetAnnotations()),
			Internal:    spec.GetInternal(),
			Attachable:  spec.GetAttachable(),
			Ingress:     spec.GetIngress(),
			IPAMOptions: ipamToSwarm(spec.GetIpam()),
			Scope:       "swarm",
		},
		IPAMOptions: ipamToSwarm(n.GetIpam()),
	}
	if d := spec.GetDriverConfig(); d != nil {
		out.Spec.DriverConfiguration = &swarm.Driver{Name: d.GetName(), Options: copyMap(d.GetOptions())}
		out.DriverState.Name = d.GetName()
	}
	if n.GetVni() != 0 {
		out.DriverState.Options = map[string]string{vxlanIDOption: strconv.FormatUint(uint64(n.GetVni()), 10)}
	}
	return out
}

// ipamToSwarm drops address fields that do not parse (they cannot be shown
// in Docker's typed fields).
func ipamToSwarm(o *api.IPAMOptions) *swarm.IPAMOptions {
	if o == nil {
		return nil
	}
	out := &swarm.IPAMOptions{Driver: swarm.Driver{Name: o.GetDriver()}}
	for _, c := range o.GetConfigs() {
		var sc swarm.IPAMConfig
		if p, ok := parsePrefix(c.GetSubnet()); ok {
			sc.Subnet = p.Masked()
		}
		if p, ok := parsePrefix(c.GetIpRange()); ok {
			sc.Range = p.Masked()
		}
		if p, ok := parsePrefix(c.GetGateway()); ok {
			sc.Gateway = p.Addr()
		}
		out.Configs = append(out.Configs, sc)
	}
	return out
}
