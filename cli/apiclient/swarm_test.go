package apiclient

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"
)

// swarmSeen is one request as the test daemon received it.
type swarmSeen struct {
	method, path string
	query        url.Values
	header       http.Header
	body         []byte
}

// swarmRecord is the requests the test daemon received.
type swarmRecord struct {
	mu   sync.Mutex
	reqs []swarmSeen
}

func (r *swarmRecord) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.reqs)
}

// swarmTestDaemon serves canned answers on a unix socket and records the
// requests: answer returns the status and the JSON body to send.
func swarmTestDaemon(t *testing.T, answer func(r *http.Request) (int, string)) (*Client, *swarmRecord) {
	t.Helper()
	seen := &swarmRecord{}
	c := serveUnix(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		seen.mu.Lock()
		seen.reqs = append(seen.reqs, swarmSeen{r.Method, r.URL.Path, r.URL.Query(), r.Header, b})
		seen.mu.Unlock()
		code, body := answer(r)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		io.WriteString(w, body)
	}))
	return c, seen
}

// lastSeen is the one request the daemon got.
func lastSeen(t *testing.T, seen *swarmRecord) swarmSeen {
	t.Helper()
	seen.mu.Lock()
	defer seen.mu.Unlock()
	if len(seen.reqs) != 1 {
		t.Fatalf("daemon got %d requests, want 1", len(seen.reqs))
	}
	s := seen.reqs[0]
	seen.reqs = nil
	return s
}

func checkSeen(t *testing.T, s swarmSeen, method, path string, query url.Values) {
	t.Helper()
	if s.method != method || s.path != "/v"+APIVersion+path {
		t.Errorf("request %s %s, want %s /v%s%s", s.method, s.path, method, APIVersion, path)
	}
	if query == nil {
		query = url.Values{}
	}
	if !reflect.DeepEqual(s.query, query) {
		t.Errorf("%s %s: query %v, want %v", method, path, s.query, query)
	}
}

func checkBody(t *testing.T, s swarmSeen, want string) {
	t.Helper()
	if ct := s.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q", s.path, ct)
	}
	var got, w any
	if err := json.Unmarshal(s.body, &got); err != nil {
		t.Fatalf("%s: body %q: %v", s.path, s.body, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, w) {
		t.Errorf("%s: body %s, want %s", s.path, s.body, want)
	}
}

func TestSwarmEndpoints(t *testing.T) {
	t.Setenv("DOCKER_API_VERSION", "")
	answers := map[string]string{
		"GET /swarm":           `{"ID":"sw1","Version":{"Index":7},"JoinTokens":{"Worker":"SWMTKN-w"}}`,
		"POST /swarm/init":     `"node1"`,
		"GET /swarm/unlockkey": `{"UnlockKey":"SWMKEY-1"}`,
	}
	c, seen := swarmTestDaemon(t, func(r *http.Request) (int, string) {
		if a, ok := answers[r.Method+" "+strings.TrimPrefix(r.URL.Path, "/v"+APIVersion)]; ok {
			return 200, a
		}
		return 200, ""
	})
	ctx := context.Background()

	sw, err := c.SwarmInspect(ctx)
	if err != nil || sw.ID != "sw1" || sw.Version.Index != 7 || sw.JoinTokens.Worker != "SWMTKN-w" {
		t.Fatalf("SwarmInspect: %+v, %v", sw, err)
	}
	checkSeen(t, lastSeen(t, seen), "GET", "/swarm", nil)

	// The spec goes as given, extension fields and all.
	type ext struct {
		swarm.Spec
		Extra string
	}
	err = c.SwarmUpdate(ctx, swarm.Version{Index: 7}, ext{Spec: swarm.Spec{Annotations: swarm.Annotations{Name: "default"}}, Extra: "x"},
		SwarmRotate{WorkerToken: true})
	if err != nil {
		t.Fatal(err)
	}
	s := lastSeen(t, seen)
	checkSeen(t, s, "POST", "/swarm/update", url.Values{
		"version": {"7"}, "rotateWorkerToken": {"true"}, "rotateManagerToken": {"false"}, "rotateManagerUnlockKey": {"false"},
	})
	var body map[string]any
	if err := json.Unmarshal(s.body, &body); err != nil || body["Name"] != "default" || body["Extra"] != "x" {
		t.Errorf("swarm update body %s (%v)", s.body, err)
	}

	id, err := c.SwarmInit(ctx, swarm.InitRequest{ListenAddr: "0.0.0.0:2377"})
	if err != nil || id != "node1" {
		t.Fatalf("SwarmInit: %q, %v", id, err)
	}
	s = lastSeen(t, seen)
	checkSeen(t, s, "POST", "/swarm/init", nil)
	if !strings.Contains(string(s.body), `"ListenAddr":"0.0.0.0:2377"`) {
		t.Errorf("swarm init body %s", s.body)
	}

	if err := c.SwarmJoin(ctx, swarm.JoinRequest{JoinToken: "SWMTKN-w", RemoteAddrs: []string{"10.0.0.1:2377"}}); err != nil {
		t.Fatal(err)
	}
	s = lastSeen(t, seen)
	checkSeen(t, s, "POST", "/swarm/join", nil)
	checkBody(t, s, `{"ListenAddr":"","AdvertiseAddr":"","DataPathAddr":"","RemoteAddrs":["10.0.0.1:2377"],"JoinToken":"SWMTKN-w","Availability":""}`)

	if err := c.SwarmLeave(ctx, true); err != nil {
		t.Fatal(err)
	}
	checkSeen(t, lastSeen(t, seen), "POST", "/swarm/leave", url.Values{"force": {"1"}})
	if err := c.SwarmLeave(ctx, false); err != nil {
		t.Fatal(err)
	}
	checkSeen(t, lastSeen(t, seen), "POST", "/swarm/leave", nil)

	key, err := c.SwarmGetUnlockKey(ctx)
	if err != nil || key != "SWMKEY-1" {
		t.Fatalf("SwarmGetUnlockKey: %q, %v", key, err)
	}
	checkSeen(t, lastSeen(t, seen), "GET", "/swarm/unlockkey", nil)

	if err := c.SwarmUnlock(ctx, "SWMKEY-1"); err != nil {
		t.Fatal(err)
	}
	s = lastSeen(t, seen)
	checkSeen(t, s, "POST", "/swarm/unlock", nil)
	checkBody(t, s, `{"UnlockKey":"SWMKEY-1"}`)
}

