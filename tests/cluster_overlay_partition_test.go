package tests

import (
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/tests/harness"
)

// TestClusterWorkerPartitionHeals (issue 7 item 8): a worker cut off from
// the other worker, and from the manager's gossip (so that no member can
// vouch for the other one: the control plane still works), declares it dead
// and withdraws its task's forwarding entry; once the partition ends the
// two find each other again by themselves and the overlay path is back: no
// restart, no new task.
func TestClusterWorkerPartitionHeals(t *testing.T) {
	sc, mgr := overlaySwarm(t)
	const subnet = "198.19.253.0/24"
	docker := dockerCLI(t, mgr.Daemon)
	if r := docker("network", "create", "-d", "overlay", "--subnet", subnet, "app"); r.Code != 0 {
		t.Fatalf("network create: %s", r)
	}
	if r := docker("service", "create", "--detach", "--name", "web", "--network", "app", "--replicas", "2",
		"--replicas-max-per-node", "1", "--constraint", "node.role==worker", "busybox",
		"sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www"); r.Code != 0 {
		t.Fatalf("docker service create web: %s", r)
	}
	sc.waitPlacement(t, mgr, "web", 60*time.Second, "web on both workers", func(p placement) bool {
		return p.total == 2 && len(p.perNode) == 2
	})
	a, b := sc.workers[0], sc.workers[1]
	// b's task's address, and a's task to fetch from it.
	var bAddr string
	for _, task := range overlayTasks(t, mgr, docker, "web", subnet) {
		if id := strings.TrimSpace(dockerCLI(t, b.Daemon)("info", "--format", "{{.Swarm.NodeID}}").Stdout); task.node == id {
			bAddr = task.addr
		}
	}
	if bAddr == "" {
		t.Fatalf("no web task on %s", b.Name)
	}
	fromA := runningTaskContainer(t, a)
	fetch := func() harness.Result {
		return a.Daemon.Run("exec", fromA, "timeout", "3", "wget", "-q", "-O", "-", "http://"+bAddr+"/")
	}
	var last harness.Result
	if !pollUntil(20*time.Second, func() bool { last = fetch(); return last.Code == 0 }) {
		t.Fatalf("before the partition, %s's task cannot fetch from %s: %s", a.Name, bAddr, last)
	}

	cut := func(script string) {
		t.Helper()
		cmd := a.Command("nft", "-f", "-")
		cmd.Stdin = strings.NewReader(script)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nft on %s: %v: %s", a.Name, err, out)
		}
	}
	const table = "shoal_test_pair"
	heal := func() { cut("table inet " + table + " {}\ndelete table inet " + table + "\n") }
	t.Cleanup(heal)
	cut("table inet " + table + " {\n" +
		"\tchain in { type filter hook input priority -300; ip saddr " + b.IP + " drop; ip saddr " + mgr.IP + " th sport 7946 drop; th dport 7946 ip saddr " + mgr.IP + " drop; }\n" +
		"\tchain out { type filter hook output priority -300; ip daddr " + b.IP + " drop; ip daddr " + mgr.IP + " th dport 7946 drop; th sport 7946 ip daddr " + mgr.IP + " drop; }\n}\n")
	if r := fetch(); r.Code == 0 {
		t.Fatalf("the partition between %s and %s does not cut the overlay: %s", a.Name, b.Name, r)
	}
	vni := strings.TrimSpace(docker("network", "inspect", "--format", `{{index .Options "com.docker.network.driver.overlay.vxlanid_list"}}`, "app").Stdout)
	mac := overlayMAC(t, bAddr)
	var fdb string
	if !pollUntil(45*time.Second, func() bool { fdb = sandboxFDB(a, vni); return !strings.Contains(fdb, mac+" dst ") }) {
		t.Fatalf("%s still forwards %s to %s after 45 s of partition:\n%s", a.Name, bAddr, b.Name, fdb)
	}
	heal()
	start := time.Now()
	if !pollUntil(60*time.Second, func() bool { last = fetch(); return last.Code == 0 }) {
		t.Fatalf("60 s after the partition ended, %s's task still cannot fetch from %s: %s", a.Name, bAddr, last)
	}
	t.Logf("the overlay path came back %.1f s after the partition ended", time.Since(start).Seconds())
	if fdb := sandboxFDB(a, vni); !strings.Contains(fdb, mac+" dst ") {
		t.Fatalf("%s reaches %s again but has no forwarding entry for it:\n%s", a.Name, bAddr, fdb)
	}
	if r := docker("service", "ps", "-q", "web"); r.Code != 0 || len(strings.Fields(r.Stdout)) != 2 {
		t.Fatalf("the partition made the service start tasks again: %s", r)
	}
}
