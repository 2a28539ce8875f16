package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/containerd/containers"
	"github.com/shoal-project/shoal/containerd/images"
	"github.com/shoal-project/shoal/containerd/logs"
	"github.com/shoal-project/shoal/containerd/volumes"
)

// Labels put on every task container, as Docker Swarm does: they tie a
// container to its task across agent restarts.
const (
	LabelTaskID    = "com.docker.swarm.task.id"
	LabelTaskName  = "com.docker.swarm.task.name"
	LabelServiceID = "com.docker.swarm.service.id"
	LabelNodeID    = "com.docker.swarm.node.id"
	// LabelServiceName is for users (`ps --filter label=...`), as Docker's.
	LabelServiceName = "com.docker.swarm.service.name"
)

// DefaultStopGracePeriod is the wait between the stop signal and SIGKILL when
// the task spec names none (Docker's default).
const DefaultStopGracePeriod = 10 * time.Second

// Sentinel errors of the worker.
var (
	// ErrNoSuchImage: the task's image is not in the node's image store
	// and could not be pulled.
	ErrNoSuchImage = errors.New("No such image")
	// ErrNotFound: no such container.
	ErrNotFound = errors.New("no such container")
	// ErrInvalidArgument: a task or configuration the agent cannot use.
	ErrInvalidArgument = errors.New("invalid argument")
)

// ContainerState is what the agent needs to know of one task container.
type ContainerState struct {
	ID     string
	TaskID string
	// ServiceID is the task's service (from LabelServiceID), for service logs.
	ServiceID string
	// Status is created, running or exited (Docker's words).
	Status   string
	Pid      int
	ExitCode int
	// Error is the runtime's message when the container failed to start.
	Error string
	// Health is the container's healthcheck status (HealthStarting,
	// HealthHealthy, HealthUnhealthy), "" when it has no healthcheck.
	Health string
}

// Container states the step function distinguishes.
const (
	StatusCreated = "created"
	StatusRunning = "running"
	StatusExited  = "exited"
)

// Health statuses of a container with a healthcheck (Docker's words).
const (
	HealthStarting  = "starting"
	HealthHealthy   = "healthy"
	HealthUnhealthy = "unhealthy"
)

// HealthWaiter is a Runtime that also reports container health. A task
// whose container has a healthcheck is running only once healthy, and
// fails when it turns unhealthy.
type HealthWaiter interface {
	// WaitHealth returns when the container's health is no longer health
	// or the container no longer runs (or ctx ends).
	WaitHealth(ctx context.Context, id, health string) (ContainerState, error)
}

// Runtime is what a task needs from the node's container engine.
// Implementations must be safe for concurrent use.
type Runtime interface {
	// CheckImage returns an error matching ErrNoSuchImage if ref is not present locally.
	CheckImage(ctx context.Context, ref string) error
	// Create makes (does not start) the container of t, labelled with
	// LabelTaskID, LabelServiceID and LabelNodeID.
	Create(ctx context.Context, t *api.Task) (ContainerState, error)
	Start(ctx context.Context, id string) error
	// Wait returns when the container is no longer running (or ctx ends).
	Wait(ctx context.Context, id string) (ContainerState, error)
	// Stop sends the stop signal and kills after grace (a negative grace:
	// the one the container was created with, from its task's spec);
	// stopping a container that does not run is not an error.
	Stop(ctx context.Context, id string, grace time.Duration) error
	// Remove deletes a container (stopped or not); a missing one is not an error.
	Remove(ctx context.Context, id string) error
	// List returns the containers that carry LabelTaskID.
	List(ctx context.Context) ([]ContainerState, error)
	// Inspect returns the task container with this ID or name (a task's
	// is ContainerName); ErrNotFound when there is none.
	Inspect(ctx context.Context, idOrName string) (ContainerState, error)
}

