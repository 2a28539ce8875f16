package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"

	"github.com/shoal-project/shoal/containerd/containers"
	"github.com/shoal-project/shoal/overlaynet/bridge"
	"github.com/shoal-project/shoal/overlaynet/dns"
)

// Network modes of HostConfig.NetworkMode; "" and "default" mean bridge.
const (
	modeBridge = "bridge"
	modeNone   = "none"
	modeHost   = "host"
)

// networkMode checks a HostConfig.NetworkMode: a built-in network or a user
// network by name or ID, returned as its name (what the container keeps).
func (d *Daemon) networkMode(m container.NetworkMode) (string, error) {
	mode, _, err := d.resolveNetworkMode(m)
	return mode, err
}

// resolveNetworkMode is networkMode that also resolves an attachable
// overlay network of the swarm (the mode is then its name, and clusterID
// its ID; clusterattach.go).
func (d *Daemon) resolveNetworkMode(m container.NetworkMode) (mode, clusterID string, err error) {
	mode, err = d.localNetworkMode(m)
	var nf notFoundError
	if err == nil || !errors.As(err, &nf) {
		return mode, "", err
	}
	id, name, found, cerr := d.clusterNetwork(string(m))
	switch {
	case cerr != nil:
		return "", "", cerr
	case !found:
		return "", "", err
	}
	return name, id, nil
}

func (d *Daemon) localNetworkMode(m container.NetworkMode) (string, error) {
	switch string(m) {
	case "", "default", modeBridge:
		return modeBridge, nil
	case modeNone, modeHost:
		return string(m), nil
	}
	if strings.HasPrefix(string(m), "container:") {
		return "", badRequest("network mode %q is not supported", m)
	}
	if d.nets != nil {
		if n, err := d.nets.lookup(string(m)); err == nil {
			return n.rec.Name, nil
		}
	}
	return "", withStatus(http.StatusNotFound, notFoundError{fmt.Errorf("network %s not found", m)})
}

// notFoundError marks a network that is not found on this engine.
type notFoundError struct{ error }

func (e notFoundError) Unwrap() error { return e.error }

// ownNetNS reports whether a container of this mode gets a namespace of the
// daemon's (bridge or a user network: an endpoint; none: lo only); host
// shares the node's.
func ownNetNS(mode string) bool { return mode != modeHost }

// userNetwork reports whether mode names a user-defined network.
func userNetwork(mode string) bool { return !builtinNetwork(mode) && mode != "" && mode != "default" }

// netFor is the bridge network a container of mode attaches to.
func (d *Daemon) netFor(mode string) (networkService, error) {
	if !userNetwork(mode) {
		return d.network, nil
	}
	n, err := d.nets.lookup(mode)
	if err != nil {
		return nil, err
	}
	return n.br, nil
}

// portMappings turns HostConfig.PortBindings into the bridge's mappings, in
// a stable order so that the first clash reported is always the same.
func portMappings(bindings network.PortMap) ([]bridge.PortMapping, error) {
	ports := make([]network.Port, 0, len(bindings))
	for p := range bindings {
		ports = append(ports, p)
	}
	sort.Slice(ports, func(i, j int) bool { return ports[i].String() < ports[j].String() })
	var out []bridge.PortMapping
	for _, port := range ports {
		if !port.IsValid() || port.Num() == 0 {
			return nil, badRequest("invalid port specification: %q", port.String())
		}
		switch port.Proto() {
		case network.TCP, network.UDP:
		default:
			return nil, badRequest("invalid port specification: %q: only tcp and udp can be published", port.String())
		}
		list := bindings[port]
		if len(list) == 0 {
			list = []network.PortBinding{{}}
		}
		for _, b := range list {
			m := bridge.PortMapping{HostIP: b.HostIP, ContainerPort: port.Num(), Protocol: string(port.Proto())}
			if m.HostIP.IsValid() && !m.HostIP.Unmap().Is4() {
				return nil, badRequest("invalid host IP %s for port %s: only IPv4 is supported", m.HostIP, port)
			}
			if b.HostPort != "" {
				n, err := strconv.ParseUint(b.HostPort, 10, 16)
				if err != nil {
					return nil, badRequest("invalid host port %q for port %s", b.HostPort, port)
				}
				m.HostPort = uint16(n)
			}
			out = append(out, m)
		}
	}
	return out, nil
}

