package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"
)

// clusterFake is a fake manager: services, tasks and nodes it serves, and
// the bodies of the writes it received.
type clusterFake struct {
	*fakeDaemon
	mu       sync.Mutex
	services map[string]swarm.Service // by ID
	nodes    []swarm.Node
	tasks    func(poll int) []swarm.Task
	polls    int
	bodies   map[string][]byte // "METHOD path" -> last body
	queries  map[string]string // "METHOD path" -> last raw query
	// racer, when set, changes the service as another writer would, just
	// before each update is checked against the version it was read at.
	racer func(s *swarm.Service)
}

func newClusterFake(t *testing.T) *clusterFake {
	f := &clusterFake{fakeDaemon: newFakeDaemon(t), services: map[string]swarm.Service{}, bodies: map[string][]byte{}, queries: map[string]string{}}
	record := func(r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.bodies[r.Method+" "+r.URL.Path] = b
		f.queries[r.Method+" "+r.URL.Path] = r.URL.RawQuery
		f.mu.Unlock()
	}
	find := func(ref string) (swarm.Service, bool) {
		for _, s := range f.services {
			if s.ID == ref || s.Spec.Name == ref {
				return s, true
			}
		}
		return swarm.Service{}, false
	}
	f.mux.HandleFunc("GET /services/{id}", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		s, ok := find(r.PathValue("id"))
		f.mu.Unlock()
		if !ok {
			apiErr(w, 404, "service "+r.PathValue("id")+" not found")
			return
		}
		writeJSON(w, 200, s)
	})
	f.mux.HandleFunc("DELETE /services/{id}", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		s, ok := find(r.PathValue("id"))
		delete(f.services, s.ID)
		f.mu.Unlock()
		if !ok {
			apiErr(w, 404, "service "+r.PathValue("id")+" not found")
			return
		}
		w.WriteHeader(200)
	})
	f.mux.HandleFunc("GET /services", func(w http.ResponseWriter, r *http.Request) {
		record(r)
		var filters map[string]map[string]bool
		json.Unmarshal([]byte(r.URL.Query().Get("filters")), &filters)
		f.mu.Lock()
		defer f.mu.Unlock()
		out := []swarm.Service{}
		for _, s := range f.services {
			if ids, ok := filters["id"]; ok && !ids[s.ID] && !prefixIn(s.ID, ids) {
				continue
			}
			if names, ok := filters["name"]; ok && !names[s.Spec.Name] {
				continue
			}
			out = append(out, s)
		}
		writeJSON(w, 200, out)
	})
	f.mux.HandleFunc("POST /services/create", func(w http.ResponseWriter, r *http.Request) {
		record(r)
		f.mu.Lock()
		defer f.mu.Unlock()
		var spec swarm.ServiceSpec
		json.Unmarshal(f.bodies["POST /services/create"], &spec)
		f.services["svcid0123456789abcdef"] = swarm.Service{ID: "svcid0123456789abcdef", Spec: spec}
		writeJSON(w, 201, map[string]any{"ID": "svcid0123456789abcdef"})
	})
	f.mux.HandleFunc("POST /services/{id}/update", func(w http.ResponseWriter, r *http.Request) {
		record(r)
		f.mu.Lock()
		defer f.mu.Unlock()
		s, ok := f.services[r.PathValue("id")]
		if !ok {
			apiErr(w, 404, "service "+r.PathValue("id")+" not found")
			return
		}
		if f.racer != nil {
			f.racer(&s)
			f.services[s.ID] = s
		}
		if v := r.URL.Query().Get("version"); v != "" && v != strconv.FormatUint(s.Version.Index, 10) {
			apiErr(w, 409, fmt.Sprintf("service %s: update out of sequence (version %s, current %d): read it again and retry", s.Spec.Name, v, s.Version.Index))
			return
		}
		s.Spec = swarm.ServiceSpec{}
		json.Unmarshal(f.bodies[r.Method+" "+r.URL.Path], &s.Spec)
		s.Version.Index++
		f.services[s.ID] = s
		writeJSON(w, 200, map[string]any{})
	})
	f.mux.HandleFunc("GET /tasks", func(w http.ResponseWriter, r *http.Request) {
		record(r)
		f.mu.Lock()
		f.polls++
		p := f.polls
		f.mu.Unlock()
		out := []swarm.Task{}
		if f.tasks != nil {
			out = append(out, f.tasks(p)...)
		}
		writeJSON(w, 200, out)
	})
	f.mux.HandleFunc("GET /nodes", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, f.nodes)
	})
	f.mux.HandleFunc("GET /nodes/{id}", func(w http.ResponseWriter, r *http.Request) {
		for _, n := range f.nodes {
			if n.ID == r.PathValue("id") || n.Description.Hostname == r.PathValue("id") {
				writeJSON(w, 200, n)
				return
			}
		}
		apiErr(w, 404, "node "+r.PathValue("id")+" not found")
	})
	f.mux.HandleFunc("GET /info", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"Swarm": map[string]any{"NodeID": "node1", "ControlAvailable": true, "LocalNodeState": "active"}})
	})
	f.mux.HandleFunc("GET /networks/{id}", func(w http.ResponseWriter, r *http.Request) {
		record(r)
		writeJSON(w, 200, map[string]any{"Id": "net-" + r.PathValue("id"), "Name": r.PathValue("id"), "Scope": "swarm"})
	})
	return f
}

