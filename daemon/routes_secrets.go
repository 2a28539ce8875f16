package daemon

import (
	"net/http"
	"strconv"

	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/swarm"
	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/daemon/convert"
)

// secretRoutes serves /secrets and /configs through the Control API. The
// manager validates names and data, resolves an ID, name or unique ID
// prefix, refuses duplicates (409) and the removal of what a service uses
// (400, as dockerd), and keeps a secret's data to itself.
func (d *Daemon) secretRoutes(mux *http.ServeMux) {
	d.secretHandlers(mux, d.withControl)
}

// secretHandlers registers the routes, control giving them a client
// (withControl, or in tests one of an in-memory manager).
func (d *Daemon) secretHandlers(mux *http.ServeMux, control func(func(http.ResponseWriter, *http.Request, api.ControlClient)) http.HandlerFunc) {
	mux.HandleFunc("GET /secrets", control(d.secretList))
	mux.HandleFunc("POST /secrets/create", control(d.secretCreate))
	mux.HandleFunc("GET /secrets/{id}", control(d.secretInspect))
	mux.HandleFunc("POST /secrets/{id}/update", control(d.secretUpdate))
	mux.HandleFunc("DELETE /secrets/{id}", control(d.secretRemove))
	mux.HandleFunc("GET /configs", control(d.configList))
	mux.HandleFunc("POST /configs/create", control(d.configCreate))
	mux.HandleFunc("GET /configs/{id}", control(d.configInspect))
	mux.HandleFunc("POST /configs/{id}/update", control(d.configUpdate))
	mux.HandleFunc("DELETE /configs/{id}", control(d.configRemove))
}

// listFilters reads the filters of GET /secrets and GET /configs.
func listFilters(r *http.Request) (*convert.SecretFilters, error) {
	raw, err := convert.ParseFilters(r.URL.Query().Get("filters"))
	if err != nil {
		return nil, err
	}
	return convert.SecretListFilters(raw)
}

// objectVersion is the required ?version= of an update.
func objectVersion(r *http.Request, what string) (uint64, error) {
	v := r.URL.Query().Get("version")
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, badRequest("invalid %s version %q: want the object's Version.Index", what, v)
	}
	return n, nil
}

