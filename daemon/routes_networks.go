package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/moby/moby/api/types/network"

	"github.com/shoal-project/shoal/containerd/containers"
	shoalevents "github.com/shoal-project/shoal/containerd/events"
	"github.com/shoal-project/shoal/overlaynet/bridge"
)

// The /networks routes of the Engine API: the built-in bridge, host and
// none, the user-defined bridge networks of usernets.go, and the cluster's
// overlay networks (clusternets.go) merged into ls, inspect, rm and prune.

func (d *Daemon) networkRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /networks", d.networkList)
	mux.HandleFunc("GET /networks/{id}", d.networkInspect)
	mux.HandleFunc("POST /networks/create", d.networkCreate)
	mux.HandleFunc("DELETE /networks/{id}", d.networkRemove)
	mux.HandleFunc("POST /networks/{id}/connect", d.networkConnect)
	mux.HandleFunc("POST /networks/{id}/disconnect", d.networkDisconnect)
	mux.HandleFunc("POST /networks/prune", d.networkPrune)
}

// builtinID is the stable ID of a built-in network on this daemon.
func (d *Daemon) builtinID(name string) string {
	sum := sha256.Sum256([]byte("shoal-builtin/" + d.cfg.BridgeName + "/" + name))
	return hex.EncodeToString(sum[:])
}

// endpointsOn lists the running containers on network name, by ID: on a
// built-in network those created on it, on a user network (br) those with
// an endpoint on its bridge, connected ones included.
func (d *Daemon) endpointsOn(name string, br *bridge.Network) map[string]network.EndpointResource {
	out := map[string]network.EndpointResource{}
	for _, c := range d.containers.List(false) {
		if !c.State.Running {
			continue
		}
		res := network.EndpointResource{Name: strings.TrimPrefix(c.Name, "/"), EndpointID: c.ID}
		var ip net.IP
		var prefix int
		var mac net.HardwareAddr
		if br != nil {
			ep, err := br.Endpoint(c.ID)
			if err != nil {
				continue
			}
			ip, prefix, mac = ep.IP, ep.Prefix, ep.MAC
		} else if c.Config.NetworkMode != name {
			continue
		} else if n := c.Config.Network; n.IPAddress != "" {
			ip, prefix = net.ParseIP(n.IPAddress), n.IPPrefixLen
			mac, _ = net.ParseMAC(n.MacAddress)
		}
		if a, ok := netip.AddrFromSlice(ip.To4()); ok {
			res.IPv4Address = netip.PrefixFrom(a, prefix)
		}
		if mac != nil {
			res.MacAddress = network.HardwareAddr(mac)
		}
		out[c.ID] = res
	}
	return out
}

func (d *Daemon) builtinInspect(name string) network.Inspect {
	n := network.Inspect{Network: network.Network{
		Name: name, ID: d.builtinID(name), Created: d.started, Scope: "local", Driver: networkTypes[name],
		EnableIPv4: true, IPAM: network.IPAM{Driver: "default", Config: []network.IPAMConfig{}},
		Options: map[string]string{}, Labels: map[string]string{},
	}, Containers: d.endpointsOn(name, nil)}
	if name == modeBridge {
		n.IPAM.Config = []network.IPAMConfig{{Subnet: d.network.Subnet(), Gateway: d.network.Gateway()}}
		n.Options = map[string]string{"com.docker.network.bridge.name": d.network.Name(), "com.docker.network.bridge.default_bridge": "true"}
	}
	return n
}

func (d *Daemon) userInspect(n userNet) network.Inspect {
	rec := n.rec
	return network.Inspect{Network: network.Network{
		Name: rec.Name, ID: rec.ID, Created: rec.Created, Scope: "local", Driver: "bridge", EnableIPv4: true,
		IPAM:     network.IPAM{Driver: "default", Options: map[string]string{}, Config: []network.IPAMConfig{{Subnet: rec.Subnet, Gateway: rec.Gateway}}},
		Internal: rec.Internal, Options: nonNilMap(rec.Options), Labels: nonNilMap(rec.Labels),
	}, Containers: d.endpointsOn(rec.Name, n.br)}
}

// allNetworks is every network of the node: built-in, user, cluster.
func (d *Daemon) allNetworks(ctx context.Context) ([]network.Inspect, error) {
	var out []network.Inspect
	for _, name := range []string{modeBridge, modeHost, modeNone} {
		out = append(out, d.builtinInspect(name))
	}
	for _, n := range d.nets.snapshot() {
		out = append(out, d.userInspect(n))
	}
	cl, err := d.clusterNetworkList(ctx)
	if err != nil {
		return nil, fmt.Errorf("cluster networks: %w", err)
	}
	return append(out, cl...), nil
}

