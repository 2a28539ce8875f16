package daemon

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/storage"

	"github.com/shoal-project/shoal/containerd/containers"
	"github.com/shoal-project/shoal/containerd/logs"
	"github.com/shoal-project/shoal/containerd/oci"
)

// The container records of the engine shown as the Engine API's types.

// humanDuration renders a duration as dockerd does in ps's STATUS
// ("3 seconds", "About a minute").
func humanDuration(d time.Duration) string {
	s := int(d.Seconds())
	switch {
	case s < 1:
		return "Less than a second"
	case s == 1:
		return "1 second"
	case s < 60:
		return fmt.Sprintf("%d seconds", s)
	}
	m := int(d.Minutes())
	switch {
	case m == 1:
		return "About a minute"
	case m < 60:
		return fmt.Sprintf("%d minutes", m)
	}
	h := int(d.Hours() + 0.5)
	switch {
	case h == 1:
		return "About an hour"
	case h < 48:
		return fmt.Sprintf("%d hours", h)
	case h < 24*7*2:
		return fmt.Sprintf("%d days", h/24)
	case h < 24*30*2:
		return fmt.Sprintf("%d weeks", h/24/7)
	case h < 24*365*2:
		return fmt.Sprintf("%d months", h/24/30)
	}
	return fmt.Sprintf("%d years", int(d.Hours())/24/365)
}

// statusString is ps's STATUS column, as dockerd computes it.
func statusString(st containers.State, now time.Time) string {
	switch {
	case st.Running && st.Paused:
		return "Up " + humanDuration(now.Sub(st.StartedAt)) + " (Paused)"
	case st.Running && st.Health != nil:
		// dockerd's words: "(health: starting)", "(healthy)", "(unhealthy)".
		h := st.Health.Status
		if h == containers.HealthStarting {
			h = "health: " + h
		}
		return "Up " + humanDuration(now.Sub(st.StartedAt)) + " (" + h + ")"
	case st.Running:
		return "Up " + humanDuration(now.Sub(st.StartedAt))
	case st.Restarting:
		return fmt.Sprintf("Restarting (%d) %s ago", st.ExitCode, humanDuration(now.Sub(st.FinishedAt)))
	case st.Status == "exited" && !st.FinishedAt.IsZero():
		return fmt.Sprintf("Exited (%d) %s ago", st.ExitCode, humanDuration(now.Sub(st.FinishedAt)))
	case st.Status == "removing":
		return "Removal In Progress"
	}
	return "Created"
}

func stateOf(st containers.State) container.ContainerState {
	switch {
	case st.Running && st.Paused:
		return container.StatePaused
	case st.Running:
		return container.StateRunning
	case st.Restarting:
		return container.StateRestarting
	case st.Status == "":
		return container.StateCreated
	}
	return container.ContainerState(st.Status)
}

// commandOf is ps's COMMAND: the path and args joined.
// commandOf is a list's Command as dockerd writes it: an argument with a
// space in it is put in single quotes.
func commandOf(c containers.Container) string {
	args := make([]string, len(c.Args))
	for i, a := range c.Args {
		if strings.Contains(a, " ") {
			a = "'" + a + "'"
		}
		args[i] = a
	}
	return strings.TrimSpace(c.Path + " " + strings.Join(args, " "))
}

func portSummaries(c containers.Container) []container.PortSummary {
	out := []container.PortSummary{}
	for _, p := range c.Config.Network.Ports {
		out = append(out, container.PortSummary{
			IP: parseAddr(hostIPString(p.HostIP)), PrivatePort: uint16(p.ContainerPort), PublicPort: uint16(p.HostPort), Type: p.Protocol,
		})
	}
	for _, p := range unpublishedPorts(c) {
		out = append(out, container.PortSummary{PrivatePort: p.Num(), Type: string(p.Proto())})
	}
	return out
}

