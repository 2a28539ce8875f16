package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal-project/shoal/api"
	shoalevents "github.com/shoal-project/shoal/containerd/events"
	"github.com/shoal-project/shoal/raftstore"
)

// secretsAPI serves /secrets and /configs over a real control API (gRPC,
// so errors cross the hop as they do from a manager) on an in-memory store:
// the manager of a one-node swarm without the rest of the node.
type secretsAPI struct {
	t      *testing.T
	mux    *http.ServeMux
	store  *raftstore.MemoryStore
	events *shoalevents.Bus
}

func newSecretsAPI(t *testing.T) *secretsAPI {
	store := raftstore.NewMemoryStore(nil, nil)
	c := controlOver(t, store)
	d := &Daemon{events: shoalevents.New(0)}
	mux := http.NewServeMux()
	d.secretHandlers(mux, func(h func(http.ResponseWriter, *http.Request, api.ControlClient)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) { h(w, r, c) }
	})
	return &secretsAPI{t: t, mux: mux, store: store, events: d.events}
}

// call does a request and checks its status and that the body contains
// want; it returns the body.
func (s *secretsAPI) call(method, path, body string, status int, want string) string {
	s.t.Helper()
	rec := httptest.NewRecorder()
	s.mux.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
	got := rec.Body.String()
	if rec.Code != status || !strings.Contains(got, want) {
		s.t.Fatalf("%s %s: %d %s, want %d containing %q", method, path, rec.Code, got, status, want)
	}
	if status >= 400 && strings.Count(strings.TrimSpace(got), "\n") > 0 {
		s.t.Errorf("%s %s: error of more than one line: %q", method, path, got)
	}
	return got
}

// kindAPI is what differs between /secrets and /configs.
type kindAPI struct {
	path     string // "/secrets"
	showData bool   // inspect and list return the data
}

func TestSecretsAndConfigsAPI(t *testing.T) {
	for _, k := range []kindAPI{{"/secrets", false}, {"/configs", true}} {
		t.Run(strings.TrimPrefix(k.path, "/"), func(t *testing.T) { testDataObjects(t, k) })
	}
}

// spec is a SecretSpec or ConfigSpec body (the JSON is the same).
func spec(name, data string, labels map[string]string) string {
	b, _ := json.Marshal(map[string]any{"Name": name, "Labels": labels, "Data": []byte(data)})
	return string(b)
}

// object is a swarm.Secret or swarm.Config as JSON reads it back.
type object struct {
	ID string
	swarm.Meta
	Spec struct {
		swarm.Annotations
		Data []byte
	}
}