func (d *Daemon) secretList(w http.ResponseWriter, r *http.Request, c api.ControlClient) {
	f, err := listFilters(r)
	if err != nil {
		writeError(w, err)
		return
	}
	resp, err := c.ListSecrets(r.Context(), &api.ListSecretsRequest{Filters: f.SecretRequest()})
	if err != nil {
		writeError(w, api.FromGRPC(err))
		return
	}
	out := make([]swarm.Secret, 0, len(resp.GetSecrets()))
	for _, s := range resp.GetSecrets() {
		if f.Match(s.GetSpec().GetAnnotations().GetName()) {
			out = append(out, convert.SecretToSwarm(s))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (d *Daemon) secretCreate(w http.ResponseWriter, r *http.Request, c api.ControlClient) {
	var spec swarm.SecretSpec
	if err := decodeJSON(r, &spec); err != nil {
		writeError(w, err)
		return
	}
	s, err := convert.SecretSpecFromSwarm(spec)
	if err != nil {
		writeError(w, err)
		return
	}
	resp, err := c.CreateSecret(r.Context(), &api.CreateSecretRequest{Spec: s})
	if err != nil {
		writeError(w, api.FromGRPC(err))
		return
	}
	id := resp.GetSecret().GetId()
	d.publish(string(events.SecretEventType), "create", id, map[string]string{"name": spec.Name})
	writeJSON(w, http.StatusCreated, swarm.SecretCreateResponse{ID: id})
}

func (d *Daemon) secretInspect(w http.ResponseWriter, r *http.Request, c api.ControlClient) {
	resp, err := c.GetSecret(r.Context(), &api.GetSecretRequest{SecretId: r.PathValue("id")})
	if err != nil {
		writeError(w, api.FromGRPC(err))
		return
	}
	writeJSON(w, http.StatusOK, convert.SecretToSwarm(resp.GetSecret()))
}

func (d *Daemon) secretUpdate(w http.ResponseWriter, r *http.Request, c api.ControlClient) {
	version, err := objectVersion(r, "secret")
	if err != nil {
		writeError(w, err)
		return
	}
	var spec swarm.SecretSpec
	if err := decodeJSON(r, &spec); err != nil {
		writeError(w, err)
		return
	}
	s, err := convert.SecretSpecFromSwarm(spec)
	if err != nil {
		writeError(w, err)
		return
	}
	resp, err := c.UpdateSecret(r.Context(), &api.UpdateSecretRequest{SecretId: r.PathValue("id"), SecretVersion: version, Spec: s})
	if err != nil {
		writeError(w, api.FromGRPC(err))
		return
	}
	sec := resp.GetSecret()
	d.publish(string(events.SecretEventType), "update", sec.GetId(), map[string]string{"name": sec.GetSpec().GetAnnotations().GetName()})
	w.WriteHeader(http.StatusOK)
}

func (d *Daemon) secretRemove(w http.ResponseWriter, r *http.Request, c api.ControlClient) {
	// Looked up first for the event: its ID and name, as dockerd's.
	id, name := r.PathValue("id"), ""
	if got, err := c.GetSecret(r.Context(), &api.GetSecretRequest{SecretId: id}); err == nil {
		id, name = got.GetSecret().GetId(), got.GetSecret().GetSpec().GetAnnotations().GetName()
	}
	if _, err := c.RemoveSecret(r.Context(), &api.RemoveSecretRequest{SecretId: r.PathValue("id")}); err != nil {
		writeError(w, api.FromGRPC(err))
		return
	}
	d.publish(string(events.SecretEventType), "remove", id, map[string]string{"name": name})
	w.WriteHeader(http.StatusNoContent)
}

func (d *Daemon) configList(w http.ResponseWriter, r *http.Request, c api.ControlClient) {
	f, err := listFilters(r)
	if err != nil {
		writeError(w, err)
		return
	}
	configs, err := allPages("configs", func(token string) ([]*api.Config, string, error) {
		resp, err := c.ListConfigs(r.Context(), &api.ListConfigsRequest{Filters: f.ConfigRequest(), PageToken: token})
		return resp.GetConfigs(), resp.GetNextPageToken(), err
	})
	if err != nil {
		writeError(w, err)
		return
	}
	out := make([]swarm.Config, 0, len(configs))
	for _, cfg := range configs {
		if f.Match(cfg.GetSpec().GetAnnotations().GetName()) {
			out = append(out, convert.ConfigToSwarm(cfg))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (d *Daemon) configCreate(w http.ResponseWriter, r *http.Request, c api.ControlClient) {
	var spec swarm.ConfigSpec
	if err := decodeJSON(r, &spec); err != nil {
		writeError(w, err)
		return
	}
	s, err := convert.ConfigSpecFromSwarm(spec)
	if err != nil {
		writeError(w, err)
		return
	}
	resp, err := c.CreateConfig(r.Context(), &api.CreateConfigRequest{Spec: s})
	if err != nil {
		writeError(w, api.FromGRPC(err))
		return
	}
	id := resp.GetConfig().GetId()
	d.publish(string(events.ConfigEventType), "create", id, map[string]string{"name": spec.Name})
	writeJSON(w, http.StatusCreated, swarm.ConfigCreateResponse{ID: id})
}

func (d *Daemon) configInspect(w http.ResponseWriter, r *http.Request, c api.ControlClient) {
	resp, err := c.GetConfig(r.Context(), &api.GetConfigRequest{ConfigId: r.PathValue("id")})
	if err != nil {
		writeError(w, api.FromGRPC(err))
		return
	}
	writeJSON(w, http.StatusOK, convert.ConfigToSwarm(resp.GetConfig()))
}

func (d *Daemon) configUpdate(w http.ResponseWriter, r *http.Request, c api.ControlClient) {
	version, err := objectVersion(r, "config")
	if err != nil {
		writeError(w, err)
		return
	}
	var spec swarm.ConfigSpec
	if err := decodeJSON(r, &spec); err != nil {
		writeError(w, err)
		return
	}
	s, err := convert.ConfigSpecFromSwarm(spec)
	if err != nil {
		writeError(w, err)
		return
	}
	resp, err := c.UpdateConfig(r.Context(), &api.UpdateConfigRequest{ConfigId: r.PathValue("id"), ConfigVersion: version, Spec: s})
	if err != nil {
		writeError(w, api.FromGRPC(err))
		return
	}
	cfg := resp.GetConfig()
	d.publish(string(events.ConfigEventType), "update", cfg.GetId(), map[string]string{"name": cfg.GetSpec().GetAnnotations().GetName()})
	w.WriteHeader(http.StatusOK)
}

func (d *Daemon) configRemove(w http.ResponseWriter, r *http.Request, c api.ControlClient) {
	id, name := r.PathValue("id"), ""
	if got, err := c.GetConfig(r.Context(), &api.GetConfigRequest{ConfigId: id}); err == nil {
		id, name = got.GetConfig().GetId(), got.GetConfig().GetSpec().GetAnnotations().GetName()
	}
	if _, err := c.RemoveConfig(r.Context(), &api.RemoveConfigRequest{ConfigId: r.PathValue("id")}); err != nil {
		writeError(w, api.FromGRPC(err))
		return
	}
	d.publish(string(events.ConfigEventType), "remove", id, map[string]string{"name": name})
	w.WriteHeader(http.StatusNoContent)
}