// netLock locks the network of container id; the returned func unlocks it.
func (d *Daemon) netLock(id string) func() {
	mu := d.netMutex(id)
	mu.Lock()
	return mu.Unlock
}

// netTryLock takes the network lock of container id if it is free.
func (d *Daemon) netTryLock(id string) (unlock func(), ok bool) {
	mu := d.netMutex(id)
	if !mu.TryLock() {
		return nil, false
	}
	return mu.Unlock, true
}

// netMutex is container id's network lock.
func (d *Daemon) netMutex(id string) *sync.Mutex {
	d.netMu.Lock()
	defer d.netMu.Unlock()
	mu, ok := d.netLocks[id]
	if !ok {
		mu = &sync.Mutex{}
		d.netLocks[id] = mu
	}
	return mu
}

// startContainer sets up the network of a created or exited container, then
// starts it. On any failure the network is released again and the container
// stays as it was: created (or exited), not running; one created with
// AutoRemove (--rm) is removed, as dockerd does, so that a client waiting
// for its removal does not wait forever.
func (d *Daemon) startContainer(ctx context.Context, idOrName string) error {
	c, err := d.containers.Get(idOrName)
	if err != nil {
		return err
	}
	err = d.startLocked(ctx, c.ID)
	if err != nil && !errors.Is(err, containers.ErrNotModified) && c.Config.AutoRemove {
		if rerr := d.containers.Remove(context.WithoutCancel(ctx), c.ID, true); rerr != nil {
			slog.Warn("remove --rm container after a failed start", "container", c.ID, "err", rerr)
		}
	}
	return err
}

func (d *Daemon) startLocked(ctx context.Context, id string) error {
	unlock := d.netLock(id)
	defer unlock()
	c, err := d.containers.Get(id)
	// Under the lock: a running container's network must not be redone.
	if err != nil {
		return err
	}
	if c.State.Running {
		return containers.ErrNotModified
	}
	mode := c.Config.NetworkMode
	if ownNetNS(mode) {
		if err := d.setupNetworkLocked(ctx, c); err != nil {
			d.releaseNetworkLocked(c.ID, true)
			return err
		}
		d.networkConnected(c)
	}
	if err := d.containers.Start(ctx, c.ID); err != nil {
		if ownNetNS(mode) {
			d.releaseNetworkLocked(c.ID, true)
		}
		return err
	}
	if ownNetNS(mode) {
		d.watchExit(c.ID)
	}
	return nil
}

