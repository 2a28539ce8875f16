package tests

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/tests/harness"
)

// TestCluster runs one swarm of five test hosts (node1..node3 managers,
// node4 and node5 workers) through the cluster commands. The sub-tests run
// in order on its state: from "scale" on, service web has 10 replicas
// between sub-tests; "join refused" adds node6, which "leave" takes out
// again; "promote and demote" ends with node1 the only manager.
func TestCluster(t *testing.T) {
	c := newSwarm(t, 3, 2)
	m1, m2, m3 := c.managers[0], c.managers[1], c.managers[2]
	w4, w5 := c.workers[0], c.workers[1]
	// sleep as PID 1 ignores SIGTERM: a short grace period keeps
	// scale-downs and drains quick.
	sleeper := []string{"--stop-grace-period", "1s", "busybox", "sleep", "86400"}

	t.Run("node ls", func(t *testing.T) {
		for _, m := range c.managers {
			ns, r := nodeList(m)
			if r.Code != 0 || len(ns) != 5 {
				t.Fatalf("node ls on %s: %d nodes: %s", m.Name, len(ns), r)
			}
			leaders := 0
			for i, n := range ns {
				want := "node" + strconv.Itoa(i+1) // sorted by hostname
				if n.Hostname != want || n.Status != "Ready" || n.Availability != "Active" {
					t.Errorf("node ls on %s, row %d: %+v, want %s Ready Active", m.Name, i, n, want)
				}
				switch {
				case i < 3 && n.ManagerStatus == "Leader":
					leaders++
				case i < 3 && n.ManagerStatus != "Reachable":
					t.Errorf("node ls on %s: manager %s has MANAGER STATUS %q", m.Name, n.Hostname, n.ManagerStatus)
				case i >= 3 && n.ManagerStatus != "":
					t.Errorf("node ls on %s: worker %s has MANAGER STATUS %q", m.Name, n.Hostname, n.ManagerStatus)
				}
			}
			if leaders != 1 {
				t.Errorf("node ls on %s: %d leaders:\n%s", m.Name, leaders, nodeTable(ns))
			}
		}
		// The default table: docker's columns, "*" on the node asked.
		table := must(t, m2, "node", "ls")
		if !regexp.MustCompile(`(?m)^ID\s+HOSTNAME\s+STATUS\s+AVAILABILITY\s+MANAGER STATUS\s+ENGINE VERSION\s*$`).MatchString(table) ||
			!regexp.MustCompile(`(?m)^[0-9a-z]{25} \*\s+node2\s+Ready\s+Active\s+(Leader|Reachable)\s`).MatchString(table) ||
			!regexp.MustCompile(`(?m)^[0-9a-z]{25}\s+node5\s+Ready\s+Active\s+\S+\s*$`).MatchString(table) {
			t.Errorf("node ls table on node2:\n%s", table)
		}
		if got := strings.Fields(must(t, m1, "node", "ls", "--format", "{{.Hostname}}")); strings.Join(got, " ") != "node1 node2 node3 node4 node5" {
			t.Errorf("node ls --format {{.Hostname}}: %q", got)
		}
		ids := strings.Fields(must(t, m3, "node", "ls", "-q"))
		ns, _ := nodeList(m3)
		if len(ids) != 5 || len(ns) != 5 {
			t.Fatalf("node ls -q: %q", ids)
		}
		for i := range ids {
			if ids[i] != ns[i].ID {
				t.Errorf("node ls -q row %d: %s, want %s", i, ids[i], ns[i].ID)
			}
		}
		// node inspect by hostname and by ID agree.
		if got := strings.TrimSpace(must(t, m1, "node", "inspect", "--format", "{{.ID}} {{.Description.Hostname}}", "node4")); got != ns[3].ID+" node4" {
			t.Errorf("node inspect node4: %q", got)
		}
		for _, w := range c.workers {
			expectFail(t, w, []string{"This node is not a swarm manager"}, "node", "ls")
			expectFail(t, w, []string{"This node is not a swarm manager"}, "service", "ls")
		}
	})

	t.Run("scale", func(t *testing.T) {
		must(t, m1, append([]string{"service", "create", "-d", "--name", "web", "--replicas", "30"}, sleeper...)...)
		even := func(per int) func(placement) bool {
			return func(p placement) bool {
				if len(p.dupes) > 0 {
					t.Fatalf("two running tasks in one slot: %v", p)
				}
				if p.total != 5*per || len(p.perNode) != 5 {
					return false
				}
				for _, n := range p.perNode {
					if n != per {
						return false
					}
				}
				return true
			}
		}
		start := time.Now()
		c.waitPlacement(t, m2, "web", 90*time.Second, "30 replicas, 6 per node", even(6))
		t.Logf("30 replicas running after %v", time.Since(start).Round(time.Millisecond))
		if !pollUntil(10*time.Second, func() bool { return serviceReplicas(m3, "web") == "30/30" }) {
			t.Fatalf("service ls on node3: web %q, want 30/30", serviceReplicas(m3, "web"))
		}
		// Each node's engine runs as many task containers as service ps says.
		p, _ := placementOf(m1, "web")
		for _, h := range c.Hosts {
			running := 0
			for _, st := range taskContainers(h) {
				if strings.HasSuffix(st, " running") {
					running++
				}
			}
			if running != p.perNode[h.Name] {
				t.Errorf("%s runs %d task containers; service ps says %d", h.Name, running, p.perNode[h.Name])
			}
		}

		if out := must(t, m2, "service", "scale", "-d", "web=40"); !strings.Contains(out, "web scaled to 40") {
			t.Errorf("service scale printed %q", out)
		}
		c.waitPlacement(t, m1, "web", 60*time.Second, "40 replicas, 8 per node", even(8))
		must(t, m3, "service", "scale", "-d", "web=10")
		c.waitPlacement(t, m1, "web", 60*time.Second, "10 replicas, 2 per node", even(2))
		if !pollUntil(10*time.Second, func() bool { return serviceReplicas(m1, "web") == "10/10" }) {
			t.Fatalf("service ls: web %q, want 10/10", serviceReplicas(m1, "web"))
		}
		// The scaled-down tasks' containers go from the nodes.
		if !pollUntil(20*time.Second, func() bool {
			n := 0
			for _, h := range c.Hosts {
				n += len(taskContainers(h))
			}
			return n == 10
		}) {
			for _, h := range c.Hosts {
				t.Logf("%s: %d task containers", h.Name, len(taskContainers(h)))
			}
			t.Errorf("task containers of removed replicas remain")
		}
	})

	t.Run("constraints", func(t *testing.T) {
		only := func(want ...string) func(placement) bool {
			return func(p placement) bool {
				for n := range p.perNode {
					ok := false
					for _, w := range want {
						ok = ok || n == w
					}
					if !ok {
						t.Fatalf("task placed on %s, want only %v: %v", n, want, p)
					}
				}
				return true
			}
		}
		must(t, m1, append([]string{"service", "create", "-d", "--name", "pin", "--replicas", "3", "--constraint", "node.hostname==node2"}, sleeper...)...)
		c.waitPlacement(t, m1, "pin", 30*time.Second, "3 replicas on node2", func(p placement) bool {
			return only("node2")(p) && p.perNode["node2"] == 3
		})

		must(t, m1, append([]string{"service", "create", "-d", "--name", "wk", "--replicas", "4", "--constraint", "node.role==worker"}, sleeper...)...)
		c.waitPlacement(t, m2, "wk", 30*time.Second, "4 replicas on the workers, 2 each", func(p placement) bool {
			return only("node4", "node5")(p) && p.perNode["node4"] == 2 && p.perNode["node5"] == 2
		})

		must(t, m2, "node", "update", "--label-add", "zone=east", "node3")
		if got := strings.TrimSpace(must(t, m1, "node", "inspect", "--format", `{{index .Spec.Labels "zone"}}`, "node3")); got != "east" {
			t.Fatalf("label zone on node3: %q", got)
		}
		must(t, m3, append([]string{"service", "create", "-d", "--name", "east", "--replicas", "2", "--constraint", "node.labels.zone==east"}, sleeper...)...)
		c.waitPlacement(t, m3, "east", 30*time.Second, "2 replicas on node3", func(p placement) bool {
			return only("node3")(p) && p.perNode["node3"] == 2
		})
		// No node matches: the task stays pending, with the reason.
		must(t, m1, append([]string{"service", "create", "-d", "--name", "nowhere", "--constraint", "node.labels.zone==west"}, sleeper...)...)
		if !pollUntil(10*time.Second, func() bool {
			r := m1.Daemon.Run("service", "ps", "--no-trunc", "--format", "{{.CurrentState}} {{.Error}}", "nowhere")
			return strings.Contains(r.Stdout, "Pending") || strings.Contains(r.Stdout, "no suitable node")
		}) {
			t.Errorf("unplaceable task: %s", m1.Daemon.Run("service", "ps", "--no-trunc", "nowhere"))
		}

		must(t, m1, "service", "rm", "pin", "wk", "east", "nowhere")
		must(t, m1, "node", "update", "--label-rm", "zone", "node3")
		if names, _ := serviceNames(m2); strings.Join(names, " ") != "web" {
			t.Fatalf("services after rm: %v", names)
		}
		if !pollUntil(20*time.Second, func() bool {
			n := 0
			for _, h := range c.Hosts {
				n += len(taskContainers(h))
			}
			return n == 10
		}) {
			t.Errorf("task containers of removed services remain")
		}
	})

	t.Run("drain", func(t *testing.T) {
		must(t, m1, "node", "update", "--availability", "drain", "node3")
		p := c.waitPlacement(t, m2, "web", 30*time.Second, "no task on drained node3, 10 elsewhere", func(p placement) bool {
			if len(p.dupes) > 0 {
				t.Fatalf("two running tasks in one slot: %v", p)
			}
			return p.perNode["node3"] == 0 && p.total == 10
		})
		t.Logf("after drain: %v", p)
		ns, _ := nodeList(m1)
		if n, _ := nodeByName(ns, "node3"); n.Availability != "Drain" || n.Status != "Ready" {
			t.Errorf("node3 after drain: %+v", n)
		}
		if !pollUntil(20*time.Second, func() bool {
			for _, st := range taskContainers(c.host(t, "node3")) {
				if strings.HasSuffix(st, " running") {
					return false
				}
			}
			return true
		}) {
			t.Errorf("task containers still run on drained node3: %v", taskContainers(c.host(t, "node3")))
		}
		must(t, m1, "node", "update", "--availability", "active", "node3")
		ns, _ = nodeList(m2)
		if n, _ := nodeByName(ns, "node3"); n.Availability != "Active" {
			t.Errorf("node3 after update --availability active: %+v", n)
		}
	})

	t.Run("worker lost and back", func(t *testing.T) {
		// Give node5 tasks to lose: scale up (the new replicas go to the
		// emptiest nodes, node3 first), then kill it.
		must(t, m1, "service", "scale", "-d", "web=15")
		before := c.waitPlacement(t, m1, "web", 30*time.Second, "15 running", func(p placement) bool { return p.total == 15 })
		if before.perNode["node5"] == 0 {
			t.Fatalf("no task on node5 to lose: %v", before)
		}
		lost := map[string]bool{}
		for _, tk := range before.raw {
			if tk.Node == "node5" && tk.running() {
				lost[tk.Name] = true
			}
		}
		killed := time.Now()
		w5.KillAll()
		c.waitPlacement(t, m2, "web", 20*time.Second, "15 running, none on node5", func(p placement) bool {
			if len(p.dupes) > 0 {
				t.Fatalf("two running tasks in one slot: %v", p)
			}
			return p.perNode["node5"] == 0 && p.total == 15
		})
		moved := time.Since(killed)
		ns := c.waitNodes(t, m3, func(ns []nodeLine) bool {
			n, _ := nodeByName(ns, "node5")
			return n.Status == "Down"
		}, 5*time.Second, "node5 Down")
		t.Logf("node5's %d tasks run elsewhere %v after its loss", len(lost), moved.Round(time.Millisecond))
		if moved > 15*time.Second {
			t.Errorf("tasks of the lost node took %v to move, want <= 15s", moved)
		}
		if n, _ := nodeByName(ns, "node4"); n.Status != "Ready" {
			t.Errorf("node4 %+v", n)
		}

		w5.Restart()
		c.waitNodes(t, m1, func(ns []nodeLine) bool {
			n, _ := nodeByName(ns, "node5")
			return n.Status == "Ready"
		}, 20*time.Second, "node5 Ready again")
		// Its old tasks are shut down, not run again beside their
		// replacements, and their containers go.
		deadline := time.Now().Add(20 * time.Second)
		for {
			p, r := placementOf(m2, "web")
			if r.Code != 0 {
				t.Fatalf("service ps: %s", r)
			}
			if len(p.dupes) > 0 || p.total > 15 {
				t.Fatalf("after node5's return: %v", p)
			}
			all, _ := taskList(m2, "web")
			running := map[string]int{}
			for _, tk := range all {
				if tk.running() {
					running[tk.Name]++
				}
			}
			twice := ""
			for name, n := range running {
				if n > 1 {
					twice = name
				}
			}
			conts := taskContainers(w5)
			if twice == "" && p.total == 15 && len(conts) == p.perNode["node5"] {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("20s after node5's return: slot with two tasks in state Running: %q; %v; node5's task containers %v", twice, p, conts)
			}
			time.Sleep(250 * time.Millisecond)
		}
		must(t, m1, "service", "scale", "-d", "web=10")
		c.waitPlacement(t, m1, "web", 30*time.Second, "10 running", func(p placement) bool { return p.total == 10 })
	})

	t.Run("bad input", func(t *testing.T) {
		expectFail(t, m1, []string{"not found", "no such service"}, "service", "scale", "-d", "nosuch=3")
		expectFail(t, m1, []string{"not found", "no such node"}, "node", "inspect", "nosuch")
		expectFail(t, m2, []string{"not found", "no such"}, "node", "update", "--availability", "drain", "nosuch")
		expectFail(t, m1, []string{"invalid", "replicas"}, append([]string{"service", "create", "-d", "--name", "neg", "--replicas", "-1"}, sleeper...)...)
		expectFail(t, m1, []string{"invalid", "replicas"}, "service", "scale", "-d", "web=-1")
		expectFail(t, m1, []string{"constraint"}, append([]string{"service", "create", "-d", "--name", "badc", "--constraint", "node.hostname~~x"}, sleeper...)...)
		expectFail(t, m1, []string{"constraint"}, append([]string{"service", "create", "-d", "--name", "badc", "--constraint", "node.nosuchfield==x"}, sleeper...)...)
		expectFail(t, m1, []string{"availability"}, "node", "update", "--availability", "sleepy", "node4")

		must(t, m2, append([]string{"service", "create", "-d", "--name", "g", "--mode", "global"}, sleeper...)...)
		c.waitPlacement(t, m2, "g", 30*time.Second, "one task per node", func(p placement) bool {
			if len(p.perNode) != 5 {
				return false
			}
			for _, n := range p.perNode {
				if n != 1 {
					return false
				}
			}
			return true
		})
		expectFail(t, m1, []string{"replicated"}, "service", "scale", "-d", "g=3")
		must(t, m1, "service", "rm", "g")

		if names, _ := serviceNames(m3); strings.Join(names, " ") != "web" {
			t.Errorf("services left after bad input: %v", names)
		}
		if !pollUntil(10*time.Second, func() bool { return serviceReplicas(m1, "web") == "10/10" }) {
			t.Errorf("web after bad scales: %q", serviceReplicas(m1, "web"))
		}
	})

	// node6 is a new machine: it tries bad tokens and addresses, joins
	// with the rotated token, and leaves.
	var n6 *harness.Host
	t.Run("join refused", func(t *testing.T) {
		n6 = c.AddHost()
		target := m1.IP + ":2377"
		secret := strings.LastIndex(c.workerToken, "-")
		cases := []struct {
			name, token, addr string
			want              []string
		}{
			{"malformed token", "SWMTKN-1-nonsense", target, []string{"invalid join token"}},
			{"not a token", "hello", target, []string{"invalid join token"}},
			{"wrong secret", c.workerToken[:secret+1] + "0000000000000000000000001", target, []string{"valid join token is necessary"}},
			{"other swarm's CA", "SWMTKN-1-" + strings.Repeat("1", 50) + c.workerToken[secret:], target, []string{"fingerprint"}},
			{"nothing listens", c.workerToken, w4.IP + ":2377", []string{"cannot reach manager"}},
			{"no such host", c.workerToken, strings.TrimSuffix(m1.IP, ".1") + ".99:2377", []string{"cannot reach manager"}},
		}
		for _, tc := range cases {
			start := time.Now()
			r := expectFail(t, n6, tc.want, "swarm", "join", "--token", tc.token, tc.addr)
			if el := time.Since(start); el > 10*time.Second {
				t.Errorf("%s: join took %v to fail", tc.name, el)
			}
			if strings.Count(strings.TrimSpace(r.Stderr), "\n") > 0 {
				t.Errorf("%s: error is not one line: %q", tc.name, r.Stderr)
			}
		}

		// A rotated token stops working; the new one works.
		out := must(t, m2, "swarm", "join-token", "--rotate", "-q", "worker")
		newTok := strings.TrimSpace(out)
		if newTok == c.workerToken || !strings.HasPrefix(newTok, "SWMTKN-1-") {
			t.Fatalf("rotated worker token %q (old %q)", newTok, c.workerToken)
		}
		if got := strings.TrimSpace(must(t, m3, "swarm", "join-token", "-q", "worker")); got != newTok {
			t.Errorf("join-token on node3 after rotation: %q, want %q", got, newTok)
		}
		if got := strings.TrimSpace(must(t, m3, "swarm", "join-token", "-q", "manager")); got != c.managerToken {
			t.Errorf("manager token changed with the worker token's rotation")
		}
		expectFail(t, n6, []string{"valid join token is necessary"}, "swarm", "join", "--token", c.workerToken, target)
		ns, _ := nodeList(m1)
		if len(ns) != 5 {
			t.Fatalf("refused joins left nodes:\n%s", nodeTable(ns))
		}
		expectFail(t, n6, []string{"not a swarm manager", "not part of a swarm"}, "node", "ls")
		c.workerToken = newTok
		c.join(t, n6, newTok, "worker")
		c.waitNodes(t, m1, func(ns []nodeLine) bool {
			n, ok := nodeByName(ns, "node6")
			return ok && n.Status == "Ready" && len(ns) == 6
		}, 15*time.Second, "node6 Ready")
		expectFail(t, n6, []string{"already part of a swarm"}, "swarm", "join", "--token", newTok, target)
	})

	t.Run("leave", func(t *testing.T) {
		if n6 == nil {
			t.Skip("node6 did not join")
		}
		if out := must(t, n6, "swarm", "leave"); !strings.Contains(out, "Node left the swarm.") {
			t.Errorf("swarm leave printed %q", out)
		}
		expectFail(t, n6, []string{"not a swarm manager", "not part of a swarm"}, "node", "ls")
		expectFail(t, n6, []string{"not part of a swarm"}, "swarm", "leave")
		c.waitNodes(t, m1, func(ns []nodeLine) bool {
			n, _ := nodeByName(ns, "node6")
			return n.Status == "Down"
		}, 20*time.Second, "node6 Down after it left")
		must(t, m1, "node", "rm", "node6")
		c.waitNodes(t, m2, func(ns []nodeLine) bool { return len(ns) == 5 }, 5*time.Second, "node6 gone from node ls")

		r := expectFail(t, m2, []string{"--force"}, "swarm", "leave")
		if !strings.Contains(r.Stderr, "manager") {
			t.Errorf("manager leave refusal does not say why: %s", r)
		}
		expectFail(t, m1, []string{"manager", "--force"}, "node", "rm", "node2")
		ns, _ := nodeList(m1)
		if n, _ := nodeByName(ns, "node2"); n.ManagerStatus == "" || n.Status != "Ready" {
			t.Errorf("node2 after refused leave: %+v", n)
		}
	})

	t.Run("promote and demote", func(t *testing.T) {
		if out := must(t, m1, "node", "promote", "node4"); !strings.Contains(out, "node4") {
			t.Errorf("node promote printed %q", out)
		}
		start := time.Now()
		c.waitNodes(t, m2, func(ns []nodeLine) bool {
			n, _ := nodeByName(ns, "node4")
			return n.ManagerStatus == "Reachable" && n.Status == "Ready"
		}, 15*time.Second, "node4 Reachable")
		t.Logf("node4 a reachable manager %v after promote", time.Since(start).Round(time.Millisecond))
		// It answers manager commands itself now.
		if !pollUntil(10*time.Second, func() bool {
			ns, r := nodeList(w4)
			return r.Code == 0 && len(ns) == 5
		}) {
			t.Errorf("node ls on promoted node4: %s", w4.Daemon.Run("node", "ls"))
		}
		if !pollUntil(10*time.Second, func() bool { return serviceReplicas(w4, "web") == "10/10" }) {
			t.Errorf("service ls on node4: web %q", serviceReplicas(w4, "web"))
		}

		must(t, m3, "node", "demote", "node4")
		c.waitNodes(t, m1, func(ns []nodeLine) bool {
			n, _ := nodeByName(ns, "node4")
			return n.ManagerStatus == "" && n.Status == "Ready"
		}, 15*time.Second, "node4 a worker again")
		if !pollUntil(15*time.Second, func() bool {
			return strings.Contains(w4.Daemon.Run("node", "ls").Stderr, "This node is not a swarm manager")
		}) {
			t.Errorf("node ls on demoted node4: %s", w4.Daemon.Run("node", "ls"))
		}
		// The raft group is the three managers again: all reachable, one leader.
		c.waitNodes(t, m1, func(ns []nodeLine) bool {
			leaders, reach := 0, 0
			for _, n := range ns {
				switch n.ManagerStatus {
				case "Leader":
					leaders++
				case "Reachable":
					reach++
				}
			}
			return leaders == 1 && reach == 2 && len(ns) == 5
		}, 15*time.Second, "3 managers after demote")
		// Demoting the last managers would leave none: refused before that.
		must(t, m1, "node", "demote", "node3")
		c.waitNodes(t, m1, func(ns []nodeLine) bool {
			n, _ := nodeByName(ns, "node3")
			return n.ManagerStatus == ""
		}, 15*time.Second, "node3 a worker")
		must(t, m1, "node", "demote", "node2")
		c.waitNodes(t, m1, func(ns []nodeLine) bool {
			n, _ := nodeByName(ns, "node2")
			return n.ManagerStatus == ""
		}, 15*time.Second, "node2 a worker")
		expectFail(t, m1, []string{"last manager"}, "node", "demote", "node1")
		// And the swarm still works with one manager.
		must(t, m1, "service", "scale", "-d", "web=12")
		c.waitPlacement(t, m1, "web", 30*time.Second, "12 running", func(p placement) bool { return p.total == 12 && len(p.dupes) == 0 })
	})
}
