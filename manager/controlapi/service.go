package controlapi

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"path"
	"regexp"
	"strconv"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/manager/allocator"
	"github.com/shoal-project/shoal/raftstore"
	"github.com/shoal-project/shoal/scheduler"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// validName is Docker's rule for service names: a DNS label, because the name
// is also the service's DNS name on its networks.
var validName = regexp.MustCompile(`^[a-zA-Z0-9](?:[-_]*[A-Za-z0-9]+)*$`)

func validateName(what, name string) error {
	switch {
	case name == "":
		return invalid("%s name is required", what)
	case len(name) > 63:
		return invalid("%s name %q is longer than 63 characters", what, name)
	case !validName.MatchString(name):
		return invalid("%s name %q is invalid: use letters, digits, '-' and '_', starting and ending with a letter or digit", what, name)
	}
	return nil
}

func validateDuration(what string, d *durationpb.Duration) error {
	if d == nil {
		return nil
	}
	if err := d.CheckValid(); err != nil {
		return invalid("%s: %v", what, err)
	}
	if d.AsDuration() < 0 {
		return invalid("%s must not be negative, got %s", what, d.AsDuration())
	}
	return nil
}

func validateEnum[E ~int32](what string, v E, names map[int32]string) error {
	if _, ok := names[int32(v)]; !ok {
		return invalid("unknown %s %d", what, int32(v))
	}
	return nil
}

// validateServiceSpec checks what can be checked without reading the store.
func validateServiceSpec(spec *api.ServiceSpec) error {
	if spec == nil {
		return invalid("service spec is required")
	}
	name := spec.GetAnnotations().GetName()
	if err := validateName("service", name); err != nil {
		return err
	}
	bad := func(err error) error { return fmt.Errorf("service %s: %w", name, err) }
	switch spec.GetMode().(type) {
	case *api.ServiceSpec_Replicated, *api.ServiceSpec_Global:
	default:
		return bad(invalid("mode is required: replicated or global"))
	}
	if err := validateTaskSpec(spec.GetTask()); err != nil {
		return bad(err)
	}
	for _, u := range []struct {
		what string
		cfg  *api.UpdateConfig
	}{{"update config", spec.GetUpdate()}, {"rollback config", spec.GetRollback()}} {
		if err := validateUpdateConfig(u.what, u.cfg); err != nil {
			return bad(err)
		}
	}
	if err := validateEndpoint(spec.GetEndpoint()); err != nil {
		return bad(err)
	}
	return nil
}

func validateTaskSpec(t *api.TaskSpec) error {
	c := t.GetContainer()
	if c.GetImage() == "" {
		return invalid("image is required")
	}
	targets := map[string]string{}
	for _, r := range c.GetSecrets() {
		if err := validateFileTarget("secret", cmp.Or(r.GetSecretName(), r.GetSecretId()), "/run/secrets/", r.GetFile(), targets); err != nil {
			return err
		}
	}
	for _, r := range c.GetConfigs() {
		if err := validateFileTarget("config", cmp.Or(r.GetConfigName(), r.GetConfigId()), "/", r.GetFile(), targets); err != nil {
			return err
		}
	}
	if err := validateDuration("stop grace period", c.GetStopGracePeriod()); err != nil {
		return err
	}
	for _, m := range c.GetMounts() {
		if err := validateEnum("mount type", m.GetType(), api.Mount_Type_name); err != nil {
			return err
		}
		if m.GetTarget() == "" {
			return invalid("mount of %q has no target", m.GetSource())
		}
		if m.GetType() == api.Mount_BIND && m.GetSource() == "" {
			return invalid("bind mount at %s has no source", m.GetTarget())
		}
	}
	for _, r := range []struct {
		what string
		res  *api.Resources
	}{{"limit", t.GetResources().GetLimits()}, {"reservation", t.GetResources().GetReservations()}} {
		if r.res.GetNanoCpus() < 0 {
			return invalid("CPU %s must not be negative, got %d", r.what, r.res.GetNanoCpus())
		}
		if r.res.GetMemoryBytes() < 0 {
			return invalid("memory %s must not be negative, got %d", r.what, r.res.GetMemoryBytes())
		}
	}
	rp := t.GetRestart()
	if err := validateEnum("restart condition", rp.GetCondition(), api.RestartPolicy_Condition_name); err != nil {
		return err
	}
	if err := validateDuration("restart delay", rp.GetDelay()); err != nil {
		return err
	}
	if err := validateDuration("restart window", rp.GetWindow()); err != nil {
		return err
	}
	// The scheduler's own parser: a spec it would not understand is refused
	// here rather than leaving tasks pending forever.
	if err := scheduler.ValidatePlacement(t.GetPlacement()); err != nil {
		return err
	}
	for _, n := range t.GetNetworks() {
		if n.GetTarget() == "" {
			return invalid("network attachment without a network name or ID")
		}
	}
	return nil
}