func testDataObjects(t *testing.T, k kindAPI) {
	s := newSecretsAPI(t)
	typ := strings.TrimSuffix(strings.TrimPrefix(k.path, "/"), "s") // secret, config
	create := func(body string) string {
		t.Helper()
		var resp struct{ ID string }
		if err := json.Unmarshal([]byte(s.call("POST", k.path+"/create", body, http.StatusCreated, `"ID":`)), &resp); err != nil || resp.ID == "" {
			t.Fatalf("create: %v %+v", err, resp)
		}
		return resp.ID
	}
	inspect := func(ref string) object {
		t.Helper()
		body := s.call("GET", k.path+"/"+url.PathEscape(ref), "", http.StatusOK, "")
		var o object
		if err := json.Unmarshal([]byte(body), &o); err != nil {
			t.Fatal(err)
		}
		// A secret's data must not be on the wire at all, not even empty.
		if hasData := strings.Contains(body, `"Data"`); hasData != k.showData {
			t.Fatalf("inspect %s: Data in the answer is %v, want %v: %s", ref, hasData, k.showData, body)
		}
		return o
	}
	list := func(filters string) []string {
		t.Helper()
		body := s.call("GET", k.path+"?filters="+url.QueryEscape(filters), "", http.StatusOK, "")
		var out []object
		if err := json.Unmarshal([]byte(body), &out); err != nil {
			t.Fatal(err)
		}
		if len(out) > 0 && strings.Contains(body, `"Data"`) != k.showData {
			t.Fatalf("list: Data in the answer is %v, want %v: %s", !k.showData, k.showData, body)
		}
		names := []string{}
		for _, o := range out {
			names = append(names, o.Spec.Name)
		}
		sort.Strings(names)
		return names
	}

	pw := create(spec("db-pw", "s3cret", map[string]string{"env": "prod", "team": "db"}))
	key := create(spec("db-key", "k3y", map[string]string{"env": "dev"}))
	create(spec("web-cert", "c3rt", nil))

	// Refused before the manager: drivers and templating, named.
	if k.path == "/secrets" {
		s.call("POST", k.path+"/create", `{"Name":"v","Data":"eA==","Driver":{"Name":"vault"}}`, http.StatusBadRequest, "Driver is not supported")
	}
	s.call("POST", k.path+"/create", `{"Name":"t","Data":"eA==","Templating":{"Name":"golang"}}`, http.StatusBadRequest, "Templating is not supported")
	// Refused by the manager.
	s.call("POST", k.path+"/create", spec("db-pw", "other", nil), http.StatusConflict, "already exists")
	s.call("POST", k.path+"/create", spec("empty", "", nil), http.StatusBadRequest, "data is required")
	s.call("POST", k.path+"/create", spec("big", strings.Repeat("x", 500*1024+1), nil), http.StatusBadRequest, "over the limit")
	s.call("POST", k.path+"/create", spec("bad/name", "x", nil), http.StatusBadRequest, "bad/name")
	s.call("POST", k.path+"/create", "{", http.StatusBadRequest, "invalid JSON")

	// List, with each filter.
	for _, tc := range []struct {
		filters string
		want    string
	}{
		{``, "db-key db-pw web-cert"},
		{`{"id":{"` + pw[:6] + `":true}}`, "db-pw"},
		{`{"id":{"` + pw + `":true,"` + key + `":true}}`, "db-key db-pw"},
		{`{"name":{"db-":true}}`, "db-key db-pw"}, // prefix
		{`{"name":{"db-pw":true,"web":true}}`, "db-pw web-cert"},
		{`{"names":{"db-pw":true}}`, "db-pw"},
		{`{"names":{"db":true}}`, ""}, // exact
		{`{"label":{"env":true}}`, "db-key db-pw"},
		{`{"label":{"env=prod":true}}`, "db-pw"},
		{`{"label":{"env=prod":true,"team=web":true}}`, ""}, // ANDed, as dockerd
		{`{"name":["db-"],"label":["env=dev"]}`, "db-key"},  // the older list form
	} {
		if got := strings.Join(list(tc.filters), " "); got != tc.want {
			t.Errorf("list %s: %q, want %q", tc.filters, got, tc.want)
		}
	}
	s.call("GET", k.path+"?filters="+url.QueryEscape(`{"driver":{"x":true}}`), "", http.StatusBadRequest, "invalid filter 'driver'")
	s.call("GET", k.path+"?filters=nope", "", http.StatusBadRequest, "invalid filters")

	// Inspect by ID, name and ID prefix.
	o := inspect(pw)
	if o.ID != pw || o.Spec.Name != "db-pw" || o.Spec.Labels["team"] != "db" || o.Version.Index == 0 || o.CreatedAt.IsZero() {
		t.Fatalf("inspect: %+v", o)
	}
	if k.showData && string(o.Spec.Data) != "s3cret" {
		t.Errorf("config data = %q", o.Spec.Data)
	}
	if byName := inspect("db-pw"); byName.ID != pw {
		t.Errorf("inspect by name: %s, want %s", byName.ID, pw)
	}
	if byPrefix := inspect(pw[:8]); byPrefix.ID != pw {
		t.Errorf("inspect by ID prefix: %s, want %s", byPrefix.ID, pw)
	}
	s.call("GET", k.path+"/nosuch", "", http.StatusNotFound, "nosuch")

	// Update: labels only, at the current version.
	v := o.Version.Index
	labelled := spec("db-pw", "", map[string]string{"env": "staging"})
	path := fmt.Sprintf("%s/%s/update?version=%d", k.path, pw, v)
	s.call("POST", k.path+"/"+pw+"/update", labelled, http.StatusBadRequest, "version")
	s.call("POST", k.path+"/"+pw+"/update?version=latest", labelled, http.StatusBadRequest, "invalid "+typ+` version \"latest\"`)
	s.call("POST", path, spec("db-pw", "changed", nil), http.StatusBadRequest, "not the data")
	s.call("POST", path, spec("db-pw2", "", nil), http.StatusBadRequest, "not the name")
	s.call("POST", path, `{"Name":"db-pw","Templating":{"Name":"golang"}}`, http.StatusBadRequest, "Templating is not supported")
	s.call("POST", path, labelled, http.StatusOK, "")
	if o := inspect("db-pw"); o.Version.Index <= v || len(o.Spec.Labels) != 1 || o.Spec.Labels["env"] != "staging" {
		t.Fatalf("after update: %+v", o)
	}
	s.call("POST", path, labelled, http.StatusConflict, "out of sequence") // the old version
	s.call("POST", k.path+"/nosuch/update?version=1", labelled, http.StatusNotFound, "nosuch")

	// Remove: refused while a service uses it, 204, then 404.
	useIn(t, s.store, k.path, pw)
	s.call("DELETE", k.path+"/"+pw, "", http.StatusBadRequest, "in use by service web")
	s.call("DELETE", k.path+"/db-key", "", http.StatusNoContent, "")
	s.call("DELETE", k.path+"/db-key", "", http.StatusNotFound, "db-key")
	s.call("DELETE", k.path+"/nosuch", "", http.StatusNotFound, "nosuch")
	if got := strings.Join(list(""), " "); got != "db-pw web-cert" {
		t.Errorf("after remove: %q", got)
	}

	// Events: swarm scope, the object's ID and name (also for a removal
	// by name).
	var got []string
	for _, e := range s.events.Since(time.Time{}, time.Time{}) {
		if e.Type != typ || e.Scope != shoalevents.ScopeSwarm {
			t.Errorf("event %+v", e)
		}
		got = append(got, e.Action+" "+e.Attributes["name"]+" "+fmt.Sprint(e.ID == pw || e.ID == key))
	}
	want := "create db-pw true,create db-key true,create web-cert false,update db-pw true,remove db-key true"
	if strings.Join(got, ",") != want {
		t.Errorf("events:\n got %s\nwant %s", strings.Join(got, ","), want)
	}
}

