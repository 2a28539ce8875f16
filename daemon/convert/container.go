package convert

import (
	"os"
	"reflect"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/swarm"
	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/containerd/containers"
	"github.com/shoal-project/shoal/worker"
)

// isZero reports whether v (a pointer, slice, map or struct) holds nothing:
// Docker clients send empty structs (docker's CLI: DNSConfig{}, Init=false)
// for options that were not given, and those must not be refused.
func isZero(v any) bool { return zeroValue(reflect.ValueOf(v)) }

func zeroValue(rv reflect.Value) bool {
	switch rv.Kind() {
	case reflect.Invalid:
		return true
	case reflect.Pointer, reflect.Interface:
		return rv.IsNil() || zeroValue(rv.Elem())
	case reflect.Slice, reflect.Map:
		return rv.Len() == 0
	case reflect.Struct:
		for i := 0; i < rv.NumField(); i++ {
			if !zeroValue(rv.Field(i)) {
				return false
			}
		}
		return true
	}
	return rv.IsZero()
}

// containerSpecToAPI converts the container part of a task template. Options
// shoal's runtime has no field for are refused when set.
func containerSpecToAPI(c *swarm.ContainerSpec) (*api.ContainerSpec, error) {
	if c == nil {
		return nil, nil
	}
	health, err := healthToAPI(c.Healthcheck)
	if err != nil {
		return nil, err
	}
	if !c.Isolation.IsDefault() {
		return nil, notSupported("isolation %q is not supported", c.Isolation)
	}
	for _, o := range []struct {
		what string
		v    any
	}{
		{"privileges are", c.Privileges},
		{"dns config is", c.DNSConfig},
		{"sysctls are", c.Sysctls},
		{"ulimits are", c.Ulimits},
		{"oom score adjustment is", c.OomScoreAdj},
	} {
		if !isZero(o.v) {
			return nil, notSupported("%s not supported", o.what)
		}
	}
	out := &api.ContainerSpec{
		Image:           c.Image,
		Labels:          copyMap(c.Labels),
		Command:         copyStrings(c.Command),
		Args:            copyStrings(c.Args),
		Hostname:        c.Hostname,
		Env:             copyStrings(c.Env),
		Dir:             c.Dir,
		User:            c.User,
		Groups:          copyStrings(c.Groups),
		Tty:             c.TTY,
		OpenStdin:       c.OpenStdin,
		ReadOnly:        c.ReadOnly,
		StopSignal:      c.StopSignal,
		StopGracePeriod: durationPtrToAPI(c.StopGracePeriod),
		Healthcheck:     health,
		Init:            c.Init != nil && *c.Init,
	}
	if _, err := worker.ExtraHosts(c.Hosts); err != nil {
		return nil, invalid("%v", err)
	}
	out.Hosts = copyStrings(c.Hosts)
	for _, name := range append(copyStrings(c.CapabilityAdd), c.CapabilityDrop...) {
		if err := containers.CheckCapability(name); err != nil {
			return nil, invalid("%v", err)
		}
	}
	out.CapabilityAdd, out.CapabilityDrop = copyStrings(c.CapabilityAdd), copyStrings(c.CapabilityDrop)
	for _, m := range c.Mounts {
		am, err := mountToAPI(m)
		if err != nil {
			return nil, err
		}
		out.Mounts = append(out.Mounts, am)
	}
	for _, s := range c.Secrets {
		if s == nil {
			continue
		}
		out.Secrets = append(out.Secrets, &api.SecretReference{SecretId: s.SecretID, SecretName: s.SecretName, File: fileTargetToAPI(s.File)})
	}
	for _, r := range c.Configs {
		if r == nil {
			continue
		}
		if r.Runtime != nil {
			return nil, notSupported("config %s: runtime targets are not supported", refName(r.ConfigName, r.ConfigID))
		}
		var f *swarm.SecretReferenceFileTarget
		if r.File != nil {
			f = (*swarm.SecretReferenceFileTarget)(r.File)
		}
		out.Configs = append(out.Configs, &api.ConfigReference{ConfigId: r.ConfigID, ConfigName: r.ConfigName, File: fileTargetToAPI(f)})
	}
	return out, nil
}

func refName(name, id string) string {
	if name != "" {
		return name
	}
	return id
}

// mountToAPI keeps type, source, target and read-only. Consistency is
// accepted and dropped: it means nothing on Linux, dockerd ignores it too.
func mountToAPI(m mount.Mount) (*api.Mount, error) {
	out := &api.Mount{Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly}
	switch m.Type {
	case mount.TypeBind:
		out.Type = api.Mount_BIND
	case mount.TypeVolume:
		out.Type = api.Mount_VOLUME
	case mount.TypeTmpfs:
		out.Type = api.Mount_TMPFS
	case "":
		return nil, invalid("mount at %s: mount type is required", m.Target)
	default:
		return nil, notSupported("mounts of type %s are not supported", m.Type)
	}
	if b := m.BindOptions; b != nil {
		if b.Propagation != "" && b.Propagation != mount.PropagationRPrivate {
			return nil, notSupported("mount at %s: bind propagation %s is not supported", m.Target, b.Propagation)
		}
		if b.NonRecursive || b.CreateMountpoint || b.ReadOnlyNonRecursive || b.ReadOnlyForceRecursive {
			return nil, notSupported("mount at %s: bind options are not supported", m.Target)
		}
	}
	switch {
	case !isZero(m.VolumeOptions):
		return nil, notSupported("mount at %s: volume options are not supported", m.Target)
	case !isZero(m.TmpfsOptions):
		return nil, notSupported("mount at %s: tmpfs options are not supported", m.Target)
	case !isZero(m.ImageOptions):
		return nil, notSupported("mount at %s: image options are not supported", m.Target)
	case m.ClusterOptions != nil:
		return nil, notSupported("mount at %s: cluster volumes are not supported", m.Target)
	}
	return out, nil
}