// EngineRuntime is the Runtime over the node's own engine.
type EngineRuntime struct {
	Engine *containers.Engine
	Images *images.Store
	// NetworkMode of task containers without overlay networks: none (the
	// default), host or bridge.
	NetworkMode string
	// NetNSDir holds the namespaces of tasks on overlay networks
	// (TaskNetNSPath); "" on a node without overlay networking.
	NetNSDir string
	// Volumes is the node's volume store: a task's named volume is made
	// on the node if it is missing, as Swarm does.
	Volumes *volumes.Store
	// Pull, if set, fetches an image the node lacks (ref as the task
	// names it, the service's --with-registry-auth credentials):
	// PrepareImage calls it before the container is created.
	Pull func(ctx context.Context, ref, registryAuth string) error
	// Secrets are the secrets and configs the agent received with the
	// tasks; SecretsRoot, a tmpfs, holds each task's files of them
	// (TaskFiles). A task that uses some fails without them.
	Secrets     *Secrets
	SecretsRoot string

	pullOnce sync.Once
	pullSem  chan struct{} // held by the one pull at a time (PrepareImage)
}

var _ Runtime = (*EngineRuntime)(nil)

// CheckImage implements Runtime.
func (r *EngineRuntime) CheckImage(_ context.Context, ref string) error {
	if _, err := r.localImage(ref); err != nil {
		if errors.Is(err, images.ErrNotFound) {
			return fmt.Errorf("%w: %s", ErrNoSuchImage, ref)
		}
		return fmt.Errorf("image %s: %w", ref, err)
	}
	return nil
}

var badNameChars = regexp.MustCompile(`[^a-zA-Z0-9_.-]`)

// ContainerName is the name of t's container: the task's name
// (web.1.<task ID>) as Docker Swarm names it, or the task ID.
func ContainerName(t *api.Task) string {
	name := badNameChars.ReplaceAllString(t.GetAnnotations().GetName(), "_")
	if name == "" || strings.Trim(name, "_.-") == "" {
		return "task." + t.GetId()
	}
	if !strings.Contains(name, t.GetId()) {
		name += "." + t.GetId()
	}
	return strings.TrimLeft(name, "_.-")
}

// ContainerConfig turns a task into the engine's container configuration.
func ContainerConfig(t *api.Task, networkMode string) (containers.Config, error) {
	cs := t.GetSpec().GetContainer()
	if t.GetId() == "" || cs.GetImage() == "" {
		return containers.Config{}, fmt.Errorf("%w: task %q has no ID or no image", ErrInvalidArgument, t.GetId())
	}
	labels := map[string]string{}
	for k, v := range cs.GetLabels() {
		labels[k] = v
	}
	labels[LabelTaskID] = t.GetId()
	labels[LabelTaskName] = t.GetAnnotations().GetName()
	labels[LabelServiceID] = t.GetServiceId()
	labels[LabelServiceName] = t.GetServiceAnnotations().GetName()
	labels[LabelNodeID] = t.GetNodeId()
	grace := int(stopGrace(t) / time.Second)
	if networkMode == "" {
		networkMode = "none"
	}
	cfg := containers.Config{
		Image:          cs.GetImage(),
		Entrypoint:     cs.GetCommand(),
		Cmd:            cs.GetArgs(),
		Env:            cs.GetEnv(),
		WorkingDir:     cs.GetDir(),
		User:           cs.GetUser(),
		Hostname:       cs.GetHostname(),
		Labels:         labels,
		OpenStdin:      cs.GetOpenStdin(),
		StopSignal:     cs.GetStopSignal(),
		StopTimeout:    &grace,
		ReadonlyRootfs: cs.GetReadOnly(),
		NetworkMode:    networkMode,
		GroupAdd:       cs.GetGroups(),
		Tty:            cs.GetTty(),
		Healthcheck:    healthConfig(cs.GetHealthcheck()),
	}
	if lim := t.GetSpec().GetResources().GetLimits(); lim != nil {
		cfg.Memory = lim.GetMemoryBytes()
		cfg.NanoCPUs = lim.GetNanoCpus()
		cfg.PidsLimit = lim.GetPids()
	}
	cfg.Init = cs.GetInit()
	cfg.CapAdd, cfg.CapDrop = cs.GetCapabilityAdd(), cs.GetCapabilityDrop()
	hosts, err := ExtraHosts(cs.GetHosts())
	if err != nil {
		return containers.Config{}, fmt.Errorf("%w: task %s: %w", ErrInvalidArgument, t.GetId(), err)
	}
	cfg.ExtraHosts = hosts
	// Binds and tmpfs mounts here; volumes need the node's store (Create).
	for _, m := range cs.GetMounts() {
		switch m.GetType() {
		case api.Mount_BIND:
			cfg.Binds = append(cfg.Binds, bindSpec(m.GetSource(), m))
		case api.Mount_TMPFS:
			if cfg.Tmpfs == nil {
				cfg.Tmpfs = map[string]string{}
			}
			opts := "nosuid,nodev,noexec" // Docker's defaults
			if m.GetReadOnly() {
				opts += ",ro"
			}
			cfg.Tmpfs[m.GetTarget()] = opts
		}
	}
	return cfg, nil
}

