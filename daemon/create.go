package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"slices"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/shoal-project/shoal/containerd/containers"
	"github.com/shoal-project/shoal/containerd/distribution"
)

// Container create: the request checked and turned into the engine's config.

// createRequest is the create body with the container-wide MacAddress
// that API 1.52 dropped from Config and docker-py still sends
// (create_container(mac_address=...)): it is refused, not ignored.
type createRequest struct {
	container.CreateRequest
	MacAddress string
}

// UnmarshalJSON decodes the request as the API's type (its errors then
// name the fields as the API does, not behind CreateRequest) and picks
// MacAddress out beside it.
func (c *createRequest) UnmarshalJSON(b []byte) error {
	if err := json.Unmarshal(b, &c.CreateRequest); err != nil {
		return err
	}
	var legacy struct{ MacAddress string }
	if err := json.Unmarshal(b, &legacy); err != nil {
		return err
	}
	c.MacAddress = legacy.MacAddress
	return nil
}

func (d *Daemon) containerCreate(w http.ResponseWriter, r *http.Request) {
	var body createRequest
	if err := decodeJSON(r, &body); err != nil {
		writeError(w, err)
		return
	}
	if body.MacAddress != "" {
		writeError(w, errMACAddress)
		return
	}
	req := body.CreateRequest
	cfg, err := d.createConfig(req)
	if err == nil {
		err = d.checkImagePlatform(cfg.Image, r.URL.Query().Get("platform"))
	}
	if err != nil {
		writeError(w, err)
		return
	}
	// The mounts are checked whole before a volume is made, and whatever
	// was made goes again if the create fails later.
	hc := req.HostConfig
	if hc == nil {
		hc = &container.HostConfig{}
	}
	var imageVolumes map[string]struct{}
	if img, err := d.images.Get(cfg.Image); err == nil && img.Config.Config.Volumes != nil {
		imageVolumes = img.Config.Config.Volumes
	}
	plan, err := d.planMounts(hc, req.Config.Volumes, imageVolumes)
	if err != nil {
		writeError(w, err)
		return
	}
	if err := d.makeVolumes(plan); err != nil {
		writeError(w, err)
		return
	}
	cfg.Binds, cfg.Tmpfs = plan.binds, plan.tmpfs
	c, err := d.containers.Create(r.Context(), r.URL.Query().Get("name"), cfg)
	if err != nil {
		d.dropVolumes(plan, "")
		writeError(w, err)
		return
	}
	if err := d.attachVolumes(r.Context(), plan, c.ID, cfg.AutoRemove); err != nil {
		if rerr := d.containers.Remove(context.Background(), c.ID, true); rerr != nil {
			slog.Error("remove a half-made container", "container", c.ID, "err", rerr)
		}
		d.dropVolumes(plan, c.ID)
		writeError(w, err)
		return
	}
	if err := d.rememberEndpoint(r.Context(), c, req.NetworkingConfig); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, container.CreateResponse{ID: c.ID, Warnings: []string{}})
}

// minMemory is dockerd's lower bound for --memory.
const minMemory = 6 << 20

