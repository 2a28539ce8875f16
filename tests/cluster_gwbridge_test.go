package tests

import (
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-project/shoal/tests/harness"
)

// TestClusterGWBridge checks the way out of the cluster for tasks on overlay
// networks, the node's NAT bridge (shoal_gwbridge, Swarm's
// docker_gwbridge). The outside is a small HTTP server of this test on the
// worker's underlay address. A task on the manager on a plain overlay
// network reaches it, masqueraded to the manager's underlay address, through
// eth1 on the bridge, while the overlay subnet stays on eth0 (it still
// fetches from a web task on the worker over the overlay); a task on an
// --internal overlay network has no second leg, no default route, and
// cannot reach the server. After kill -9 and a restart of the manager's
// daemon the task still gets out and no leg is left over; a removed task's
// leg goes; a worker that leaves the swarm keeps no bridge, rules or legs.
func TestClusterGWBridge(t *testing.T) {
	sc := newSwarm(t, 1, 1, "--default-addr-pool", testAddrPool)
	mgr, wrk := sc.Hosts[0], sc.Hosts[1]

	// The outside: it records who connects.
	ln, err := wrk.Listen("tcp", wrk.IP+":0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var sources []string
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		mu.Lock()
		sources = append(sources, host)
		mu.Unlock()
		fmt.Fprintln(w, "outside")
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	outside := "http://" + ln.Addr().String() + "/"

	const appNet, sealedNet = "198.19.253.0/24", "198.19.254.0/24"
	mgr.Daemon.Must("network", "create", "-d", "overlay", "--subnet", appNet, "app")
	mgr.Daemon.Must("network", "create", "-d", "overlay", "--internal", "--subnet", sealedNet, "sealed")
	mgr.Daemon.Must("service", "create", "--detach", "--name", "web", "--network", "app",
		"--constraint", "node.role==worker", "busybox",
		"sh", "-c", "mkdir -p /www && echo web > /www/index.html && exec httpd -f -p 80 -h /www")
	mgr.Daemon.Must("service", "create", "--detach", "--name", "out", "--network", "app",
		"--constraint", "node.role==manager", "busybox", "sleep", "600")
	mgr.Daemon.Must("service", "create", "--detach", "--name", "in", "--network", "sealed",
		"--constraint", "node.role==manager", "busybox", "sleep", "600")
	for _, s := range []string{"web", "out", "in"} {
		sc.waitPlacement(t, mgr, s, 60*time.Second, s+" running", func(p placement) bool { return p.total == 1 })
	}
	docker := dockerCLI(t, mgr.Daemon)
	web := overlayTasks(t, mgr, docker, "web", appNet)
	out, outTask := serviceContainer(t, mgr, "out")
	in, _ := serviceContainer(t, mgr, "in")

	fetch := func(ctr, url string) harness.Result {
		return mgr.Daemon.Run("exec", ctr, "timeout", "5", "wget", "-q", "-O", "-", url)
	}
	var last harness.Result
	if !pollUntil(20*time.Second, func() bool { last = fetch(out, outside); return last.Code == 0 }) {
		t.Fatalf("task on app cannot reach the outside %s: %s\nits routes: %s", outside, last, mgr.Daemon.Run("exec", out, "ip", "route"))
	}
	mu.Lock()
	seen := append([]string(nil), sources...)
	mu.Unlock()
	if len(seen) == 0 || seen[len(seen)-1] != mgr.IP {
		t.Fatalf("the outside saw %v, want the manager's underlay address %s (masquerade)", seen, mgr.IP)
	}
	routes := mgr.Daemon.Run("exec", out, "ip", "route").Stdout
	if !strings.Contains(routes, "default via 198.19.251.1 dev eth1") || !strings.Contains(routes, "198.19.253.0/24 dev eth0") {
		t.Fatalf("routes of the task on app, want the default via the gateway bridge on eth1 and the overlay on eth0:\n%s", routes)
	}
	if r := mgr.Daemon.Run("exec", out, "ip", "route", "get", web[0].addr); !strings.Contains(r.Stdout, "dev eth0") {
		t.Fatalf("the web task %s is not routed over the overlay: %s", web[0].addr, r)
	}
	if !pollUntil(20*time.Second, func() bool { last = fetch(out, "http://"+web[0].addr+"/"); return last.Code == 0 }) {
		t.Fatalf("task on app cannot fetch from web %s over the overlay: %s", web[0].addr, last)
	}

	// Internal only: no leg, no default route, no way out.
	if r := mgr.Daemon.Run("exec", in, "ip", "route"); r.Code != 0 || strings.Contains(r.Stdout, "default") {
		t.Fatalf("task on an internal network has a default route: %s", r)
	}
	if r := mgr.Daemon.Run("exec", in, "ip", "link", "show", "eth1"); r.Code == 0 {
		t.Fatalf("task on an internal network has a second leg: %s", r)
	}
	if r := fetch(in, outside); r.Code == 0 {
		t.Fatalf("task on an internal network reached the outside: %s", r)
	}
	if n := gwLegs(t, mgr); n != 1 {
		t.Fatalf("%d legs on the manager's gateway bridge, want 1 (the task on app)", n)
	}

	// kill -9 and restart: the task keeps its way out, nothing doubles.
	mgr.Daemon.Kill9()
	mgr.Daemon.Restart()
	if !pollUntil(30*time.Second, func() bool { last = fetch(out, outside); return last.Code == 0 }) {
		t.Fatalf("after kill -9 and restart the task cannot reach the outside: %s", last)
	}
	sc.waitPlacement(t, mgr, "out", 30*time.Second, "out running after the restart", func(p placement) bool { return p.total == 1 })
	if n := gwLegs(t, mgr); n != 1 {
		t.Fatalf("%d legs on the manager's gateway bridge after the restart, want 1", n)
	}

	// A leg lost while the daemon was down (as if it died between
	// recording the leg and making it) is made again when the restarted
	// daemon adopts the task, also in a namespace routed out through the
	// overlay gateway as an earlier shoal did.
	mgr.Daemon.Kill9()
	taskNS := filepath.Join(mgr.Daemon.Root, "swarm", "netns", "task-"+outTask)
	for _, args := range [][]string{{"link", "del", "eth1"}, {"route", "add", "default", "via", "198.19.253.1", "dev", "eth0"}} {
		if out, err := exec.Command("nsenter", append([]string{"--net=" + taskNS, "ip"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v in the task's namespace: %v: %s", args, err, out)
		}
	}
	mgr.Daemon.Restart()
	if !pollUntil(30*time.Second, func() bool { last = fetch(out, outside); return last.Code == 0 }) {
		t.Fatalf("a lost leg is not made again after a restart: %s\nits links: %s", last, mgr.Daemon.Run("exec", out, "ip", "link"))
	}
	if n := gwLegs(t, mgr); n != 1 {
		t.Fatalf("%d legs on the manager's gateway bridge after the leg was made again, want 1", n)
	}
	if r := mgr.Daemon.Run("exec", out, "ip", "route"); strings.Count(r.Stdout, "default") != 1 || !strings.Contains(r.Stdout, "default via 198.19.251.1 dev eth1") {
		t.Fatalf("routes after the leg was made again, want one default, via eth1: %s", r)
	}

	// A task that leaves takes its leg; the bridge stays, as Docker's.
	mgr.Daemon.Must("service", "rm", "out")
	if !pollUntil(30*time.Second, func() bool { return gwLegs(t, mgr) == 0 }) {
		t.Fatalf("the removed task's leg is still on the manager's gateway bridge:\n%s", mgr.Exec("ip", "-o", "link"))
	}
	if r := mgr.Exec("ip", "link", "show", "shoal_gwbridge"); r.Code != 0 {
		t.Fatalf("the manager's gateway bridge is gone with its last task: %s", r)
	}

	// A node that leaves the swarm keeps nothing of it.
	if n := gwLegs(t, wrk); n != 1 {
		t.Fatalf("%d legs on the worker's gateway bridge, want 1 (web)", n)
	}
	wrk.Daemon.Must("swarm", "leave")
	if r := wrk.Exec("ip", "link", "show", "shoal_gwbridge"); r.Code == 0 {
		t.Fatalf("the worker's gateway bridge survives swarm leave: %s", r)
	}
	if r := wrk.Exec("nft", "list", "table", "ip", "shoal-shoal_gwbridge"); r.Code == 0 {
		t.Fatalf("the worker's gateway bridge's nftables table survives swarm leave:\n%s", r.Stdout)
	}
	for _, line := range strings.Split(wrk.Exec("ip", "-o", "link", "show", "type", "veth").Stdout, "\n") {
		if f := strings.Fields(line); len(f) > 1 && !strings.HasPrefix(f[1], "eth0@") { // eth0 is the host's own
			t.Fatalf("veth left on the worker after swarm leave: %s", line)
		}
	}
}

// serviceContainer is the container and task ID of svc's one running task
// on h.
func serviceContainer(t *testing.T, h *harness.Host, svc string) (name, taskID string) {
	t.Helper()
	if !pollUntil(20*time.Second, func() bool {
		ids := strings.Fields(h.Daemon.Run("service", "ps", "-q", "--no-trunc", "--filter", "desired-state=running", svc).Stdout)
		ctrs := taskContainers(h)
		for _, id := range ids {
			if f := strings.Fields(ctrs[id]); len(f) == 2 && f[1] == "running" {
				name, taskID = f[0], id
				return true
			}
		}
		return false
	}) {
		t.Fatalf("no running container of %s on %s: %v", svc, h.Name, taskContainers(h))
	}
	return name, taskID
}

// gwLegs counts the task legs (veths) on h's gateway bridge.
func gwLegs(t *testing.T, h *harness.Host) int {
	t.Helper()
	r := h.Exec("ip", "-o", "link", "show", "master", "shoal_gwbridge", "type", "veth")
	if r.Code != 0 {
		return 0 // no bridge: no legs
	}
	n := 0
	for _, line := range strings.Split(r.Stdout, "\n") {
		if strings.TrimSpace(line) != "" {
			n++
		}
	}
	return n
}
