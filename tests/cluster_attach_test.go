package tests

import (
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-project/shoal/tests/harness"
)

// TestClusterAttachable checks `run --network OVERLAY` on an attachable
// overlay: a container on the worker reaches a service's task on the
// manager by the service's name and is reached from it by its own name and
// its alias; a network that is not attachable and one that does not exist
// are refused in one line with nothing made; the docker CLI does the same
// run; addresses come back when containers go (a /29 leaves room for two
// containers, and ten come and go), also for a container that ended while
// its daemon was down (kill -9); a daemon restarted under a running
// container keeps its name answering.
func TestClusterAttachable(t *testing.T) {
	sc := newSwarm(t, 1, 1, "--default-addr-pool", testAddrPool)
	mgr, wrk := sc.Hosts[0], sc.Hosts[1]
	// .1 gateway, then the service's VIP and its task: .4-.6 for containers.
	mgr.Daemon.Must("network", "create", "-d", "overlay", "--attachable", "--subnet", "198.19.240.0/29", "app")
	mgr.Daemon.Must("network", "create", "-d", "overlay", "plain")
	docker := dockerCLI(t, mgr.Daemon)
	if r := docker("network", "inspect", "--format", "{{.Attachable}}", "app"); strings.TrimSpace(r.Stdout) != "true" {
		t.Fatalf("docker network inspect app: %s", r)
	}
	const page = `mkdir -p /www && echo %s > /www/index.html && exec httpd -f -p 80 -h /www`
	mgr.Daemon.Must("service", "create", "--detach", "--name", "web", "--network", "app", "--constraint", "node.role==manager",
		"busybox", "sh", "-c", strings.Replace(page, "%s", "web", 1))
	sc.waitPlacement(t, mgr, "web", 60*time.Second, "web running", func(p placement) bool { return p.total == 1 })
	webCtr := strings.TrimSpace(mgr.Daemon.Must("ps", "-q", "--filter", "label=com.docker.swarm.service.name=web"))
	if webCtr == "" {
		t.Fatal("no container of web on the manager")
	}

	// --network-add and --network-rm replace the tasks with the new set.
	nets := func() string {
		return strings.TrimSpace(mgr.Daemon.Must("service", "inspect", "--format", "{{len .Spec.TaskTemplate.Networks}}", "web"))
	}
	mgr.Daemon.Must("service", "update", "--network-add", "plain", "web")
	if n := nets(); n != "2" {
		t.Fatalf("after --network-add web is on %s networks", n)
	}
	expectFail(t, mgr, []string{"already attached to network plain"}, "service", "update", "--network-add", "plain", "web")
	mgr.Daemon.Must("service", "update", "--network-rm", "plain", "web")
	if n := nets(); n != "1" {
		t.Fatalf("after --network-rm web is on %s networks", n)
	}
	sc.waitPlacement(t, mgr, "web", 60*time.Second, "web running after the network updates", func(p placement) bool { return p.total == 1 })
	webCtr = strings.TrimSpace(mgr.Daemon.Must("ps", "-q", "--filter", "label=com.docker.swarm.service.name=web"))
	if webCtr == "" || strings.Contains(webCtr, "\n") {
		t.Fatalf("containers of web on the manager: %q", webCtr)
	}

	// network inspect --verbose shows the service, its VIP and its task.
	vip := strings.TrimSpace(mgr.Daemon.Must("service", "inspect", "--format", "{{range .Endpoint.VirtualIPs}}{{.Addr}}{{end}}", "web"))
	const verbose = `{{range $k, $v := .Services}}{{$k}} {{$v.VIP}} {{len $v.Tasks}}{{end}}`
	if r := docker("network", "inspect", "--verbose", "--format", verbose, "app"); r.Code != 0 || strings.TrimSpace(r.Stdout) != "web "+strings.Split(vip, "/")[0]+" 1" {
		t.Fatalf("docker network inspect --verbose app: %s (VIP %s)", r, vip)
	}
	if r := docker("network", "inspect", "--format", "{{len .Services}}", "app"); strings.TrimSpace(r.Stdout) != "0" {
		t.Fatalf("docker network inspect app (not verbose) shows services: %s", r)
	}

	// Refused: not attachable, not there. Nothing is left.
	before := strings.Count(wrk.Daemon.Must("ps", "-aq"), "\n")
	expectFail(t, wrk, []string{"network plain not manually attachable"}, "run", "--rm", "--network", "plain", "busybox", "true")
	expectFail(t, wrk, []string{"network nosuch not found"}, "run", "--rm", "--network", "nosuch", "busybox", "true")
	expectFail(t, wrk, []string{"--ip is not supported on swarm networks"}, "run", "--rm", "--network", "app", "--ip", "198.19.240.5", "busybox", "true")
	expectFail(t, wrk, []string{"publishing ports of a container on a swarm network"}, "run", "--rm", "--network", "app", "-p", "8085:80", "busybox", "true")
	if after := strings.Count(wrk.Daemon.Must("ps", "-aq"), "\n"); after != before {
		t.Fatalf("refused runs left containers: %d before, %d after", before, after)
	}

	// A container on the worker, both ways by name.
	wrk.Daemon.Must("run", "-d", "--name", "c1", "--network", "app", "--network-alias", "cli", "busybox", "sh", "-c", strings.Replace(page, "%s", "c1", 1))
	fetch := func(h *harness.Host, ctr, url, want string) {
		t.Helper()
		var last harness.Result
		if !pollUntil(20*time.Second, func() bool {
			last = h.Daemon.Run("exec", ctr, "timeout", "3", "wget", "-qO-", url)
			return last.Code == 0 && strings.TrimSpace(last.Stdout) == want
		}) {
			t.Fatalf("%s in %s on %s: %s (want %q)", url, ctr, h.Name, last, want)
		}
	}
	fetch(wrk, "c1", "http://web/", "web")
	fetch(mgr, webCtr, "http://c1/", "c1")
	fetch(mgr, webCtr, "http://cli/", "c1")
	if r := wrk.Daemon.Run("exec", "c1", "nslookup", "tasks.web", "127.0.0.11"); r.Code != 0 {
		t.Fatalf("tasks.web from c1: %s", r)
	}

	// A network a container is on cannot be removed; once it is gone, it can.
	mgr.Daemon.Must("network", "create", "-d", "overlay", "--attachable", "--subnet", "198.19.240.8/29", "solo")
	wrk.Daemon.Must("run", "-d", "--name", "c2", "--network", "solo", "busybox", "sleep", "600")
	expectFail(t, mgr, []string{"network solo is in use by container"}, "network", "rm", "solo")
	wrk.Daemon.Must("rm", "-f", "c2")
	if !pollUntil(10*time.Second, func() bool { return mgr.Daemon.Run("network", "rm", "solo").Code == 0 }) {
		t.Fatal("network solo cannot be removed after its container went")
	}

	// The docker CLI's run on the worker.
	if r := dockerCLI(t, wrk.Daemon)("run", "--rm", "--network", "app", "busybox", "timeout", "5", "wget", "-qO-", "http://web/"); r.Code != 0 || strings.TrimSpace(r.Stdout) != "web" {
		t.Fatalf("docker run --network app: %s", r)
	}

	// Addresses come back: with c1 on .4, two are free; ten come and go.
	for i := range 10 {
		if r := wrk.Daemon.Run("run", "--rm", "--network", "app", "busybox", "true"); r.Code != 0 {
			t.Fatalf("run %d on the /29: %s", i, r)
		}
	}

	// A daemon killed and restarted under a running c1: its name answers.
	wrk.Daemon.Kill9()
	wrk.Daemon.Restart()
	fetch(mgr, webCtr, "http://c1/", "c1")

	// c1 ends while its daemon is down: its address comes back after the
	// restart (two more fit again), and its name no longer answers.
	pid, err := strconv.Atoi(strings.TrimSpace(wrk.Daemon.Must("inspect", "--format", "{{.State.Pid}}", "c1")))
	if err != nil || pid <= 0 {
		t.Fatalf("pid of c1: %v", err)
	}
	wrk.Daemon.Kill9()
	syscall.Kill(pid, syscall.SIGKILL)
	wrk.Daemon.Restart()
	if !pollUntil(20*time.Second, func() bool {
		return mgr.Daemon.Run("exec", webCtr, "nslookup", "c1", "127.0.0.11").Code != 0
	}) {
		t.Fatal("c1's name still answers after it ended while its daemon was down")
	}
	wrk.Daemon.Must("rm", "c1")
	for i := range 3 {
		wrk.Daemon.Must("run", "-d", "--name", "after"+strconv.Itoa(i), "--network", "app", "busybox", "sleep", "600")
	}
	if r := wrk.Daemon.Run("run", "--rm", "--network", "app", "busybox", "true"); r.Code == 0 {
		t.Fatal("a fourth container got an address on a /29 that has three")
	}
}
