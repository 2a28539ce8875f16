package convert

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/swarm"
	"github.com/shoal-project/shoal/api"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func ptr[T any](v T) *T { return &v }

// jsonEqual compares what goes over the wire.
func jsonEqual(t *testing.T, what string, got, want any) {
	t.Helper()
	g, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	w, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if string(g) != string(w) {
		t.Errorf("%s:\n got %s\nwant %s", what, g, w)
	}
}

// cliSpec builds a ServiceSpec the way cli/service_opts.go does for
// `service create` (empty label maps, Init=&false, an empty DNSConfig,
// Resources and Placement always present).
func cliSpec(name, image string, args []string, edit func(*swarm.ServiceSpec)) swarm.ServiceSpec {
	init := false
	s := swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: name, Labels: map[string]string{}},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{Image: image, Args: args, Labels: map[string]string{}, Init: &init, DNSConfig: &swarm.DNSConfig{}},
			Resources: &swarm.ResourceRequirements{
				Limits:       &swarm.Limit{},
				Reservations: &swarm.Resources{},
			},
			Placement: &swarm.Placement{Constraints: []string{}},
		},
		Mode:         swarm.ServiceMode{Replicated: &swarm.ReplicatedService{}},
		EndpointSpec: &swarm.EndpointSpec{Mode: swarm.ResolutionModeVIP},
	}
	if edit != nil {
		edit(&s)
	}
	return s
}

// normalized is what a spec reads back as after a trip through api: the
// fields with no api counterpart that the CLI sends empty (and Init false)
// come back unset,
// the runtime is reported, and a replicated mode without a count is 1.
func normalized(s swarm.ServiceSpec) swarm.ServiceSpec {
	if c := s.TaskTemplate.ContainerSpec; c != nil {
		cc := *c
		cc.DNSConfig = nil
		if cc.Init != nil && !*cc.Init {
			cc.Init = nil // false is the default, shown unset
		}
		s.TaskTemplate.ContainerSpec = &cc
		s.TaskTemplate.Runtime = swarm.RuntimeContainer
	}
	if r := s.Mode.Replicated; r != nil && r.Replicas == nil {
		s.Mode.Replicated = &swarm.ReplicatedService{Replicas: ptr(uint64(1))}
	}
	return s
}

func fullSpec() swarm.ServiceSpec {
	return cliSpec("web", "nginx:1.25", []string{"-g", "daemon off;"}, func(s *swarm.ServiceSpec) {
		s.Labels = map[string]string{"tier": "front"}
		s.Mode.Replicated.Replicas = ptr(uint64(3))
		c := s.TaskTemplate.ContainerSpec
		c.Command = []string{"nginx"}
		c.Env = []string{"A=1", "B=two"}
		c.Labels = map[string]string{"c": "d"}
		c.Hostname, c.Dir, c.User, c.StopSignal = "h1", "/srv", "www:www", "SIGQUIT"
		c.TTY, c.ReadOnly = true, true
		c.StopGracePeriod = ptr(20 * time.Second)
		s.TaskTemplate.Resources.Limits = &swarm.Limit{NanoCPUs: 1500000000, MemoryBytes: 256 << 20}
		s.TaskTemplate.Resources.Reservations = &swarm.Resources{NanoCPUs: 250000000, MemoryBytes: 64 << 20}
		s.TaskTemplate.RestartPolicy = &swarm.RestartPolicy{
			Condition: swarm.RestartPolicyConditionOnFailure, Delay: ptr(3 * time.Second),
			MaxAttempts: ptr(uint64(2)), Window: ptr(time.Minute),
		}
		s.TaskTemplate.Placement = &swarm.Placement{
			Constraints: []string{"node.labels.az==a", "node.role!=manager"},
			Preferences: []swarm.PlacementPreference{{Spread: &swarm.SpreadOver{SpreadDescriptor: "node.labels.rack"}}},
			MaxReplicas: 2,
			Platforms:   []swarm.Platform{{Architecture: "amd64", OS: "linux"}},
		}
		s.TaskTemplate.Networks = []swarm.NetworkAttachmentConfig{{Target: "net1id", Aliases: []string{"www"}}, {Target: "net2id"}}
		s.TaskTemplate.ForceUpdate = 4
		s.EndpointSpec.Ports = []swarm.PortConfig{
			{Protocol: network.TCP, TargetPort: 80, PublishedPort: 8080, PublishMode: swarm.PortConfigPublishModeIngress},
			{Protocol: network.UDP, TargetPort: 53, PublishedPort: 5353, PublishMode: swarm.PortConfigPublishModeHost},
			{Protocol: network.SCTP, TargetPort: 99, PublishMode: swarm.PortConfigPublishModeIngress},
		}
		s.UpdateConfig = &swarm.UpdateConfig{Parallelism: 1, FailureAction: swarm.UpdateFailureActionPause, Monitor: 7 * time.Second, Order: swarm.UpdateOrderStopFirst}
		s.RollbackConfig = &swarm.UpdateConfig{Parallelism: 2, Delay: time.Second, FailureAction: swarm.UpdateFailureActionContinue, Monitor: time.Minute, MaxFailureRatio: 0.25, Order: swarm.UpdateOrderStartFirst}
	})
}

