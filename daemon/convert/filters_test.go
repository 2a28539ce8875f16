package convert

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/moby/moby/client"
	"github.com/shoal-project/shoal/api"
)

func TestParseFilters(t *testing.T) {
	// What moby's client (the shoal and docker CLIs) puts in the query.
	fromClient, err := json.Marshal(client.Filters{}.Add("service", "s2", "s1").Add("_up-to-date", "true"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, raw string
		want      map[string][]string
	}{
		{"empty", "", map[string][]string{}},
		{"null", "null", map[string][]string{}},
		{"empty object", "{}", map[string][]string{}},
		{"client", string(fromClient), map[string][]string{"service": {"s1", "s2"}, "_up-to-date": {"true"}}},
		{"map form", `{"name":{"web":true,"api":true},"label":{"a=b":true}}`, map[string][]string{"name": {"api", "web"}, "label": {"a=b"}}},
		{"false counts as in dockerd", `{"name":{"web":false}}`, map[string][]string{"name": {"web"}}},
		{"legacy list form", `{"name":["web","api"],"node":["n1"]}`, map[string][]string{"name": {"web", "api"}, "node": {"n1"}}},
	}
	for _, tc := range cases {
		got, err := ParseFilters(tc.raw)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	for _, raw := range []string{`{`, `[1,2]`, `{"a":1}`, `"name=web"`, `name=web`, `{"a":{"b":"c"}}`, `{"a":[1]}`} {
		got, err := ParseFilters(raw)
		if err == nil {
			t.Errorf("%s: accepted as %v", raw, got)
			continue
		}
		if !errors.Is(err, api.ErrInvalidArgument) {
			t.Errorf("%s: %v is not an invalid argument", raw, err)
		}
	}
}

func TestUnknownFilterKeys(t *testing.T) {
	f := map[string][]string{"status": {"x"}, "id": {"a"}}
	if _, err := NodeListFilters(f); err == nil || err.Error() != "invalid filter 'status'" {
		t.Errorf("nodes: %v", err)
	}
	if _, err := ServiceListFilters(map[string][]string{"node": {"n"}}); err == nil || err.Error() != "invalid filter 'node'" {
		t.Errorf("services: %v", err)
	}
	_, err := TaskListFilters(map[string][]string{"role": {"manager"}})
	if err == nil || err.Error() != "invalid filter 'role'" || !errors.Is(err, api.ErrInvalidArgument) {
		t.Errorf("tasks: %v", err)
	}
}

func TestNodeListFilters(t *testing.T) {
	f, err := NodeListFilters(map[string][]string{
		"id": {"abc"}, "name": {"work"}, "label": {"ssd"}, "node.label": {"az=a", "rack"},
		"role": {"Manager", ""}, "membership": {"accepted"},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := f.Request
	if !reflect.DeepEqual(r.GetIdPrefixes(), []string{"abc"}) ||
		!reflect.DeepEqual(r.GetLabels(), map[string]string{"az": "a", "rack": ""}) ||
		!reflect.DeepEqual(r.GetRoles(), []api.NodeRole{api.NodeRole_MANAGER}) {
		t.Errorf("request: %v", r)
	}
	node := func(name, host string, engine map[string]string) *api.Node {
		return &api.Node{Spec: &api.NodeSpec{Annotations: &api.Annotations{Name: name}}, Description: &api.NodeDescription{Hostname: host, Engine: &api.EngineDescription{Labels: engine}}}
	}
	matches := []struct {
		n    *api.Node
		want bool
	}{
		{node("", "worker1", map[string]string{"ssd": "1"}), true},
		{node("worker-a", "host9", map[string]string{"ssd": ""}), true},
		{node("", "manager1", map[string]string{"ssd": "1"}), false},
		{node("", "worker2", nil), false},
	}
	for _, m := range matches {
		if got := f.Match(m.n); got != m.want {
			t.Errorf("Match(%v) = %v", m.n, got)
		}
	}
	pending, err := NodeListFilters(map[string][]string{"membership": {"pending"}})
	if err != nil {
		t.Fatal(err)
	}
	if pending.Match(node("", "h", nil)) {
		t.Error("membership=pending matched an (accepted) node")
	}
	for key, val := range map[string]string{"role": "boss", "membership": "maybe"} {
		_, err := NodeListFilters(map[string][]string{key: {val}})
		if want := "invalid " + key + " filter: '" + val + "'"; err == nil || err.Error() != want {
			t.Errorf("%s=%s: %v, want %q", key, val, err, want)
		}
	}
}

func TestServiceListFilters(t *testing.T) {
	f, err := ServiceListFilters(map[string][]string{"id": {"x1"}, "name": {"we"}, "label": {"tier=front"}, "mode": {"global"}})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f.Request.GetIdPrefixes(), []string{"x1"}) || !reflect.DeepEqual(f.Request.GetLabels(), map[string]string{"tier": "front"}) || len(f.Request.GetNames()) != 0 {
		t.Errorf("request: %v", f.Request)
	}
	svc := func(name string, global bool) *api.Service {
		s := &api.Service{Spec: &api.ServiceSpec{Annotations: &api.Annotations{Name: name}, Mode: &api.ServiceSpec_Replicated{Replicated: &api.ReplicatedService{}}}}
		if global {
			s.Spec.Mode = &api.ServiceSpec_Global{Global: &api.GlobalService{}}
		}
		return s
	}
	for _, c := range []struct {
		s    *api.Service
		want bool
	}{
		{svc("web", true), true},
		{svc("web", false), false},
		{svc("api", true), false},
	} {
		if got := f.Match(c.s); got != c.want {
			t.Errorf("Match(%s, %s) = %v", c.s.GetSpec().GetAnnotations().GetName(), ServiceMode(c.s.GetSpec()), got)
		}
	}
	rt, err := ServiceListFilters(map[string][]string{"runtime": {"plugin"}})
	if err != nil {
		t.Fatal(err)
	}
	if rt.Match(svc("web", false)) {
		t.Error("runtime=plugin matched a container service")
	}
	var none *ServiceFilters
	if !none.Match(svc("x", false)) {
		t.Error("nil filters must match everything")
	}
}

func TestTaskListFilters(t *testing.T) {
	f, err := TaskListFilters(map[string][]string{
		"service": {"s1", "s2"}, "node": {"n1"}, "desired-state": {"running", "Shutdown", "accepted", ""},
		"id": {"t"}, "label": {"tier=front"}, "name": {"web.1"}, "_up-to-date": {"true"},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := f.Request
	if !reflect.DeepEqual(r.GetServiceIds(), []string{"s1", "s2"}) || !reflect.DeepEqual(r.GetNodeIds(), []string{"n1"}) || !reflect.DeepEqual(r.GetIdPrefixes(), []string{"t"}) {
		t.Errorf("request: %v", r)
	}
	wantStates := []api.TaskState{api.TaskState_RUNNING, api.TaskState_SHUTDOWN, api.TaskState_ACCEPTED}
	if !reflect.DeepEqual(r.GetDesiredStates(), wantStates) {
		t.Errorf("desired states %v, want %v", r.GetDesiredStates(), wantStates)
	}
	if !f.UpToDate {
		t.Error("_up-to-date not set")
	}
	front := map[string]string{"tier": "front"}
	current := &api.TaskSpec{Container: &api.ContainerSpec{Image: "busybox:2"}}
	svc := &api.Service{Id: "s1", SpecVersion: 3, Spec: &api.ServiceSpec{Task: current}}
	task := func(slot, version uint64, labels map[string]string) *api.Task {
		spec := current
		if version != 3 {
			spec = &api.TaskSpec{Container: &api.ContainerSpec{Image: "busybox:1"}}
		}
		return &api.Task{Id: "tid", ServiceId: "s1", Slot: slot, SpecVersion: version, Spec: spec, ServiceAnnotations: &api.Annotations{Name: "web", Labels: labels}}
	}
	// A scale bumps the spec version but keeps the template: still up to date.
	scaled := task(1, 3, front)
	scaled.SpecVersion = 2
	for _, c := range []struct {
		name string
		t    *api.Task
		svc  *api.Service
		want bool
	}{
		{"current", task(1, 3, front), svc, true},
		{"slot 10 matches prefix web.1", task(10, 3, front), svc, true},
		{"other slot", task(2, 3, front), svc, false},
		{"stale template", task(1, 2, front), svc, false},
		{"same template, older version (scaled)", scaled, svc, true},
		{"service gone", task(1, 3, front), nil, false},
		{"label mismatch", task(1, 3, map[string]string{"tier": "back"}), svc, false},
	} {
		if got := f.Match(c.t, c.svc); got != c.want {
			t.Errorf("%s: Match = %v, want %v", c.name, got, c.want)
		}
	}
	loose, err := TaskListFilters(map[string][]string{"service": {"s1"}})
	if err != nil {
		t.Fatal(err)
	}
	if loose.UpToDate || !loose.Match(task(1, 1, nil), nil) {
		t.Error("without _up-to-date every task matches")
	}
	if _, err := TaskListFilters(map[string][]string{"desired-state": {"sleeping"}}); err == nil || err.Error() != "invalid desired-state filter: 'sleeping'" {
		t.Errorf("bad desired state: %v", err)
	}
}

func TestTaskName(t *testing.T) {
	for _, c := range []struct {
		t    *api.Task
		want string
	}{
		{&api.Task{Id: "x", Annotations: &api.Annotations{Name: "own"}}, "own"},
		{&api.Task{Id: "x", Slot: 3, ServiceAnnotations: &api.Annotations{Name: "web"}}, "web.3.x"},
		{&api.Task{Id: "x", NodeId: "n1", ServiceAnnotations: &api.Annotations{Name: "agent"}}, "agent.n1.x"},
	} {
		if got := taskName(c.t); got != c.want {
			t.Errorf("taskName = %q, want %q", got, c.want)
		}
	}
}