func TestServiceEndpoints(t *testing.T) {
	t.Setenv("DOCKER_API_VERSION", "")
	const svcJSON = `{"ID":"svc1","Version":{"Index":3},"Spec":{"Name":"web","TaskTemplate":{"ContainerSpec":{"Image":"busybox:latest"}}},"ShoalOnly":true}`
	c, seen := swarmTestDaemon(t, func(r *http.Request) (int, string) {
		switch p := strings.TrimPrefix(r.URL.Path, "/v"+APIVersion); {
		case p == "/services/create":
			return 201, `{"ID":"svc1","Warnings":["careful"]}`
		case p == "/services/svc1/update":
			return 200, `{"Warnings":["rolled"]}`
		case p == "/services/svc1":
			return 200, svcJSON + "\n"
		case p == "/services":
			return 200, `[` + svcJSON + `]`
		case p == "/services/svc1/logs", p == "/tasks/t1/logs":
			return 200, "log bytes"
		}
		return 404, `{"message":"not here"}`
	})
	ctx := context.Background()

	// A spec without a task gets an empty container spec; the auth goes
	// as X-Registry-Auth.
	res, err := c.ServiceCreate(ctx, swarm.ServiceSpec{Annotations: swarm.Annotations{Name: "web"}}, "YXV0aA==")
	if err != nil || res.ID != "svc1" || !reflect.DeepEqual(res.Warnings, []string{"careful"}) {
		t.Fatalf("ServiceCreate: %+v, %v", res, err)
	}
	s := lastSeen(t, seen)
	checkSeen(t, s, "POST", "/services/create", nil)
	if got := s.header.Get("X-Registry-Auth"); got != "YXV0aA==" {
		t.Errorf("X-Registry-Auth %q", got)
	}
	var spec swarm.ServiceSpec
	if err := json.Unmarshal(s.body, &spec); err != nil || spec.Name != "web" || spec.TaskTemplate.ContainerSpec == nil {
		t.Errorf("create body %s (%v)", s.body, err)
	}
	if _, err := c.ServiceCreate(ctx, swarm.ServiceSpec{}, ""); err != nil {
		t.Fatal(err)
	}
	if s := lastSeen(t, seen); s.header.Get("X-Registry-Auth") != "" {
		t.Errorf("X-Registry-Auth sent without auth: %q", s.header.Get("X-Registry-Auth"))
	}
	// What the moby client refuses is not sent.
	bad := swarm.ServiceSpec{TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{}, Runtime: swarm.RuntimePlugin}}
	if _, err := c.ServiceCreate(ctx, bad, ""); err == nil || err.Error() != "mismatched runtime with container spec" {
		t.Errorf("bad spec: %v", err)
	}
	if seen.count() != 0 {
		t.Errorf("bad spec sent")
	}

	up, err := c.ServiceUpdate(ctx, " svc1 ", swarm.Version{Index: 3}, swarm.ServiceSpec{Annotations: swarm.Annotations{Name: "web"}},
		ServiceUpdateOptions{RegistryAuth: "YXV0aA==", RegistryAuthFrom: swarm.RegistryAuthFromPreviousSpec, Rollback: "previous"})
	if err != nil || !reflect.DeepEqual(up.Warnings, []string{"rolled"}) {
		t.Fatalf("ServiceUpdate: %+v, %v", up, err)
	}
	s = lastSeen(t, seen)
	checkSeen(t, s, "POST", "/services/svc1/update", url.Values{
		"version": {"3"}, "registryAuthFrom": {"previous-spec"}, "rollback": {"previous"},
	})
	if s.header.Get("X-Registry-Auth") != "YXV0aA==" {
		t.Errorf("update X-Registry-Auth %q", s.header.Get("X-Registry-Auth"))
	}
	if _, err := c.ServiceUpdate(ctx, "svc1", swarm.Version{Index: 4}, swarm.ServiceSpec{}, ServiceUpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	checkSeen(t, lastSeen(t, seen), "POST", "/services/svc1/update", url.Values{"version": {"4"}})

	svc, raw, err := c.ServiceInspect(ctx, "svc1", true)
	if err != nil || svc.ID != "svc1" || svc.Spec.TaskTemplate.ContainerSpec.Image != "busybox:latest" {
		t.Fatalf("ServiceInspect: %+v, %v", svc, err)
	}
	if strings.TrimSpace(string(raw)) != svcJSON {
		t.Errorf("raw %q", raw)
	}
	checkSeen(t, lastSeen(t, seen), "GET", "/services/svc1", url.Values{"insertDefaults": {"1"}})
	if _, _, err := c.ServiceInspect(ctx, "svc1", false); err != nil {
		t.Fatal(err)
	}
	checkSeen(t, lastSeen(t, seen), "GET", "/services/svc1", nil)

	list, err := c.ServiceList(ctx, Filters{}.Add("name", "web"), true)
	if err != nil || len(list) != 1 || list[0].Spec.Name != "web" {
		t.Fatalf("ServiceList: %+v, %v", list, err)
	}
	checkSeen(t, lastSeen(t, seen), "GET", "/services", url.Values{"filters": {`{"name":{"web":true}}`}, "status": {"true"}})

	// Service logs leave tail out for "all"; task logs send it.
	rc, err := c.ServiceLogs(ctx, "svc1", ServiceLogsOptions{Stdout: true, Stderr: true, Details: true, Tail: "all", Since: "1700000000"})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(rc); string(b) != "log bytes" {
		t.Errorf("service logs %q", b)
	}
	rc.Close()
	checkSeen(t, lastSeen(t, seen), "GET", "/services/svc1/logs", url.Values{
		"stdout": {"1"}, "stderr": {"1"}, "details": {"1"}, "since": {"1700000000"},
	})
	rc, err = c.TaskLogs(ctx, "t1", ServiceLogsOptions{Stdout: true, Follow: true, Timestamps: true, Tail: "all"})
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
	checkSeen(t, lastSeen(t, seen), "GET", "/tasks/t1/logs", url.Values{
		"stdout": {"1"}, "follow": {"1"}, "timestamps": {"1"}, "tail": {"all"},
	})
	if _, err := c.ServiceLogs(ctx, "svc1", ServiceLogsOptions{Since: "yesterday"}); err == nil ||
		err.Error() != `invalid value for "since": failed to parse value as time or duration: "yesterday"` {
		t.Errorf("bad since: %v", err)
	}

	// A daemon's 404 is an *Error with docker's text.
	err = c.ServiceRemove(ctx, "gone")
	var e *Error
	if !errors.As(err, &e) || !IsNotFound(err) || err.Error() != "Error response from daemon: not here" {
		t.Errorf("ServiceRemove of a missing service: %#v", err)
	}
	checkSeen(t, lastSeen(t, seen), "DELETE", "/services/gone", nil)

	// An empty ID is refused before sending, as the moby client does.
	if _, _, err := c.ServiceInspect(ctx, "  ", false); err == nil || err.Error() != "invalid service name or ID: value is empty" {
		t.Errorf("empty ID: %v", err)
	}
	if seen.count() != 0 {
		t.Errorf("empty ID sent")
	}
}