func prefixIn(id string, set map[string]bool) bool {
	for p := range set {
		if strings.HasPrefix(id, p) {
			return true
		}
	}
	return false
}

func (f *clusterFake) body(key string) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bodies[key]
}

// sameJSON compares two JSON documents as values.
func sameJSON(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("body %q: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("want: %v", err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("body\n%s\nwant\n%s", got, want)
	}
}

func TestServiceCreateBody(t *testing.T) {
	f := newClusterFake(t)
	r := runCLI(t, f.host, "", "service", "create", "--detach", "--name", "web", "--replicas", "3",
		"--constraint", "node.role==worker", "--placement-pref", "spread=node.labels.zone", "--replicas-max-per-node", "2",
		"--reserve-cpu", "0.5", "--reserve-memory", "64m", "--limit-cpu", "1", "--limit-memory", "128m",
		"-e", "A=1", "-e", "B=2", "--restart-condition", "on-failure", "--restart-max-attempts", "3",
		"--label", "team=x", "--container-label", "c=1", "--network", "app", "--publish", "8080:80",
		"busybox", "top", "-d")
	if r.code != 0 || r.stdout != "svcid0123456789abcdef\n" {
		t.Fatalf("create: %+v", r)
	}
	// What docker 20.10+ sends for the same command line (with
	// --no-resolve-image: the fake daemon resolves no image, so it stays as given).
	sameJSON(t, f.body("POST /services/create"), `{
		"Name": "web", "Labels": {"team": "x"},
		"TaskTemplate": {
			"ContainerSpec": {"Image": "busybox:latest", "Labels": {"c": "1"}, "Args": ["top", "-d"], "Env": ["A=1", "B=2"], "Init": false, "DNSConfig": {}},
			"Resources": {"Limits": {"NanoCPUs": 1000000000, "MemoryBytes": 134217728}, "Reservations": {"NanoCPUs": 500000000, "MemoryBytes": 67108864}},
			"RestartPolicy": {"Condition": "on-failure", "Delay": 5000000000, "MaxAttempts": 3},
			"Placement": {"Constraints": ["node.role==worker"], "Preferences": [{"Spread": {"SpreadDescriptor": "node.labels.zone"}}], "MaxReplicas": 2},
			"Networks": [{"Target": "net-app"}],
			"ForceUpdate": 0
		},
		"Mode": {"Replicated": {"Replicas": 3}},
		"EndpointSpec": {"Mode": "vip", "Ports": [{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080, "PublishMode": "ingress"}]}
	}`)
	if q := f.queries["GET /networks/app"]; !strings.Contains(q, "scope=swarm") {
		t.Errorf("network inspect query %q", q)
	}

	f.mu.Lock()
	f.services = map[string]swarm.Service{}
	f.mu.Unlock()
	r = runCLI(t, f.host, "", "service", "create", "-d", "--mode", "global", "busybox")
	if r.code != 0 {
		t.Fatalf("global: %+v", r)
	}
	sameJSON(t, f.body("POST /services/create"), `{
		"Labels": {},
		"TaskTemplate": {"ContainerSpec": {"Image": "busybox:latest", "Init": false, "DNSConfig": {}},
			"Resources": {"Limits": {}, "Reservations": {}}, "Placement": {}, "ForceUpdate": 0},
		"Mode": {"Global": {}}, "EndpointSpec": {"Mode": "vip"}}`)
}

func TestServiceBadInput(t *testing.T) {
	f := newClusterFake(t)
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"service", "create", "--replicas", "-1", "busybox"}, 125, `invalid argument "-1" for "--replicas" flag: invalid replicas value -1: must not be negative`},
		{[]string{"service", "create", "--mode", "global", "--replicas", "2", "busybox"}, 1, "replicas can only be used with replicated or replicated-job mode"},
		{[]string{"service", "create", "--constraint", "node.role=manager", "busybox"}, 1, `invalid constraint "node.role=manager"`},
		{[]string{"service", "create", "--placement-pref", "pack=node.id", "busybox"}, 1, "unsupported placement preference pack"},
		{[]string{"service", "create", "--restart-condition", "always", "busybox"}, 1, `invalid restart condition "always"`},
		{[]string{"service", "create", "-p", "80:80/icmp", "busybox"}, 1, "invalid proto: icmp"},
		{[]string{"service", "create", "--reserve-cpu", "lots", "busybox"}, 125, "failed to parse lots as a rational number"},
		{[]string{"service", "scale", "web"}, 1, "invalid scale specifier 'web'"},
		{[]string{"service", "scale", "web=-2"}, 1, "web: invalid replicas value -2"},
		{[]string{"service", "create"}, 1, `"shoal service create" requires at least 1 argument.`},
		{[]string{"node", "update", "--availability", "sleepy", "n1"}, 1, `invalid availability "sleepy"`},
		{[]string{"swarm", "join-token", "boss"}, 1, "unknown role boss"},
		{[]string{"swarm", "join", "198.18.0.1:2377"}, 1, "a join token is required"},
	} {
		r := runCLI(t, f.host, "", c.args...)
		if r.code != c.code || !strings.Contains(r.stderr, c.msg) || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("%v: code %d stderr %q; want %d and one line containing %q", c.args, r.code, r.stderr, c.code, c.msg)
		}
	}
	for _, req := range f.requests() {
		if strings.HasPrefix(req, "POST") {
			t.Errorf("bad input still sent %s", req)
		}
	}
}