// validateFileTarget checks where a secret or config is shown in a task's
// container: numeric owner (names would be the node's users, not the
// container's), permission bits only, and a path no other one takes. dir
// is where a relative target goes. A missing target (the name is used)
// is checked by the worker, which knows the name.
func validateFileTarget(what, ref, dir string, f *api.FileTarget, seen map[string]string) error {
	for _, id := range []struct{ what, v string }{{"uid", f.GetUid()}, {"gid", f.GetGid()}} {
		if id.v == "" {
			continue
		}
		if _, err := strconv.ParseUint(id.v, 10, 31); err != nil {
			return invalid("%s %s: %s %q must be a number", what, ref, id.what, id.v)
		}
	}
	if m := f.GetMode(); m&^0o777 != 0 {
		return invalid("%s %s: mode %#o has bits other than permissions", what, ref, m)
	}
	if n := f.GetName(); n != "" {
		target := n
		if !path.IsAbs(n) {
			target = dir + n
		}
		target = path.Clean(target)
		if other, dup := seen[target]; dup {
			return invalid("%s %s and %s both target %s", what, ref, other, target)
		}
		seen[target] = what + " " + ref
	}
	return nil
}

func validateUpdateConfig(what string, u *api.UpdateConfig) error {
	if u == nil {
		return nil
	}
	if err := validateDuration(what+" delay", u.GetDelay()); err != nil {
		return err
	}
	if err := validateDuration(what+" monitor", u.GetMonitor()); err != nil {
		return err
	}
	if r := u.GetMaxFailureRatio(); r < 0 || r > 1 || r != r {
		return invalid("%s max failure ratio must be between 0 and 1, got %v", what, r)
	}
	if err := validateEnum(what+" failure action", u.GetFailureAction(), api.UpdateConfig_FailureAction_name); err != nil {
		return err
	}
	if err := validateEnum(what+" order", u.GetOrder(), api.UpdateConfig_Order_name); err != nil {
		return err
	}
	if what == "rollback config" && u.GetFailureAction() == api.UpdateConfig_ROLLBACK {
		return invalid("rollback config failure action rollback is not supported: a rollback cannot roll itself back (use pause or continue)")
	}
	return nil
}

func validateEndpoint(e *api.EndpointSpec) error {
	if err := validateEnum("endpoint mode", e.GetMode(), api.EndpointSpec_ResolutionMode_name); err != nil {
		return err
	}
	type key struct {
		proto api.PortConfig_Protocol
		port  uint32
	}
	published := map[key]bool{}
	for _, p := range e.GetPorts() {
		if err := validateEnum("port protocol", p.GetProtocol(), api.PortConfig_Protocol_name); err != nil {
			return err
		}
		if err := validateEnum("publish mode", p.GetPublishMode(), api.PortConfig_PublishMode_name); err != nil {
			return err
		}
		if p.GetTargetPort() == 0 || p.GetTargetPort() > 65535 {
			return invalid("target port %d is out of range 1-65535", p.GetTargetPort())
		}
		if p.GetPublishedPort() > 65535 {
			return invalid("published port %d is out of range 1-65535", p.GetPublishedPort())
		}
		if p.GetPublishedPort() == 0 {
			continue
		}
		k := key{p.GetProtocol(), p.GetPublishedPort()}
		if published[k] {
			return invalid("port %d/%s is published twice", p.GetPublishedPort(), p.GetProtocol())
		}
		published[k] = true
	}
	if e.GetMode() == api.EndpointSpec_DNSRR {
		for _, p := range e.GetPorts() {
			if p.GetPublishMode() == api.PortConfig_INGRESS {
				return invalid("port %d is published through the routing mesh, which needs endpoint mode vip, not dnsrr", p.GetTargetPort())
			}
		}
	}
	return nil
}