// ExtraHosts turns a service's hosts, /etc/hosts lines "IP name
// [aliases...]" as Docker's API carries --host, into the engine's "name:IP"
// entries.
func ExtraHosts(lines []string) ([]string, error) {
	var out []string
	for _, line := range lines {
		f := strings.Fields(line)
		if len(f) < 2 {
			return nil, fmt.Errorf("host %q: want \"IP name [aliases...]\"", line)
		}
		if _, err := netip.ParseAddr(f[0]); err != nil {
			return nil, fmt.Errorf("host %q: %q is not an IP address", line, f[0])
		}
		for _, name := range f[1:] {
			out = append(out, name+":"+f[0])
		}
	}
	return out, nil
}

// bindSpec is the engine's bind of src at m's target.
func bindSpec(src string, m *api.Mount) string {
	b := src + ":" + m.GetTarget()
	if m.GetReadOnly() {
		b += ":ro"
	}
	return b
}

// healthConfig is the task's healthcheck for the engine; nil lets the
// image's HEALTHCHECK apply.
func healthConfig(h *api.HealthConfig) *containers.HealthConfig {
	if h == nil {
		return nil
	}
	return &containers.HealthConfig{
		Test: h.GetTest(), Interval: h.GetInterval().AsDuration(), Timeout: h.GetTimeout().AsDuration(),
		StartPeriod: h.GetStartPeriod().AsDuration(), StartInterval: h.GetStartInterval().AsDuration(), Retries: int(h.GetRetries()),
	}
}

// stopGrace is the task's stop grace period, DefaultStopGracePeriod if unset.
func stopGrace(t *api.Task) time.Duration {
	if d := t.GetSpec().GetContainer().GetStopGracePeriod(); d != nil && d.AsDuration() >= 0 {
		return d.AsDuration()
	}
	return DefaultStopGracePeriod
}

