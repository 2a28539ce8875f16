package cli

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"
)

func TestParseConstraint(t *testing.T) {
	for _, c := range []struct {
		in  string
		bad string // substring of the error; "" = valid
	}{
		{"node.role==manager", ""},
		{"node.labels.zone!=east", ""},
		{"node.hostname == n1", ""},
		{"engine.labels.os==linux", ""},
		{"node.role=manager", "no == or != operator"},
		{"node.role", "no == or != operator"},
		{"==manager", "empty key"},
		{"node.role==", "empty value"},
		{"a==b==c", "more than one operator"},
		{"a==b!=c", "more than one operator"},
		{"no de==x", "malformed key"},
	} {
		_, err := parseConstraint(c.in)
		if c.bad == "" {
			if err != nil {
				t.Errorf("%q: unexpected error %v", c.in, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.bad) || !errors.Is(err, ErrInvalidServiceSpec) {
			t.Errorf("%q: error %v, want one containing %q", c.in, err, c.bad)
		}
	}
}

func TestParsePlacementPref(t *testing.T) {
	p, err := parsePlacementPref("spread=node.labels.zone")
	if err != nil || p.Spread == nil || p.Spread.SpreadDescriptor != "node.labels.zone" {
		t.Fatalf("spread: %+v %v", p, err)
	}
	for _, bad := range []string{"spread", "=x", "binpack=node.id", "spread="} {
		if _, err := parsePlacementPref(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestParseResources(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0.5", 500000000, true}, {"2", 2000000000, true}, {"0.001", 1000000, true},
		{"-1", 0, false}, {"abc", 0, false}, {"0.0000000001", 0, false},
	} {
		got, err := parseCPUs(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("cpus %q = %d, %v", c.in, got, err)
		}
	}
	for _, c := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"64m", 64 << 20, true}, {"1g", 1 << 30, true}, {"512k", 512 << 10, true}, {"100", 100, true},
		{"1.5g", 3 << 29, true}, {"64x", 0, false}, {"-5m", 0, false},
	} {
		got, err := parseSize(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("memory %q = %d, %v", c.in, got, err)
		}
	}
}

func TestParseServicePorts(t *testing.T) {
	ing := swarm.PortConfigPublishModeIngress
	for _, c := range []struct {
		in   string
		want []swarm.PortConfig
		bad  bool
	}{
		{in: "8080:80", want: []swarm.PortConfig{{Protocol: "tcp", TargetPort: 80, PublishedPort: 8080, PublishMode: ing}}},
		{in: "80", want: []swarm.PortConfig{{Protocol: "tcp", TargetPort: 80, PublishMode: ing}}},
		{in: "53:53/udp", want: []swarm.PortConfig{{Protocol: "udp", TargetPort: 53, PublishedPort: 53, PublishMode: ing}}},
		{in: "8080-8081:80-81", want: []swarm.PortConfig{
			{Protocol: "tcp", TargetPort: 80, PublishedPort: 8080, PublishMode: ing},
			{Protocol: "tcp", TargetPort: 81, PublishedPort: 8081, PublishMode: ing},
		}},
		{in: "published=8080,target=80,mode=host,protocol=udp", want: []swarm.PortConfig{{Protocol: "udp", TargetPort: 80, PublishedPort: 8080, PublishMode: "host"}}},
		{in: "target=80", want: []swarm.PortConfig{{Protocol: "tcp", TargetPort: 80, PublishMode: ing}}},
		{in: "published=8080", bad: true},
		{in: "target=80,mode=bogus", bad: true},
		{in: "127.0.0.1:8080:80", bad: true},
		{in: "8080:80/icmp", bad: true},
		{in: "x:80", bad: true},
		{in: "8080-8081:80", bad: true},
	} {
		got, err := parseServicePorts(c.in)
		checkParsed(t, c.in, got, err, c.want, c.bad)
	}
}

// checkParsed reports a parse of in that a table row did not want: bad
// input accepted, or good input read wrong.
func checkParsed[T any](t *testing.T, in string, got T, err error, want T, bad bool) {
	t.Helper()
	if bad {
		if err == nil {
			t.Errorf("%q accepted: %+v", in, got)
		}
		return
	}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("%q = %+v, %v; want %+v", in, got, err, want)
	}
}

func TestParseScaleArgs(t *testing.T) {
	got, err := parseScaleArgs([]string{"web=3", "db=0"})
	if err != nil || !reflect.DeepEqual(got, []scaleTarget{{"web", 3}, {"db", 0}}) {
		t.Fatalf("got %+v %v", got, err)
	}
	for _, c := range []struct{ arg, msg string }{
		{"web", "invalid scale specifier 'web'"},
		{"=3", "invalid scale specifier '=3'"},
		{"web=", "invalid scale specifier 'web='"},
		{"web=-1", "web: invalid replicas value -1: must not be negative"},
		{"web=x", "web: invalid replicas value x"},
	} {
		if _, err := parseScaleArgs([]string{"ok=1", c.arg}); err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%q: %v, want %q", c.arg, err, c.msg)
		}
	}
}