// unpublishedPorts are the exposed ports of a running container on a
// bridge (default or user network) that no -p publishes: dockerd lists
// them (ps's "80/tcp", inspect's "80/tcp": null).
func unpublishedPorts(c containers.Container) []network.Port {
	mode := c.Config.NetworkMode
	if !c.State.Running || mode != "" && mode != modeBridge && !userNetwork(mode) {
		return nil
	}
	var out []network.Port
	for _, s := range c.Config.ExposedPorts {
		p, err := network.ParsePort(s)
		if err != nil || slices.ContainsFunc(c.Config.Network.Ports, func(b containers.PortBinding) bool {
			return uint16(b.ContainerPort) == p.Num() && b.Protocol == string(p.Proto())
		}) {
			continue
		}
		out = append(out, p)
	}
	return out
}

// endpoints is NetworkSettings.Networks: the network a container was
// created on and, while it runs, the user networks it was connected to,
// each with the network's ID, the container's --network-alias names
// (Aliases), the names it answers to there (DNSNames: its name, aliases,
// short ID and hostname, as dockerd's API 1.45 and later) and the --ip it
// asked for (IPAMConfig).
func (d *Daemon) endpoints(c containers.Container) map[string]*network.EndpointSettings {
	mode := c.Config.NetworkMode
	if mode == "" {
		mode = modeBridge
	}
	ep := &network.EndpointSettings{}
	if builtinNetwork(mode) {
		ep.NetworkID = d.builtinID(mode)
	} else if d.nets != nil {
		if n, err := d.nets.lookup(mode); err == nil {
			ep.NetworkID = n.rec.ID
			userEndpoint(ep, c, n.rec.Endpoints[c.ID])
		}
	}
	if n := c.Config.Network; mode != modeNone && mode != modeHost && n.IPAddress != "" {
		ep.EndpointID = c.ID
		ep.IPAddress = parseAddr(n.IPAddress)
		ep.IPPrefixLen = n.IPPrefixLen
		ep.Gateway = parseAddr(n.Gateway)
		if mac, err := net.ParseMAC(n.MacAddress); err == nil {
			ep.MacAddress = network.HardwareAddr(mac)
		}
	}
	out := map[string]*network.EndpointSettings{mode: ep}
	if d.nets == nil || !c.State.Running {
		return out
	}
	// A network connect lasts while the container runs (README): its
	// endpoint on the other network's bridge is what it is connected to.
	for _, n := range d.nets.snapshot() {
		if n.rec.Name == mode || n.br == nil {
			continue
		}
		be, err := n.br.Endpoint(c.ID)
		if err != nil {
			continue
		}
		ep := &network.EndpointSettings{NetworkID: n.rec.ID, EndpointID: c.ID, IPPrefixLen: be.Prefix}
		userEndpoint(ep, c, n.rec.Endpoints[c.ID])
		if a, ok := netip.AddrFromSlice(be.IP.To4()); ok {
			ep.IPAddress = a
		}
		if a, ok := netip.AddrFromSlice(be.Gateway.To4()); ok {
			ep.Gateway = a
		}
		if be.MAC != nil {
			ep.MacAddress = network.HardwareAddr(be.MAC)
		}
		out[n.rec.Name] = ep
	}
	return out
}

// userEndpoint fills in what container c asked for on a user network:
// its aliases, the names it answers to, and its --ip as dockerd shows it
// (IPAMConfig, null when none was asked for).
func userEndpoint(ep *network.EndpointSettings, c containers.Container, cfg endpointConfig) {
	ep.Aliases = slices.Clone(cfg.Aliases)
	ep.DNSNames = dnsNames(c, ep.Aliases)
	if cfg.IP.IsValid() {
		ep.IPAMConfig = &network.EndpointIPAMConfig{IPv4Address: cfg.IP}
	}
}

// logPathOf is inspect's LogPath: the json-file's, "" for the local
// driver (its file is not JSON lines) and none, as dockerd's.
func logPathOf(cs containerService, c containers.Container) string {
	if c.Config.Log.Name() != logs.DriverJSONFile {
		return ""
	}
	return cs.LogPath(c.ID)
}