// resolveReferences turns the network, secret and config names a spec refers
// to into IDs (Docker lets users name them), refusing ones that do not exist.
func resolveReferences(tx raftstore.ReadTx, spec *api.ServiceSpec) error {
	for _, n := range spec.GetTask().GetNetworks() {
		o, err := resolve(tx, raftstore.KindNetwork, "network", n.GetTarget(), specName)
		if err != nil {
			return api.Wrap(api.ErrInvalidArgument, err)
		}
		n.Target = o.GetId()
	}
	c := spec.GetTask().GetContainer()
	for _, r := range c.GetSecrets() {
		ref := r.GetSecretId()
		if ref == "" {
			ref = r.GetSecretName()
		}
		o, err := resolve(tx, raftstore.KindSecret, "secret", ref, specName)
		if err != nil {
			return api.Wrap(api.ErrInvalidArgument, err)
		}
		r.SecretId, r.SecretName = o.GetId(), specName(o)[0]
	}
	for _, r := range c.GetConfigs() {
		ref := r.GetConfigId()
		if ref == "" {
			ref = r.GetConfigName()
		}
		o, err := resolve(tx, raftstore.KindConfig, "config", ref, specName)
		if err != nil {
			return api.Wrap(api.ErrInvalidArgument, err)
		}
		r.ConfigId, r.ConfigName = o.GetId(), specName(o)[0]
	}
	return nil
}

func getService(tx raftstore.ReadTx, ref string) (*api.Service, error) {
	o, err := resolve(tx, raftstore.KindService, "service", ref, specName)
	if err != nil {
		return nil, err
	}
	return o.(*api.Service), nil
}

// GetService returns a service by ID, name or unique ID prefix.
func (s *Server) GetService(ctx context.Context, req *api.GetServiceRequest) (*api.GetServiceResponse, error) {
	return wire(s.getService(req))
}

func (s *Server) getService(req *api.GetServiceRequest) (*api.GetServiceResponse, error) {
	var svc *api.Service
	var err error
	s.store.View(func(tx raftstore.ReadTx) { svc, err = getService(tx, req.GetServiceId()) })
	if err != nil {
		return nil, err
	}
	return &api.GetServiceResponse{Service: svc}, nil
}

// ListServices returns a page of the services matching every filter, sorted
// by ID (see listPage).
func (s *Server) ListServices(ctx context.Context, req *api.ListServicesRequest) (*api.ListServicesResponse, error) {
	f := req.GetFilters()
	flt := filter{names: f.GetNames(), prefixes: f.GetIdPrefixes(), labels: f.GetLabels()}
	keep := func(svc *api.Service) bool {
		a := svc.GetSpec().GetAnnotations()
		return flt.match(svc.GetId(), []string{a.GetName()}, a.GetLabels())
	}
	resp := &api.ListServicesResponse{}
	s.store.View(func(tx raftstore.ReadTx) {
		resp.Services, resp.NextPageToken = listPage(shared[*api.Service](tx, raftstore.KindService), keep, req.GetPageToken(), req.GetPageSize())
	})
	return resp, nil
}

// CreateService validates spec and stores a new service with spec_version 1.
func (s *Server) CreateService(ctx context.Context, req *api.CreateServiceRequest) (*api.CreateServiceResponse, error) {
	return wire(s.createService(ctx, req))
}