func TestServiceNotFound(t *testing.T) {
	f := newClusterFake(t)
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"service", "rm", "nosuch"}, "Error response from daemon: service nosuch not found"},
		{[]string{"service", "inspect", "nosuch"}, "Error: no such service: nosuch"},
		{[]string{"service", "ps", "nosuch"}, "no such service: nosuch"},
		{[]string{"service", "scale", "nosuch=2"}, "nosuch: Error response from daemon: service nosuch not found"},
		{[]string{"service", "update", "--replicas", "2", "nosuch"}, "Error response from daemon: service nosuch not found"},
		{[]string{"node", "inspect", "nosuch"}, "Error response from daemon: node nosuch not found"},
	} {
		r := runCLI(t, f.host, "", c.args...)
		if r.code != 1 || r.stderr != c.msg+"\n" {
			t.Errorf("%v: code %d stderr %q; want %q", c.args, r.code, r.stderr, c.msg)
		}
	}
}

func runningTasks(n int, state swarm.TaskState) []swarm.Task {
	var out []swarm.Task
	for i := 1; i <= n; i++ {
		out = append(out, swarm.Task{ID: "task" + string(rune('a'+i)), ServiceID: "svcid0123456789abcdef", Slot: i, NodeID: "node1",
			DesiredState: swarm.TaskStateRunning, Status: swarm.TaskStatus{State: state}})
	}
	return out
}

func TestServiceCreateConverges(t *testing.T) {
	old := verifyWindow
	verifyWindow = 0
	t.Cleanup(func() { verifyWindow = old })
	f := newClusterFake(t)
	f.nodes = []swarm.Node{{ID: "node1", Status: swarm.NodeStatus{State: swarm.NodeStateReady}}}
	f.tasks = func(poll int) []swarm.Task {
		switch {
		case poll == 1:
			return nil
		case poll == 2:
			return runningTasks(2, swarm.TaskStatePending)
		default:
			return runningTasks(2, swarm.TaskStateRunning)
		}
	}
	r := runCLI(t, f.host, "", "service", "create", "--name", "web", "--replicas", "2", "busybox")
	want := "svcid0123456789abcdef\n" +
		"overall progress: 0 out of 2 tasks\n1/2:\n2/2:\n" +
		"1/2: pending   [================>                                  ]\n" +
		"2/2: pending   [================>                                  ]\n" +
		"overall progress: 2 out of 2 tasks\n" +
		"1/2: running   " + full + "\n2/2: running   " + full + "\n" +
		"verify: Service svcid0123456789abcdef converged\n"
	if r.code != 0 || r.stdout != want {
		t.Fatalf("code %d stderr %q stdout:\n%s\nwant:\n%s", r.code, r.stderr, r.stdout, want)
	}
	if q := f.queries["GET /tasks"]; !strings.Contains(q, "_up-to-date") || !strings.Contains(q, "svcid0123456789abcdef") {
		t.Errorf("task filter %q", q)
	}
}

func TestServiceCreateCannotConverge(t *testing.T) {
	f := newClusterFake(t)
	f.tasks = func(int) []swarm.Task {
		ts := runningTasks(1, swarm.TaskStatePending)
		ts[0].NodeID = ""
		ts[0].Status.Err = "no suitable node (scheduling constraints not satisfied on 3 nodes)"
		return ts
	}
	start := time.Now()
	r := runCLI(t, f.host, "", "service", "create", "--name", "web", "--constraint", "node.labels.zone==mars", "--converge-timeout", "400ms", "busybox")
	if r.code != 1 || !strings.Contains(r.stderr, "service web did not converge") ||
		!strings.Contains(r.stderr, "1/1: no suitable node (scheduling constraints not satisfied on 3 nodes)") {
		t.Fatalf("%+v", r)
	}
	if !strings.Contains(r.stdout, "1/1: no suitable node") {
		t.Errorf("progress does not show the scheduler message: %q", r.stdout)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("gave up after %s", d)
	}

	// Tasks that fail over and over end the wait early.
	f.tasks = func(poll int) []swarm.Task {
		var out []swarm.Task
		for i := 0; i < poll && i < 4; i++ {
			out = append(out, swarm.Task{ID: "f" + string(rune('a'+i)), ServiceID: "svcid0123456789abcdef", Slot: 1, NodeID: "node1",
				DesiredState: swarm.TaskStateShutdown, Status: swarm.TaskStatus{State: swarm.TaskStateFailed, Err: "starting container failed: exec: \"nope\": executable file not found"}})
		}
		return out
	}
	r = runCLI(t, f.host, "", "service", "create", "--name", "web", "busybox", "nope")
	if r.code != 1 || !strings.Contains(r.stderr, "service web cannot converge: 1/1: ") || !strings.Contains(r.stderr, "tasks failed, the last with") || !strings.Contains(r.stderr, "executable file not found") {
		t.Fatalf("%+v", r)
	}
}