func matchNetwork(f filters, n network.Inspect) bool {
	typ := "custom"
	if builtinNetwork(n.Name) && n.Scope == "local" && n.Driver == networkTypes[n.Name] {
		typ = "builtin"
	}
	return f.any("name", func(v string) bool { return strings.Contains(n.Name, v) }) &&
		f.any("id", func(v string) bool { return strings.HasPrefix(n.ID, v) }) &&
		f.any("driver", func(v string) bool { return n.Driver == v }) &&
		f.any("scope", func(v string) bool { return n.Scope == v }) &&
		f.any("type", func(v string) bool { return v == typ }) &&
		f.any("dangling", func(v string) bool { return (v == "true" || v == "1") == (typ == "custom" && len(n.Containers) == 0) }) &&
		f.labels(n.Labels)
}

func (d *Daemon) networkList(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilters(r.URL.Query().Get("filters"), "name", "id", "driver", "scope", "type", "label", "dangling")
	if err != nil {
		writeError(w, err)
		return
	}
	for _, v := range f["type"] {
		if v != "custom" && v != "builtin" {
			writeError(w, badRequest("invalid filter: 'type'='%s'", v))
			return
		}
	}
	// dangling takes one boolean, refused otherwise as dockerd does (any
	// other value read as false listed the networks in use).
	if vs := f["dangling"]; len(vs) > 1 {
		writeError(w, badRequest(`got more than one value for filter key "dangling"`))
		return
	} else if len(vs) == 1 && !slices.Contains([]string{"0", "1", "false", "true"}, vs[0]) {
		writeError(w, badRequest(`invalid value for filter 'dangling', must be "true" (or "1"), or "false" (or "0")`))
		return
	}
	all, err := d.allNetworks(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	out := []network.Summary{}
	for _, n := range all {
		if matchNetwork(f, n) {
			out = append(out, network.Summary{Network: n.Network})
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// findNetwork resolves idOrName over every kind of network.
func (d *Daemon) findNetwork(ctx context.Context, idOrName string) (network.Inspect, error) {
	for _, name := range []string{modeBridge, modeHost, modeNone} {
		if idOrName == name || idOrName == d.builtinID(name) || len(idOrName) >= 12 && strings.HasPrefix(d.builtinID(name), idOrName) {
			return d.builtinInspect(name), nil
		}
	}
	n, err := d.nets.lookup(idOrName)
	if err == nil {
		return d.userInspect(*n), nil
	}
	if cl, found, cerr := d.clusterNetworkInspect(ctx, idOrName); cerr != nil {
		return network.Inspect{}, cerr
	} else if found {
		return cl, nil
	}
	return network.Inspect{}, err
}

func (d *Daemon) networkInspect(w http.ResponseWriter, r *http.Request) {
	n, err := d.findNetwork(r.Context(), r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	if scope := r.URL.Query().Get("scope"); scope != "" && scope != n.Scope {
		writeError(w, withStatus(http.StatusNotFound, fmt.Errorf("network %s not found", r.PathValue("id"))))
		return
	}
	if v := r.URL.Query().Get("verbose"); v == "1" || strings.EqualFold(v, "true") {
		if n.Scope == "swarm" {
			if n.Services, err = d.clusterNetworkServices(r.Context(), n.ID); err != nil {
				writeError(w, err)
				return
			}
		}
	}
	writeJSON(w, http.StatusOK, n)
}

func (d *Daemon) networkCreate(w http.ResponseWriter, r *http.Request) {
	var req network.CreateRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, err)
		return
	}
	switch req.Driver {
	case "overlay":
		resp, err := d.clusterNetworkCreate(r.Context(), req)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusCreated, resp)
		return
	case "", "bridge":
	default:
		writeError(w, withStatus(http.StatusNotFound, fmt.Errorf("plugin %q not found: only the bridge and overlay drivers exist", req.Driver)))
		return
	}
	if _, err := d.clusterNetworkInspectByName(r.Context(), req.Name); err != nil {
		writeError(w, err)
		return
	}
	rec, err := d.nets.create(r.Context(), req, d.network.Subnet())
	if err != nil {
		writeError(w, err)
		return
	}
	d.publish(shoalevents.TypeNetwork, "create", rec.ID, map[string]string{"name": rec.Name, "type": "bridge"})
	writeJSON(w, http.StatusCreated, network.CreateResponse{ID: rec.ID})
}

// clusterNetworkInspectByName refuses a name a cluster network has.
func (d *Daemon) clusterNetworkInspectByName(ctx context.Context, name string) (bool, error) {
	if builtinNetwork(name) {
		return false, nil // refused by create with dockerd's words
	}
	_, found, err := d.clusterNetworkInspect(ctx, name)
	if err != nil {
		return false, err
	}
	if found {
		return true, withStatus(http.StatusConflict, fmt.Errorf("network with name %s already exists", name))
	}
	return false, nil
}

// removeUserNetwork removes the user network idOrName unless a container
// runs on it; found is false if there is no such user network.
func (d *Daemon) removeUserNetwork(ctx context.Context, idOrName string) (found bool, err error) {
	d.nets.mu.Lock()
	defer d.nets.mu.Unlock()
	n, err := d.nets.get(idOrName)
	if err != nil {
		return false, nil
	}
	if eps := d.endpointsOn(n.rec.Name, n.br); len(eps) > 0 {
		var names []string
		for _, ep := range eps {
			names = append(names, ep.Name)
		}
		sort.Strings(names)
		return true, withStatus(http.StatusForbidden, fmt.Errorf("error while removing network: network %s id %s has active endpoints (%s)",
			n.rec.Name, n.rec.ID[:12], strings.Join(names, ", ")))
	}
	if err := d.nets.removeLocked(ctx, n); err != nil {
		return true, err
	}
	d.publish(shoalevents.TypeNetwork, "destroy", n.rec.ID, map[string]string{"name": n.rec.Name, "type": "bridge"})
	return true, nil
}

func (d *Daemon) networkRemove(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if n, err := d.findNetwork(r.Context(), id); err == nil && builtinNetwork(n.Name) && n.ID == d.builtinID(n.Name) {
		writeError(w, withStatus(http.StatusForbidden, fmt.Errorf("%s is a pre-defined network and cannot be removed", n.Name)))
		return
	}
	found, err := d.removeUserNetwork(r.Context(), id)
	if !found && err == nil {
		found, err = d.clusterNetworkRemove(r.Context(), id)
	}
	switch {
	case err != nil:
		writeError(w, err)
	case !found:
		writeError(w, withStatus(http.StatusNotFound, fmt.Errorf("network %s not found", id)))
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

// networkPrune removes the user networks no running container uses, and
// the cluster's unused networks.
func (d *Daemon) networkPrune(w http.ResponseWriter, r *http.Request) {
	f, until, err := timeFilters(r, "label", "label!", "until")
	if err != nil {
		writeError(w, err)
		return
	}
	deleted := []string{}
	for _, rec := range d.nets.list() {
		if !f.labels(rec.Labels) || !f.notLabels(rec.Labels) || !createdBefore(rec.Created, until) {
			continue
		}
		found, err := d.removeUserNetwork(r.Context(), rec.ID)
		if err != nil {
			var se *statusError
			if !errors.As(err, &se) || se.status != http.StatusForbidden {
				slog.Warn("prune network", "network", rec.Name, "err", err)
			}
			continue
		}
		if found {
			deleted = append(deleted, rec.Name)
		}
	}
	cl, err := d.pruneClusterNetworks(r.Context(), f, until)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, network.PruneReport{NetworksDeleted: append(deleted, cl...)})
}

// pruneClusterNetworks removes the unused cluster networks that match the
// prune's label and until filters (all unused ones without filters).
func (d *Daemon) pruneClusterNetworks(ctx context.Context, f filters, until time.Time) ([]string, error) {
	if len(f) == 0 {
		return d.clusterNetworkPrune(ctx)
	}
	all, err := d.clusterNetworkList(ctx)
	if err != nil {
		return nil, err
	}
	var deleted []string
	for _, n := range all {
		if !f.labels(n.Labels) || !until.IsZero() && !n.Created.Before(until) {
			continue
		}
		// One in use is refused by the managers and kept, as prune does.
		if found, err := d.clusterNetworkRemove(ctx, n.ID); err == nil && found {
			deleted = append(deleted, n.Name)
		}
	}
	return deleted, nil
}

// networkConnect attaches a running container to a user network as
// ethN, with no default route (its own network keeps that), and with
// --alias names in that network's resolver. The connect lasts until the
// container stops: its endpoints are released then.
func (d *Daemon) networkConnect(w http.ResponseWriter, r *http.Request) {
	var req network.ConnectRequest
	n, c, err := d.moveTarget(r, &req, &req.Container)
	if err != nil {
		writeError(w, err)
		return
	}
	var o bridge.AttachOptions
	var aliases []string
	if es := req.EndpointConfig; es != nil {
		if err := checkEndpointConfig(n.rec.Name, &network.EndpointSettings{Aliases: es.Aliases, Links: es.Links, DriverOpts: es.DriverOpts, MacAddress: es.MacAddress}); err != nil {
			writeError(w, err)
			return
		}
		aliases = es.Aliases
		if es.IPAMConfig != nil {
			o.IP = es.IPAMConfig.IPv4Address
		}
	}
	unlock := d.netLock(c.ID)
	defer unlock()
	if c, err = d.containers.Get(c.ID); err != nil || !c.State.Running || c.Config.NetNSPath == "" {
		writeError(w, withStatus(http.StatusConflict, fmt.Errorf("container %s is not running: only a running container can be connected", req.Container)))
		return
	}
	if _, err := n.br.Endpoint(c.ID); err == nil {
		writeError(w, withStatus(http.StatusForbidden, fmt.Errorf("endpoint with name %s already exists in network %s", strings.TrimPrefix(c.Name, "/"), n.rec.Name)))
		return
	}
	o.Shared = true
	o.IfName = d.freeIfName(c.ID)
	if _, err := n.br.AttachWith(r.Context(), c.ID, o); err != nil {
		switch {
		case errors.Is(err, bridge.ErrInvalid):
			err = badRequest("%v", err)
		case errors.Is(err, bridge.ErrConflict):
			err = withStatus(http.StatusForbidden, err)
		}
		writeError(w, fmt.Errorf("connect %s to %s: %w", req.Container, n.rec.Name, err))
		return
	}
	if err := d.nets.setEndpoint(c.ID, n.rec.Name, endpointConfig{Aliases: aliases, IP: o.IP}); err != nil {
		if derr := n.br.Detach(context.WithoutCancel(r.Context()), c.ID); derr != nil {
			slog.Warn("undo a connect", "container", c.ID, "network", n.rec.Name, "err", derr)
		}
		writeError(w, err)
		return
	}
	d.publish(shoalevents.TypeNetwork, "connect", n.rec.ID, map[string]string{"container": c.ID, "name": n.rec.Name, "type": "bridge"})
	w.WriteHeader(http.StatusOK)
}

// networkDisconnect detaches a container from a network it was connected
// to; the network it was created on is its namespace's and stays.
func (d *Daemon) networkDisconnect(w http.ResponseWriter, r *http.Request) {
	var req network.DisconnectRequest
	n, c, err := d.moveTarget(r, &req, &req.Container)
	if err != nil {
		writeError(w, err)
		return
	}
	unlock := d.netLock(c.ID)
	defer unlock()
	if c.Config.NetworkMode == n.rec.Name {
		writeError(w, withStatus(http.StatusForbidden, fmt.Errorf("container %s was created on network %s: it cannot be disconnected from it (only from networks it was connected to)", req.Container, n.rec.Name)))
		return
	}
	if _, err := n.br.Endpoint(c.ID); err != nil {
		writeError(w, withStatus(http.StatusForbidden, fmt.Errorf("container %s is not connected to network %s", req.Container, n.rec.Name)))
		return
	}
	if err := n.br.Detach(r.Context(), c.ID); err != nil {
		writeError(w, fmt.Errorf("disconnect %s from %s: %w", req.Container, n.rec.Name, err))
		return
	}
	if err := d.nets.setEndpoint(c.ID, n.rec.Name, endpointConfig{}); err != nil {
		slog.Warn("forget aliases", "container", c.ID, "network", n.rec.Name, "err", err)
	}
	d.publish(shoalevents.TypeNetwork, "disconnect", n.rec.ID, map[string]string{"container": c.ID, "name": n.rec.Name, "type": "bridge"})
	w.WriteHeader(http.StatusOK)
}

// moveTarget decodes a connect or disconnect request into req and finds
// its user network and container (*ctr, a field of req); built-in networks
// are refused (a container is on one of them from its create only).
func (d *Daemon) moveTarget(r *http.Request, req any, ctr *string) (*userNet, containers.Container, error) {
	if err := decodeJSON(r, req); err != nil {
		return nil, containers.Container{}, err
	}
	id := r.PathValue("id")
	n, err := d.nets.lookup(id)
	if err != nil {
		if _, ferr := d.findNetwork(r.Context(), id); ferr != nil {
			return nil, containers.Container{}, ferr
		}
		return nil, containers.Container{}, badRequest("network %s: only user-defined bridge networks can be connected to or disconnected from at runtime", id)
	}
	c, err := d.containers.Get(*ctr)
	if err != nil {
		return nil, containers.Container{}, err
	}
	return n, c, nil
}

// freeIfName is the first ethN (N >= 1) no network of container id
// uses in its namespace.
func (d *Daemon) freeIfName(id string) string {
	used := map[string]bool{"eth0": true}
	for _, n := range d.nets.snapshot() {
		if ep, err := n.br.Endpoint(id); err == nil {
			used[ep.IfName] = true
		}
	}
	for i := 1; ; i++ {
		if name := fmt.Sprintf("eth%d", i); !used[name] {
			return name
		}
	}
}
