package tests

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/tests/harness"
)

// TestClusterOverlay runs services across nodes on an overlay network: one
// manager and two workers, a web service (busybox httpd naming its
// container) on the network with one task on each worker, created with the
// docker CLI, and a client task on the manager, created with shoal's
// --network, that fetches a page from each web task at its overlay address
// (the address from task inspect; names are TestClusterDiscovery; no wget -T,
// which segfaults in Debian's busybox). Then a worker is
// killed (SIGKILL to everything, its link down): the other nodes withdraw
// its endpoint from their VXLAN forwarding tables. Last, the manager's
// daemon restarts and its client task still reaches the other web task,
// and the other worker leaves the swarm, its overlay taken down.
func TestClusterOverlay(t *testing.T) {
	sc, mgr := overlaySwarm(t)
	c := sc.Cluster

	const subnet = "198.19.253.0/24"
	docker := dockerCLI(t, mgr.Daemon)
	if r := docker("network", "create", "-d", "overlay", "--subnet", subnet, "app"); r.Code != 0 {
		t.Fatalf("network create: %s", r)
	}
	r := docker("network", "inspect", "--format", `{{index .Options "com.docker.network.driver.overlay.vxlanid_list"}}`, "app")
	vni := strings.TrimSpace(r.Stdout)
	if r.Code != 0 || vni == "" {
		t.Fatalf("network inspect: %s", r)
	}
	if r := docker("service", "create", "--detach", "--name", "web", "--network", "app", "--replicas", "2",
		"--replicas-max-per-node", "1", "--constraint", "node.role==worker", "busybox",
		"sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www"); r.Code != 0 {
		t.Fatalf("docker service create web: %s", r)
	}
	mgr.Daemon.Must("service", "create", "--detach", "--name", "client", "--network", "app",
		"--constraint", "node.role==manager", "busybox", "sleep", "600")
	sc.waitPlacement(t, mgr, "web", 60*time.Second, "web on both workers", func(p placement) bool {
		return p.total == 2 && len(p.perNode) == 2
	})
	sc.waitPlacement(t, mgr, "client", 30*time.Second, "client running", func(p placement) bool { return p.total == 1 })

	web := overlayTasks(t, mgr, docker, "web", subnet)
	if len(web) != 2 {
		t.Fatalf("web tasks: %v", web)
	}
	client := runningTaskContainer(t, mgr)

	// Each web task answers the client across nodes with its own page.
	pages := map[string]bool{}
	for _, w := range web {
		var last harness.Result
		if !pollUntil(20*time.Second, func() bool {
			last = mgr.Daemon.Run("exec", client, "timeout", "3", "wget", "-q", "-O", "-", "http://"+w.addr+"/")
			return last.Code == 0 && strings.TrimSpace(last.Stdout) != ""
		}) {
			t.Fatalf("client on %s cannot fetch from web task %s on node %s: %s\nclient's interfaces: %s", mgr.Name, w.addr, w.node, last,
				mgr.Daemon.Run("exec", client, "ip", "addr"))
		}
		pages[strings.TrimSpace(last.Stdout)] = true
	}
	if len(pages) != 2 {
		t.Fatalf("both web tasks answered the same page: %v", pages)
	}

	// Kill the worker of the first web task: the manager and the other
	// worker drop its endpoint from their forwarding tables.
	nodeIDs := map[string]*harness.Host{}
	for _, h := range c.Hosts {
		r := dockerCLI(t, h.Daemon)("info", "--format", "{{.Swarm.NodeID}}")
		if r.Code != 0 {
			t.Fatalf("docker info on %s: %s", h.Name, r)
		}
		nodeIDs[strings.TrimSpace(r.Stdout)] = h
	}
	dead := nodeIDs[web[0].node]
	if dead == nil || dead == mgr {
		t.Fatalf("web task node %s is not a worker of this test", web[0].node)
	}
	mac := overlayMAC(t, web[0].addr)
	var others []*harness.Host
	for _, h := range c.Hosts {
		if h != dead {
			others = append(others, h)
		}
	}
	for _, h := range others {
		if fdb := sandboxFDB(h, vni); !strings.Contains(fdb, mac+" dst ") {
			t.Fatalf("%s has no forwarding entry for %s (%s) before the kill:\n%s", h.Name, web[0].addr, mac, fdb)
		}
	}
	dead.KillAll()
	for _, h := range others {
		var fdb string
		if !pollUntil(30*time.Second, func() bool { fdb = sandboxFDB(h, vni); return !strings.Contains(fdb, mac+" dst ") }) {
			t.Fatalf("%s still forwards %s (%s) to the dead node:\n%s", h.Name, web[0].addr, mac, fdb)
		}
	}

	// A stopped manager daemon leaves gossip: the surviving worker withdraws
	// the client's endpoint. Restarted, it adopts its sandbox and the
	// running client task and announces it again, and the client reaches
	// the other web task.
	survivor := others[1]
	if survivor == mgr {
		survivor = others[0]
	}
	cl := overlayTasks(t, mgr, docker, "client", subnet)
	if len(cl) != 1 {
		t.Fatalf("client tasks: %v", cl)
	}
	clientMAC := overlayMAC(t, cl[0].addr)
	mgr.Daemon.Stop()
	var fdb string
	if !pollUntil(20*time.Second, func() bool { fdb = sandboxFDB(survivor, vni); return !strings.Contains(fdb, clientMAC+" dst ") }) {
		t.Fatalf("%s still forwards the client %s after its daemon left:\n%s", survivor.Name, cl[0].addr, fdb)
	}
	mgr.Daemon.Restart()
	var last harness.Result
	if !pollUntil(30*time.Second, func() bool {
		last = mgr.Daemon.Run("exec", client, "timeout", "3", "wget", "-q", "-O", "-", "http://"+web[1].addr+"/")
		return last.Code == 0 && strings.TrimSpace(last.Stdout) != ""
	}) {
		t.Fatalf("after a daemon restart the client cannot fetch from %s: %s", web[1].addr, last)
	}
	if fdb := sandboxFDB(survivor, vni); !strings.Contains(fdb, clientMAC+" dst ") {
		t.Fatalf("%s does not forward the client %s again after the restart:\n%s", survivor.Name, cl[0].addr, fdb)
	}

	// A worker that leaves takes its task namespaces and sandboxes down.
	survivor.Daemon.Must("swarm", "leave")
	swarmDir := filepath.Join(survivor.Daemon.Root, "swarm")
	if b, err := os.ReadFile("/proc/self/mountinfo"); err != nil || strings.Contains(string(b), swarmDir) {
		t.Fatalf("namespaces still mounted under %s after leave (%v)", swarmDir, err)
	}
	if _, err := os.Stat(swarmDir); !os.IsNotExist(err) {
		t.Fatalf("%s after leave: %v", swarmDir, err)
	}
}