func TestServiceScale(t *testing.T) {
	f := newClusterFake(t)
	three := uint64(3)
	f.services["webid"] = swarm.Service{ID: "webid", Meta: swarm.Meta{Version: swarm.Version{Index: 7}},
		Spec: swarm.ServiceSpec{Annotations: swarm.Annotations{Name: "web"}, Mode: swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &three}}}}
	f.services["globid"] = swarm.Service{ID: "globid", Spec: swarm.ServiceSpec{Annotations: swarm.Annotations{Name: "glob"}, Mode: swarm.ServiceMode{Global: &swarm.GlobalService{}}}}
	r := runCLI(t, f.host, "", "service", "scale", "-d", "web=5")
	if r.code != 0 || r.stdout != "web scaled to 5\n" {
		t.Fatalf("%+v", r)
	}
	var spec swarm.ServiceSpec
	json.Unmarshal(f.body("POST /services/webid/update"), &spec)
	if spec.Mode.Replicated == nil || *spec.Mode.Replicated.Replicas != 5 || spec.Name != "web" {
		t.Errorf("update body %s", f.body("POST /services/webid/update"))
	}
	if q := f.queries["POST /services/webid/update"]; !strings.Contains(q, "version=7") {
		t.Errorf("update query %q", q)
	}
	r = runCLI(t, f.host, "", "service", "scale", "-d", "glob=2")
	if r.code != 1 || r.stderr != "glob: scale can only be used with replicated or replicated-job mode\n" {
		t.Fatalf("%+v", r)
	}
}

func TestServiceUpdateMerges(t *testing.T) {
	f := newClusterFake(t)
	one := uint64(1)
	f.services["webid"] = swarm.Service{ID: "webid", Meta: swarm.Meta{Version: swarm.Version{Index: 3}}, Spec: swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: "web"},
		Mode:        swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &one}},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{Image: "busybox:latest", Env: []string{"A=1", "B=2"}},
			Placement:     &swarm.Placement{Constraints: []string{"node.role==worker"}},
		},
	}}
	r := runCLI(t, f.host, "", "service", "update", "-d", "--replicas", "4", "--image", "busybox:1.36", "--env-add", "C=3", "--env-rm", "A",
		"--constraint-add", "node.labels.zone==a", "--constraint-rm", "node.role==worker", "--limit-memory", "32m", "--force", "web")
	if r.code != 0 || r.stdout != "web\n" {
		t.Fatalf("%+v", r)
	}
	var spec swarm.ServiceSpec
	json.Unmarshal(f.body("POST /services/webid/update"), &spec)
	cs := spec.TaskTemplate.ContainerSpec
	if *spec.Mode.Replicated.Replicas != 4 || cs.Image != "busybox:1.36" || !reflect.DeepEqual(cs.Env, []string{"B=2", "C=3"}) ||
		!reflect.DeepEqual(spec.TaskTemplate.Placement.Constraints, []string{"node.labels.zone==a"}) ||
		spec.TaskTemplate.Resources.Limits.MemoryBytes != 32<<20 || spec.TaskTemplate.ForceUpdate != 1 {
		t.Fatalf("update body %s", f.body("POST /services/webid/update"))
	}
}