func TestServiceSpecRoundTrip(t *testing.T) {
	cases := []struct {
		name string
		in   swarm.ServiceSpec
	}{
		{"create defaults", cliSpec("web", "busybox:latest", nil, nil)},
		{"full", fullSpec()},
		{"global", cliSpec("agent", "busybox:latest", []string{"sleep", "1d"}, func(s *swarm.ServiceSpec) {
			s.Mode = swarm.ServiceMode{Global: &swarm.GlobalService{}}
		})},
		{"dnsrr host ports", cliSpec("db", "redis:7", nil, func(s *swarm.ServiceSpec) {
			s.EndpointSpec = &swarm.EndpointSpec{Mode: swarm.ResolutionModeDNSRR, Ports: []swarm.PortConfig{{Protocol: network.TCP, TargetPort: 6379, PublishedPort: 6379, PublishMode: swarm.PortConfigPublishModeHost}}}
		})},
		{"scaled to zero", cliSpec("idle", "busybox:latest", nil, func(s *swarm.ServiceSpec) {
			s.Mode.Replicated.Replicas = ptr(uint64(0))
		})},
		{"restart any with rollback order", cliSpec("r", "busybox:latest", nil, func(s *swarm.ServiceSpec) {
			s.TaskTemplate.RestartPolicy = &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionNone, Delay: ptr(5 * time.Second), MaxAttempts: ptr(uint64(0))}
			s.UpdateConfig = &swarm.UpdateConfig{FailureAction: swarm.UpdateFailureActionRollback, Order: swarm.UpdateOrderStartFirst}
		})},
		{"mounts secrets configs", cliSpec("files", "busybox:latest", nil, func(s *swarm.ServiceSpec) {
			c := s.TaskTemplate.ContainerSpec
			c.Mounts = []mount.Mount{
				{Type: mount.TypeBind, Source: "/data", Target: "/data", ReadOnly: true},
				{Type: mount.TypeVolume, Source: "vol", Target: "/vol"},
				{Type: mount.TypeTmpfs, Target: "/tmp"},
			}
			c.Secrets = []*swarm.SecretReference{{SecretID: "s1", SecretName: "pw", File: &swarm.SecretReferenceFileTarget{Name: "pw", UID: "0", GID: "0", Mode: 0o400}}}
			c.Configs = []*swarm.ConfigReference{{ConfigID: "c1", ConfigName: "conf", File: &swarm.ConfigReferenceFileTarget{Name: "/etc/app.conf", UID: "1", GID: "2", Mode: 0o444}}}
			c.Groups = []string{"audio"}
			c.OpenStdin = true
		})},
		{"init pids capabilities hosts", cliSpec("opts", "busybox:latest", nil, func(s *swarm.ServiceSpec) {
			c := s.TaskTemplate.ContainerSpec
			c.Init = ptr(true)
			c.CapabilityAdd, c.CapabilityDrop = []string{"CAP_NET_ADMIN"}, []string{"ALL"}
			c.Hosts = []string{"198.18.0.9 a b", "::1 six"}
			s.TaskTemplate.Resources.Limits.Pids = 100
		})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, err := ServiceSpecFromSwarm(tc.in)
			if err != nil {
				t.Fatalf("ServiceSpecFromSwarm: %v", err)
			}
			jsonEqual(t, "round trip", ServiceSpecToSwarm(a), normalized(tc.in))
		})
	}
}