// Create implements Runtime.
func (r *EngineRuntime) Create(ctx context.Context, t *api.Task) (ContainerState, error) {
	cfg, err := ContainerConfig(t, r.NetworkMode)
	if err != nil {
		return ContainerState{}, err
	}
	if _, err := r.Images.Get(cfg.Image); err != nil {
		// Pulled under the cluster registry's name: the same manifest.
		if id, lerr := r.localImage(cfg.Image); lerr == nil {
			cfg.Image = id
		}
	}
	if len(t.GetNetworks()) > 0 {
		// The namespace is made and plumbed by Network.Attach before the
		// start; the container only joins it.
		if r.NetNSDir == "" {
			return ContainerState{}, fmt.Errorf("%w: task %s is on networks but this node has no overlay networking", ErrInvalidArgument, t.GetId())
		}
		cfg.NetworkMode = "none"
		cfg.NetNSPath = TaskNetNSPath(r.NetNSDir, t.GetId())
		useEmbeddedDNS(&cfg)
	}
	files, err := TaskFiles(r.SecretsRoot, t, r.Secrets)
	if err != nil {
		return ContainerState{}, err
	}
	cfg.Binds = append(cfg.Binds, files...)
	vols, err := r.makeVolumes(t, &cfg)
	if err != nil {
		r.dropFiles(t.GetId())
		return ContainerState{}, err
	}
	c, err := r.Engine.Create(ctx, ContainerName(t), cfg)
	if err != nil {
		r.dropVolumes(vols)
		r.dropFiles(t.GetId())
		return ContainerState{}, fmt.Errorf("create container of task %s: %w", t.GetId(), err)
	}
	if err := r.attachVolumes(ctx, c.ID, vols); err != nil {
		_ = r.Engine.Remove(context.Background(), c.ID, true)
		r.dropVolumes(vols)
		r.dropFiles(t.GetId())
		return ContainerState{}, fmt.Errorf("create container of task %s: %w", t.GetId(), err)
	}
	return stateOf(c), nil
}

// taskVolume is a volume mount of a task, its volume made or found.
type taskVolume struct {
	name, target string
	made         bool
}

// makeVolumes finds or makes the task's volumes and adds their binds to cfg.
func (r *EngineRuntime) makeVolumes(t *api.Task, cfg *containers.Config) (vols []taskVolume, err error) {
	defer func() {
		if err != nil {
			r.dropVolumes(vols)
		}
	}()
	for _, m := range t.GetSpec().GetContainer().GetMounts() {
		if m.GetType() != api.Mount_VOLUME {
			continue
		}
		if r.Volumes == nil {
			return vols, fmt.Errorf("%w: task %s: volume mounts need a volume store", ErrInvalidArgument, t.GetId())
		}
		v, made, err := r.Volumes.Create(m.GetSource(), "", nil, nil)
		if err != nil {
			return vols, fmt.Errorf("task %s: volume %q: %w", t.GetId(), m.GetSource(), err)
		}
		vols = append(vols, taskVolume{name: v.Name, target: m.GetTarget(), made: made})
		cfg.Binds = append(cfg.Binds, bindSpec(v.Mountpoint, m))
	}
	return vols, nil
}

// attachVolumes takes the container's references on its volumes and
// copies the image's content into new ones; anonymous volumes go with the
// container, as Swarm removes a task's container with its volumes.
func (r *EngineRuntime) attachVolumes(ctx context.Context, id string, vols []taskVolume) error {
	for _, v := range vols {
		if _, err := r.Volumes.Mount(v.name, id); err != nil {
			return err
		}
		if vol, err := r.Volumes.Get(v.name); err == nil && vol.Anonymous() {
			if err := r.Volumes.SetRemoveWith(v.name, id); err != nil {
				return err
			}
		}
		// The image's content under the mount (ArchivePath, as cp, would
		// read the volume itself), through symlinks as the engine's copy-up.
		err := r.Volumes.CopyUp(ctx, v.name, func(w io.Writer) error { return r.Engine.ArchiveResolved(ctx, id, v.target, w) })
		if err != nil && !errors.Is(err, containers.ErrNotFound) {
			return fmt.Errorf("copy the image's %s into volume %s: %w", v.target, v.name, err)
		}
	}
	return nil
}

// dropVolumes removes the volumes a failed create made.
func (r *EngineRuntime) dropVolumes(vols []taskVolume) {
	for _, v := range vols {
		if v.made {
			_ = r.Volumes.Remove(v.name, true, "")
		}
	}
}

// Start implements Runtime.
func (r *EngineRuntime) Start(ctx context.Context, id string) error {
	if err := r.Engine.Start(ctx, id); err != nil {
		return fmt.Errorf("start %s: %w", id, err)
	}
	return nil
}