func TestServiceListAndPs(t *testing.T) {
	f := newClusterFake(t)
	three := uint64(3)
	f.services["webid0123456789"] = swarm.Service{ID: "webid0123456789", Spec: swarm.ServiceSpec{
		Annotations:  swarm.Annotations{Name: "web"},
		Mode:         swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &three}},
		TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "busybox:latest"}},
	}, ServiceStatus: &swarm.ServiceStatus{RunningTasks: 3, DesiredTasks: 3},
		Endpoint: swarm.Endpoint{Ports: []swarm.PortConfig{{Protocol: "tcp", TargetPort: 80, PublishedPort: 8080, PublishMode: "ingress"}}}}
	f.services["aglobid0123456"] = swarm.Service{ID: "aglobid0123456", Spec: swarm.ServiceSpec{
		Annotations:  swarm.Annotations{Name: "agent"},
		Mode:         swarm.ServiceMode{Global: &swarm.GlobalService{}},
		TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "busybox:latest"}},
	}, ServiceStatus: &swarm.ServiceStatus{RunningTasks: 2, DesiredTasks: 2}}
	r := runCLI(t, f.host, "", "service", "ls")
	want := "ID             NAME      MODE         REPLICAS   IMAGE            PORTS\n" +
		"aglobid01234   agent     global       2/2        busybox:latest   \n" +
		"webid0123456   web       replicated   3/3        busybox:latest   *:8080->80/tcp\n"
	if r.code != 0 || r.stdout != want {
		t.Fatalf("ls:\n%q\nwant\n%q", r.stdout, want)
	}
	if q := f.queries["GET /services"]; !strings.Contains(q, "status=true") {
		t.Errorf("ls query %q", q)
	}
	r = runCLI(t, f.host, "", "service", "ls", "-q")
	if r.stdout != "aglobid0123456\nwebid0123456789\n" {
		t.Errorf("ls -q %q", r.stdout)
	}
	r = runCLI(t, f.host, "", "service", "ls", "--format", "{{.Name}}: {{.Replicas}}")
	if r.stdout != "agent: 2/2\nweb: 3/3\n" {
		t.Errorf("ls --format %q", r.stdout)
	}

	f.nodes = []swarm.Node{{ID: "node1", Description: swarm.NodeDescription{Hostname: "host1"}}}
	now := time.Now()
	f.tasks = func(int) []swarm.Task {
		mk := func(id string, slot int, desired, state swarm.TaskState, age time.Duration) swarm.Task {
			return swarm.Task{ID: id, ServiceID: "webid0123456789", Slot: slot, NodeID: "node1", DesiredState: desired,
				Meta: swarm.Meta{CreatedAt: now.Add(-age)}, Spec: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "busybox:latest"}},
				Status: swarm.TaskStatus{State: state, Timestamp: now.Add(-age)}}
		}
		old := mk("oldtask0123456789", 1, swarm.TaskStateShutdown, swarm.TaskStateFailed, time.Minute)
		old.Status.Err = "exit 1"
		return []swarm.Task{old, mk("newtask0123456789", 1, swarm.TaskStateRunning, swarm.TaskStateRunning, 5*time.Second)}
	}
	r = runCLI(t, f.host, "", "service", "ps", "web")
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if r.code != 0 || len(lines) != 3 ||
		!strings.HasPrefix(lines[0], "ID ") || !strings.Contains(lines[0], "DESIRED STATE   CURRENT STATE") ||
		!strings.HasPrefix(lines[1], "newtask01234   web.1 ") || !strings.Contains(lines[1], "host1") || !strings.Contains(lines[1], "Running         Running 5 seconds ago") ||
		!strings.HasPrefix(lines[2], `oldtask01234    \_ web.1`) || !strings.Contains(lines[2], `Failed about a minute ago   "exit 1"`) {
		t.Fatalf("ps:\n%s", r.stdout)
	}
	if q := f.queries["GET /tasks"]; !strings.Contains(q, "webid0123456789") {
		t.Errorf("ps filter %q", q)
	}
	r = runCLI(t, f.host, "", "service", "ps", "-q", "web")
	if r.stdout != "newtask0123456789\noldtask0123456789\n" {
		t.Errorf("ps -q %q", r.stdout)
	}
}