// TestServiceSpecToAPIValues checks the api side itself, so that a mapping
// that is wrong both ways (udp<->tcp) cannot pass as a round trip.
func TestServiceSpecToAPIValues(t *testing.T) {
	a, err := ServiceSpecFromSwarm(fullSpec())
	if err != nil {
		t.Fatal(err)
	}
	task := a.GetTask()
	c := task.GetContainer()
	checks := []struct {
		what      string
		got, want any
	}{
		{"name", a.GetAnnotations().GetName(), "web"},
		{"label", a.GetAnnotations().GetLabels()["tier"], "front"},
		{"replicas", a.GetReplicated().GetReplicas(), uint64(3)},
		{"image", c.GetImage(), "nginx:1.25"},
		{"command", strings.Join(c.GetCommand(), " "), "nginx"},
		{"args", strings.Join(c.GetArgs(), "|"), "-g|daemon off;"},
		{"env", strings.Join(c.GetEnv(), ","), "A=1,B=two"},
		{"dir", c.GetDir(), "/srv"},
		{"user", c.GetUser(), "www:www"},
		{"hostname", c.GetHostname(), "h1"},
		{"stop signal", c.GetStopSignal(), "SIGQUIT"},
		{"stop grace", c.GetStopGracePeriod().AsDuration(), 20 * time.Second},
		{"tty", c.GetTty(), true},
		{"read only", c.GetReadOnly(), true},
		{"cpu limit", task.GetResources().GetLimits().GetNanoCpus(), int64(1500000000)},
		{"mem limit", task.GetResources().GetLimits().GetMemoryBytes(), int64(256 << 20)},
		{"cpu reservation", task.GetResources().GetReservations().GetNanoCpus(), int64(250000000)},
		{"restart condition", task.GetRestart().GetCondition(), api.RestartPolicy_ON_FAILURE},
		{"restart delay", task.GetRestart().GetDelay().AsDuration(), 3 * time.Second},
		{"restart attempts", task.GetRestart().GetMaxAttempts(), uint64(2)},
		{"restart window", task.GetRestart().GetWindow().AsDuration(), time.Minute},
		{"constraint", task.GetPlacement().GetConstraints()[1], "node.role!=manager"},
		{"spread", task.GetPlacement().GetPreferences()[0].GetSpread().GetSpreadDescriptor(), "node.labels.rack"},
		{"max replicas", task.GetPlacement().GetMaxReplicas(), uint64(2)},
		{"platform", task.GetPlacement().GetPlatforms()[0].GetOs(), "linux"},
		{"network", task.GetNetworks()[0].GetTarget(), "net1id"},
		{"alias", task.GetNetworks()[0].GetAliases()[0], "www"},
		{"force update", task.GetForceUpdate(), uint64(4)},
		{"endpoint mode", a.GetEndpoint().GetMode(), api.EndpointSpec_VIP},
		{"port0 proto", a.GetEndpoint().GetPorts()[0].GetProtocol(), api.PortConfig_TCP},
		{"port0 published", a.GetEndpoint().GetPorts()[0].GetPublishedPort(), uint32(8080)},
		{"port1 proto", a.GetEndpoint().GetPorts()[1].GetProtocol(), api.PortConfig_UDP},
		{"port1 mode", a.GetEndpoint().GetPorts()[1].GetPublishMode(), api.PortConfig_HOST},
		{"port2 proto", a.GetEndpoint().GetPorts()[2].GetProtocol(), api.PortConfig_SCTP},
		{"port2 target", a.GetEndpoint().GetPorts()[2].GetTargetPort(), uint32(99)},
		{"update monitor", a.GetUpdate().GetMonitor().AsDuration(), 7 * time.Second},
		{"update delay unset", a.GetUpdate().GetDelay() == nil, true},
		{"update parallelism", a.GetUpdate().GetParallelism(), uint64(1)},
		{"rollback action", a.GetRollback().GetFailureAction(), api.UpdateConfig_CONTINUE},
		{"rollback order", a.GetRollback().GetOrder(), api.UpdateConfig_START_FIRST},
		{"rollback ratio", a.GetRollback().GetMaxFailureRatio(), float32(0.25)},
		{"rollback delay", a.GetRollback().GetDelay().AsDuration(), time.Second},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
}

func TestServiceModeDefaults(t *testing.T) {
	for _, m := range []swarm.ServiceMode{{}, {Replicated: &swarm.ReplicatedService{}}} {
		a, err := ServiceSpecFromSwarm(swarm.ServiceSpec{Mode: m})
		if err != nil {
			t.Fatal(err)
		}
		if a.GetReplicated().GetReplicas() != 1 {
			t.Errorf("mode %+v: replicas %d, want 1", m, a.GetReplicated().GetReplicas())
		}
	}
	a, err := ServiceSpecFromSwarm(swarm.ServiceSpec{Mode: swarm.ServiceMode{Global: &swarm.GlobalService{}}})
	if err != nil || a.GetGlobal() == nil || ServiceMode(a) != "global" {
		t.Errorf("global: %v, %v", a, err)
	}
}

func TestServiceSpecRefused(t *testing.T) {
	ctr := func(edit func(*swarm.ContainerSpec)) swarm.ServiceSpec {
		return cliSpec("x", "busybox", nil, func(s *swarm.ServiceSpec) { edit(s.TaskTemplate.ContainerSpec) })
	}
	task := func(edit func(*swarm.TaskSpec)) swarm.ServiceSpec {
		return cliSpec("x", "busybox", nil, func(s *swarm.ServiceSpec) { edit(&s.TaskTemplate) })
	}
	cases := []struct {
		name        string
		spec        swarm.ServiceSpec
		unsupported bool
		msg         string
	}{
		{"replicated job", swarm.ServiceSpec{Mode: swarm.ServiceMode{ReplicatedJob: &swarm.ReplicatedJob{}}}, true, "job mode is not supported"},
		{"global job", swarm.ServiceSpec{Mode: swarm.ServiceMode{GlobalJob: &swarm.GlobalJob{}}}, true, "job mode is not supported"},
		{"two modes", swarm.ServiceSpec{Mode: swarm.ServiceMode{Global: &swarm.GlobalService{}, Replicated: &swarm.ReplicatedService{}}}, false, "must specify only one service mode"},
		{"init with a tight pids limit", task(func(ts *swarm.TaskSpec) {
			ts.ContainerSpec.Init = ptr(true)
			ts.Resources.Limits.Pids = 8
		}), false, "--init needs a pids limit of at least 16"},
		{"healthcheck negative interval", ctr(func(c *swarm.ContainerSpec) {
			c.Healthcheck = &container.HealthConfig{Test: []string{"CMD", "true"}, Interval: -time.Second}
		}), false, "Interval in Healthcheck cannot be less than 1ms"},
		{"healthcheck negative retries", ctr(func(c *swarm.ContainerSpec) {
			c.Healthcheck = &container.HealthConfig{Test: []string{"CMD-SHELL", "true"}, Retries: -3}
		}), false, "Retries in Healthcheck cannot be negative"},
		{"mount npipe", ctr(func(c *swarm.ContainerSpec) {
			c.Mounts = []mount.Mount{{Type: mount.TypeNamedPipe, Source: `\\.\pipe\x`, Target: `\\.\pipe\x`}}
		}), true, "mounts of type npipe are not supported"},
		{"mount without type", ctr(func(c *swarm.ContainerSpec) { c.Mounts = []mount.Mount{{Target: "/x"}} }), false, "mount type is required"},
		{"volume options", ctr(func(c *swarm.ContainerSpec) {
			c.Mounts = []mount.Mount{{Type: mount.TypeVolume, Source: "v", Target: "/v", VolumeOptions: &mount.VolumeOptions{NoCopy: true}}}
		}), true, "volume options are not supported"},
		{"tmpfs size", ctr(func(c *swarm.ContainerSpec) {
			c.Mounts = []mount.Mount{{Type: mount.TypeTmpfs, Target: "/t", TmpfsOptions: &mount.TmpfsOptions{SizeBytes: 1 << 20}}}
		}), true, "tmpfs options are not supported"},
		{"bind propagation", ctr(func(c *swarm.ContainerSpec) {
			c.Mounts = []mount.Mount{{Type: mount.TypeBind, Source: "/a", Target: "/a", BindOptions: &mount.BindOptions{Propagation: mount.PropagationShared}}}
		}), true, "bind propagation shared is not supported"},
		{"config runtime target", ctr(func(c *swarm.ContainerSpec) {
			c.Configs = []*swarm.ConfigReference{{ConfigName: "cred", Runtime: &swarm.ConfigReferenceRuntimeTarget{}}}
		}), true, "config cred: runtime targets are not supported"},
		{"host without a name", ctr(func(c *swarm.ContainerSpec) { c.Hosts = []string{"1.2.3.4"} }), false, `want "IP name [aliases...]"`},
		{"host without an IP", ctr(func(c *swarm.ContainerSpec) { c.Hosts = []string{"a.example a"} }), false, `"a.example" is not an IP address`},
		{"dns", ctr(func(c *swarm.ContainerSpec) { c.DNSConfig = &swarm.DNSConfig{Search: []string{"example.org"}} }), true, "dns config is not supported"},
		{"privileges", ctr(func(c *swarm.ContainerSpec) { c.Privileges = &swarm.Privileges{NoNewPrivileges: true} }), true, "privileges are not supported"},
		{"unknown capability", ctr(func(c *swarm.ContainerSpec) { c.CapabilityAdd = []string{"NOPE"} }), false, `unknown capability: "CAP_NOPE"`},
		{"sysctls", ctr(func(c *swarm.ContainerSpec) { c.Sysctls = map[string]string{"net.core.somaxconn": "1024"} }), true, "sysctls are not supported"},
		{"ulimits", ctr(func(c *swarm.ContainerSpec) { c.Ulimits = []*container.Ulimit{{Name: "nofile", Soft: 1, Hard: 2}} }), true, "ulimits are not supported"},
		{"oom score", ctr(func(c *swarm.ContainerSpec) { c.OomScoreAdj = 100 }), true, "oom score adjustment is not supported"},
		{"isolation", ctr(func(c *swarm.ContainerSpec) { c.Isolation = container.IsolationHyperV }), true, `isolation "hyperv" is not supported`},
		{"negative pids limit", task(func(ts *swarm.TaskSpec) { ts.Resources.Limits.Pids = -1 }), false, "pids limit -1"},
		{"generic resources", task(func(ts *swarm.TaskSpec) {
			ts.Resources.Reservations.GenericResources = []swarm.GenericResource{{DiscreteResourceSpec: &swarm.DiscreteGenericResource{Kind: "gpu", Value: 1}}}
		}), true, "generic resources are not supported"},
		{"swap", task(func(ts *swarm.TaskSpec) { ts.Resources.SwapBytes = ptr(int64(-1)) }), true, "swap limits are not supported"},
		{"swappiness", task(func(ts *swarm.TaskSpec) { ts.Resources.MemorySwappiness = ptr(int64(10)) }), true, "memory swappiness is not supported"},
		{"log driver", task(func(ts *swarm.TaskSpec) { ts.LogDriver = &swarm.Driver{Name: "json-file"} }), true, "log drivers are not supported"},
		{"plugin", task(func(ts *swarm.TaskSpec) { ts.PluginSpec = &swarm.RuntimeSpec{Name: "p"} }), true, "plugin services are not supported"},
		{"runtime plugin", task(func(ts *swarm.TaskSpec) { ts.Runtime = swarm.RuntimePlugin }), true, "runtime plugin is not supported"},
		{"network driver opts", task(func(ts *swarm.TaskSpec) {
			ts.Networks = []swarm.NetworkAttachmentConfig{{Target: "n", DriverOpts: map[string]string{"a": "b"}}}
		}), true, "network n: driver options are not supported"},
		{"empty placement preference", task(func(ts *swarm.TaskSpec) { ts.Placement.Preferences = []swarm.PlacementPreference{{}} }), true, "placement preferences other than spread are not supported"},
		{"restart condition", task(func(ts *swarm.TaskSpec) { ts.RestartPolicy = &swarm.RestartPolicy{Condition: "always"} }), false, `invalid restart condition "always"`},
		{"protocol", cliSpec("x", "busybox", nil, func(s *swarm.ServiceSpec) {
			s.EndpointSpec.Ports = []swarm.PortConfig{{Protocol: "icmp", TargetPort: 1}}
		}), false, `invalid protocol "icmp" for port 1`},
		{"publish mode", cliSpec("x", "busybox", nil, func(s *swarm.ServiceSpec) {
			s.EndpointSpec.Ports = []swarm.PortConfig{{TargetPort: 80, PublishMode: "mesh"}}
		}), false, `invalid publish mode "mesh" for port 80`},
		{"resolution mode", cliSpec("x", "busybox", nil, func(s *swarm.ServiceSpec) { s.EndpointSpec.Mode = "round-robin" }), false, `invalid resolution mode: "round-robin"`},
		{"failure action", cliSpec("x", "busybox", nil, func(s *swarm.ServiceSpec) { s.UpdateConfig = &swarm.UpdateConfig{FailureAction: "explode"} }), false, "unrecognized update failure action explode"},
		{"rollback order", cliSpec("x", "busybox", nil, func(s *swarm.ServiceSpec) { s.RollbackConfig = &swarm.UpdateConfig{Order: "random"} }), false, "unrecognized rollback order random"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ServiceSpecFromSwarm(tc.spec)
			if err == nil {
				t.Fatalf("accepted: %v", got)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q, want it to contain %q", err, tc.msg)
			}
			if !errors.Is(err, api.ErrInvalidArgument) {
				t.Errorf("error %q is not ErrInvalidArgument", err)
			}
			if errors.Is(err, ErrUnsupported) != tc.unsupported {
				t.Errorf("error %q: errors.Is(ErrUnsupported) = %v, want %v", err, !tc.unsupported, tc.unsupported)
			}
			if api.HTTPStatus(err) != 400 {
				t.Errorf("HTTP status %d, want 400", api.HTTPStatus(err))
			}
		})
	}
}