// Wait implements Runtime.
func (r *EngineRuntime) Wait(ctx context.Context, id string) (ContainerState, error) {
	if _, err := r.Engine.Wait(ctx, id, containers.WaitNotRunning, nil); err != nil {
		return ContainerState{}, r.notFound(id, err)
	}
	c, err := r.Engine.Get(id)
	if err != nil {
		return ContainerState{}, r.notFound(id, err)
	}
	return stateOf(c), nil
}

// WaitHealth implements HealthWaiter.
func (r *EngineRuntime) WaitHealth(ctx context.Context, id, health string) (ContainerState, error) {
	c, err := r.Engine.WaitHealth(ctx, id, health)
	if err != nil {
		return ContainerState{}, r.notFound(id, err)
	}
	return stateOf(c), nil
}

// Stop implements Runtime.
func (r *EngineRuntime) Stop(ctx context.Context, id string, grace time.Duration) error {
	var timeout *int
	if grace >= 0 {
		secs := int((grace + time.Second - 1) / time.Second)
		timeout = &secs
	}
	err := r.Engine.Stop(ctx, id, timeout)
	if err == nil || errors.Is(err, containers.ErrNotModified) {
		return nil
	}
	return r.notFound(id, err)
}

// Remove implements Runtime.
func (r *EngineRuntime) Remove(ctx context.Context, id string) error {
	task := ""
	if c, err := r.Engine.Get(id); err == nil {
		task = c.Config.Labels[LabelTaskID]
	}
	err := r.Engine.Remove(ctx, id, true)
	if err == nil || errors.Is(err, containers.ErrNotFound) {
		r.dropFiles(task)
		return nil
	}
	return fmt.Errorf("remove %s: %w", id, err)
}

// dropFiles removes a task's secret and config files, if it had any.
func (r *EngineRuntime) dropFiles(task string) {
	if task == "" || r.SecretsRoot == "" {
		return
	}
	_ = os.RemoveAll(SecretsDir(r.SecretsRoot, task))
}

// List implements Runtime.
func (r *EngineRuntime) List(context.Context) ([]ContainerState, error) {
	var out []ContainerState
	for _, c := range r.Engine.List(true) {
		if c.Config.Labels[LabelTaskID] != "" {
			out = append(out, stateOf(c))
		}
	}
	return out, nil
}

// Inspect implements Runtime: one container's state, where List copies
// every container of the node (a task's goroutine asks at its start and
// after each event: with List, a node's N tasks cost N*N copies).
func (r *EngineRuntime) Inspect(_ context.Context, idOrName string) (ContainerState, error) {
	c, err := r.Engine.Get(idOrName)
	if err != nil {
		return ContainerState{}, r.notFound(idOrName, err)
	}
	if c.Config.Labels[LabelTaskID] == "" {
		return ContainerState{}, fmt.Errorf("%w: %s is not a task's container", ErrNotFound, idOrName)
	}
	return stateOf(c), nil
}

// Logs implements LogReader.
func (r *EngineRuntime) Logs(ctx context.Context, id string, opts containers.LogsOptions, fn func(logs.Entry) error) error {
	return r.Engine.Logs(ctx, id, opts, fn)
}

func (r *EngineRuntime) notFound(id string, err error) error {
	if errors.Is(err, containers.ErrNotFound) {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return fmt.Errorf("container %s: %w", id, err)
}

func stateOf(c containers.Container) ContainerState {
	st := ContainerState{ID: c.ID, TaskID: c.Config.Labels[LabelTaskID], ServiceID: c.Config.Labels[LabelServiceID], Pid: c.State.Pid, ExitCode: c.State.ExitCode, Error: c.State.Error}
	if h := c.State.Health; h != nil {
		st.Health = h.Status
	}
	switch {
	case c.State.Running:
		st.Status = StatusRunning
	case c.State.StartedAt.IsZero() && c.State.FinishedAt.IsZero():
		st.Status = StatusCreated
	default:
		st.Status = StatusExited
	}
	return st
}
