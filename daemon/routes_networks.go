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
	"sort"
	"strings"
	"time"

	"github.com/moby/moby/api/types/network"

	shoalevents "github.com/shoal-project/shoal/containerd/events"
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

// builtinCreated is the creation time shown for the built-in networks.
var builtinCreated = time.Unix(0, 0).UTC()

// builtinID is the stable ID of a built-in network on this daemon.
func (d *Daemon) builtinID(name string) string {
	sum := sha256.Sum256([]byte("shoal-builtin/" + d.cfg.BridgeName + "/" + name))
	return hex.EncodeToString(sum[:])
}

// endpointsOn lists the running containers on network name, by ID.
func (d *Daemon) endpointsOn(name string) map[string]network.EndpointResource {
	out := map[string]network.EndpointResource{}
	for _, c := range d.containers.List(false) {
		if c.Config.NetworkMode != name || !c.State.Running {
			continue
		}
		ep := network.EndpointResource{Name: strings.TrimPrefix(c.Name, "/"), EndpointID: c.ID}
		if n := c.Config.Network; n.IPAddress != "" {
			if a, err := netip.ParseAddr(n.IPAddress); err == nil {
				ep.IPv4Address = netip.PrefixFrom(a, n.IPPrefixLen)
			}
			if mac, err := net.ParseMAC(n.MacAddress); err == nil {
				ep.MacAddress = network.HardwareAddr(mac)
			}
		}
		out[c.ID] = ep
	}
	return out
}

func (d *Daemon) builtinInspect(name string) network.Inspect {
	n := network.Inspect{Network: network.Network{
		Name: name, ID: d.builtinID(name), Created: builtinCreated, Scope: "local", Driver: networkTypes[name],
		EnableIPv4: true, IPAM: network.IPAM{Driver: "default", Config: []network.IPAMConfig{}},
		Options: map[string]string{}, Labels: map[string]string{},
	}, Containers: d.endpointsOn(name)}
	if name == modeBridge {
		n.IPAM.Config = []network.IPAMConfig{{Subnet: d.network.Subnet(), Gateway: d.network.Gateway()}}
		n.Options = map[string]string{"com.docker.network.bridge.name": d.network.Name(), "com.docker.network.bridge.default_bridge": "true"}
	}
	return n
}

func (d *Daemon) userInspect(rec netRecord) network.Inspect {
	return network.Inspect{Network: network.Network{
		Name: rec.Name, ID: rec.ID, Created: rec.Created, Scope: "local", Driver: "bridge", EnableIPv4: true,
		IPAM:     network.IPAM{Driver: "default", Options: map[string]string{}, Config: []network.IPAMConfig{{Subnet: rec.Subnet, Gateway: rec.Gateway}}},
		Internal: rec.Internal, Options: nonNilMap(rec.Options), Labels: nonNilMap(rec.Labels),
	}, Containers: d.endpointsOn(rec.Name)}
}

// allNetworks is every network of the node: built-in, user, cluster.
func (d *Daemon) allNetworks(ctx context.Context) ([]network.Inspect, error) {
	var out []network.Inspect
	for _, name := range []string{modeBridge, modeHost, modeNone} {
		out = append(out, d.builtinInspect(name))
	}
	for _, rec := range d.nets.list() {
		out = append(out, d.userInspect(rec))
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
		return d.userInspect(n.rec), nil
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
	if eps := d.endpointsOn(n.rec.Name); len(eps) > 0 {
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
	if n, err := d.findNetwork(r.Context(), id); err == nil && n.Created.Equal(builtinCreated) && builtinNetwork(n.Name) {
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
	f, err := parseFilters(r.URL.Query().Get("filters"), "label", "until")
	if err != nil {
		writeError(w, err)
		return
	}
	var until time.Time
	for _, v := range f["until"] {
		t, err := parseUntil(v)
		if err != nil {
			writeError(w, err)
			return
		}
		until = t
	}
	deleted := []string{}
	for _, rec := range d.nets.list() {
		if !f.labels(rec.Labels) || !until.IsZero() && !rec.Created.Before(until) {
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
	cl, err := d.clusterNetworkPrune(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, network.PruneReport{NetworksDeleted: append(deleted, cl...)})
}

// parseUntil reads an "until" filter: a Unix time or an RFC 3339 time or a
// duration before now (as dockerd).
func parseUntil(v string) (time.Time, error) {
	if dur, err := time.ParseDuration(v); err == nil {
		return time.Now().Add(-dur), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	var sec int64
	if _, err := fmt.Sscanf(v, "%d", &sec); err == nil {
		return time.Unix(sec, 0), nil
	}
	return time.Time{}, badRequest("invalid filter 'until=%s'", v)
}

// networkConnect and networkDisconnect: a container is on one network at a
// time here, chosen at create; moving it at runtime is not done yet. The
// network and the container are checked first, so that a typo gets its
// "not found".
func (d *Daemon) networkConnect(w http.ResponseWriter, r *http.Request) {
	var req network.ConnectRequest
	d.networkMove(w, r, &req, &req.Container, "network connect is not supported yet: a container joins its one network at create (--network)")
}

func (d *Daemon) networkDisconnect(w http.ResponseWriter, r *http.Request) {
	var req network.DisconnectRequest
	d.networkMove(w, r, &req, &req.Container, "network disconnect is not supported yet: a container leaves its network when it stops")
}

func (d *Daemon) networkMove(w http.ResponseWriter, r *http.Request, req any, ctr *string, refusal string) {
	if err := decodeJSON(r, req); err != nil {
		writeError(w, err)
		return
	}
	if _, err := d.findNetwork(r.Context(), r.PathValue("id")); err != nil {
		writeError(w, err)
		return
	}
	if _, err := d.containers.Get(*ctr); err != nil {
		writeError(w, err)
		return
	}
	writeError(w, withStatus(http.StatusNotImplemented, errors.New(refusal)))
}
