package daemon

// This file lets the docker CLI drive cluster networks on this branch
// alone. The lead deletes it at merge: the local-network routes
// (routes_networks.go) call the clusterNetwork* methods instead, beside
// their local (bridge) networks.

import (
	"net/http"

	"github.com/moby/moby/api/types/network"
)

func (d *Daemon) clusterNetworkRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /networks", func(w http.ResponseWriter, r *http.Request) {
		if f := r.URL.Query().Get("filters"); f != "" && f != "{}" {
			writeError(w, badRequest("network list filters are not supported on this branch"))
			return
		}
		l, err := d.clusterNetworkList(r.Context())
		if err != nil {
			writeError(w, err)
			return
		}
		out := make([]network.Summary, 0, len(l))
		for _, n := range l {
			out = append(out, network.Summary{Network: n.Network})
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /networks/{id}", func(w http.ResponseWriter, r *http.Request) {
		n, found, err := d.clusterNetworkInspect(r.Context(), r.PathValue("id"))
		if writeMissing(w, r, found, err) {
			writeJSON(w, http.StatusOK, n)
		}
	})
	mux.HandleFunc("POST /networks/create", func(w http.ResponseWriter, r *http.Request) {
		var req network.CreateRequest
		if err := decodeJSON(r, &req); err != nil {
			writeError(w, err)
			return
		}
		resp, err := d.clusterNetworkCreate(r.Context(), req)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusCreated, resp)
	})
	mux.HandleFunc("DELETE /networks/{id}", func(w http.ResponseWriter, r *http.Request) {
		found, err := d.clusterNetworkRemove(r.Context(), r.PathValue("id"))
		if writeMissing(w, r, found, err) {
			w.WriteHeader(http.StatusNoContent)
		}
	})
}

// writeMissing answers an error or an unknown network and reports whether
// the caller should answer instead.
func writeMissing(w http.ResponseWriter, r *http.Request, found bool, err error) bool {
	switch {
	case err != nil:
		writeError(w, err)
	case !found:
		writeError(w, withStatus(http.StatusNotFound, errNoSuchNetwork(r.PathValue("id"))))
	default:
		return true
	}
	return false
}
