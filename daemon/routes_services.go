package daemon

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/registry"
	"github.com/moby/moby/api/types/swarm"
	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/containerd/events"
	"github.com/shoal-project/shoal/daemon/convert"
	"github.com/shoal-project/shoal/manager/orchestrator"
	"github.com/shoal-project/shoal/worker"
)

// serviceRoutes serves /services and /tasks through the Control API.
func (d *Daemon) serviceRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /services", d.withControl(d.serviceList))
	mux.HandleFunc("POST /services/create", d.withControl(d.serviceCreate))
	mux.HandleFunc("GET /services/{id}", d.withControl(d.serviceInspect))
	mux.HandleFunc("POST /services/{id}/update", d.withControl(d.serviceUpdate))
	mux.HandleFunc("DELETE /services/{id}", d.withControl(d.serviceRemove))
	mux.HandleFunc("GET /tasks", d.withControl(d.taskList))
	mux.HandleFunc("GET /tasks/{id}", d.withControl(d.taskInspect))
	mux.HandleFunc("GET /services/{id}/logs", d.serviceLogs)
	mux.HandleFunc("GET /tasks/{id}/logs", d.serviceLogs)
	// The image digest `service create` pins a service to (taskimages.go).
	mux.HandleFunc("GET /distribution/", d.distributionInspect)
}

func (d *Daemon) serviceList(w http.ResponseWriter, r *http.Request, c api.ControlClient) {
	raw, err := convert.ParseFilters(r.URL.Query().Get("filters"))
	if err != nil {
		writeError(w, err)
		return
	}
	f, err := convert.ServiceListFilters(raw)
	if err != nil {
		writeError(w, err)
		return
	}
	services, err := listServices(r.Context(), c, f.Request)
	if err != nil {
		writeError(w, err)
		return
	}
	var status map[string]*swarm.ServiceStatus
	if yes, _ := strconv.ParseBool(r.URL.Query().Get("status")); yes && len(services) > 0 {
		if status, err = d.serviceStatus(r, c, services); err != nil {
			writeError(w, err)
			return
		}
	}
	out := make([]swarm.Service, 0, len(services))
	for _, s := range services {
		if !f.Match(s) {
			continue
		}
		sv := convert.ServiceToSwarm(s)
		sv.ServiceStatus = status[s.GetId()]
		out = append(out, sv)
	}
	writeJSON(w, http.StatusOK, out)
}

// serviceStatus counts running and desired tasks per service, as dockerd
// does for `service ls`: running tasks on nodes that are not down.
func (d *Daemon) serviceStatus(r *http.Request, c api.ControlClient, svcs []*api.Service) (map[string]*swarm.ServiceStatus, error) {
	ids := make([]string, 0, len(svcs))
	for _, s := range svcs {
		ids = append(ids, s.GetId())
	}
	// Desired-running tasks only, as dockerd asks: the count skips the
	// others, and a service's history (up to --task-history-limit tasks
	// per slot) need not be copied and sent for it.
	tasks, err := listTasks(r.Context(), c, &api.ListTasksRequest_Filters{ServiceIds: ids, DesiredStates: []api.TaskState{api.TaskState_RUNNING}})
	if err != nil {
		return nil, err
	}
	nodes, err := listNodes(r.Context(), c, nil)
	if err != nil {
		return nil, err
	}
	ready := map[string]bool{}
	for _, n := range nodes {
		ready[n.GetId()] = n.GetStatus().GetState() != api.NodeStatus_DOWN
	}
	bySvc := map[string][]*api.Task{}
	for _, t := range tasks {
		bySvc[t.GetServiceId()] = append(bySvc[t.GetServiceId()], t)
	}
	out := make(map[string]*swarm.ServiceStatus, len(svcs))
	for _, s := range svcs {
		out[s.GetId()] = convert.ServiceStatus(s, bySvc[s.GetId()], func(id string) bool { return ready[id] })
	}
	return out, nil
}

// checkServiceNetworking refuses what tasks cannot have: ports published
// in mode host need a network (they are published on the task's leg of the
// node's gateway bridge, which tasks on a network have); ports through the
// routing mesh need none (their tasks join the ingress network). The mesh
// and host publishing are nf_tables DNAT for TCP and UDP: SCTP is refused.
func checkServiceNetworking(spec swarm.ServiceSpec) error {
	if spec.EndpointSpec == nil {
		return nil
	}
	for _, p := range spec.EndpointSpec.Ports {
		if p.Protocol == network.SCTP {
			return badRequest("port %d/sctp: publishing SCTP ports is not supported (tcp and udp are)", p.TargetPort)
		}
		if p.PublishMode == swarm.PortConfigPublishModeHost && len(spec.TaskTemplate.Networks) == 0 {
			return badRequest("port %d: ports published in mode host need the service on an overlay network (--network)", p.TargetPort)
		}
	}
	return nil
}