// dnsNames are the names a container answers to on a user network, in
// dockerd's order, each once.
func dnsNames(c containers.Container, aliases []string) []string {
	names := []string{strings.TrimPrefix(c.Name, "/")}
	names = append(names, aliases...)
	names = append(names, c.ID[:min(12, len(c.ID))])
	if h := c.Config.Hostname; h != "" {
		names = append(names, h)
	}
	var out []string
	for _, n := range names {
		if n != "" && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

func (d *Daemon) summaryOf(c containers.Container, now time.Time) container.Summary {
	s := container.Summary{
		ID: c.ID, Names: []string{c.Name}, Image: c.Config.Image, ImageID: c.ImageID,
		Command: commandOf(c), Created: c.Created.Unix(), Ports: portSummaries(c),
		Labels: nonNilMap(c.Config.Labels), State: stateOf(c.State), Status: statusString(c.State, now),
		NetworkSettings: &container.NetworkSettingsSummary{Networks: d.endpoints(c)},
		Mounts:          d.mountPoints(c),
	}
	s.HostConfig.NetworkMode = c.Config.NetworkMode
	if h := c.State.Health; h != nil {
		s.Health = &container.HealthSummary{Status: container.HealthStatus(h.Status), FailingStreak: h.FailingStreak}
	}
	return s
}

func mountPoints(c containers.Container) []container.MountPoint {
	out := []container.MountPoint{}
	for _, b := range c.Config.Binds {
		src, dst, ro, err := containers.ParseBind(b)
		if err != nil {
			continue
		}
		mode := ""
		if ro {
			mode = "ro"
		}
		out = append(out, container.MountPoint{Type: "bind", Source: src, Destination: dst, Mode: mode, RW: !ro, Propagation: "rprivate"})
	}
	return out
}

// inspectResponse adds to the API's type the top-level addresses of
// NetworkSettings that API 1.44 dropped and older clients (docker 20.10,
// scripts using {{.NetworkSettings.IPAddress}}) still read.
type inspectResponse struct {
	container.InspectResponse
	NetworkSettings *legacyNetworkSettings
}

type legacyNetworkSettings struct {
	container.NetworkSettings
	IPAddress   string
	IPPrefixLen int
	Gateway     string
	MacAddress  string
}

func timeString(t time.Time) string {
	if t.IsZero() {
		return "0001-01-01T00:00:00Z"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func (d *Daemon) inspectOf(c containers.Container) inspectResponse {
	cfg := &container.Config{}
	_ = json.Unmarshal(c.Config.RawConfig, cfg)
	hc := &container.HostConfig{}
	_ = json.Unmarshal(c.Config.RawHostConfig, hc)
	hc.NetworkMode = container.NetworkMode(c.Config.NetworkMode)
	appliedDefaults(hc)
	cfg.Image = c.Config.Image
	if cfg.Hostname == "" {
		cfg.Hostname = c.ID[:12]
	}
	cfg.Labels = nonNilMap(c.Config.Labels) // with the image's, merged at create
	if img, err := d.images.Get(c.ImageID); err == nil {
		withImageConfig(cfg, img.Config.Config)
	}
	st := c.State
	n := c.Config.Network
	ports := network.PortMap{}
	for _, p := range n.Ports {
		port, ok := network.PortFrom(uint16(p.ContainerPort), network.IPProtocol(p.Protocol))
		if !ok {
			continue
		}
		ports[port] = append(ports[port], network.PortBinding{HostIP: parseAddr(hostIPString(p.HostIP)), HostPort: strconv.Itoa(p.HostPort)})
	}
	for _, p := range unpublishedPorts(c) {
		ports[p] = nil
	}
	if h := c.Config.Healthcheck; h != nil {
		// The healthcheck the container runs: the given one merged over the image's.
		cfg.Healthcheck = &container.HealthConfig{Test: h.Test, Interval: h.Interval, Timeout: h.Timeout,
			StartPeriod: h.StartPeriod, StartInterval: h.StartInterval, Retries: h.Retries}
	}
	var r inspectResponse
	r.InspectResponse = container.InspectResponse{
		ID: c.ID, Created: timeString(c.Created), Path: c.Path, Args: nonNilSlice(c.Args),
		State: &container.State{
			// Restarting counts as running, as dockerd's State does (its
			// stop, rm and update treat it so); Pid is 0 meanwhile.
			Status: stateOf(st), Running: st.Running || st.Restarting, Paused: st.Paused, OOMKilled: st.OOMKilled, Pid: st.Pid, ExitCode: st.ExitCode,
			Error: st.Error, StartedAt: timeString(st.StartedAt), FinishedAt: timeString(st.FinishedAt),
			Restarting: st.Restarting, Health: healthOf(st.Health),
		},
		Image: c.ImageID, Name: c.Name, Driver: "overlayfs", Platform: "linux", RestartCount: c.RestartCount,
		LogPath: logPathOf(d.containers, c), HostConfig: hc, ExecIDs: d.containers.ExecIDs(c.ID),
		HostsPath: d.containers.EtcFile(c.ID, "hosts"), HostnamePath: d.containers.EtcFile(c.ID, "hostname"),
		ResolvConfPath: d.containers.EtcFile(c.ID, "resolv.conf"), Config: cfg, Mounts: d.mountPoints(c),
	}
	if data, err := d.containers.GraphDriver(c.ID); err == nil {
		if st.Running && st.Pid > 0 {
			// The merged view, seen from the host through the container's
			// root (the overlay is mounted in its mount namespace only).
			data["MergedDir"] = fmt.Sprintf("/proc/%d/root", st.Pid)
		}
		r.GraphDriver = &storage.DriverData{Name: "overlayfs", Data: data}
	}
	r.NetworkSettings = &legacyNetworkSettings{
		NetworkSettings: container.NetworkSettings{
			SandboxID: sandboxID(c), SandboxKey: c.Config.NetNSPath, Ports: ports, Networks: d.endpoints(c),
		},
		IPAddress: n.IPAddress, IPPrefixLen: n.IPPrefixLen, Gateway: n.Gateway, MacAddress: n.MacAddress,
	}
	return r
}

// appliedDefaults fills in what a request left to the daemon with what the
// container runs with, as dockerd shows it: the size of /dev/shm, private
// IPC and cgroup namespaces (the only cgroup mode we run), the masked and
// read-only paths, and no PID or swappiness setting (null, not 0 or -1).
func appliedDefaults(hc *container.HostConfig) {
	if hc.ShmSize == 0 {
		hc.ShmSize = 64 << 20
	}
	if hc.IpcMode == "" {
		hc.IpcMode = container.IPCModePrivate
	}
	if hc.CgroupnsMode == "" {
		hc.CgroupnsMode = container.CgroupnsModePrivate
	}
	if !hc.Privileged && hc.MaskedPaths == nil && hc.ReadonlyPaths == nil {
		hc.MaskedPaths = slices.Clone(oci.DefaultMaskedPaths)
		hc.ReadonlyPaths = slices.Clone(oci.DefaultReadonlyPaths)
	}
	if hc.PidsLimit != nil && *hc.PidsLimit <= 0 {
		hc.PidsLimit = nil
	}
	if hc.MemorySwappiness != nil && *hc.MemorySwappiness == -1 {
		hc.MemorySwappiness = nil
	}
	if hc.Runtime == "" {
		// dockerd names the default runtime it ran the container with.
		hc.Runtime = defaultRuntime
	}
}

// defaultRuntime is the name of the engine's own runtime, the only one
// (`info`'s DefaultRuntime; `--runtime` of another is refused).
const defaultRuntime = "shoal"

func sandboxID(c containers.Container) string {
	if c.Config.NetNSPath == "" {
		return ""
	}
	return c.ID
}

func nonNilMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func nonNilSlice(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// healthOf is State.Health as the Engine API shows it.
func healthOf(h *containers.Health) *container.Health {
	if h == nil {
		return nil
	}
	out := &container.Health{Status: container.HealthStatus(h.Status), FailingStreak: h.FailingStreak, Log: []*container.HealthcheckResult{}}
	for _, r := range h.Log {
		out.Log = append(out.Log, &container.HealthcheckResult{Start: r.Start, End: r.End, ExitCode: r.ExitCode, Output: r.Output})
	}
	return out
}