func TestServiceMode(t *testing.T) {
	three := uint64(3)
	m, err := serviceMode("replicated", &three, 0)
	if err != nil || m.Replicated == nil || *m.Replicated.Replicas != 3 {
		t.Fatalf("replicated: %+v %v", m, err)
	}
	if m, err := serviceMode("replicated", nil, 0); err != nil || m.Replicated == nil || m.Replicated.Replicas != nil {
		t.Fatalf("replicated default: %+v %v", m, err)
	}
	if m, err := serviceMode("global", nil, 0); err != nil || m.Global == nil {
		t.Fatalf("global: %+v %v", m, err)
	}
	if _, err := serviceMode("global", &three, 0); err == nil || !strings.Contains(err.Error(), "replicas can only be used with replicated") {
		t.Fatalf("global with replicas: %v", err)
	}
	if _, err := serviceMode("global", nil, 2); err == nil {
		t.Fatal("global with max per node accepted")
	}
	if _, err := serviceMode("sometimes", nil, 0); err == nil {
		t.Fatal("bad mode accepted")
	}
}

func TestMergeEnv(t *testing.T) {
	got := mergeEnv([]string{"A=1", "B=2"}, []string{"B=3", "C=4", "A=1"})
	if want := []string{"A=1", "B=3", "C=4"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v want %v", got, want)
	}
}

func TestServiceRowColumns(t *testing.T) {
	three, two := uint64(3), uint64(2)
	rep := swarm.Service{ID: "abcdefabcdef0123456789", Spec: swarm.ServiceSpec{
		Annotations:  swarm.Annotations{Name: "web"},
		Mode:         swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &three}},
		TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "busybox:latest@sha256:0123"}},
	}, ServiceStatus: &swarm.ServiceStatus{RunningTasks: 2, DesiredTasks: 3}}
	rep.Endpoint.Ports = []swarm.PortConfig{
		{Protocol: "tcp", TargetPort: 81, PublishedPort: 8081, PublishMode: "ingress"},
		{Protocol: "tcp", TargetPort: 80, PublishedPort: 8080, PublishMode: "ingress"},
		{Protocol: "udp", TargetPort: 53, PublishedPort: 53, PublishMode: "ingress"},
		{Protocol: "tcp", TargetPort: 90, PublishedPort: 9090, PublishMode: "host"},
	}
	r := serviceRow{rep}
	if r.ID() != "abcdefabcdef" || r.Mode() != "replicated" || r.Replicas() != "2/3" || r.Image() != "busybox:latest" {
		t.Errorf("row: %q %q %q %q", r.ID(), r.Mode(), r.Replicas(), r.Image())
	}
	if got := r.Ports(); got != "*:8080-8081->80-81/tcp, *:53->53/udp" {
		t.Errorf("ports %q", got)
	}
	glob := swarm.Service{Spec: swarm.ServiceSpec{Mode: swarm.ServiceMode{Global: &swarm.GlobalService{}}},
		ServiceStatus: &swarm.ServiceStatus{RunningTasks: 2, DesiredTasks: 2}}
	if g := (serviceRow{glob}); g.Mode() != "global" || g.Replicas() != "2/2" {
		t.Errorf("global %q %q", g.Mode(), g.Replicas())
	}
	capped := rep
	capped.Spec.TaskTemplate.Placement = &swarm.Placement{MaxReplicas: two}
	if got := (serviceRow{capped}).Replicas(); got != "2/3 (max 2 per node)" {
		t.Errorf("capped %q", got)
	}
	if got := (serviceRow{swarm.Service{Spec: rep.Spec}}).Replicas(); got != "0/0" {
		t.Errorf("no status %q", got)
	}
}

func TestTaskNamesAndStates(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	mk := func(id string, slot int, node string, created time.Duration, st swarm.TaskState) swarm.Task {
		return swarm.Task{ID: id, ServiceID: "S", Slot: slot, NodeID: node, DesiredState: swarm.TaskStateRunning,
			Meta:   swarm.Meta{CreatedAt: now.Add(-created)},
			Status: swarm.TaskStatus{State: st, Timestamp: now.Add(-5 * time.Second)}}
	}
	tasks := []swarm.Task{
		mk("t10", 10, "n1", time.Minute, swarm.TaskStateRunning),
		mk("t2old", 2, "n1", 2*time.Minute, swarm.TaskStateFailed),
		mk("t2", 2, "n2", time.Minute, swarm.TaskStatePending),
		mk("t1", 1, "n1", time.Minute, swarm.TaskStateRunning),
	}
	tasks[1].Status.Err = "task: non-zero exit (1): a long error message that is cut"
	rows := taskRows(tasks, map[string]string{"S": "web"}, map[string]string{"n1": "host1"}, true, true, now)
	var names []string
	for _, r := range rows {
		names = append(names, r.Name())
	}
	if want := []string{"web.1", "web.2", ` \_ web.2`, "web.10"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("names %q want %q", names, want)
	}
	if rows[0].Node() != "host1" || rows[1].Node() != "n2" {
		t.Errorf("nodes %q %q", rows[0].Node(), rows[1].Node())
	}
	if got := rows[0].CurrentState(); got != "Running 5 seconds ago" {
		t.Errorf("current state %q", got)
	}
	if got := rows[1].CurrentState(); got != "Pending 5 seconds ago" {
		t.Errorf("current state %q", got)
	}
	if got := rows[0].DesiredState(); got != "Running" {
		t.Errorf("desired %q", got)
	}
	if got := rows[2].Error(); got != `"task: non-zero exit (1): a lo…"` {
		t.Errorf("error %q", got)
	}
	if got := taskName("web", swarm.Task{NodeID: "nodeabc"}); got != "web.nodeabc" {
		t.Errorf("global task name %q", got)
	}
	flat := taskRows(tasks, map[string]string{"S": "web"}, nil, false, true, now)
	if flat[2].Name() != "web.2" {
		t.Errorf("non-table history row %q", flat[2].Name())
	}
}

