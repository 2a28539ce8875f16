package daemon

import (
	"net"
	"net/http"
	"strconv"

	"github.com/moby/moby/api/types/swarm"
	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/containerd/events"
	"github.com/shoal-project/shoal/daemon/convert"
	"github.com/shoal-project/shoal/manager"
)

// swarmRoutes serves /swarm and /nodes (Docker Engine API shapes) through
// this node's manager's Control API.
func (d *Daemon) swarmRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /swarm", d.withControl(d.swarmInspect))
	mux.HandleFunc("POST /swarm/init", d.swarmInit)
	mux.HandleFunc("POST /swarm/join", d.swarmJoin)
	mux.HandleFunc("POST /swarm/leave", d.swarmLeave)
	mux.HandleFunc("POST /swarm/update", d.withControl(d.swarmUpdate))
	mux.HandleFunc("POST /swarm/unlock", d.swarmUnlock)
	mux.HandleFunc("GET /swarm/unlockkey", d.withControl(d.swarmUnlockKey))
	mux.HandleFunc("GET /nodes", d.withControl(d.nodeList))
	mux.HandleFunc("GET /nodes/{id}", d.withControl(d.nodeInspect))
	mux.HandleFunc("POST /nodes/{id}/update", d.withControl(d.nodeUpdate))
	mux.HandleFunc("DELETE /nodes/{id}", d.withControl(d.nodeRemove))
}

// withControl makes a route that needs this node's Control API: on a node
// that is in no swarm, or only a worker, the route answers Docker's 503.
func (d *Daemon) withControl(h func(http.ResponseWriter, *http.Request, api.ControlClient)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		conn, err := d.swarm.managerConn()
		if err != nil {
			writeError(w, err)
			return
		}
		h(w, r, api.NewControlClient(conn))
	}
}

// joinAvailability is the availability of a swarm init or join request:
// active when it names none, as in Docker.
func joinAvailability(a swarm.NodeAvailability) (api.NodeSpec_Availability, error) {
	if a == "" {
		return api.NodeSpec_ACTIVE, nil
	}
	return convert.NodeAvailabilityFromSwarm(a)
}

func (d *Daemon) swarmInit(w http.ResponseWriter, r *http.Request) {
	var body convert.InitRequest
	if err := decodeJSON(r, &body); err != nil {
		writeError(w, err)
		return
	}
	req := body.InitRequest
	var ext convert.SpecExtensions
	req.Spec, ext = body.Spec.Split()
	if req.ForceNewCluster {
		writeError(w, badRequest("--force-new-cluster is not supported"))
		return
	}
	avail, err := joinAvailability(req.Availability)
	if err != nil {
		writeError(w, err)
		return
	}
	spec, err := convert.ClusterSpecFromSwarm(req.Spec, ext)
	if err != nil {
		writeError(w, err)
		return
	}
	spec.AutolockManagers = spec.GetAutolockManagers() || req.AutoLockManagers
	nets, err := initNetworksOf(req)
	if err != nil {
		writeError(w, err)
		return
	}
	id, err := d.swarm.initSwarm(r.Context(), req.ListenAddr, req.AdvertiseAddr, spec, avail, nets)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, id)
}

