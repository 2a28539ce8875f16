package tests

import (
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/tests/harness"
)

// The destructive cluster cases, each on a small swarm of its own.

var noLeaderText = []string{"does not have a leader"}

// timed runs the CLI on h and reports how long it took.
func runTimed(h *harness.Host, args ...string) (harness.Result, time.Duration) {
	start := time.Now()
	r := h.Daemon.Run(args...)
	return r, time.Since(start)
}

// otherManagers lists c's managers but the given ones.
func (c *swarmCluster) otherManagers(not ...*harness.Host) []*harness.Host {
	var out []*harness.Host
next:
	for _, m := range c.managers {
		for _, n := range not {
			if m == n {
				continue next
			}
		}
		out = append(out, m)
	}
	return out
}

// managerStatus is the MANAGER STATUS of name in ns.
func managerStatus(ns []nodeLine, name string) string {
	n, _ := nodeByName(ns, name)
	return n.ManagerStatus
}

// healthy reports whether ns lists want nodes, all Ready, one Leader and
// every other manager Reachable.
func swarmHealthy(ns []nodeLine, want int, managers ...*harness.Host) bool {
	if len(ns) != want {
		return false
	}
	leaders := 0
	for _, n := range ns {
		if n.Status != "Ready" {
			return false
		}
		if n.ManagerStatus == "Leader" {
			leaders++
		}
	}
	for _, m := range managers {
		if s := managerStatus(ns, m.Name); s != "Leader" && s != "Reachable" {
			return false
		}
	}
	return leaders == 1
}

// noDupes fails t if svc has a slot with two running tasks now.
func noDupes(t *testing.T, h *harness.Host, svc string) placement {
	t.Helper()
	p, r := placementOf(h, svc)
	if r.Code == 0 && len(p.dupes) > 0 {
		t.Fatalf("two running tasks in one slot of %s: %v\n%s", svc, p, h.Daemon.Run("service", "ps", svc).Stdout)
	}
	return p
}

// TestClusterPartitionedManager cuts one manager of three off the network,
// first a follower, then the leader: writes through it fail at once with
// Swarm's "no leader" error, the majority goes on, and after the heal the
// manager works again.
func TestClusterPartitionedManager(t *testing.T) {
	c := newSwarm(t, 3, 1)
	must(t, c.managers[0], "service", "create", "-d", "--name", "web", "--replicas", "6", "--stop-grace-period", "1s", "busybox", "sleep", "86400")
	c.waitPlacement(t, c.managers[0], "web", 30*time.Second, "6 running", func(p placement) bool { return p.total == 6 })

	cut := func(t *testing.T, m *harness.Host, replicas string) {
		others := c.otherManagers(m)
		m.Partition()
		cutAt := time.Now()
		t.Cleanup(m.Heal)
		// A write through the cut-off manager fails, and soon: it must not
		// hang on a leader it can no longer reach.
		for _, args := range [][]string{
			{"service", "scale", "-d", "web=9"},
			{"service", "create", "-d", "--name", "minority", "busybox", "sleep", "86400"},
		} {
			r, el := runTimed(m, args...)
			t.Logf("%s on cut-off %s: %v, exit %d: %s", strings.Join(args, " "), m.Name, el.Round(time.Millisecond), r.Code, strings.TrimSpace(r.Stderr))
			if r.Code == 0 {
				t.Errorf("%s through a manager without quorum succeeded: %s", strings.Join(args, " "), r)
			} else if el > 10*time.Second {
				t.Errorf("%s through a cut-off manager took %v to fail", strings.Join(args, " "), el)
			}
		}
		// Once it knows it has no leader, the error says so.
		var last harness.Result
		if !pollUntil(10*time.Second, func() bool {
			last, _ = runTimed(m, "service", "scale", "-d", "web=9")
			return last.Code != 0 && strings.Contains(last.Stderr, noLeaderText[0])
		}) {
			t.Errorf("write through cut-off %s: %s, want %q", m.Name, last, noLeaderText[0])
		}
		// Reads may be answered from its own copy; log what it says.
		r, el := runTimed(m, "service", "ls")
		t.Logf("service ls on cut-off %s (%v): exit %d %s%s", m.Name, el.Round(time.Millisecond), r.Code, r.Stdout, r.Stderr)

		// The majority elects a leader if needed and takes writes.
		maj := others[0]
		if !pollUntil(15*time.Second, func() bool {
			r, _ := runTimed(maj, "service", "scale", "-d", "web="+replicas)
			return r.Code == 0
		}) {
			t.Fatalf("majority %s does not take writes %v after the cut: %s", maj.Name, time.Since(cutAt), maj.Daemon.Run("service", "scale", "-d", "web="+replicas))
		}
		t.Logf("majority takes writes %v after the cut", time.Since(cutAt).Round(time.Millisecond))
		ns := c.waitNodes(t, maj, func(ns []nodeLine) bool {
			leaders := 0
			for _, n := range ns {
				if n.ManagerStatus == "Leader" {
					leaders++
				}
			}
			return leaders == 1 && managerStatus(ns, m.Name) == "Unreachable"
		}, 15*time.Second, "one leader in the majority, "+m.Name+" Unreachable")
		t.Logf("node ls on %s with %s cut off:\n%s", maj.Name, m.Name, nodeTable(ns))
		if names, _ := serviceNames(maj); strings.Join(names, " ") != "web" {
			t.Errorf("services on the majority: %v (a write through the minority went through?)", names)
		}

		m.Heal()
		healed := time.Now()
		if !pollUntil(20*time.Second, func() bool {
			r, el := runTimed(m, "service", "scale", "-d", "web=6")
			if el > 10*time.Second {
				t.Logf("service scale on healed %s took %v: %s", m.Name, el, r)
			}
			return r.Code == 0
		}) {
			t.Fatalf("healed %s does not take writes after 20s: %s", m.Name, m.Daemon.Run("service", "scale", "-d", "web=6"))
		}
		t.Logf("healed %s takes writes %v after the heal", m.Name, time.Since(healed).Round(time.Millisecond))
		c.waitNodes(t, m, func(ns []nodeLine) bool { return swarmHealthy(ns, 4, c.managers...) }, 20*time.Second, "all nodes Ready, managers Reachable after the heal")
		c.waitPlacement(t, m, "web", 30*time.Second, "6 running", func(p placement) bool {
			if len(p.dupes) > 0 {
				t.Fatalf("two running tasks in one slot: %v", p)
			}
			return p.total == 6
		})
	}

	t.Run("follower", func(t *testing.T) {
		l := c.leader(t, c.managers[0])
		cut(t, c.otherManagers(l)[0], "7")
	})
	t.Run("leader", func(t *testing.T) {
		cut(t, c.leader(t, c.managers[0]), "8")
	})
}