// withRegistryAuth stores the request's X-Registry-Auth (sent with
// `--with-registry-auth`) in the task spec for the workers' pulls, as Swarm
// does; without one, prev's credentials stay. The spec is in the raft
// store (encrypted at rest) and reaches workers over mutual TLS; no REST
// answer shows it.
func withRegistryAuth(r *http.Request, s *api.ServiceSpec, prev *api.ServiceSpec) error {
	cs := s.GetTask().GetContainer()
	if cs == nil {
		return nil
	}
	h := r.Header.Get(registry.AuthHeader)
	if h == "" {
		cs.RegistryAuth = prev.GetTask().GetContainer().GetRegistryAuth()
		return nil
	}
	if _, err := decodeAuth(h); err != nil {
		return err
	}
	cs.RegistryAuth = h
	return nil
}

func (d *Daemon) serviceCreate(w http.ResponseWriter, r *http.Request, c api.ControlClient) {
	var spec swarm.ServiceSpec
	if err := decodeJSON(r, &spec); err != nil {
		writeError(w, err)
		return
	}
	if err := checkServiceNetworking(spec); err != nil {
		writeError(w, err)
		return
	}
	s, err := convert.ServiceSpecFromSwarm(spec)
	if err != nil {
		writeError(w, err)
		return
	}
	if err := withRegistryAuth(r, s, nil); err != nil {
		writeError(w, err)
		return
	}
	resp, err := c.CreateService(r.Context(), &api.CreateServiceRequest{Spec: s})
	if err != nil {
		writeError(w, api.FromGRPC(err))
		return
	}
	d.publish(events.TypeService, "create", resp.GetService().GetId(), map[string]string{"name": spec.Name})
	writeJSON(w, http.StatusCreated, swarm.ServiceCreateResponse{ID: resp.GetService().GetId(), Warnings: []string{}})
}

func (d *Daemon) serviceInspect(w http.ResponseWriter, r *http.Request, c api.ControlClient) {
	resp, err := c.GetService(r.Context(), &api.GetServiceRequest{ServiceId: r.PathValue("id")})
	if err != nil {
		writeError(w, api.FromGRPC(err))
		return
	}
	svc := convert.ServiceToSwarm(resp.GetService())
	if boolParam(r, "insertDefaults") {
		insertServiceDefaults(&svc.Spec)
	}
	writeJSON(w, http.StatusOK, svc)
}

// insertServiceDefaults fills in what a spec left unset with what the
// service runs with (insertDefaults=1, which docker's and shoal's service
// inspect send): the stop grace period, the restart policy's condition and
// delay, the update and rollback configs, the endpoint mode.
func insertServiceDefaults(s *swarm.ServiceSpec) {
	if c := s.TaskTemplate.ContainerSpec; c != nil {
		if c.StopGracePeriod == nil {
			grace := worker.DefaultStopGracePeriod
			c.StopGracePeriod = &grace
		}
		if c.Init == nil {
			c.Init = new(bool)
		}
	}
	rp := s.TaskTemplate.RestartPolicy
	if rp == nil {
		rp = &swarm.RestartPolicy{}
		s.TaskTemplate.RestartPolicy = rp
	}
	if rp.Condition == "" {
		rp.Condition = swarm.RestartPolicyConditionAny
	}
	if rp.Delay == nil {
		delay := orchestrator.DefaultRestartDelay
		rp.Delay = &delay
	}
	if rp.MaxAttempts == nil {
		var none uint64
		rp.MaxAttempts = &none
	}
	for _, u := range []**swarm.UpdateConfig{&s.UpdateConfig, &s.RollbackConfig} {
		if *u == nil {
			*u = &swarm.UpdateConfig{Parallelism: 1}
		}
		if (*u).FailureAction == "" {
			(*u).FailureAction = swarm.UpdateFailureActionPause
		}
		if (*u).Monitor == 0 {
			(*u).Monitor = orchestrator.DefaultMonitor
		}
		if (*u).Order == "" {
			(*u).Order = swarm.UpdateOrderStopFirst
		}
	}
	if s.EndpointSpec == nil {
		s.EndpointSpec = &swarm.EndpointSpec{}
	}
	if s.EndpointSpec.Mode == "" {
		s.EndpointSpec.Mode = swarm.ResolutionModeVIP
	}
}