func (d *Daemon) swarmJoin(w http.ResponseWriter, r *http.Request) {
	var req swarm.JoinRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, err)
		return
	}
	if len(req.RemoteAddrs) == 0 {
		writeError(w, badRequest("at least 1 RemoteAddr is required to join"))
		return
	}
	avail, err := joinAvailability(req.Availability)
	if err != nil {
		writeError(w, err)
		return
	}
	if err := d.swarm.joinSwarm(r.Context(), req.RemoteAddrs[0], req.JoinToken, req.ListenAddr, req.AdvertiseAddr, avail); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (d *Daemon) swarmLeave(w http.ResponseWriter, r *http.Request) {
	force, _ := strconv.ParseBool(r.URL.Query().Get("force"))
	if err := d.swarm.leaveSwarm(r.Context(), force); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (d *Daemon) swarmInspect(w http.ResponseWriter, r *http.Request, c api.ControlClient) {
	resp, err := c.GetCluster(r.Context(), &api.GetClusterRequest{})
	if err != nil {
		writeError(w, api.FromGRPC(err))
		return
	}
	tokens, err := c.GetJoinTokens(r.Context(), &api.GetJoinTokensRequest{})
	if err != nil {
		writeError(w, api.FromGRPC(err))
		return
	}
	cl := resp.GetCluster()
	if cl.RootCa != nil {
		cl.RootCa.JoinTokens = tokens.GetTokens()
	}
	writeJSON(w, http.StatusOK, convert.ClusterToSwarmExtended(cl))
}

func (d *Daemon) swarmUpdate(w http.ResponseWriter, r *http.Request, c api.ControlClient) {
	q := r.URL.Query()
	version, err := strconv.ParseUint(q.Get("version"), 10, 64)
	if err != nil {
		writeError(w, badRequest("invalid swarm version %q", q.Get("version")))
		return
	}
	var body convert.Spec
	if err := decodeJSON(r, &body); err != nil {
		writeError(w, err)
		return
	}
	spec, ext := body.Split()
	cur, err := c.GetCluster(r.Context(), &api.GetClusterRequest{})
	if err != nil {
		writeError(w, api.FromGRPC(err))
		return
	}
	// Fields a client leaves at zero keep their current values, as in dockerd.
	cs, err := convert.MergeClusterSpec(cur.GetCluster().GetSpec(), spec, ext)
	if err != nil {
		writeError(w, err)
		return
	}
	rotateKey, _ := strconv.ParseBool(q.Get("rotateManagerUnlockKey"))
	if _, err := c.UpdateCluster(r.Context(), &api.UpdateClusterRequest{ClusterVersion: version, Spec: cs, RotateUnlockKey: rotateKey}); err != nil {
		writeError(w, api.FromGRPC(err))
		return
	}
	for _, rot := range []struct {
		param string
		role  api.NodeRole
	}{{"rotateWorkerToken", api.NodeRole_WORKER}, {"rotateManagerToken", api.NodeRole_MANAGER}} {
		if yes, _ := strconv.ParseBool(q.Get(rot.param)); yes {
			if _, err := c.RotateJoinToken(r.Context(), &api.RotateJoinTokenRequest{Role: rot.role}); err != nil {
				writeError(w, api.FromGRPC(err))
				return
			}
		}
	}
	w.WriteHeader(http.StatusOK)
}

// swarmUnlock starts a locked manager with the unlock key (`swarm unlock`).
func (d *Daemon) swarmUnlock(w http.ResponseWriter, r *http.Request) {
	var req swarm.UnlockRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, err)
		return
	}
	if err := d.swarm.unlock(req.UnlockKey); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// swarmUnlockKey answers the cluster's unlock key (`swarm unlock-key`);
// empty when autolock is off, as dockerd.
func (d *Daemon) swarmUnlockKey(w http.ResponseWriter, r *http.Request, c api.ControlClient) {
	resp, err := c.GetUnlockKey(r.Context(), &api.GetUnlockKeyRequest{})
	if err != nil {
		writeError(w, api.FromGRPC(err))
		return
	}
	writeJSON(w, http.StatusOK, swarm.UnlockKeyResponse{UnlockKey: formatUnlockKey(resp.GetUnlockKey())})
}

func (d *Daemon) nodeList(w http.ResponseWriter, r *http.Request, c api.ControlClient) {
	raw, err := convert.ParseFilters(r.URL.Query().Get("filters"))
	if err != nil {
		writeError(w, err)
		return
	}
	f, err := convert.NodeListFilters(raw)
	if err != nil {
		writeError(w, err)
		return
	}
	nodes, err := listNodes(r.Context(), c, f.Request)
	if err != nil {
		writeError(w, err)
		return
	}
	trust := trustBundle(r, c)
	out := make([]convert.Node, 0, len(nodes))
	for _, n := range nodes {
		if !f.Match(n) {
			continue
		}
		out = append(out, convert.NodeWithTLS(n, trust))
	}
	writeJSON(w, http.StatusOK, out)
}

func (d *Daemon) nodeInspect(w http.ResponseWriter, r *http.Request, c api.ControlClient) {
	resp, err := c.GetNode(r.Context(), &api.GetNodeRequest{NodeId: r.PathValue("id")})
	if err != nil {
		writeError(w, api.FromGRPC(err))
		return
	}
	writeJSON(w, http.StatusOK, convert.NodeWithTLS(resp.GetNode(), trustBundle(r, c)))
}

// trustBundle is the cluster's root certificate (PEM), and the next one
// during a rotation, for the nodes' TLSInfo; nil if the cluster cannot be
// read (the nodes are still shown).
func trustBundle(r *http.Request, c api.ControlClient) []byte {
	resp, err := c.GetCluster(r.Context(), &api.GetClusterRequest{})
	if err != nil {
		return nil
	}
	rc := resp.GetCluster().GetRootCa()
	return append(append([]byte(nil), rc.GetCaCert()...), rc.GetRootRotation().GetCaCert()...)
}