func TestNodeAndTaskEndpoints(t *testing.T) {
	t.Setenv("DOCKER_API_VERSION", "")
	const nodeJSON = `{"ID":"n1","Version":{"Index":9},"Description":{"Hostname":"h1","TLSInfo":{"CertExpiry":"2030-01-01T00:00:00Z"}}}`
	c, seen := swarmTestDaemon(t, func(r *http.Request) (int, string) {
		switch strings.TrimPrefix(r.URL.Path, "/v"+APIVersion) {
		case "/nodes":
			return 200, `[` + nodeJSON + `]`
		case "/nodes/n1":
			if r.Method == http.MethodDelete {
				return 409, `{"message":"node n1 is not down"}`
			}
			return 200, nodeJSON
		case "/tasks":
			return 200, `[{"ID":"t1","Slot":2}]`
		case "/tasks/t1":
			return 200, `{"ID":"t1","Slot":2}`
		}
		return 200, ""
	})
	ctx := context.Background()

	nodes, err := c.NodeList(ctx, nil)
	if err != nil || len(nodes) != 1 || nodes[0].Description.Hostname != "h1" {
		t.Fatalf("NodeList: %+v, %v", nodes, err)
	}
	checkSeen(t, lastSeen(t, seen), "GET", "/nodes", nil)

	n, raw, err := c.NodeInspect(ctx, "n1")
	if err != nil || n.ID != "n1" || !strings.Contains(string(raw), "CertExpiry") {
		t.Fatalf("NodeInspect: %+v %s, %v", n, raw, err)
	}
	checkSeen(t, lastSeen(t, seen), "GET", "/nodes/n1", nil)

	if err := c.NodeUpdate(ctx, "n1", n.Version, swarm.NodeSpec{Role: swarm.NodeRoleManager}); err != nil {
		t.Fatal(err)
	}
	s := lastSeen(t, seen)
	checkSeen(t, s, "POST", "/nodes/n1/update", url.Values{"version": {"9"}})
	checkBody(t, s, `{"Labels":null,"Role":"manager"}`)

	err = c.NodeRemove(ctx, "n1", true)
	if !(statusOf(err) == http.StatusConflict) || err.Error() != "Error response from daemon: node n1 is not down" {
		t.Errorf("NodeRemove: %v", err)
	}
	checkSeen(t, lastSeen(t, seen), "DELETE", "/nodes/n1", url.Values{"force": {"1"}})

	tasks, err := c.TaskList(ctx, Filters{}.Add("service", "svc1").Add("_up-to-date", "true"))
	if err != nil || len(tasks) != 1 || tasks[0].Slot != 2 {
		t.Fatalf("TaskList: %+v, %v", tasks, err)
	}
	checkSeen(t, lastSeen(t, seen), "GET", "/tasks", url.Values{"filters": {`{"_up-to-date":{"true":true},"service":{"svc1":true}}`}})

	task, _, err := c.TaskInspect(ctx, "t1")
	if err != nil || task.ID != "t1" || task.Slot != 2 {
		t.Fatalf("TaskInspect: %+v, %v", task, err)
	}
	checkSeen(t, lastSeen(t, seen), "GET", "/tasks/t1", nil)
}