// createConfig checks a create request and turns it into the engine's
// config. Options the engine cannot honour are refused, not ignored.
func (d *Daemon) createConfig(req container.CreateRequest) (containers.Config, error) {
	if req.Config == nil {
		return containers.Config{}, badRequest("config cannot be empty in order to create a container")
	}
	in := req.Config
	if in.Image == "" {
		return containers.Config{}, badRequest("no image specified")
	}
	hc := req.HostConfig
	if hc == nil {
		hc = &container.HostConfig{}
	}
	size, err := consoleSize(&hc.ConsoleSize)
	if err != nil {
		return containers.Config{}, err
	}
	mode, clusterID, err := d.resolveNetworkMode(hc.NetworkMode)
	if err != nil {
		return containers.Config{}, createNetworkError(err)
	}
	var clusterAliases []string
	if req.NetworkingConfig != nil {
		for name, es := range req.NetworkingConfig.EndpointsConfig {
			// Clients name the network again here (docker's CLI always
			// does): resolved once, as a swarm network costs a round trip
			// to the managers.
			if name != string(hc.NetworkMode) {
				if m, err := d.networkMode(container.NetworkMode(name)); err != nil {
					return containers.Config{}, createNetworkError(err)
				} else if m != mode {
					return containers.Config{}, badRequest("a container can be on one network only: %s and %s given", mode, m)
				}
			}
			if err := checkEndpointConfig(mode, es); err != nil {
				return containers.Config{}, err
			}
			if clusterID != "" && es != nil {
				if es.IPAMConfig != nil && es.IPAMConfig.IPv4Address.IsValid() {
					return containers.Config{}, badRequest("--ip is not supported on swarm networks (%s): the managers give the address", mode)
				}
				clusterAliases = append(clusterAliases, es.Aliases...)
			}
		}
	}
	switch {
	case hc.Privileged && !d.cfg.AllowPrivileged:
		return containers.Config{}, badRequest("privileged containers are refused by this daemon (start it with --allow-privileged)")
	case hc.Memory < 0 || hc.NanoCPUs < 0 || hc.CPUShares < 0:
		return containers.Config{}, badRequest("invalid resources: memory, CPUs and CPU shares cannot be negative")
	case hc.Memory > 0 && hc.Memory < minMemory:
		return containers.Config{}, badRequest("Minimum memory limit allowed is 6MB")
	case hc.NanoCPUs > int64(runtime.NumCPU())*1e9:
		return containers.Config{}, badRequest("Range of CPUs is from 0.01 to %d.00, as there are only %d CPUs available", runtime.NumCPU(), runtime.NumCPU())
	case hc.NanoCPUs > 0 && hc.NanoCPUs < 1e7:
		return containers.Config{}, badRequest("Range of CPUs is from 0.01 to %d.00, as there are only %d CPUs available", runtime.NumCPU(), runtime.NumCPU())
	}
	if hc.UTSMode == "host" && (in.Hostname != "" || in.Domainname != "") {
		return containers.Config{}, badRequest("conflicting options: hostname and the UTS mode")
	}
	if opt := unsupportedHostOption(hc); opt != "" {
		return containers.Config{}, badRequest("%s is not supported", opt)
	}
	restart := containers.RestartPolicy{Name: string(hc.RestartPolicy.Name), MaximumRetryCount: hc.RestartPolicy.MaximumRetryCount}
	if err := restart.Validate(); err != nil {
		return containers.Config{}, err
	}
	if restart.Enabled() && hc.AutoRemove {
		return containers.Config{}, badRequest("can't create 'AutoRemove' container with restart policy")
	}
	var health *containers.HealthConfig
	if h := in.Healthcheck; h != nil {
		health = &containers.HealthConfig{Test: h.Test, Interval: h.Interval, Timeout: h.Timeout,
			StartPeriod: h.StartPeriod, StartInterval: h.StartInterval, Retries: h.Retries}
		if err := containers.ValidateHealthcheck(health); err != nil {
			return containers.Config{}, err
		}
	}
	cfg := containers.Config{
		Image: in.Image, Cmd: in.Cmd, Entrypoint: in.Entrypoint, Env: in.Env,
		WorkingDir: in.WorkingDir, User: in.User, Hostname: in.Hostname, Domainname: in.Domainname,
		Labels: in.Labels, OpenStdin: in.OpenStdin, StdinOnce: in.StdinOnce, Tty: in.Tty,
		StopSignal: in.StopSignal, StopTimeout: in.StopTimeout,
		Memory: hc.Memory, NanoCPUs: hc.NanoCPUs, CPUShares: hc.CPUShares, Binds: hc.Binds,
		AutoRemove: hc.AutoRemove, ReadonlyRootfs: hc.ReadonlyRootfs, NetworkMode: mode,
		ClusterNetwork: clusterID, ClusterAliases: clusterAliases,
		MemorySwap: hc.MemorySwap, CpusetCpus: hc.CpusetCpus, CpusetMems: hc.CpusetMems,
		Sysctls: hc.Sysctls, PidMode: string(hc.PidMode), IpcMode: string(hc.IpcMode), UTSMode: string(hc.UTSMode),
		ShmSize: hc.ShmSize, GroupAdd: hc.GroupAdd, ConsoleSize: size,
		RestartPolicy: restart, Healthcheck: health,
		ExtraHosts: hc.ExtraHosts, DNSSearch: hc.DNSSearch, DNSOptions: hc.DNSOptions,
	}
	for _, a := range hc.DNS {
		cfg.DNS = append(cfg.DNS, a.String())
	}
	for _, u := range hc.Ulimits {
		if u == nil {
			return containers.Config{}, badRequest("invalid ulimit: null")
		}
		cfg.Ulimits = append(cfg.Ulimits, containers.Ulimit{Name: u.Name, Soft: u.Soft, Hard: u.Hard})
	}
	if hc.PidsLimit != nil && *hc.PidsLimit > 0 {
		cfg.PidsLimit = *hc.PidsLimit
	}
	for _, o := range hc.SecurityOpt {
		switch o {
		case "no-new-privileges", "no-new-privileges:true", "no-new-privileges=true":
			cfg.NoNewPrivileges = true
		case "no-new-privileges:false", "no-new-privileges=false":
		default:
			// seccomp=unconfined|builtin|<profile JSON> (the docker CLI
			// sends a file's content); dockerd also takes "seccomp:".
			v, ok := strings.CutPrefix(o, "seccomp=")
			if !ok {
				v, ok = strings.CutPrefix(o, "seccomp:")
			}
			switch {
			case !ok:
				return containers.Config{}, badRequest("security option %q is not supported (no-new-privileges and seccomp= are)", o)
			case v == "":
				return containers.Config{}, badRequest("invalid --security-opt %q: seccomp= needs unconfined, builtin or a profile", o)
			case v == "builtin":
				cfg.Seccomp = ""
			default:
				cfg.Seccomp = v
			}
		}
	}
	cfg.CapAdd, cfg.CapDrop, cfg.Privileged = hc.CapAdd, hc.CapDrop, hc.Privileged
	cfg.Init = hc.Init != nil && *hc.Init
	for _, dv := range hc.Devices {
		cfg.Devices = append(cfg.Devices, containers.Device{PathOnHost: dv.PathOnHost, PathInContainer: dv.PathInContainer, CgroupPermissions: dv.CgroupPermissions})
	}
	if in.StopSignal != "" {
		if _, err := containers.ParseSignal(in.StopSignal); err != nil {
			return containers.Config{}, badRequest("invalid stop signal %q", in.StopSignal)
		}
	}
	if hc.PublishAllPorts {
		// -P: every exposed port of the container and its image, on a free host port.
		exposed := network.PortSet{}
		for p := range in.ExposedPorts {
			exposed[p] = struct{}{}
		}
		if img, err := d.images.Get(in.Image); err == nil {
			for s := range img.Config.Config.ExposedPorts {
				if p, err := network.ParsePort(s); err == nil {
					exposed[p] = struct{}{}
				}
			}
		}
		if hc.PortBindings == nil {
			hc.PortBindings = network.PortMap{}
		}
		for p := range exposed {
			if _, ok := hc.PortBindings[p]; !ok {
				hc.PortBindings[p] = []network.PortBinding{{}}
			}
		}
	}
	if _, err := portMappings(hc.PortBindings); err != nil {
		return containers.Config{}, err
	}
	// The image's EXPOSE ports are the container's too, as dockerd merges
	// the image's config into the container's.
	var imageExposed map[string]struct{}
	if d.images != nil { // nil in unit tests
		if img, err := d.images.Get(in.Image); err == nil {
			imageExposed = img.Config.Config.ExposedPorts
		}
	}
	for s := range imageExposed {
		if p, err := network.ParsePort(s); err == nil {
			if in.ExposedPorts == nil {
				in.ExposedPorts = network.PortSet{}
			}
			in.ExposedPorts[p] = struct{}{}
		}
	}
	for p := range in.ExposedPorts {
		cfg.ExposedPorts = append(cfg.ExposedPorts, p.String())
	}
	slices.Sort(cfg.ExposedPorts)
	if len(hc.PortBindings) > 0 && mode != modeBridge && !userNetwork(mode) {
		return containers.Config{}, badRequest("published ports need the bridge network, not %s", mode)
	}
	if len(hc.PortBindings) > 0 && clusterID != "" {
		return containers.Config{}, badRequest("publishing ports of a container on a swarm network (%s) is not supported: publish them from a service", mode)
	}
	hc.NetworkMode = container.NetworkMode(mode)
	if cfg.Log, err = d.logConfig(&hc.LogConfig); err != nil {
		return containers.Config{}, err
	}
	if cfg.RawConfig, err = json.Marshal(in); err != nil {
		return containers.Config{}, err
	}
	if cfg.RawHostConfig, err = json.Marshal(hc); err != nil {
		return containers.Config{}, err
	}
	return cfg, nil
}