// TestServiceSpecEmptyOptionsAccepted: docker clients send empty structs and
// defaults for options not given; none of them may be refused.
func TestServiceSpecEmptyOptionsAccepted(t *testing.T) {
	s := cliSpec("x", "busybox", nil, func(s *swarm.ServiceSpec) {
		c := s.TaskTemplate.ContainerSpec
		c.Healthcheck = &container.HealthConfig{Test: []string{"NONE"}}
		c.Privileges = &swarm.Privileges{}
		c.Sysctls = map[string]string{}
		c.Isolation = container.IsolationDefault
		c.Mounts = []mount.Mount{{Type: mount.TypeBind, Source: "/a", Target: "/a", BindOptions: &mount.BindOptions{Propagation: mount.PropagationRPrivate}, Consistency: mount.ConsistencyDefault}}
		s.TaskTemplate.LogDriver = &swarm.Driver{}
		s.TaskTemplate.Runtime = swarm.RuntimeContainer
	})
	a, err := ServiceSpecFromSwarm(s)
	if err != nil {
		t.Fatal(err)
	}
	if m := a.GetTask().GetContainer().GetMounts(); len(m) != 1 || m[0].GetType() != api.Mount_BIND || m[0].GetSource() != "/a" {
		t.Errorf("mounts = %v", m)
	}
}

