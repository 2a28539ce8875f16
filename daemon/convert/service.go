package convert

import (
	"github.com/moby/moby/api/types/swarm"
	"github.com/shoal-project/shoal/api"
)

// ServiceSpecFromSwarm converts a ServiceSpec as a Docker client sends it to
// POST /services/create or /services/{id}/update. As dockerd does, a
// replicated mode without Replicas (or no mode at all) means 1 replica.
// Errors match api.ErrInvalidArgument (and ErrUnsupported for features shoal
// lacks); the caller prefixes the operation ("service create: ...").
func ServiceSpecFromSwarm(s swarm.ServiceSpec) (*api.ServiceSpec, error) {
	out := &api.ServiceSpec{Annotations: annotationsToAPI(s.Annotations)}
	if err := modeToAPI(s.Mode, out); err != nil {
		return nil, err
	}
	task, err := taskSpecToAPI(s.TaskTemplate)
	if err != nil {
		return nil, err
	}
	out.Task = task
	if out.Update, err = updateConfigToAPI("update", s.UpdateConfig); err != nil {
		return nil, err
	}
	if out.Rollback, err = updateConfigToAPI("rollback", s.RollbackConfig); err != nil {
		return nil, err
	}
	if out.Endpoint, err = endpointSpecToAPI(s.EndpointSpec); err != nil {
		return nil, err
	}
	return out, nil
}

func modeToAPI(m swarm.ServiceMode, out *api.ServiceSpec) error {
	n := 0
	for _, set := range []bool{m.Replicated != nil, m.Global != nil, m.ReplicatedJob != nil, m.GlobalJob != nil} {
		if set {
			n++
		}
	}
	switch {
	case n > 1:
		return invalid("must specify only one service mode")
	case m.ReplicatedJob != nil:
		return notSupported("job mode is not supported (replicated-job)")
	case m.GlobalJob != nil:
		return notSupported("job mode is not supported (global-job)")
	case m.Global != nil:
		out.Mode = &api.ServiceSpec_Global{Global: &api.GlobalService{}}
	default:
		replicas := uint64(1)
		if m.Replicated != nil && m.Replicated.Replicas != nil {
			replicas = *m.Replicated.Replicas
		}
		out.Mode = &api.ServiceSpec_Replicated{Replicated: &api.ReplicatedService{Replicas: replicas}}
	}
	return nil
}

func updateConfigToAPI(what string, u *swarm.UpdateConfig) (*api.UpdateConfig, error) {
	if u == nil {
		return nil, nil
	}
	out := &api.UpdateConfig{
		Parallelism:     u.Parallelism,
		Delay:           nonZeroDurationToAPI(u.Delay),
		Monitor:         nonZeroDurationToAPI(u.Monitor),
		MaxFailureRatio: u.MaxFailureRatio,
	}
	switch u.FailureAction {
	case swarm.UpdateFailureActionPause, "":
		out.FailureAction = api.UpdateConfig_PAUSE
	case swarm.UpdateFailureActionContinue:
		out.FailureAction = api.UpdateConfig_CONTINUE
	case swarm.UpdateFailureActionRollback:
		out.FailureAction = api.UpdateConfig_ROLLBACK
	default:
		return nil, invalid("unrecognized %s failure action %s", what, u.FailureAction)
	}
	switch u.Order {
	case swarm.UpdateOrderStopFirst, "":
		out.Order = api.UpdateConfig_STOP_FIRST
	case swarm.UpdateOrderStartFirst:
		out.Order = api.UpdateConfig_START_FIRST
	default:
		return nil, invalid("unrecognized %s order %s", what, u.Order)
	}
	return out, nil
}

func endpointSpecToAPI(e *swarm.EndpointSpec) (*api.EndpointSpec, error) {
	if e == nil {
		return nil, nil
	}
	out := &api.EndpointSpec{}
	switch e.Mode {
	case swarm.ResolutionModeVIP, "":
		out.Mode = api.EndpointSpec_VIP
	case swarm.ResolutionModeDNSRR:
		out.Mode = api.EndpointSpec_DNSRR
	default:
		return nil, invalid("invalid resolution mode: %q", e.Mode)
	}
	for _, p := range e.Ports {
		ap, err := portToAPI(p)
		if err != nil {
			return nil, err
		}
		out.Ports = append(out.Ports, ap)
	}
	return out, nil
}