func TestSwarmAndNodeCommands(t *testing.T) {
	f := newClusterFake(t)
	f.nodes = []swarm.Node{
		{ID: "node2", Description: swarm.NodeDescription{Hostname: "worker1", Engine: swarm.EngineDescription{EngineVersion: "dev"}},
			Status: swarm.NodeStatus{State: "ready"}, Spec: swarm.NodeSpec{Availability: "active", Role: "worker"}},
		{ID: "node1", Description: swarm.NodeDescription{Hostname: "manager1", Engine: swarm.EngineDescription{EngineVersion: "dev"}},
			Status: swarm.NodeStatus{State: "ready"}, Spec: swarm.NodeSpec{Availability: "active", Role: "manager"},
			ManagerStatus: &swarm.ManagerStatus{Leader: true, Reachability: "reachable", Addr: "198.18.0.1:2377"}},
	}
	f.mux.HandleFunc("POST /swarm/init", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.bodies["POST /swarm/init"] = b
		f.mu.Unlock()
		writeJSON(w, 200, "node1")
	})
	f.mux.HandleFunc("GET /swarm", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"ID": "cluster", "Version": map[string]any{"Index": 9},
			"JoinTokens": map[string]string{"Worker": "SWMTKN-1-abc-worker", "Manager": "SWMTKN-1-abc-manager"}})
	})
	f.mux.HandleFunc("POST /swarm/update", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.bodies["POST /swarm/update"], f.queries["POST /swarm/update"] = b, r.URL.RawQuery
		f.mu.Unlock()
	})
	f.mux.HandleFunc("GET /swarm/unlockkey", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]string{"UnlockKey": "SWMKEY-1-abc"})
	})
	f.mux.HandleFunc("POST /swarm/join", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.bodies["POST /swarm/join"] = b
		f.mu.Unlock()
	})
	f.mux.HandleFunc("POST /nodes/{id}/update", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.bodies["POST /nodes/update"], f.queries["POST /nodes/update"] = b, r.URL.RawQuery
		f.mu.Unlock()
	})

	r := runCLI(t, f.host, "", "swarm", "init", "--advertise-addr", "198.18.0.1", "--task-history-limit", "2")
	want := "Swarm initialized: current node (node1) is now a manager.\n\n" +
		"To add a worker to this swarm, run the following command:\n\n    shoal swarm join --token SWMTKN-1-abc-worker 198.18.0.1:2377\n\n" +
		"To add a manager to this swarm, run 'shoal swarm join-token manager' and follow the instructions.\n"
	if r.code != 0 || r.stdout != want {
		t.Fatalf("init: %d %q\n%s", r.code, r.stderr, r.stdout)
	}
	sameJSON(t, f.body("POST /swarm/init"), `{"ListenAddr": "0.0.0.0:2377", "AdvertiseAddr": "198.18.0.1", "DataPathAddr": "", "DataPathPort": 0,
		"ForceNewCluster": false, "Spec": {"Labels": null, "Orchestration": {"TaskHistoryRetentionLimit": 2}, "Raft": {"ElectionTick": 0, "HeartbeatTick": 0},
		"Dispatcher": {}, "CAConfig": {}, "TaskDefaults": {}, "EncryptionConfig": {"AutoLockManagers": false}}, "AutoLockManagers": false, "Availability": "", "DefaultAddrPool": null, "SubnetSize": 24}`)

	// The network settings of swarm init go in the request as docker sends them.
	r = runCLI(t, f.host, "", "swarm", "init", "--advertise-addr", "198.18.0.1", "--default-addr-pool", "198.18.0.0/16",
		"--default-addr-pool", "198.19.0.0/16", "--default-addr-pool-mask-length", "26", "--data-path-port", "7789")
	if r.code != 0 {
		t.Fatalf("init with pools: %d %q", r.code, r.stderr)
	}
	sameJSON(t, f.body("POST /swarm/init"), `{"ListenAddr": "0.0.0.0:2377", "AdvertiseAddr": "198.18.0.1", "DataPathAddr": "", "DataPathPort": 7789,
		"ForceNewCluster": false, "Spec": {"Labels": null, "Orchestration": {}, "Raft": {"ElectionTick": 0, "HeartbeatTick": 0},
		"Dispatcher": {}, "CAConfig": {}, "TaskDefaults": {}, "EncryptionConfig": {"AutoLockManagers": false}}, "AutoLockManagers": false, "Availability": "",
		"DefaultAddrPool": ["198.18.0.0/16", "198.19.0.0/16"], "SubnetSize": 26}`)
	if r := runCLI(t, f.host, "", "swarm", "init", "--default-addr-pool", "198.18.0/16"); r.code == 0 || !strings.Contains(r.stderr, `invalid --default-addr-pool "198.18.0/16"`) {
		t.Fatalf("bad pool: %d %q", r.code, r.stderr)
	}

	// --autolock asks for it and prints the unlock key, as docker does.
	r = runCLI(t, f.host, "", "swarm", "init", "--autolock", "--advertise-addr", "198.18.0.1")
	if r.code != 0 || !strings.HasSuffix(r.stdout, "follow the instructions.\n\nTo unlock a swarm manager after it restarts, run the `shoal swarm unlock`\n"+
		"command and provide the following key:\n\n    SWMKEY-1-abc\n\nRemember to store this key in a password manager, since without it you\n"+
		"will not be able to restart the manager.\n") {
		t.Fatalf("init --autolock: %d %q\n%s", r.code, r.stderr, r.stdout)
	}
	if b := string(f.body("POST /swarm/init")); !strings.Contains(b, `"AutoLockManagers":true`) {
		t.Errorf("init --autolock sent %s", b)
	}
	r = runCLI(t, f.host, "", "swarm", "init", "--autolock", "--data-key-rotation", "1m", "--advertise-addr", "198.18.0.1")
	if b := string(f.body("POST /swarm/init")); r.code != 0 || !strings.Contains(b, `"EncryptionConfig":{"AutoLockManagers":true,"DataKeyRotation":60000000000}`) {
		t.Errorf("init --data-key-rotation 1m: %+v sent %s", r, b)
	}
	r = runCLI(t, f.host, "", "swarm", "unlock-key", "-q")
	if r.code != 0 || r.stdout != "SWMKEY-1-abc\n" {
		t.Errorf("unlock-key -q: %+v", r)
	}

	r = runCLI(t, f.host, "", "swarm", "join-token", "-q", "worker")
	if r.stdout != "SWMTKN-1-abc-worker\n" {
		t.Errorf("join-token -q %q", r.stdout)
	}
	r = runCLI(t, f.host, "", "swarm", "join-token", "--rotate", "manager")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "Successfully rotated manager join token.\n\nTo add a manager to this swarm, run the following command:\n\n    shoal swarm join --token SWMTKN-1-abc-manager 198.18.0.1:2377\n") {
		t.Errorf("rotate: %+v", r)
	}
	if q := f.queries["POST /swarm/update"]; !strings.Contains(q, "rotateManagerToken=true") || !strings.Contains(q, "version=9") {
		t.Errorf("rotate query %q", q)
	}
	r = runCLI(t, f.host, "", "swarm", "join", "--token", "SWMTKN-1-abc-worker", "--advertise-addr", "198.18.0.2", "198.18.0.1:2377")
	if r.code != 0 || r.stdout != "This node joined a swarm as a manager.\n" {
		t.Errorf("join %+v", r)
	}
	var jr swarm.JoinRequest
	json.Unmarshal(f.body("POST /swarm/join"), &jr)
	if jr.JoinToken != "SWMTKN-1-abc-worker" || !reflect.DeepEqual(jr.RemoteAddrs, []string{"198.18.0.1:2377"}) || jr.ListenAddr != "0.0.0.0:2377" || jr.AdvertiseAddr != "198.18.0.2" {
		t.Errorf("join body %+v", jr)
	}

	r = runCLI(t, f.host, "", "node", "ls")
	want = "ID        HOSTNAME   STATUS    AVAILABILITY   MANAGER STATUS   ENGINE VERSION\n" +
		"node1 *   manager1   Ready     Active         Leader           dev\n" +
		"node2     worker1    Ready     Active                          dev\n"
	if r.code != 0 || r.stdout != want {
		t.Fatalf("node ls:\n%q\nwant\n%q", r.stdout, want)
	}

	r = runCLI(t, f.host, "", "node", "update", "--availability", "drain", "--label-add", "zone=a", "worker1")
	if r.code != 0 || r.stdout != "worker1\n" {
		t.Fatalf("node update %+v", r)
	}
	sameJSON(t, f.body("POST /nodes/update"), `{"Labels": {"zone": "a"}, "Role": "worker", "Availability": "drain"}`)
	r = runCLI(t, f.host, "", "node", "promote", "worker1")
	if r.code != 0 || r.stdout != "Node worker1 promoted to a manager in the swarm.\n" {
		t.Fatalf("promote %+v", r)
	}
	// A node already a manager: that line only, as docker's.
	r = runCLI(t, f.host, "", "node", "promote", "self")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "Node ") || !strings.HasSuffix(r.stdout, " is already a manager.\n") || strings.Count(r.stdout, "\n") != 1 {
		t.Fatalf("promote of a manager %+v", r)
	}
	r = runCLI(t, f.host, "", "node", "inspect", "--format", "{{.Description.Hostname}}", "self")
	if r.code != 0 || r.stdout != "manager1\n" {
		t.Fatalf("inspect self %+v", r)
	}
}