// setupNetworkLocked gives c its namespace, address and published ports and
// records them on it, for the runtime (the namespace to join) and inspect.
func (d *Daemon) setupNetworkLocked(ctx context.Context, c containers.Container) error {
	// Whatever a crash or an earlier run of c left goes first.
	if err := d.network.Detach(context.WithoutCancel(ctx), c.ID); err != nil {
		return fmt.Errorf("release the old network of %s: %w", c.ID[:12], err)
	}
	if c.Config.NetworkMode == modeNone {
		ep, err := d.network.NewEmpty(ctx, c.ID)
		if err != nil {
			return fmt.Errorf("network namespace of %s: %w", c.ID[:12], err)
		}
		return d.containers.SetNetwork(c.ID, ep.NetNSPath, containers.NetworkSettings{})
	}
	if c.Config.ClusterNetwork != "" {
		return d.setupClusterNetwork(ctx, c)
	}
	nw, err := d.netFor(c.Config.NetworkMode)
	if err != nil {
		return err
	}
	var hc container.HostConfig
	if len(c.Config.RawHostConfig) > 0 {
		if err := json.Unmarshal(c.Config.RawHostConfig, &hc); err != nil {
			return fmt.Errorf("host config of %s: %w", c.ID[:12], err)
		}
	}
	ports, err := portMappings(hc.PortBindings)
	if err != nil {
		return err
	}
	var ep bridge.Endpoint
	if br, ok := nw.(*bridge.Network); ok && userNetwork(c.Config.NetworkMode) {
		ep, err = br.AttachWith(ctx, c.ID, bridge.AttachOptions{IP: d.nets.endpoint(c.Config.NetworkMode, c.ID).IP})
	} else {
		ep, err = nw.Attach(ctx, c.ID)
	}
	if err != nil {
		return fmt.Errorf("attach %s to network %s: %w", c.ID[:12], c.Config.NetworkMode, err)
	}
	s := containers.NetworkSettings{IPAddress: ep.IP.String(), IPPrefixLen: ep.Prefix, Gateway: ep.Gateway.String(), MacAddress: ep.MAC.String()}
	if len(ports) > 0 {
		got, err := nw.Publish(ctx, c.ID, ep.IP, ports)
		if err != nil {
			// dockerd's words, which scripts and the CLI look for.
			msg := err.Error()
			if i := strings.Index(msg, "Bind for "); i >= 0 {
				msg = msg[i:]
			}
			return withStatus(http.StatusInternalServerError, fmt.Errorf("driver failed programming external connectivity on endpoint %s (%s): %s",
				strings.TrimPrefix(c.Name, "/"), c.ID, msg))
		}
		for _, p := range got {
			hostIP := ""
			if p.HostIP.IsValid() {
				hostIP = p.HostIP.String()
			}
			s.Ports = append(s.Ports, containers.PortBinding{HostIP: hostIP, HostPort: int(p.HostPort), ContainerPort: int(p.ContainerPort), Protocol: p.Protocol})
		}
	}
	if err := d.containers.SetNetwork(c.ID, ep.NetNSPath, s); err != nil {
		return err
	}
	if userNetwork(c.Config.NetworkMode) {
		return d.startResolver(c, ep.NetNSPath)
	}
	return nil
}

// startResolver serves the embedded DNS server of c, on a user network, in
// its namespace at netnsPath.
func (d *Daemon) startResolver(c containers.Container, netnsPath string) error {
	upstreams := c.Config.DNS
	if len(upstreams) == 0 {
		b, err := os.ReadFile(hostResolvConf)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("resolver of %s: %w", c.ID[:12], err)
		}
		upstreams = dns.HostUpstreams(b)
	}
	if err := d.nets.startDNS(d.ctx, c.ID, netnsPath, d, upstreams); err != nil {
		return fmt.Errorf("resolver of %s: %w", c.ID[:12], err)
	}
	return nil
}

// hostResolvConf is where the resolver's upstreams come from.
const hostResolvConf = "/etc/resolv.conf"

// Lookup answers the embedded DNS server of container asker: the names,
// short and full IDs and network aliases of the running containers that
// have an endpoint on a user network the asker has one on too.
func (d *Daemon) Lookup(_ context.Context, asker, name string) (dns.Record, bool) {
	var rec dns.Record
	running := d.containers.List(false)
	for _, n := range d.nets.snapshot() {
		if _, err := n.br.Endpoint(asker); err != nil {
			continue
		}
		for _, c := range running {
			if !c.State.Running {
				continue
			}
			ep, err := n.br.Endpoint(c.ID)
			if err != nil {
				continue
			}
			match := strings.EqualFold(strings.TrimPrefix(c.Name, "/"), name) || c.ID == name || (len(name) == 12 && strings.HasPrefix(c.ID, name))
			for _, a := range n.rec.Endpoints[c.ID].Aliases {
				match = match || strings.EqualFold(a, name)
			}
			if ip, ok := netip.AddrFromSlice(ep.IP.To4()); match && ok && !slices.Contains(rec.Addrs, ip) {
				rec.Addrs = append(rec.Addrs, ip)
			}
		}
	}
	return rec, len(rec.Addrs) > 0
}