func fileTargetToAPI(f *swarm.SecretReferenceFileTarget) *api.FileTarget {
	if f == nil {
		return nil
	}
	return &api.FileTarget{Name: f.Name, Uid: f.UID, Gid: f.GID, Mode: uint32(f.Mode)}
}

func fileTargetToSwarm(f *api.FileTarget) *swarm.SecretReferenceFileTarget {
	if f == nil {
		return nil
	}
	return &swarm.SecretReferenceFileTarget{Name: f.GetName(), UID: f.GetUid(), GID: f.GetGid(), Mode: os.FileMode(f.GetMode())}
}

// containerSpecToSwarm is the container part of a task template as Docker
// shows it.
func containerSpecToSwarm(c *api.ContainerSpec) *swarm.ContainerSpec {
	if c == nil {
		return nil
	}
	out := &swarm.ContainerSpec{
		Image:           c.GetImage(),
		Labels:          copyMap(c.GetLabels()),
		Command:         copyStrings(c.GetCommand()),
		Args:            copyStrings(c.GetArgs()),
		Hostname:        c.GetHostname(),
		Env:             copyStrings(c.GetEnv()),
		Dir:             c.GetDir(),
		User:            c.GetUser(),
		Groups:          copyStrings(c.GetGroups()),
		TTY:             c.GetTty(),
		OpenStdin:       c.GetOpenStdin(),
		ReadOnly:        c.GetReadOnly(),
		StopSignal:      c.GetStopSignal(),
		StopGracePeriod: durationPtrToSwarm(c.GetStopGracePeriod()),
		Healthcheck:     healthToSwarm(c.GetHealthcheck()),
		Hosts:           copyStrings(c.GetHosts()),
		CapabilityAdd:   copyStrings(c.GetCapabilityAdd()),
		CapabilityDrop:  copyStrings(c.GetCapabilityDrop()),
	}
	if c.GetInit() {
		init := true
		out.Init = &init
	}
	for _, m := range c.GetMounts() {
		sm := mount.Mount{Source: m.GetSource(), Target: m.GetTarget(), ReadOnly: m.GetReadOnly()}
		switch m.GetType() {
		case api.Mount_BIND:
			sm.Type = mount.TypeBind
		case api.Mount_VOLUME:
			sm.Type = mount.TypeVolume
		case api.Mount_TMPFS:
			sm.Type = mount.TypeTmpfs
		}
		out.Mounts = append(out.Mounts, sm)
	}
	for _, s := range c.GetSecrets() {
		out.Secrets = append(out.Secrets, &swarm.SecretReference{SecretID: s.GetSecretId(), SecretName: s.GetSecretName(), File: fileTargetToSwarm(s.GetFile())})
	}
	for _, r := range c.GetConfigs() {
		ref := &swarm.ConfigReference{ConfigID: r.GetConfigId(), ConfigName: r.GetConfigName()}
		if f := fileTargetToSwarm(r.GetFile()); f != nil {
			ref.File = (*swarm.ConfigReferenceFileTarget)(f)
		}
		out.Configs = append(out.Configs, ref)
	}
	return out
}

// healthToAPI checks a service's healthcheck as dockerd checks a
// container's, and converts it; nil stays nil (the image's applies).
func healthToAPI(h *container.HealthConfig) (*api.HealthConfig, error) {
	if h == nil || isZero(h) {
		return nil, nil
	}
	check := containers.HealthConfig{Test: h.Test, Interval: h.Interval, Timeout: h.Timeout,
		StartPeriod: h.StartPeriod, StartInterval: h.StartInterval, Retries: h.Retries}
	if err := containers.ValidateHealthcheck(&check); err != nil {
		return nil, invalid("%s", strings.TrimPrefix(err.Error(), containers.ErrInvalidArgument.Error()+": "))
	}
	return &api.HealthConfig{
		Test: copyStrings(h.Test), Interval: nonZeroDurationToAPI(h.Interval), Timeout: nonZeroDurationToAPI(h.Timeout),
		StartPeriod: nonZeroDurationToAPI(h.StartPeriod), StartInterval: nonZeroDurationToAPI(h.StartInterval), Retries: int32(h.Retries),
	}, nil
}

// healthToSwarm is a task's healthcheck as Docker's API shows it.
func healthToSwarm(h *api.HealthConfig) *container.HealthConfig {
	if h == nil {
		return nil
	}
	return &container.HealthConfig{
		Test: copyStrings(h.GetTest()), Interval: durationToSwarm(h.GetInterval()), Timeout: durationToSwarm(h.GetTimeout()),
		StartPeriod: durationToSwarm(h.GetStartPeriod()), StartInterval: durationToSwarm(h.GetStartInterval()), Retries: int(h.GetRetries()),
	}
}