func (s *Server) createService(ctx context.Context, req *api.CreateServiceRequest) (*api.CreateServiceResponse, error) {
	spec := proto.Clone(req.GetSpec()).(*api.ServiceSpec)
	if req.GetSpec() == nil {
		spec = nil
	}
	if err := validateServiceSpec(spec); err != nil {
		return nil, err
	}
	name := spec.GetAnnotations().GetName()
	svc := &api.Service{Id: s.newID(), Spec: spec, SpecVersion: 1}
	if meshPorts(spec) {
		networkAllocMu.Lock()
		defer networkAllocMu.Unlock()
	}
	err := s.store.Update(ctx, func(tx raftstore.WriteTx) error {
		if tx.GetByName(raftstore.KindService, name) != nil {
			return conflict("service %s already exists", name)
		}
		if err := resolveReferences(tx, spec); err != nil {
			return fmt.Errorf("service %s: %w", name, err)
		}
		if err := s.allocatePorts(tx, svc); err != nil {
			return err
		}
		return tx.Create(svc)
	})
	if err != nil {
		return nil, uniqueNameRace(err, "service", name)
	}
	var out *api.Service
	s.store.View(func(tx raftstore.ReadTx) { out = tx.GetService(svc.Id) })
	if out == nil {
		// Removed by someone else between our write and this read.
		return nil, notFound("service %s not found", name)
	}
	return &api.CreateServiceResponse{Service: out}, nil
}

// allocatePorts gives svc the published ports its spec asks for
// (allocator.AllocatePorts), in the transaction that writes svc, so two
// creates racing for one port cannot both win; Endpoint.Spec follows the
// spec, as Docker's inspect shows it. The first port published through the
// routing mesh makes the ingress network, in the same transaction (the
// caller holds networkAllocMu when the spec may need it).
func (s *Server) allocatePorts(tx raftstore.WriteTx, svc *api.Service) error {
	ports, err := allocator.AllocatePorts(tx.Services(), svc)
	switch {
	case errors.Is(err, allocator.ErrPortTaken):
		return api.Wrap(api.ErrConflict, err)
	case errors.Is(err, allocator.ErrExhausted):
		return precondition("%w", err)
	case err != nil:
		return api.Wrap(api.ErrInvalidArgument, err)
	}
	if svc.Endpoint == nil {
		svc.Endpoint = &api.Endpoint{}
	}
	svc.Endpoint.Spec = nil
	if e := svc.GetSpec().GetEndpoint(); e != nil {
		svc.Endpoint.Spec = proto.Clone(e).(*api.EndpointSpec)
	}
	svc.Endpoint.Ports = ports
	if len(allocator.IngressPorts(ports)) > 0 {
		return s.ensureIngress(tx)
	}
	return nil
}

// uniqueNameRace turns the store's refusal of a duplicate name (two creates
// racing past our own check; a random ID never collides in practice) into
// the message our own check gives. A published port another service holds
// is a conflict too, with its own message.
func uniqueNameRace(err error, what, name string) error {
	if errors.Is(err, api.ErrConflict) && !errors.Is(err, allocator.ErrPortTaken) {
		return conflict("%s %s already exists", what, name)
	}
	return err
}

// UpdateService replaces a service's spec (or rolls back to its previous
// one). The request's version must be the stored one: a caller that read an
// older service would otherwise silently undo someone else's change.
func (s *Server) UpdateService(ctx context.Context, req *api.UpdateServiceRequest) (*api.UpdateServiceResponse, error) {
	return wire(s.updateService(ctx, req))
}

// Rollback rolls service id back to its previous spec, as `service
// rollback` does, with message as its update status: the leader's
// orchestrator loop calls it for failure action rollback. version is the
// service's meta.version the decision was made on; a service changed since
// is not rolled back (api.ErrConflict).
func (s *Server) Rollback(ctx context.Context, id string, version uint64, message string) error {
	networkAllocMu.Lock()
	defer networkAllocMu.Unlock()
	return s.store.Update(ctx, func(tx raftstore.WriteTx) error {
		svc := tx.GetService(id)
		if svc == nil {
			return notFound("service %s not found", id)
		}
		if v := svc.GetMeta().GetVersion(); v != version {
			return conflict("service %s changed since its rollback was decided (version %d, current %d)", id, version, v)
		}
		return s.rollback(tx, svc, message)
	})
}