// TestClusterManagerLoss kills managers of a 3-manager, 2-worker swarm with
// kill -9 and their link: a quorum guard with one down, the leader, then all
// of them at once.
func TestClusterManagerLoss(t *testing.T) {
	c := newSwarm(t, 3, 2)
	m1 := c.managers[0]
	must(t, m1, "service", "create", "-d", "--name", "web", "--replicas", "10", "--stop-grace-period", "1s", "busybox", "sleep", "86400")
	must(t, m1, "service", "create", "-d", "--name", "g", "--mode", "global", "--stop-grace-period", "1s", "busybox", "sleep", "86400")
	c.waitPlacement(t, m1, "web", 30*time.Second, "10 running", func(p placement) bool { return p.total == 10 })

	t.Run("quorum guard", func(t *testing.T) {
		l := c.leader(t, m1)
		f := c.otherManagers(l)
		down, up := f[0], f[1]
		down.KillAll()
		c.waitNodes(t, l, func(ns []nodeLine) bool { return managerStatus(ns, down.Name) == "Unreachable" }, 15*time.Second, down.Name+" Unreachable")
		want := []string{"quorum"}
		expectFail(t, l, want, "node", "demote", up.Name)
		expectFail(t, up, want, "node", "demote", l.Name)
		expectFail(t, l, want, "node", "rm", "--force", up.Name)
		expectFail(t, l, []string{"demote it first", "--force"}, "node", "rm", down.Name)
		ns, _ := nodeList(l)
		for _, m := range c.managers {
			if managerStatus(ns, m.Name) == "" {
				t.Errorf("%s lost its manager role after refused changes:\n%s", m.Name, nodeTable(ns))
			}
		}
		down.Restart()
		c.waitNodes(t, l, func(ns []nodeLine) bool { return swarmHealthy(ns, 5, c.managers...) }, 20*time.Second, down.Name+" back, all Ready")
	})

	t.Run("leader killed", func(t *testing.T) {
		l := c.leader(t, m1)
		rest := c.otherManagers(l)
		l.KillAll()
		killed := time.Now()
		// node ls through another manager answers, with a new leader.
		var newLeader string
		for _, m := range rest {
			var last harness.Result
			ok := pollUntil(15*time.Second, func() bool {
				r, el := runTimed(m, "node", "ls", "--format", nodeLineFormat)
				last = r
				if el > 5*time.Second {
					t.Logf("node ls on %s took %v after the leader's loss: exit %d %s", m.Name, el.Round(time.Millisecond), r.Code, r.Stderr)
				}
				ns, _ := nodeList(m)
				for _, n := range ns {
					if n.ManagerStatus == "Leader" && n.Hostname != l.Name {
						newLeader = n.Hostname
						return true
					}
				}
				return false
			})
			if !ok {
				t.Fatalf("no new leader seen by %s %v after %s was killed; last node ls: %s", m.Name, time.Since(killed), l.Name, last)
			}
		}
		t.Logf("new leader %s, seen by both managers %v after the old one's loss", newLeader, time.Since(killed).Round(time.Millisecond))
		if el := time.Since(killed); el > 10*time.Second {
			t.Errorf("a new leader took %v to answer, want <= 10s", el)
		}
		via := rest[0]
		if names, _ := serviceNames(via); strings.Join(names, " ") != "g web" {
			t.Errorf("services after the leader's loss: %v", names)
		}
		if !pollUntil(10*time.Second, func() bool { r, _ := runTimed(via, "service", "scale", "-d", "web=12"); return r.Code == 0 }) {
			t.Fatalf("scale after the leader's loss: %s", via.Daemon.Run("service", "scale", "-d", "web=12"))
		}
		c.waitPlacement(t, via, "web", 30*time.Second, "12 running, none on the killed leader", func(p placement) bool {
			if len(p.dupes) > 0 {
				t.Fatalf("two running tasks in one slot: %v", p)
			}
			return p.total == 12 && p.perNode[l.Name] == 0
		})
		t.Logf("12 replicas run, none on %s, %v after its loss", l.Name, time.Since(killed).Round(time.Millisecond))
		c.waitNodes(t, via, func(ns []nodeLine) bool {
			n, _ := nodeByName(ns, l.Name)
			return n.Status == "Down" && n.ManagerStatus == "Unreachable"
		}, 15*time.Second, l.Name+" Down and Unreachable")
		t.Logf("%s Down and Unreachable %v after its loss", l.Name, time.Since(killed).Round(time.Millisecond))

		l.Restart()
		back := time.Now()
		c.waitNodes(t, via, func(ns []nodeLine) bool { return swarmHealthy(ns, 5, c.managers...) }, 20*time.Second, l.Name+" back as a manager")
		t.Logf("%s back, Ready and Reachable, %v after its restart", l.Name, time.Since(back).Round(time.Millisecond))
		if got := c.leader(t, l); got.Name != newLeader {
			t.Errorf("leader after %s's return: %s, want %s to stay leader", l.Name, got.Name, newLeader)
		}
		c.waitPlacement(t, l, "g", 30*time.Second, "global service on every node", func(p placement) bool { return p.total == 5 && len(p.perNode) == 5 })
	})

	t.Run("all managers killed", func(t *testing.T) {
		before, _ := nodeList(m1)
		services := must(t, m1, "service", "ls", "--format", "{{.Name}} {{.Mode}} {{.Replicas}}")
		for _, m := range c.managers {
			m.KillAll()
		}
		for _, m := range c.managers {
			m.Restart()
		}
		restarted := time.Now()
		// Until it settles, sample the tasks: never two running in a slot.
		ns := c.waitNodes(t, m1, func(ns []nodeLine) bool {
			noDupes(t, m1, "web")
			return swarmHealthy(ns, 5, c.managers...)
		}, 30*time.Second, "the swarm back: 5 nodes Ready, 3 managers, one leader")
		t.Logf("swarm back %v after the managers' restart:\n%s", time.Since(restarted).Round(time.Millisecond), nodeTable(ns))
		key := func(ns []nodeLine) []string {
			var out []string
			for _, n := range ns {
				role := "worker"
				if n.ManagerStatus != "" {
					role = "manager"
				}
				out = append(out, n.ID+" "+n.Hostname+" "+role)
			}
			sort.Strings(out)
			return out
		}
		if a, b := strings.Join(key(before), "\n"), strings.Join(key(ns), "\n"); a != b {
			t.Errorf("nodes before:\n%s\nafter:\n%s", a, b)
		}
		if !pollUntil(30*time.Second, func() bool {
			noDupes(t, m1, "web")
			return m1.Daemon.Run("service", "ls", "--format", "{{.Name}} {{.Mode}} {{.Replicas}}").Stdout == services
		}) {
			t.Errorf("services before:\n%s\nafter:\n%s", services, m1.Daemon.Run("service", "ls", "--format", "{{.Name}} {{.Mode}} {{.Replicas}}").Stdout)
		}
		for _, m := range c.managers {
			if names, r := serviceNames(m); strings.Join(names, " ") != "g web" {
				t.Errorf("services on %s: %v %s", m.Name, names, r.Stderr)
			}
		}
		// Still a working swarm: it takes a write and converges.
		must(t, m1, "service", "scale", "-d", "web=9")
		c.waitPlacement(t, c.managers[2], "web", 30*time.Second, "9 running", func(p placement) bool {
			if len(p.dupes) > 0 {
				t.Fatalf("two running tasks in one slot: %v", p)
			}
			return p.total == 9
		})
	})
}