func portToAPI(p swarm.PortConfig) (*api.PortConfig, error) {
	out := &api.PortConfig{Name: p.Name, TargetPort: p.TargetPort, PublishedPort: p.PublishedPort}
	switch p.Protocol {
	case "tcp", "":
		out.Protocol = api.PortConfig_TCP
	case "udp":
		out.Protocol = api.PortConfig_UDP
	case "sctp":
		out.Protocol = api.PortConfig_SCTP
	default:
		return nil, invalid("invalid protocol %q for port %d: must be tcp, udp or sctp", p.Protocol, p.TargetPort)
	}
	switch p.PublishMode {
	case swarm.PortConfigPublishModeIngress, "":
		out.PublishMode = api.PortConfig_INGRESS
	case swarm.PortConfigPublishModeHost:
		out.PublishMode = api.PortConfig_HOST
	default:
		return nil, invalid("invalid publish mode %q for port %d: must be ingress or host", p.PublishMode, p.TargetPort)
	}
	return out, nil
}

func portsToSwarm(ports []*api.PortConfig) []swarm.PortConfig {
	var out []swarm.PortConfig
	for _, p := range ports {
		sp := swarm.PortConfig{Name: p.GetName(), TargetPort: p.GetTargetPort(), PublishedPort: p.GetPublishedPort(), Protocol: "tcp", PublishMode: swarm.PortConfigPublishModeIngress}
		switch p.GetProtocol() {
		case api.PortConfig_UDP:
			sp.Protocol = "udp"
		case api.PortConfig_SCTP:
			sp.Protocol = "sctp"
		}
		if p.GetPublishMode() == api.PortConfig_HOST {
			sp.PublishMode = swarm.PortConfigPublishModeHost
		}
		out = append(out, sp)
	}
	return out
}

// ServiceSpecToSwarm is a service spec as Docker shows it (service inspect,
// and the spec clients send back, edited, to update).
func ServiceSpecToSwarm(s *api.ServiceSpec) swarm.ServiceSpec {
	out := swarm.ServiceSpec{
		Annotations:    annotationsToSwarm(s.GetAnnotations()),
		TaskTemplate:   TaskSpecToSwarm(s.GetTask()),
		UpdateConfig:   updateConfigToSwarm(s.GetUpdate()),
		RollbackConfig: updateConfigToSwarm(s.GetRollback()),
	}
	switch m := s.GetMode().(type) {
	case *api.ServiceSpec_Replicated:
		n := m.Replicated.GetReplicas()
		out.Mode.Replicated = &swarm.ReplicatedService{Replicas: &n}
	case *api.ServiceSpec_Global:
		out.Mode.Global = &swarm.GlobalService{}
	}
	if e := s.GetEndpoint(); e != nil {
		out.EndpointSpec = endpointSpecToSwarm(e)
	}
	return out
}

func endpointSpecToSwarm(e *api.EndpointSpec) *swarm.EndpointSpec {
	out := &swarm.EndpointSpec{Mode: swarm.ResolutionModeVIP, Ports: portsToSwarm(e.GetPorts())}
	if e.GetMode() == api.EndpointSpec_DNSRR {
		out.Mode = swarm.ResolutionModeDNSRR
	}
	return out
}

func updateConfigToSwarm(u *api.UpdateConfig) *swarm.UpdateConfig {
	if u == nil {
		return nil
	}
	out := &swarm.UpdateConfig{
		Parallelism:     u.GetParallelism(),
		Delay:           durationToSwarm(u.GetDelay()),
		Monitor:         durationToSwarm(u.GetMonitor()),
		MaxFailureRatio: u.GetMaxFailureRatio(),
		FailureAction:   swarm.UpdateFailureActionPause,
		Order:           swarm.UpdateOrderStopFirst,
	}
	switch u.GetFailureAction() {
	case api.UpdateConfig_CONTINUE:
		out.FailureAction = swarm.UpdateFailureActionContinue
	case api.UpdateConfig_ROLLBACK:
		out.FailureAction = swarm.UpdateFailureActionRollback
	}
	if u.GetOrder() == api.UpdateConfig_START_FIRST {
		out.Order = swarm.UpdateOrderStartFirst
	}
	return out
}