// releaseNetwork frees the network of container id (see releaseNetworkLocked).
func (d *Daemon) releaseNetwork(id string, clear bool) {
	unlock := d.netLock(id)
	defer unlock()
	d.releaseNetworkLocked(id, clear)
	if !clear {
		if d.nets != nil {
			if err := d.nets.setEndpoint(id, "", endpointConfig{}); err != nil {
				slog.Warn("forget network aliases", "container", id, "err", err)
			}
		}
		// The container is gone: so is the need for its lock.
		d.netMu.Lock()
		delete(d.netLocks, id)
		d.netMu.Unlock()
	}
}

// releaseNetworkLocked detaches id from the network (its published ports,
// address and namespace) and, with clear, forgets them on its record, as
// inspect of a stopped container shows no address in Docker.
func (d *Daemon) releaseNetworkLocked(id string, clear bool) {
	d.releaseUserNetworks(id)
	d.releaseCluster(id)
	if err := d.network.Detach(context.Background(), id); err != nil {
		slog.Warn("release network", "container", id, "err", err)
	}
	d.networkDisconnected(id)
	if clear {
		if err := d.containers.SetNetwork(id, "", containers.NetworkSettings{}); err != nil && !errors.Is(err, containers.ErrNotFound) {
			slog.Warn("forget network", "container", id, "err", err)
		}
	}
}

// settleNetwork releases the network of a container that has exited (or
// is gone) now, rather than when its watcher gets to it: a client that
// stopped or waited for one container may at once publish its ports again.
func (d *Daemon) settleNetwork(id string) {
	unlock := d.netLock(id)
	defer unlock()
	c, err := d.containers.Get(id)
	switch {
	case errors.Is(err, containers.ErrNotFound):
		d.releaseUserNetworks(id)
		d.releaseCluster(id)
		if err := d.network.Detach(context.Background(), id); err != nil {
			slog.Warn("release network", "container", id, "err", err)
		}
	case err != nil, c.State.Running, c.Config.NetNSPath == "":
	default:
		d.releaseNetworkLocked(id, true)
	}
}

// watchExit releases the network of a running container once it has exited.
func (d *Daemon) watchExit(id string) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		_, err := d.containers.Wait(d.ctx, id, containers.WaitNotRunning, nil)
		if d.ctx.Err() != nil {
			return // the next daemon adopts the container and its network
		}
		if errors.Is(err, containers.ErrNotFound) {
			d.releaseNetwork(id, false)
			return
		}
		unlock := d.netLock(id)
		defer unlock()
		// Started again meanwhile: the new run has its own network and watcher.
		if c, err := d.containers.Get(id); err == nil && c.State.Running {
			return
		}
		d.releaseNetworkLocked(id, true)
	}()
}

// adoptNetworks takes over the networks a previous daemon left: watchers
// for the running containers, release for those that exited meanwhile.
func (d *Daemon) adoptNetworks() {
	for _, c := range d.containers.List(true) {
		if !ownNetNS(c.Config.NetworkMode) {
			continue
		}
		if c.State.Running {
			d.trackConnected(c)
			if c.Config.ClusterNetwork != "" {
				d.adoptCluster(c)
			} else if userNetwork(c.Config.NetworkMode) && c.Config.NetNSPath != "" {
				if err := d.startResolver(c, c.Config.NetNSPath); err != nil {
					slog.Warn("restart the resolver of a running container", "container", c.ID, "err", err)
				}
			}
			d.watchExit(c.ID)
		} else if c.Config.NetNSPath != "" {
			d.releaseNetwork(c.ID, true)
		}
	}
}

// checkEndpointConfig refuses what a container's endpoint on network mode
// asks for and shoal does not do.
// errMACAddress refuses a MAC address asked for (--mac-address, on the
// container or an endpoint): interfaces get the address derived from their
// IP, and an option that would be ignored is refused.
var errMACAddress = badRequest("a MAC address (--mac-address) is not supported: a container's interface gets one derived from its IP address")