// rollback swaps svc's spec with its previous one and starts the rollback.
func (s *Server) rollback(tx raftstore.WriteTx, svc *api.Service, message string) error {
	if svc.GetPreviousSpec() == nil {
		return precondition("service %s has no previous spec to roll back to", svc.GetSpec().GetAnnotations().GetName())
	}
	svc.Spec, svc.PreviousSpec = svc.PreviousSpec, svc.Spec
	svc.PreviousSpecVersion = svc.SpecVersion
	svc.SpecVersion++
	svc.UpdateStatus = &api.UpdateStatus{
		State:     api.UpdateStatus_ROLLBACK_STARTED,
		StartedAt: timestamp(s.now()),
		Message:   message,
	}
	if err := s.allocatePorts(tx, svc); err != nil {
		return err
	}
	return tx.Update(svc)
}

func (s *Server) updateService(ctx context.Context, req *api.UpdateServiceRequest) (*api.UpdateServiceResponse, error) {
	var spec *api.ServiceSpec
	if !req.GetRollback() {
		if req.GetSpec() == nil {
			return nil, invalid("service spec is required")
		}
		spec = proto.Clone(req.GetSpec()).(*api.ServiceSpec)
		if err := validateServiceSpec(spec); err != nil {
			return nil, err
		}
	}
	var id string
	if req.GetRollback() || meshPorts(spec) {
		networkAllocMu.Lock()
		defer networkAllocMu.Unlock()
	}
	err := s.store.Update(ctx, func(tx raftstore.WriteTx) error {
		svc, err := getService(tx, req.GetServiceId())
		if err != nil {
			return err
		}
		id = svc.GetId()
		name := svc.GetSpec().GetAnnotations().GetName()
		if v := svc.GetMeta().GetVersion(); req.GetServiceVersion() != v {
			return conflict("service %s: update out of sequence (version %d, current %d): read it again and retry",
				name, req.GetServiceVersion(), v)
		}
		if req.GetRollback() {
			return s.rollback(tx, svc, "manually requested rollback")
		}
		if spec.GetAnnotations().GetName() != name {
			return invalid("service %s: renaming services is not supported", name)
		}
		_, wasGlobal := svc.GetSpec().GetMode().(*api.ServiceSpec_Global)
		if _, isGlobal := spec.GetMode().(*api.ServiceSpec_Global); wasGlobal != isGlobal {
			return invalid("service %s: mode cannot change between replicated and global: remove the service and create it again", name)
		}
		if err := resolveReferences(tx, spec); err != nil {
			return fmt.Errorf("service %s: %w", name, err)
		}
		// An update that changes nothing is written all the same, as
		// swarmkit's: the service gets a new version (docker-py's update
		// tests read it) and its spec as the previous one, a paused update
		// resumes; no task is replaced, as none is Dirty.
		svc.PreviousSpec, svc.PreviousSpecVersion = svc.Spec, svc.SpecVersion
		svc.Spec = spec
		svc.SpecVersion++
		// The updater reports the new update's progress.
		svc.UpdateStatus = nil
		if err := s.allocatePorts(tx, svc); err != nil {
			return err
		}
		return tx.Update(svc)
	})
	if err != nil {
		return nil, err
	}
	var out *api.Service
	s.store.View(func(tx raftstore.ReadTx) { out = tx.GetService(id) })
	if out == nil {
		return nil, notFound("service %s not found", req.GetServiceId())
	}
	return &api.UpdateServiceResponse{Service: out}, nil
}

// RemoveService deletes a service. Its tasks are shut down and deleted by the
// orchestrator (see the package doc).
func (s *Server) RemoveService(ctx context.Context, req *api.RemoveServiceRequest) (*api.RemoveServiceResponse, error) {
	return wire(s.removeService(ctx, req))
}

func (s *Server) removeService(ctx context.Context, req *api.RemoveServiceRequest) (*api.RemoveServiceResponse, error) {
	err := s.store.Update(ctx, func(tx raftstore.WriteTx) error {
		svc, err := getService(tx, req.GetServiceId())
		if err != nil {
			return err
		}
		return tx.Delete(raftstore.KindService, svc.GetId())
	})
	if err != nil {
		return nil, err
	}
	return &api.RemoveServiceResponse{}, nil
}

// meshPorts reports whether spec publishes a port through the routing mesh
// (and so may need the ingress network made).
func meshPorts(spec *api.ServiceSpec) bool {
	return len(allocator.IngressPorts(spec.GetEndpoint().GetPorts())) > 0
}