func TestServiceToSwarm(t *testing.T) {
	created := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	updated := created.Add(time.Hour)
	spec, err := ServiceSpecFromSwarm(fullSpec())
	if err != nil {
		t.Fatal(err)
	}
	prev, err := ServiceSpecFromSwarm(cliSpec("web", "nginx:1.24", nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	svc := &api.Service{
		Id:           "svc1",
		Meta:         &api.Meta{Version: 42, CreatedAt: timestamppb.New(created), UpdatedAt: timestamppb.New(updated)},
		Spec:         spec,
		SpecVersion:  40,
		PreviousSpec: prev,
		Endpoint: &api.Endpoint{
			Spec:       spec.GetEndpoint(),
			Ports:      []*api.PortConfig{{Protocol: api.PortConfig_TCP, TargetPort: 80, PublishedPort: 30001}},
			VirtualIps: []*api.VirtualIP{{NetworkId: "net1id", Addr: "10.0.1.2/24"}, {NetworkId: "net2id", Addr: "garbage"}},
		},
		UpdateStatus: &api.UpdateStatus{State: api.UpdateStatus_ROLLBACK_PAUSED, StartedAt: timestamppb.New(created), Message: "update paused"},
	}
	got := ServiceToSwarm(svc)
	checks := []struct {
		what      string
		got, want any
	}{
		{"id", got.ID, "svc1"},
		{"version", got.Version.Index, uint64(42)},
		{"created", got.CreatedAt, created},
		{"updated", got.UpdatedAt, updated},
		{"name", got.Spec.Name, "web"},
		{"previous image", got.PreviousSpec.TaskTemplate.ContainerSpec.Image, "nginx:1.24"},
		{"endpoint mode", got.Endpoint.Spec.Mode, swarm.ResolutionModeVIP},
		{"endpoint spec ports", len(got.Endpoint.Spec.Ports), 3},
		{"endpoint port", got.Endpoint.Ports[0].PublishedPort, uint32(30001)},
		{"endpoint port proto", got.Endpoint.Ports[0].Protocol, network.TCP},
		{"endpoint port mode", got.Endpoint.Ports[0].PublishMode, swarm.PortConfigPublishModeIngress},
		{"vip", got.Endpoint.VirtualIPs[0].Addr.String(), "10.0.1.2/24"},
		{"vip network", got.Endpoint.VirtualIPs[0].NetworkID, "net1id"},
		{"bad vip kept without addr", got.Endpoint.VirtualIPs[1].Addr.IsValid(), false},
		{"update state", got.UpdateStatus.State, swarm.UpdateStateRollbackPaused},
		{"update started", *got.UpdateStatus.StartedAt, created},
		{"update completed unset", got.UpdateStatus.CompletedAt == nil, true},
		{"update message", got.UpdateStatus.Message, "update paused"},
		{"monitor", got.Spec.UpdateConfig.Monitor, 7 * time.Second},
		{"force update", got.Spec.TaskTemplate.ForceUpdate, uint64(4)},
		{"replicas", *got.Spec.Mode.Replicated.Replicas, uint64(3)},
		{"no status", got.ServiceStatus == nil, true},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
	empty := ServiceToSwarm(&api.Service{Id: "e"})
	if !empty.CreatedAt.IsZero() || empty.UpdateStatus != nil || empty.PreviousSpec != nil || empty.Spec.Labels == nil {
		t.Errorf("empty service: %+v", empty)
	}
}

func TestUpdateStates(t *testing.T) {
	want := map[api.UpdateStatus_State]swarm.UpdateState{
		api.UpdateStatus_UNKNOWN:            "",
		api.UpdateStatus_UPDATING:           "updating",
		api.UpdateStatus_PAUSED:             "paused",
		api.UpdateStatus_COMPLETED:          "completed",
		api.UpdateStatus_ROLLBACK_STARTED:   "rollback_started",
		api.UpdateStatus_ROLLBACK_PAUSED:    "rollback_paused",
		api.UpdateStatus_ROLLBACK_COMPLETED: "rollback_completed",
	}
	if len(want) != len(api.UpdateStatus_State_name) {
		t.Fatalf("table covers %d states, api has %d", len(want), len(api.UpdateStatus_State_name))
	}
	for s, w := range want {
		if got := updateStatusToSwarm(&api.UpdateStatus{State: s}).State; got != w {
			t.Errorf("%s -> %q, want %q", s, got, w)
		}
	}
}

func TestServiceStatus(t *testing.T) {
	task := func(svc, node string, desired, state api.TaskState) *api.Task {
		return &api.Task{ServiceId: svc, NodeId: node, DesiredState: desired, Status: &api.TaskStatus{State: state}}
	}
	run, shut := api.TaskState_RUNNING, api.TaskState_SHUTDOWN
	tasks := []*api.Task{
		task("s", "n1", run, run),
		task("s", "n2", run, run),
		task("s", "down", run, run), // on a down node: not counted
		task("s", "n1", run, api.TaskState_PREPARING),
		task("s", "n1", shut, api.TaskState_COMPLETE),
		task("s", "n2", shut, api.TaskState_FAILED),
		task("s", "n2", shut, run), // scaled down, still stopping: not a replica
		task("other", "n1", run, run),
	}
	up := func(id string) bool { return id != "down" }
	replicated := &api.Service{Id: "s", Spec: &api.ServiceSpec{Mode: &api.ServiceSpec_Replicated{Replicated: &api.ReplicatedService{Replicas: 5}}}}
	global := &api.Service{Id: "s", Spec: &api.ServiceSpec{Mode: &api.ServiceSpec_Global{Global: &api.GlobalService{}}}}
	cases := []struct {
		name    string
		svc     *api.Service
		up      func(string) bool
		running uint64
		desired uint64
	}{
		{"replicated", replicated, up, 2, 5},
		{"replicated, every node up", replicated, nil, 3, 5},
		{"global", global, up, 2, 4},
		{"no tasks", &api.Service{Id: "none", Spec: replicated.Spec}, up, 0, 5},
	}
	for _, tc := range cases {
		got := ServiceStatus(tc.svc, tasks, tc.up)
		if got.RunningTasks != tc.running || got.DesiredTasks != tc.desired || got.CompletedTasks != 0 {
			t.Errorf("%s: %+v, want running %d desired %d", tc.name, *got, tc.running, tc.desired)
		}
	}
}

func TestIsZero(t *testing.T) {
	for _, c := range []struct {
		v    any
		want bool
	}{
		{nil, true},
		{(*swarm.DNSConfig)(nil), true},
		{&swarm.DNSConfig{}, true},
		{&swarm.DNSConfig{Options: []string{}}, true},
		{&swarm.DNSConfig{Options: []string{"ndots:2"}}, false},
		{&swarm.Privileges{SELinuxContext: &swarm.SELinuxContext{}}, true},
		{&swarm.Privileges{SELinuxContext: &swarm.SELinuxContext{Disable: true}}, false},
		{struct{ T time.Time }{}, true},
		{struct{ T time.Time }{time.Unix(1, 0)}, false},
		{int64(0), true},
		{int64(-1), false},
	} {
		if got := isZero(c.v); got != c.want {
			t.Errorf("isZero(%#v) = %v, want %v", c.v, got, c.want)
		}
	}
}

// A service's healthcheck reaches its tasks and reads back as it was given.
func TestServiceHealthcheckRoundTrip(t *testing.T) {
	hc := &container.HealthConfig{Test: []string{"CMD-SHELL", "test -f /ok"}, Interval: time.Second, Timeout: 2 * time.Second, StartPeriod: 3 * time.Second, Retries: 2}
	s := cliSpec("h", "busybox", nil, func(s *swarm.ServiceSpec) { s.TaskTemplate.ContainerSpec.Healthcheck = hc })
	a, err := ServiceSpecFromSwarm(s)
	if err != nil {
		t.Fatal(err)
	}
	got := healthToSwarm(a.GetTask().GetContainer().GetHealthcheck())
	if got == nil || got.Test[1] != "test -f /ok" || got.Interval != time.Second || got.Timeout != 2*time.Second || got.StartPeriod != 3*time.Second || got.Retries != 2 {
		t.Fatalf("round trip: %+v", got)
	}
}