// unsupportedHostOption names the first HostConfig option that is set but
// that the engine does not apply (by its docker flag), or "". Values the
// docker CLI sends when the flag is not given (LogConfig {Type: ""},
// MemorySwappiness -1, ConsoleSize [0, 0]) count as not set.
func unsupportedHostOption(hc *container.HostConfig) string {
	for _, o := range []struct {
		flag string
		set  bool
	}{
		{"--cpu-period", hc.CPUPeriod != 0},
		{"--cpu-quota", hc.CPUQuota != 0},
		{"--cpu-rt-period", hc.CPURealtimePeriod != 0},
		{"--cpu-rt-runtime", hc.CPURealtimeRuntime != 0},
		{"--cpu-count", hc.CPUCount != 0},
		{"--cpu-percent", hc.CPUPercent != 0},
		{"--memory-reservation", hc.MemoryReservation != 0},
		{"--memory-swappiness", hc.MemorySwappiness != nil && *hc.MemorySwappiness != -1},
		{"--oom-kill-disable", hc.OomKillDisable != nil && *hc.OomKillDisable},
		{"--oom-score-adj", hc.OomScoreAdj != 0},
		{"--blkio-weight", hc.BlkioWeight != 0 || len(hc.BlkioWeightDevice) > 0},
		{"--device-read-bps/--device-write-bps/--device-read-iops/--device-write-iops", len(hc.BlkioDeviceReadBps)+len(hc.BlkioDeviceWriteBps)+len(hc.BlkioDeviceReadIOps)+len(hc.BlkioDeviceWriteIOps) > 0},
		{"--io-maxiops/--io-maxbandwidth", hc.IOMaximumIOps != 0 || hc.IOMaximumBandwidth != 0},
		{"--device-cgroup-rule", len(hc.DeviceCgroupRules) > 0},
		{"--gpus", len(hc.DeviceRequests) > 0},
		{"--cgroup-parent", hc.CgroupParent != ""},
		{"--cgroupns", hc.CgroupnsMode != "" && hc.CgroupnsMode != container.CgroupnsModePrivate},
		{"--link", len(hc.Links) > 0},
		{"--uts " + string(hc.UTSMode), hc.UTSMode != "" && hc.UTSMode != "host"},
		{"--userns", hc.UsernsMode != ""},
		{"--isolation", !hc.Isolation.IsDefault()},
		{"--volume-driver", hc.VolumeDriver != ""},
		{"--storage-opt", len(hc.StorageOpt) > 0},
		{"--runtime", hc.Runtime != "" && hc.Runtime != defaultRuntime},
		{"--annotation", len(hc.Annotations) > 0},
		{"HostConfig.Umask", hc.Umask != nil},
		{"HostConfig.Cgroup", hc.Cgroup != ""},
		{"--security-opt systempaths=unconfined (MaskedPaths, ReadonlyPaths)", hc.MaskedPaths != nil || hc.ReadonlyPaths != nil},
	} {
		if o.set {
			return o.flag
		}
	}
	return ""
}