// useIn makes a service named web that refers to the secret or config id.
func useIn(t *testing.T, store *raftstore.MemoryStore, kind, id string) {
	t.Helper()
	c := &api.ContainerSpec{Image: "busybox"}
	if kind == "/secrets" {
		c.Secrets = []*api.SecretReference{{SecretId: id}}
	} else {
		c.Configs = []*api.ConfigReference{{ConfigId: id}}
	}
	err := store.Update(context.Background(), func(tx raftstore.WriteTx) error {
		return tx.Create(&api.Service{Id: "svc1", Spec: &api.ServiceSpec{
			Annotations: &api.Annotations{Name: "web"}, Task: &api.TaskSpec{Container: c},
		}})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The routes are the daemon's: off a swarm they answer Docker's 503, not
// 404 (page not found).
func TestSecretRoutesNeedASwarm(t *testing.T) {
	d := newDaemon(t.Context(), Config{NodeName: "n1"}, nil, nil, nil)
	d.swarm = &swarmNode{} // in no swarm
	h := d.handler()
	for _, p := range []string{"GET /secrets", "POST /secrets/create", "GET /secrets/x", "POST /secrets/x/update", "DELETE /secrets/x",
		"GET /configs", "POST /configs/create", "GET /configs/x", "POST /configs/x/update", "DELETE /v1.44/configs/x"} {
		method, path, _ := strings.Cut(p, " ")
		if rec := serve(h, method, path, ""); rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "swarm") {
			t.Errorf("%s: %d %s, want 503", p, rec.Code, rec.Body)
		}
	}
}

// TestConfigListOverOneMessage: ten configs of 450 KiB are more than gRPC's
// 4 MiB message limit together; the list still returns them all (the
// control API pages them). Without paging the manager's reply is refused.
func TestConfigListOverOneMessage(t *testing.T) {
	s := newSecretsAPI(t)
	data := strings.Repeat("x", 450<<10)
	for i := range 10 {
		s.call("POST", "/configs/create", spec(fmt.Sprintf("big%d", i), data, nil), http.StatusCreated, `"ID"`)
	}
	var list []swarm.Config
	if err := json.Unmarshal([]byte(s.call("GET", "/configs", "", http.StatusOK, "")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 10 || len(list[9].Spec.Data) != len(data) {
		t.Fatalf("%d configs listed, want 10 with their data", len(list))
	}
}