func TestServiceLogs(t *testing.T) {
	f := newClusterFake(t)
	two := uint64(2)
	f.services["webid"] = swarm.Service{ID: "webid", Spec: swarm.ServiceSpec{Annotations: swarm.Annotations{Name: "web"},
		Mode:         swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &two}},
		TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "busybox"}}}}
	f.nodes = []swarm.Node{{ID: "node1", Description: swarm.NodeDescription{Hostname: "host1"}}}
	f.mux.HandleFunc("GET /tasks/{id}", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, swarm.Task{ID: r.PathValue("id"), ServiceID: "webid", Slot: 2, NodeID: "node1"})
	})
	f.mux.HandleFunc("GET /services/{id}/logs", func(w http.ResponseWriter, r *http.Request) {
		record := r.URL.RawQuery
		f.mu.Lock()
		f.queries["GET logs"] = record
		f.mu.Unlock()
		ctx := "com.docker.swarm.node.id=node1,com.docker.swarm.service.id=webid,com.docker.swarm.task.id=task0123456789abc"
		w.Write(frame(1, ctx+" hello\n"))
		w.Write(frame(2, ctx+" oops\n"))
	})
	r := runCLI(t, f.host, "", "service", "logs", "--tail", "5", "web")
	if r.code != 0 || r.stdout != "web.2.task01234567@host1    | hello\n" || r.stderr != "web.2.task01234567@host1    | oops\n" {
		t.Fatalf("%+v", r)
	}
	if q := f.queries["GET logs"]; !strings.Contains(q, "details=1") || !strings.Contains(q, "tail=5") {
		t.Errorf("logs query %q", q)
	}
}