func (d *Daemon) serviceUpdate(w http.ResponseWriter, r *http.Request, c api.ControlClient) {
	q := r.URL.Query()
	version, err := strconv.ParseUint(q.Get("version"), 10, 64)
	if err != nil {
		writeError(w, badRequest("invalid service version %q", q.Get("version")))
		return
	}
	var spec swarm.ServiceSpec
	if err := decodeJSON(r, &spec); err != nil {
		writeError(w, err)
		return
	}
	if err := checkServiceNetworking(spec); err != nil {
		writeError(w, err)
		return
	}
	s, err := convert.ServiceSpecFromSwarm(spec)
	if err != nil {
		writeError(w, err)
		return
	}
	if s.GetTask().GetContainer() != nil && r.Header.Get(registry.AuthHeader) == "" {
		// Credentials given once stay until replaced, as Swarm's
		// registryAuthFrom=spec default.
		cur, err := c.GetService(r.Context(), &api.GetServiceRequest{ServiceId: r.PathValue("id")})
		if err != nil {
			writeError(w, api.FromGRPC(err))
			return
		}
		if err := withRegistryAuth(r, s, cur.GetService().GetSpec()); err != nil {
			writeError(w, err)
			return
		}
	} else if err := withRegistryAuth(r, s, nil); err != nil {
		writeError(w, err)
		return
	}
	req := &api.UpdateServiceRequest{ServiceId: r.PathValue("id"), ServiceVersion: version, Spec: s,
		Rollback: q.Get("rollback") == "previous"}
	resp, err := c.UpdateService(r.Context(), req)
	if err != nil {
		writeError(w, api.FromGRPC(err))
		return
	}
	d.publish(events.TypeService, "update", resp.GetService().GetId(), map[string]string{"name": spec.Name})
	writeJSON(w, http.StatusOK, swarm.ServiceUpdateResponse{Warnings: []string{}})
}

func (d *Daemon) serviceRemove(w http.ResponseWriter, r *http.Request, c api.ControlClient) {
	// Looked up first for the event: its ID and name, as dockerd's.
	id, name := r.PathValue("id"), ""
	if got, err := c.GetService(r.Context(), &api.GetServiceRequest{ServiceId: id}); err == nil {
		id, name = got.GetService().GetId(), got.GetService().GetSpec().GetAnnotations().GetName()
	}
	if _, err := c.RemoveService(r.Context(), &api.RemoveServiceRequest{ServiceId: r.PathValue("id")}); err != nil {
		writeError(w, api.FromGRPC(err))
		return
	}
	d.publish(events.TypeService, "remove", id, map[string]string{"name": name})
	w.WriteHeader(http.StatusOK)
}

func (d *Daemon) taskList(w http.ResponseWriter, r *http.Request, c api.ControlClient) {
	raw, err := convert.ParseFilters(r.URL.Query().Get("filters"))
	if err != nil {
		writeError(w, err)
		return
	}
	f, err := convert.TaskListFilters(raw)
	if err != nil {
		writeError(w, err)
		return
	}
	// The service and node filters take a name, an ID or an ID prefix,
	// resolved to the ID as dockerd does (docker-py's tasks(filters=
	// {'service': NAME}) listed nothing); one that names nothing is an error.
	for i, ref := range f.Request.ServiceIds {
		resp, err := c.GetService(r.Context(), &api.GetServiceRequest{ServiceId: ref})
		if err != nil {
			writeError(w, fmt.Errorf("service filter: %w", api.FromGRPC(err)))
			return
		}
		f.Request.ServiceIds[i] = resp.GetService().GetId()
	}
	for i, ref := range f.Request.NodeIds {
		resp, err := c.GetNode(r.Context(), &api.GetNodeRequest{NodeId: ref})
		if err != nil {
			writeError(w, fmt.Errorf("node filter: %w", api.FromGRPC(err)))
			return
		}
		f.Request.NodeIds[i] = resp.GetNode().GetId()
	}
	tasks, err := listTasks(r.Context(), c, f.Request)
	if err != nil {
		writeError(w, err)
		return
	}
	services := map[string]*api.Service{}
	if f.UpToDate || len(f.Labels) > 0 {
		svcs, err := listServices(r.Context(), c, nil)
		if err != nil {
			writeError(w, err)
			return
		}
		for _, s := range svcs {
			services[s.GetId()] = s
		}
	}
	out := make([]swarm.Task, 0, len(tasks))
	for _, t := range tasks {
		if !f.Match(t, services[t.GetServiceId()]) {
			continue
		}
		out = append(out, convert.TaskToSwarm(t))
	}
	writeJSON(w, http.StatusOK, out)
}

func (d *Daemon) taskInspect(w http.ResponseWriter, r *http.Request, c api.ControlClient) {
	resp, err := c.GetTask(r.Context(), &api.GetTaskRequest{TaskId: r.PathValue("id")})
	if err != nil {
		writeError(w, api.FromGRPC(err))
		return
	}
	writeJSON(w, http.StatusOK, convert.TaskToSwarm(resp.GetTask()))
}