func (d *Daemon) nodeUpdate(w http.ResponseWriter, r *http.Request, c api.ControlClient) {
	version, err := strconv.ParseUint(r.URL.Query().Get("version"), 10, 64)
	if err != nil {
		writeError(w, badRequest("invalid node version %q", r.URL.Query().Get("version")))
		return
	}
	var spec swarm.NodeSpec
	if err := decodeJSON(r, &spec); err != nil {
		writeError(w, err)
		return
	}
	ns, err := convert.NodeSpecFromSwarm(spec)
	if err != nil {
		writeError(w, err)
		return
	}
	if _, err := c.UpdateNode(r.Context(), &api.UpdateNodeRequest{NodeId: r.PathValue("id"), NodeVersion: version, Spec: ns}); err != nil {
		writeError(w, api.FromGRPC(err))
		return
	}
	id, name := nodeRef(r, c)
	d.publish(events.TypeNode, "update", id, map[string]string{"name": name})
	w.WriteHeader(http.StatusOK)
}

func (d *Daemon) nodeRemove(w http.ResponseWriter, r *http.Request, c api.ControlClient) {
	force, _ := strconv.ParseBool(r.URL.Query().Get("force"))
	id, name := nodeRef(r, c)
	if _, err := c.RemoveNode(r.Context(), &api.RemoveNodeRequest{NodeId: r.PathValue("id"), Force: force}); err != nil {
		writeError(w, api.FromGRPC(err))
		return
	}
	d.publish(events.TypeNode, "remove", id, map[string]string{"name": name})
	w.WriteHeader(http.StatusOK)
}

// swarmInfo is the Swarm part of /info.
func (d *Daemon) swarmInfo(r *http.Request) swarm.Info {
	snap := d.swarm.snapshot()
	if snap.state == nil {
		return swarm.Info{LocalNodeState: swarm.LocalNodeStateInactive}
	}
	if snap.locked {
		return swarm.Info{NodeID: snap.state.NodeID, LocalNodeState: swarm.LocalNodeStateLocked}
	}
	host, _, _ := net.SplitHostPort(snap.state.AdvertiseAddr)
	info := swarm.Info{
		NodeID: snap.state.NodeID, NodeAddr: host, LocalNodeState: swarm.LocalNodeStateActive,
		ControlAvailable: snap.state.Role == roleManager,
	}
	for _, m := range snap.state.Managers {
		info.RemoteManagers = append(info.RemoteManagers, swarm.Peer{Addr: m})
	}
	if !info.ControlAvailable {
		return info
	}
	if snap.noLeader {
		// Reads below come from this manager's own copy; nothing is
		// scheduled until a quorum elects a leader again.
		info.Error = manager.ErrNoLeader.Error()
	}
	conn, err := d.swarm.managerConn()
	if err != nil {
		info.Error = err.Error()
		return info
	}
	c := api.NewControlClient(conn)
	if nodes, err := listNodes(r.Context(), c, nil); err == nil {
		info.Nodes = len(nodes)
		info.RemoteManagers = nil
		for _, n := range nodes {
			if ms := n.GetManagerStatus(); n.GetRole() == api.NodeRole_MANAGER && ms != nil {
				info.Managers++
				info.RemoteManagers = append(info.RemoteManagers, swarm.Peer{NodeID: n.GetId(), Addr: ms.GetAddr()})
			}
		}
	} else if info.Error == "" {
		info.Error = api.FromGRPC(err).Error()
	}
	if cl, err := c.GetCluster(r.Context(), &api.GetClusterRequest{}); err == nil {
		ci := convert.ClusterToSwarm(cl.GetCluster()).ClusterInfo
		info.Cluster = &ci
	}
	return info
}

// swarmPing is the Swarm header of /_ping: inactive, active/worker or active/manager.
func (d *Daemon) swarmPing() string {
	if d.swarm == nil {
		return "inactive"
	}
	snap := d.swarm.snapshot()
	switch {
	case snap.state == nil:
		return "inactive"
	case snap.state.Role == roleManager:
		return "active/manager"
	}
	return "active/worker"
}

// nodeRef is the ID and name (its hostname unless named) of the node the
// request's {id} names, for its events; the {id} as given if it cannot be read.
func nodeRef(r *http.Request, c api.ControlClient) (id, name string) {
	got, err := c.GetNode(r.Context(), &api.GetNodeRequest{NodeId: r.PathValue("id")})
	if err != nil {
		return r.PathValue("id"), ""
	}
	n := got.GetNode()
	name = n.GetSpec().GetAnnotations().GetName()
	if name == "" {
		name = n.GetDescription().GetHostname()
	}
	return n.GetId(), name
}