// overlayMAC is the MAC the overlay derives from an endpoint's address
// (overlay.MACFromIP), as `bridge fdb` prints it.
func overlayMAC(t *testing.T, addr string) string {
	t.Helper()
	ip := net.ParseIP(addr).To4()
	if ip == nil {
		t.Fatalf("%q is not IPv4", addr)
	}
	return net.HardwareAddr{0x02, 0x42, ip[0], ip[1], ip[2], ip[3]}.String()
}

// sandboxFDB is the forwarding table of the VXLAN device in h's sandbox of
// network vni (empty when there is none). The entries the overlay programs
// name the remote VTEP ("MAC dst IP"); the bridge's learnt ones (without
// dst) age out by themselves.
func sandboxFDB(h *harness.Host, vni string) string {
	ns := filepath.Join(h.Daemon.Root, "swarm", "overlay", "vni-"+vni)
	out, _ := exec.Command("nsenter", "--net="+ns, "bridge", "fdb", "show", "dev", "vxlan0").CombinedOutput()
	return string(out)
}

// overlayTask is a task's node ID and overlay address.
type overlayTask struct{ node, addr string }

// overlayTasks returns the running tasks of svc with their addresses on
// the overlay network of subnet, as task inspect shows them.
func overlayTasks(t *testing.T, mgr *harness.Host, docker func(...string) harness.Result, svc, subnet string) []overlayTask {
	t.Helper()
	_, sn, err := net.ParseCIDR(subnet)
	if err != nil {
		t.Fatal(err)
	}
	var out []overlayTask
	for _, id := range strings.Fields(mgr.Daemon.Must("service", "ps", "-q", "--filter", "desired-state=running", svc)) {
		r := docker("inspect", "--type", "task", "--format",
			`{{.NodeID}} {{range .NetworksAttachments}}{{range .Addresses}}{{.}}{{end}}{{end}}`, id)
		f := strings.Fields(r.Stdout)
		if r.Code != 0 || len(f) != 2 {
			t.Fatalf("task inspect %s: %s", id, r)
		}
		ip, _, err := net.ParseCIDR(f[1])
		if err != nil || !sn.Contains(ip) {
			t.Fatalf("task %s address %q is not in %s", id, f[1], subnet)
		}
		out = append(out, overlayTask{node: f[0], addr: ip.String()})
	}
	return out
}

// runningTaskContainer is the name of the one running task container on h.
func runningTaskContainer(t *testing.T, h *harness.Host) string {
	t.Helper()
	var name string
	for _, v := range taskContainers(h) {
		if f := strings.Fields(v); len(f) == 2 && f[1] == "running" {
			name = f[0]
		}
	}
	if name == "" {
		t.Fatalf("no running task container on %s: %v", h.Name, taskContainers(h))
	}
	return name
}