func TestSwarmLogsSince(t *testing.T) {
	now := time.Date(2024, 5, 6, 7, 8, 9, 0, time.FixedZone("X", 2*3600))
	for _, c := range []struct{ in, want, err string }{
		{in: "42m", want: "1714969569"},
		{in: "1700000000", want: "1700000000"},
		{in: "1700000000.5", want: "1700000000.5"},
		{in: "2024-05-06T07:00:00Z", want: "1714978800.000000000"},
		{in: "2024-05-06T07:00:00+01:00", want: "1714975200.000000000"},
		{in: "2024-05-06T07:00:00.25Z", want: "1714978800.250000000"},
		{in: "2024-05-06T07:00", want: "1714971600.000000000"}, // in now's zone
		{in: "2024-05-06T07", want: "1714971600.000000000"},
		{in: "2024-05-06", want: "1714946400.000000000"},
		{in: "0", want: "0"},
		{in: "yesterday", err: `failed to parse value as time or duration: "yesterday"`},
		{in: "2024-13-01", err: `parsing time "2024-13-01": month out of range`},
	} {
		got, err := timestampParam(c.in, now)
		switch {
		case c.err != "" && (err == nil || err.Error() != c.err):
			t.Errorf("%q: %q, %v; want error %q", c.in, got, err, c.err)
		case c.err == "" && (err != nil || got != c.want):
			t.Errorf("%q: %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}