// TestSwarmCAAndSpecFlags: `swarm ca` prints the root; `swarm ca --rotate`
// raises ForceRotate and waits until the daemon reports the new root;
// `swarm update` sends each cluster setting flag given, and only those.
func TestSwarmCAAndSpecFlags(t *testing.T) {
	f := newClusterFake(t)
	rotated := false
	f.mux.HandleFunc("GET /swarm", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		root, force := "OLD ROOT\n", 0
		if rotated {
			root, force = "NEW ROOT\n", 1
		}
		writeJSON(w, 200, map[string]any{"ID": "cluster", "Version": map[string]any{"Index": 9},
			"Spec":    map[string]any{"CAConfig": map[string]any{"ForceRotate": force}},
			"TLSInfo": map[string]any{"TrustRoot": root}})
	})
	f.mux.HandleFunc("POST /swarm/update", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.bodies["POST /swarm/update"] = b
		rotated = rotated || strings.Contains(string(b), `"ForceRotate":1`)
		f.mu.Unlock()
	})
	r := runCLI(t, f.host, "", "swarm", "ca")
	if r.code != 0 || r.stdout != "OLD ROOT\n" {
		t.Fatalf("swarm ca: %+v", r)
	}
	r = runCLI(t, f.host, "", "swarm", "update", "--cert-expiry", "2h", "--snapshot-interval", "500", "--max-snapshots", "1", "--dispatcher-heartbeat", "1s")
	if r.code != 0 || r.stdout != "Swarm updated.\n" {
		t.Fatalf("swarm update: %+v", r)
	}
	var spec swarm.Spec
	if err := json.Unmarshal(f.body("POST /swarm/update"), &spec); err != nil {
		t.Fatal(err)
	}
	if spec.CAConfig.NodeCertExpiry != 2*time.Hour || spec.Raft.SnapshotInterval != 500 || spec.Raft.KeepOldSnapshots == nil ||
		*spec.Raft.KeepOldSnapshots != 1 || spec.Dispatcher.HeartbeatPeriod != time.Second || spec.CAConfig.ForceRotate != 0 {
		t.Fatalf("swarm update sent %+v", spec)
	}
	if strings.Contains(string(f.body("POST /swarm/update")), "DataKeyRotation") {
		t.Fatalf("swarm update without --data-key-rotation sent one: %s", f.body("POST /swarm/update"))
	}
	r = runCLI(t, f.host, "", "swarm", "update", "--snapshot-interval", "0")
	if r.code == 0 || !strings.Contains(r.stderr, "invalid snapshot interval 0") {
		t.Fatalf("snapshot interval 0: %+v", r)
	}
	// shoal's --data-key-rotation goes in the spec's EncryptionConfig, next
	// to Docker's field, which keeps the value read.
	r = runCLI(t, f.host, "", "swarm", "update", "--data-key-rotation", "90s")
	if r.code != 0 || r.stdout != "Swarm updated.\n" {
		t.Fatalf("swarm update --data-key-rotation: %+v", r)
	}
	if b := string(f.body("POST /swarm/update")); !strings.Contains(b, `"EncryptionConfig":{"AutoLockManagers":false,"DataKeyRotation":90000000000}`) ||
		strings.Count(b, "EncryptionConfig") != 1 {
		t.Fatalf("swarm update --data-key-rotation sent %s", b)
	}
	r = runCLI(t, f.host, "", "swarm", "update", "--data-key-rotation", "-1m")
	if r.code == 0 || !strings.Contains(r.stderr, "invalid data key rotation -1m0s: must be positive") {
		t.Fatalf("data key rotation -1m: %+v", r)
	}
	r = runCLI(t, f.host, "", "swarm", "ca", "--rotate")
	if r.code != 0 || !strings.HasSuffix(r.stdout, "NEW ROOT\n") {
		t.Fatalf("swarm ca --rotate: %+v", r)
	}
	if err := json.Unmarshal(f.body("POST /swarm/update"), &spec); err != nil || spec.CAConfig.ForceRotate != 1 {
		t.Fatalf("swarm ca --rotate sent ForceRotate %d (%v)", spec.CAConfig.ForceRotate, err)
	}
	r = runCLI(t, f.host, "", "swarm", "ca", "--detach")
	if r.code == 0 || !strings.Contains(r.stderr, "--detach is only meaningful with --rotate") {
		t.Fatalf("swarm ca --detach: %+v", r)
	}
}

// TestUpdateAfterAStatusWrite: an update sent at a version the manager moved
// only to record an update's progress (the spec unchanged) is sent again at
// the new one; one whose spec someone else changed is the daemon's conflict.
func TestUpdateAfterAStatusWrite(t *testing.T) {
	f := newClusterFake(t)
	one := uint64(1)
	f.services["s1"] = swarm.Service{ID: "s1", Meta: swarm.Meta{Version: swarm.Version{Index: 7}}, Spec: swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: "web"}, Mode: swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &one}},
		TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "busybox:latest"}}}}
	writes := 0
	f.racer = func(s *swarm.Service) {
		if writes++; writes == 1 { // the manager records the last update's state
			s.Version.Index++
			s.UpdateStatus = &swarm.UpdateStatus{State: swarm.UpdateStateCompleted}
		}
	}
	if r := runCLI(t, f.host, "", "service", "scale", "-d", "web=3"); r.code != 0 {
		t.Fatalf("scale after a status write: %+v", r)
	}
	if got := *f.services["s1"].Spec.Mode.Replicated.Replicas; got != 3 || writes != 2 {
		t.Fatalf("replicas %d after %d attempts, want 3 after 2", got, writes)
	}
	f.racer = func(s *swarm.Service) { // someone else's update
		s.Version.Index++
		s.Spec.Labels = map[string]string{"by": "other"}
	}
	r := runCLI(t, f.host, "", "service", "update", "-d", "--env-add", "A=1", "web")
	if r.code == 0 || !strings.Contains(r.stderr, "update out of sequence") {
		t.Fatalf("update over another's: %+v", r)
	}
}