func checkEndpointConfig(mode string, es *network.EndpointSettings) error {
	if es == nil {
		return nil
	}
	switch {
	case len(es.Aliases) > 0 && !userNetwork(mode):
		return badRequest("network-scoped alias is supported only for containers in user defined networks")
	case es.IPAMConfig != nil && (es.IPAMConfig.IPv6Address.IsValid() || len(es.IPAMConfig.LinkLocalIPs) > 0):
		return badRequest("IPv6 and link-local addresses are not supported")
	case es.IPAMConfig != nil && es.IPAMConfig.IPv4Address.IsValid() && !userNetwork(mode):
		return badRequest("user specified IP address is supported on user defined networks only")
	case len(es.Links) > 0:
		return badRequest("links are not supported")
	case len(es.DriverOpts) > 0:
		return badRequest("endpoint driver options are not supported")
	case len(es.MacAddress) > 0:
		return errMACAddress
	}
	for _, a := range es.Aliases {
		if !networkNameRE.MatchString(a) {
			return badRequest("invalid network alias %q", a)
		}
	}
	return nil
}

// rememberEndpoint records the --network-alias names and --ip of the
// created container c; if that fails, or the address is not one of the
// network's, c is removed again (nothing half-made).
func (d *Daemon) rememberEndpoint(ctx context.Context, c containers.Container, nc *network.NetworkingConfig) error {
	if nc == nil || !userNetwork(c.Config.NetworkMode) || c.Config.ClusterNetwork != "" {
		return nil
	}
	var cfg endpointConfig
	for _, es := range nc.EndpointsConfig {
		if es != nil {
			cfg.Aliases = append(cfg.Aliases, es.Aliases...)
			if es.IPAMConfig != nil && es.IPAMConfig.IPv4Address.IsValid() {
				cfg.IP = es.IPAMConfig.IPv4Address
			}
		}
	}
	if cfg.empty() {
		return nil
	}
	err := d.checkFixedIP(c.Config.NetworkMode, cfg.IP)
	if err == nil {
		err = d.nets.setEndpoint(c.ID, c.Config.NetworkMode, cfg)
	}
	if err != nil {
		if rerr := d.containers.Remove(context.WithoutCancel(ctx), c.ID, true); rerr != nil {
			slog.Warn("remove a container whose network settings could not be recorded", "container", c.ID, "err", rerr)
		}
		return fmt.Errorf("network settings of %s: %w", c.ID[:12], err)
	}
	return nil
}

// checkFixedIP refuses an --ip outside the subnet of the user network net.
func (d *Daemon) checkFixedIP(net string, ip netip.Addr) error {
	if !ip.IsValid() {
		return nil
	}
	n, err := d.nets.lookup(net)
	if err != nil {
		return err
	}
	if n.rec.PoolSubnet {
		return badRequest("user specified IP address is supported only when connecting to networks with user configured subnets")
	}
	if !ip.Is4() || !n.rec.Subnet.Contains(ip) || ip == n.rec.Gateway || ip == n.rec.Subnet.Addr() {
		return badRequest("invalid address %s: not a host address of network %s (%s)", ip, n.rec.Name, n.rec.Subnet)
	}
	return nil
}

// releaseUserNetworks stops the resolver of container id and detaches it
// from whichever user network holds an endpoint of it.
func (d *Daemon) releaseUserNetworks(id string) {
	if d.nets == nil {
		return
	}
	d.nets.stopDNS(id)
	d.nets.mu.Lock()
	var brs []*bridge.Network
	for _, n := range d.nets.byID {
		if _, err := n.br.Endpoint(id); err == nil {
			brs = append(brs, n.br)
		}
	}
	d.nets.mu.Unlock()
	for _, br := range brs {
		if err := br.Detach(context.Background(), id); err != nil {
			slog.Warn("release user network", "container", id, "network", br.Name(), "err", err)
		}
	}
}

// hostIPString is the HostIp of a published port as inspect shows it.
func hostIPString(ip string) string {
	if ip == "" {
		return "0.0.0.0"
	}
	return ip
}

func parseAddr(s string) netip.Addr {
	a, _ := netip.ParseAddr(s)
	return a
}