// ServiceToSwarm is a service as GET /services answers it. ServiceStatus is
// left nil: the daemon adds it (see ServiceStatus) when asked for status=true.
func ServiceToSwarm(s *api.Service) swarm.Service {
	out := swarm.Service{
		ID:           s.GetId(),
		Meta:         MetaToSwarm(s.GetMeta()),
		Spec:         ServiceSpecToSwarm(s.GetSpec()),
		UpdateStatus: updateStatusToSwarm(s.GetUpdateStatus()),
	}
	if p := s.GetPreviousSpec(); p != nil {
		prev := ServiceSpecToSwarm(p)
		out.PreviousSpec = &prev
	}
	if e := s.GetEndpoint(); e != nil {
		if e.GetSpec() != nil {
			out.Endpoint.Spec = *endpointSpecToSwarm(e.GetSpec())
		}
		out.Endpoint.Ports = portsToSwarm(e.GetPorts())
		for _, v := range e.GetVirtualIps() {
			vip := swarm.EndpointVirtualIP{NetworkID: v.GetNetworkId()}
			vip.Addr, _ = parsePrefix(v.GetAddr())
			out.Endpoint.VirtualIPs = append(out.Endpoint.VirtualIPs, vip)
		}
	}
	return out
}

var updateStates = map[api.UpdateStatus_State]swarm.UpdateState{
	api.UpdateStatus_UPDATING:           swarm.UpdateStateUpdating,
	api.UpdateStatus_PAUSED:             swarm.UpdateStatePaused,
	api.UpdateStatus_COMPLETED:          swarm.UpdateStateCompleted,
	api.UpdateStatus_ROLLBACK_STARTED:   swarm.UpdateStateRollbackStarted,
	api.UpdateStatus_ROLLBACK_PAUSED:    swarm.UpdateStateRollbackPaused,
	api.UpdateStatus_ROLLBACK_COMPLETED: swarm.UpdateStateRollbackCompleted,
}

// updateStatusToSwarm leaves State empty for UNKNOWN, as dockerd does.
func updateStatusToSwarm(u *api.UpdateStatus) *swarm.UpdateStatus {
	if u == nil {
		return nil
	}
	return &swarm.UpdateStatus{
		State:       updateStates[u.GetState()],
		StartedAt:   timePtrToSwarm(u.GetStartedAt()),
		CompletedAt: timePtrToSwarm(u.GetCompletedAt()),
		Message:     u.GetMessage(),
	}
}

// ServiceStatus computes what `service ls` shows as REPLICAS, as dockerd
// does: RunningTasks counts the service's tasks whose observed state is
// RUNNING on a node that nodeUp reports as not down (nil nodeUp counts every
// node); DesiredTasks is the replica count of a replicated service and, for
// a global service, the number of its tasks whose desired state is RUNNING.
// CompletedTasks is for jobs, which shoal does not have: always 0. Tasks of
// other services are ignored, so the caller may pass all tasks.
func ServiceStatus(svc *api.Service, tasks []*api.Task, nodeUp func(nodeID string) bool) *swarm.ServiceStatus {
	out := &swarm.ServiceStatus{}
	global := svc.GetSpec().GetGlobal() != nil
	if r := svc.GetSpec().GetReplicated(); r != nil {
		out.DesiredTasks = r.GetReplicas()
	}
	for _, t := range tasks {
		if t.GetServiceId() != svc.GetId() {
			continue
		}
		if t.GetDesiredState() != api.TaskState_RUNNING {
			// As dockerd (which lists desired-running tasks only): a task
			// being shut down after a scale-down or an update still runs for
			// its grace period, but is not one of the service's replicas.
			continue
		}
		if global {
			out.DesiredTasks++
		}
		if t.GetStatus().GetState() == api.TaskState_RUNNING && (nodeUp == nil || nodeUp(t.GetNodeId())) {
			out.RunningTasks++
		}
	}
	return out
}

// ServiceMode is the mode name Docker's `mode` filter matches: "replicated"
// or "global" ("" for a spec without a mode).
func ServiceMode(s *api.ServiceSpec) string {
	switch s.GetMode().(type) {
	case *api.ServiceSpec_Replicated:
		return "replicated"
	case *api.ServiceSpec_Global:
		return "global"
	}
	return ""
}