func TestNodeRowColumns(t *testing.T) {
	n := swarm.Node{ID: "n1", Description: swarm.NodeDescription{Hostname: "h1", Engine: swarm.EngineDescription{EngineVersion: "0.1"}},
		Status: swarm.NodeStatus{State: swarm.NodeStateReady}, Spec: swarm.NodeSpec{Availability: swarm.NodeAvailabilityDrain},
		ManagerStatus: &swarm.ManagerStatus{Leader: true, Reachability: swarm.ReachabilityReachable}}
	r := nodeRow{n: n, selfID: "n1"}
	if !r.Self() || r.Status() != "Ready" || r.Availability() != "Drain" || r.ManagerStatus() != "Leader" || r.EngineVersion() != "0.1" {
		t.Errorf("row %v %q %q %q", r.Self(), r.Status(), r.Availability(), r.ManagerStatus())
	}
	n.ManagerStatus.Leader = false
	n.ManagerStatus.Reachability = swarm.ReachabilityUnreachable
	if got := (nodeRow{n: n}).ManagerStatus(); got != "Unreachable" {
		t.Errorf("unreachable %q", got)
	}
	n.ManagerStatus = nil
	if got := (nodeRow{n: n}).ManagerStatus(); got != "" {
		t.Errorf("worker %q", got)
	}
}

func TestLogLines(t *testing.T) {
	prefix := func(o logOrigin) string {
		return formatLogPrefix("web", 2, o.taskID+"xxxxxxxxxxxxxxx", "host-"+o.nodeID, 2, false, false)
	}
	line := "com.docker.swarm.node.id=N,com.docker.swarm.service.id=S,com.docker.swarm.task.id=T,extra=a%20b hello world\n"
	got, err := rewriteLogLine([]byte(line), false, false, prefix)
	if err != nil || string(got) != "web.2.Txxxxxxxxxxx@host-N     | hello world\n" {
		t.Fatalf("got %q %v", got, err)
	}
	got, err = rewriteLogLine([]byte("2026-01-01T00:00:00Z "+line), true, true, prefix)
	if err != nil || string(got) != "2026-01-01T00:00:00Z web.2.Txxxxxxxxxxx@host-N     | extra=a b hello world\n" {
		t.Fatalf("got %q %v", got, err)
	}
	if _, err := rewriteLogLine([]byte("com.docker.swarm.node.id=N hello\n"), false, false, prefix); err == nil {
		t.Fatal("line without task id accepted")
	}
	if got := formatLogPrefix("web", 10, "abcdefabcdef99", "n", 2, true, false); got != "web.10@n" {
		t.Errorf("no task ids %q", got)
	}
}

func TestParseNodeAddr(t *testing.T) {
	for in, want := range map[string]string{
		"198.18.0.1": "198.18.0.1:2377", "198.18.0.1:4000": "198.18.0.1:4000", ":4000": "0.0.0.0:4000",
		"eth0": "eth0:2377", "[::1]:2377": "[::1]:2377",
	} {
		if got, err := parseNodeAddr(in, defaultListenAddr); err != nil || got != want {
			t.Errorf("%q = %q %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "1.2.3.4:0", "1.2.3.4:x"} {
		if _, err := parseNodeAddr(bad, defaultListenAddr); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestParseServiceNetwork(t *testing.T) {
	for _, c := range []struct {
		in   string
		want swarm.NetworkAttachmentConfig
		bad  bool
	}{
		{in: "app", want: swarm.NetworkAttachmentConfig{Target: "app"}},
		{in: "app,alias=www,alias=w2", want: swarm.NetworkAttachmentConfig{Target: "app", Aliases: []string{"www", "w2"}}},
		{in: "name=app,alias=www", want: swarm.NetworkAttachmentConfig{Target: "app", Aliases: []string{"www"}}},
		{in: "", bad: true},
		{in: "alias=www", bad: true},
		{in: "app,alias=", bad: true},
		{in: "app,driver-opt=x=y", bad: true},
		{in: "app,bogus", bad: true},
	} {
		got, err := parseServiceNetwork(c.in)
		checkParsed(t, c.in, got, err, c.want, c.bad)
	}
}