// checkImagePlatform refuses a create whose platform (`run --platform`) is
// not the image's, as dockerd does, with its 404: the docker CLI then
// tries to pull the image for that platform. An image missing here is left
// to the create's own error.
func (d *Daemon) checkImagePlatform(ref, platform string) error {
	if platform == "" {
		return nil
	}
	want, err := distribution.ParsePlatform(platform)
	if err != nil {
		return badRequest("%v", err)
	}
	img, err := d.images.Get(ref)
	if err != nil {
		return nil
	}
	have := distribution.Platform{OS: img.Config.OS, Architecture: img.Config.Architecture, Variant: img.Config.Variant}
	if have.OS == "" {
		have.OS = "linux"
	}
	if have.Architecture == "" {
		have.Architecture = runtime.GOARCH
	}
	// A variant asked for must match, arm64's v8 also matching none.
	variantOK := want.Variant == "" || want.Variant == have.Variant || want.Architecture == "arm64" && want.Variant == "v8" && have.Variant == ""
	if have.OS == want.OS && have.Architecture == want.Architecture && variantOK {
		return nil
	}
	return withStatus(http.StatusNotFound, fmt.Errorf("image with reference %s was found but its platform (%s) does not match the specified platform (%s)",
		ref, have, want))
}

// createNetworkError is a create's error for its network: one not found
// is the caller's mistake (400), not a 404, which the docker CLI takes for
// a missing image and answers by pulling the image and trying again.
// (dockerd creates the container and fails its start instead.)
func createNetworkError(err error) error {
	var nf notFoundError
	if errors.As(err, &nf) {
		return badRequest("%v", nf)
	}
	return err
}

// withImageConfig fills what the container's config leaves unset from its
// image's, as dockerd merges them at create (its merge): inspect's Config
// shows what the container runs with. The container's env comes first,
// then the image's variables it does not set; Cmd and Entrypoint come
// from the image only when no entrypoint is given; volumes add up.
func withImageConfig(cfg *container.Config, img ocispec.ImageConfig) {
	if cfg.User == "" {
		cfg.User = img.User
	}
	for _, kv := range img.Env {
		k, _, _ := strings.Cut(kv, "=")
		if !slices.ContainsFunc(cfg.Env, func(e string) bool { ek, _, _ := strings.Cut(e, "="); return ek == k }) {
			cfg.Env = append(cfg.Env, kv)
		}
	}
	if len(cfg.Entrypoint) == 0 {
		if len(cfg.Cmd) == 0 {
			cfg.Cmd = img.Cmd
		}
		if cfg.Entrypoint == nil {
			cfg.Entrypoint = img.Entrypoint
		}
	}
	if cfg.WorkingDir == "" {
		cfg.WorkingDir = img.WorkingDir
	}
	for v := range img.Volumes {
		if cfg.Volumes == nil {
			cfg.Volumes = map[string]struct{}{}
		}
		cfg.Volumes[v] = struct{}{}
	}
	if cfg.StopSignal == "" {
		cfg.StopSignal = img.StopSignal
	}
}
