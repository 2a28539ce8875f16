package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/types/network"

	"github.com/shoal-project/shoal/containerd/atomicfile"
	"github.com/shoal-project/shoal/overlaynet/bridge"
	"github.com/shoal-project/shoal/overlaynet/dns"
)

// User-defined bridge networks (docker network create -d bridge): each has
// its own Linux bridge, subnet and IPAM (an overlaynet/bridge Network made
// Isolated, so containers of different networks cannot talk), and a record
// <DataRoot>/networks/<id>.json from which it is re-made at daemon start.
// A container is on one network at a time (its NetworkMode holds the
// network's name); its --network-alias names are kept in the record.

// netRecord is what a user network is made from again after a restart.
type netRecord struct {
	ID       string            `json:"id"`
	Name     string            `json:"name"`
	Created  time.Time         `json:"created"`
	Bridge   string            `json:"bridge"`
	Subnet   netip.Prefix      `json:"subnet"`
	Gateway  netip.Addr        `json:"gateway"`
	Internal bool              `json:"internal,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
	Options  map[string]string `json:"options,omitempty"`
	// PoolSubnet is set when the subnet came from the default pools, not
	// from --subnet: docker refuses --ip there, since the subnet may differ
	// on the next create. Records written before the field read as false
	// (user-configured), keeping what they accepted.
	PoolSubnet bool `json:"poolSubnet,omitempty"`
	// Endpoints are what the containers created on or connected to the
	// network asked for there (--network-alias, --ip), by container ID.
	Endpoints map[string]endpointConfig `json:"endpoints,omitempty"`
}

// endpointConfig is a container's --network-alias names and --ip on one
// network.
type endpointConfig struct {
	Aliases []string   `json:"aliases,omitempty"`
	IP      netip.Addr `json:"ip,omitzero"`
}

// empty reports whether nothing was asked for.
func (e endpointConfig) empty() bool { return len(e.Aliases) == 0 && !e.IP.IsValid() }

type userNet struct {
	rec netRecord
	br  *bridge.Network
}

// userNets is the daemon's set of user networks and the resolvers of the
// containers running on them.
type userNets struct {
	dir      string
	stateDir string
	netnsDir string
	spares   bridge.NetNSMaker // made-ahead namespaces for endpoints

	mu   sync.Mutex
	byID map[string]*userNet
	// dns holds the stop function of each running container's resolver.
	dns map[string]func()
}

// networkNameRE is the name a user network may have, as dockerd's.
var networkNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// defaultPools are tried in turn for a network created without --subnet,
// as dockerd's default address pools (its 172.17/16 is docker0's, and
// 172.31/16 is shoal's default bridge).
func defaultPools() []netip.Prefix {
	var out []netip.Prefix
	for i := 18; i <= 30; i++ {
		out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{172, byte(i), 0, 0}), 16))
	}
	for i := 0; i < 256; i += 16 {
		out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 168, byte(i), 0}), 20))
	}
	return out
}

// openUserNets re-makes the networks recorded under dataRoot. One that
// cannot be made is logged and left out (its record stays).
func openUserNets(ctx context.Context, dataRoot, execRoot string, spares bridge.NetNSMaker) (*userNets, error) {
	u := &userNets{
		dir: filepath.Join(dataRoot, "networks"), stateDir: filepath.Join(dataRoot, "network"),
		netnsDir: filepath.Join(execRoot, "netns"), spares: spares, byID: map[string]*userNet{}, dns: map[string]func(){},
	}
	if err := os.MkdirAll(u.dir, 0o700); err != nil {
		return nil, fmt.Errorf("user networks: %w", err)
	}
	entries, err := os.ReadDir(u.dir)
	if err != nil {
		return nil, fmt.Errorf("user networks: %w", err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(u.dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("user networks: %w", err)
		}
		var rec netRecord
		if err := json.Unmarshal(b, &rec); err != nil {
			return nil, fmt.Errorf("user networks: parse %s: %w", e.Name(), err)
		}
		br, err := bridge.New(ctx, u.bridgeOptions(rec))
		if err != nil {
			slog.Error("user network could not be made again", "network", rec.Name, "err", err)
			continue
		}
		u.byID[rec.ID] = &userNet{rec: rec, br: br}
	}
	return u, nil
}

func (u *userNets) bridgeOptions(rec netRecord) bridge.Options {
	mtu, _ := strconv.Atoi(rec.Options["com.docker.network.driver.mtu"])
	return bridge.Options{
		Name: rec.Bridge, Subnet: netip.PrefixFrom(rec.Gateway, rec.Subnet.Bits()).String(),
		StateDir: u.stateDir, NetNSDir: u.netnsDir, MTU: mtu, Isolated: true, Internal: rec.Internal,
		Spares: u.spares,
	}
}

func (u *userNets) save(rec netRecord) error {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return fmt.Errorf("network %s: %w", rec.Name, err)
	}
	return atomicfile.WriteFile(filepath.Join(u.dir, rec.ID+".json"), b, 0o600)
}

// get finds a network by full ID, name or unique ID prefix; u.mu is held.
func (u *userNets) get(idOrName string) (*userNet, error) {
	if n, ok := u.byID[idOrName]; ok {
		return n, nil
	}
	for _, n := range u.byID {
		if n.rec.Name == idOrName {
			return n, nil
		}
	}
	var found *userNet
	for id, n := range u.byID {
		if idOrName != "" && strings.HasPrefix(id, idOrName) {
			if found != nil {
				return nil, withStatus(http.StatusBadRequest, fmt.Errorf("network %s is ambiguous", idOrName))
			}
			found = n
		}
	}
	if found == nil {
		return nil, withStatus(http.StatusNotFound, fmt.Errorf("network %s not found", idOrName))
	}
	return found, nil
}

// lookup is get under the lock.
func (u *userNets) lookup(idOrName string) (*userNet, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.get(idOrName)
}

// builtinNetwork reports whether name is bridge, host or none.
func builtinNetwork(name string) bool {
	return name == modeBridge || name == modeHost || name == modeNone
}

// create makes a bridge network from req; nothing is left of it on error.
func (u *userNets) create(ctx context.Context, req network.CreateRequest, defaultBridge netip.Prefix) (netRecord, error) {
	if req.Name == "" || !networkNameRE.MatchString(req.Name) {
		return netRecord{}, badRequest("invalid network name %q: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", req.Name)
	}
	if builtinNetwork(req.Name) {
		return netRecord{}, withStatus(http.StatusForbidden, fmt.Errorf("%s is a pre-defined network and cannot be created", req.Name))
	}
	switch {
	case req.Attachable:
		return netRecord{}, badRequest("--attachable is only supported for overlay networks, not bridge")
	case req.Ingress:
		return netRecord{}, badRequest("--ingress is only supported for overlay networks, not bridge")
	case req.EnableIPv6 != nil && *req.EnableIPv6:
		return netRecord{}, badRequest("IPv6 networks are not supported")
	case req.EnableIPv4 != nil && !*req.EnableIPv4:
		return netRecord{}, badRequest("networks without IPv4 are not supported")
	case req.ConfigOnly || req.ConfigFrom != nil:
		return netRecord{}, badRequest("config-only networks are not supported")
	case req.Scope != "" && req.Scope != "local":
		return netRecord{}, badRequest("scope %q is not supported for bridge networks", req.Scope)
	}
	rec := netRecord{Name: req.Name, Created: time.Now().UTC(), Internal: req.Internal, Labels: req.Labels, Options: map[string]string{}}
	for k, v := range req.Options {
		switch k {
		case "com.docker.network.bridge.name":
			if v == "" || len(v) > 15 || strings.ContainsAny(v, "/ \t\n") {
				return netRecord{}, badRequest("invalid bridge name %q: at most 15 characters, no '/' or space", v)
			}
		case "com.docker.network.driver.mtu":
			if n, err := strconv.Atoi(v); err != nil || n < 68 || n > 65535 {
				return netRecord{}, badRequest("invalid MTU %q: a number from 68 to 65535", v)
			}
		default:
			return netRecord{}, badRequest("option %s is not supported for bridge networks", k)
		}
		rec.Options[k] = v
	}
	var subnet netip.Prefix
	var gw netip.Addr
	if req.IPAM != nil {
		if req.IPAM.Driver != "" && req.IPAM.Driver != "default" {
			return netRecord{}, badRequest("IPAM driver %q is not supported", req.IPAM.Driver)
		}
		if len(req.IPAM.Options) > 0 {
			return netRecord{}, badRequest("IPAM options are not supported")
		}
		switch len(req.IPAM.Config) {
		case 0:
		case 1:
			c := req.IPAM.Config[0]
			if c.IPRange.IsValid() || len(c.AuxAddress) > 0 {
				return netRecord{}, badRequest("--ip-range and --aux-address are not supported")
			}
			if !c.Subnet.IsValid() {
				if c.Gateway.IsValid() {
					return netRecord{}, badRequest("a gateway needs a subnet (--subnet)")
				}
				break
			}
			if !c.Subnet.Addr().Is4() {
				return netRecord{}, badRequest("invalid subnet %s: only IPv4 is supported", c.Subnet)
			}
			if c.Subnet.Bits() > 30 {
				return netRecord{}, badRequest("invalid subnet %s: a prefix longer than /30 leaves no container address", c.Subnet)
			}
			subnet = c.Subnet.Masked()
			gw = c.Gateway
			if gw.IsValid() && (!subnet.Contains(gw) || gw == subnet.Addr()) {
				return netRecord{}, badRequest("invalid gateway %s: not a host address of subnet %s", gw, subnet)
			}
		default:
			return netRecord{}, badRequest("only one subnet per network is supported")
		}
	}

	u.mu.Lock()
	defer u.mu.Unlock()
	for _, n := range u.byID {
		if n.rec.Name == req.Name {
			return netRecord{}, withStatus(http.StatusConflict, fmt.Errorf("network with name %s already exists", req.Name))
		}
	}
	id := make([]byte, 32)
	rand.Read(id)
	rec.ID = hex.EncodeToString(id)
	rec.Bridge = rec.Options["com.docker.network.bridge.name"]
	if rec.Bridge == "" {
		rec.Bridge = "br-" + rec.ID[:12]
	}
	taken := []netip.Prefix{defaultBridge}
	for _, n := range u.byID {
		taken = append(taken, n.rec.Subnet)
		if n.rec.Bridge == rec.Bridge {
			return netRecord{}, withStatus(http.StatusConflict, fmt.Errorf("bridge %s is used by network %s", rec.Bridge, n.rec.Name))
		}
	}
	overlaps := func(p netip.Prefix) bool {
		for _, t := range taken {
			if t.IsValid() && t.Overlaps(p) {
				return true
			}
		}
		return false
	}
	candidates := []netip.Prefix{subnet}
	if !subnet.IsValid() {
		candidates = nil
		for _, p := range defaultPools() {
			if !overlaps(p) {
				candidates = append(candidates, p)
			}
		}
		if len(candidates) == 0 {
			return netRecord{}, withStatus(http.StatusForbidden, errors.New("all predefined address pools have been fully subnetted"))
		}
	} else if overlaps(subnet) {
		return netRecord{}, withStatus(http.StatusForbidden, fmt.Errorf("invalid pool request: subnet %s overlaps with another network's on this host", subnet))
	}
	var lastErr error
	rec.PoolSubnet = !subnet.IsValid()
	for _, p := range candidates {
		rec.Subnet = p
		rec.Gateway = gw
		if !gw.IsValid() {
			rec.Gateway = p.Addr().Next()
		}
		br, err := bridge.New(ctx, u.bridgeOptions(rec))
		if err != nil {
			lastErr = err
			if subnet.IsValid() || !errors.Is(err, bridge.ErrConflict) {
				break
			}
			continue // this pool is in use on the host: the next one
		}
		if err := u.save(rec); err != nil {
			if rerr := br.Remove(context.WithoutCancel(ctx)); rerr != nil {
				slog.Warn("remove a network whose record could not be written", "network", rec.Name, "err", rerr)
			}
			return netRecord{}, err
		}
		u.byID[rec.ID] = &userNet{rec: rec, br: br}
		return rec, nil
	}
	switch {
	case errors.Is(lastErr, bridge.ErrConflict):
		return netRecord{}, withStatus(http.StatusForbidden, fmt.Errorf("create network %s: %w", req.Name, lastErr))
	case errors.Is(lastErr, bridge.ErrInvalid):
		return netRecord{}, badRequest("create network %s: %v", req.Name, lastErr)
	}
	return netRecord{}, fmt.Errorf("create network %s: %w", req.Name, lastErr)
}

// remove deletes the network n; the caller checked that no container runs
// on it. u.mu is held.
func (u *userNets) removeLocked(ctx context.Context, n *userNet) error {
	if err := n.br.Remove(ctx); err != nil {
		return fmt.Errorf("remove network %s: %w", n.rec.Name, err)
	}
	if err := os.Remove(filepath.Join(u.dir, n.rec.ID+".json")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove network %s: %w", n.rec.Name, err)
	}
	delete(u.byID, n.rec.ID)
	return nil
}

// list returns the networks sorted by name.
func (u *userNets) list() []netRecord {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make([]netRecord, 0, len(u.byID))
	for _, n := range u.byID {
		out = append(out, n.rec)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// endpoint is what container id asked for on the network named net.
func (u *userNets) endpoint(net, id string) endpointConfig {
	u.mu.Lock()
	defer u.mu.Unlock()
	n, err := u.get(net)
	if err != nil {
		return endpointConfig{}
	}
	return n.rec.Endpoints[id]
}

// snapshot copies the networks (their records as they are now).
func (u *userNets) snapshot() []userNet {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make([]userNet, 0, len(u.byID))
	for _, n := range u.byID {
		out = append(out, *n)
	}
	return out
}

// setEndpoint records what container id asked for on the network named
// net, replacing what it had there; with net "" it forgets the container
// on every network.
func (u *userNets) setEndpoint(id, net string, cfg endpointConfig) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	var errs []error
	for _, n := range u.byID {
		_, had := n.rec.Endpoints[id]
		mine := net == "" || n.rec.Name == net
		want := n.rec.Name == net && !cfg.empty()
		if !mine || !had && !want {
			continue
		}
		rec := n.rec
		rec.Endpoints = map[string]endpointConfig{}
		for k, v := range n.rec.Endpoints {
			if k != id {
				rec.Endpoints[k] = v
			}
		}
		if want {
			rec.Endpoints[id] = cfg
		}
		if err := u.save(rec); err != nil {
			errs = append(errs, err)
			continue
		}
		n.rec = rec
	}
	return errors.Join(errs...)
}

// startDNS starts the resolver of container id in its namespace; stop
// ends it. A running one is replaced.
func (u *userNets) startDNS(ctx context.Context, id, netnsPath string, lookup dns.Lookup, upstreams []string) error {
	stop, err := dns.Start(ctx, netnsPath, dns.Config{Asker: id, Lookup: lookup, Upstreams: upstreams})
	if err != nil {
		return err
	}
	u.mu.Lock()
	old := u.dns[id]
	u.dns[id] = stop
	u.mu.Unlock()
	if old != nil {
		old()
	}
	return nil
}

func (u *userNets) stopDNS(id string) {
	u.mu.Lock()
	stop := u.dns[id]
	delete(u.dns, id)
	u.mu.Unlock()
	if stop != nil {
		stop()
	}
}
