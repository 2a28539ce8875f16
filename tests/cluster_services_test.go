package tests

import (
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestClusterServices covers what a service does over its life on a swarm
// of one manager and two workers: logs from every node, an update that
// replaces its tasks, an image missing on one node, restart policy and the
// bounded task history.
func TestClusterServices(t *testing.T) {
	c := newSwarm(t, 1, 2)
	mgr := c.managers[0]

	t.Run("logs from every node", func(t *testing.T) {
		must(t, mgr, "service", "create", "-d", "--name", "talk", "--replicas", "3", "--stop-grace-period", "1s",
			"busybox:latest", "sh", "-c", "echo hello from $(hostname); sleep 3600")
		c.waitPlacement(t, mgr, "talk", 30*time.Second, "3 running, one per node", func(p placement) bool {
			return p.total == 3 && len(p.perNode) == 3
		})
		var out string
		nodes := map[string]bool{}
		ok := pollUntil(15*time.Second, func() bool {
			r := mgr.Daemon.Run("service", "logs", "talk")
			out = r.Stdout
			clear(nodes)
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				// docker's form: talk.1.TASKID@node2    | hello from ...
				name, msg, found := strings.Cut(line, "|")
				if !found || !strings.Contains(msg, "hello from") {
					continue
				}
				if _, node, ok := strings.Cut(strings.TrimSpace(name), "@"); ok {
					nodes[node] = true
				}
			}
			return r.Code == 0 && len(nodes) == 3
		})
		if !ok {
			t.Fatalf("service logs did not show a line from each of the 3 nodes (got %v):\n%s", nodes, out)
		}
		// A worker has no cluster API: the same command is refused there.
		expectFail(t, c.workers[0], []string{"not a swarm manager"}, "service", "logs", "talk")
		must(t, mgr, "service", "rm", "talk")
	})

	t.Run("init, pids limit, capabilities and hosts", func(t *testing.T) {
		// Each was refused before ("not supported"); now applied to the
		// task's container, shown by service inspect, and bad values are
		// refused at create.
		must(t, mgr, "service", "create", "-d", "--name", "opts", "--constraint", "node.role==manager", "--stop-grace-period", "1s",
			"--init", "--limit-pids", "42", "--cap-drop", "NET_RAW", "--add-host", "foo:198.18.9.9", "busybox:latest", "sleep", "3600")
		defer mgr.Daemon.Run("service", "rm", "opts")
		c.waitPlacement(t, mgr, "opts", 30*time.Second, "1 running", func(p placement) bool { return p.total == 1 })
		spec := must(t, mgr, "service", "inspect", "--format",
			"{{.Spec.TaskTemplate.ContainerSpec.Init}} {{.Spec.TaskTemplate.Resources.Limits.Pids}} {{.Spec.TaskTemplate.ContainerSpec.CapabilityDrop}} {{.Spec.TaskTemplate.ContainerSpec.Hosts}}", "opts")
		if got := strings.TrimSpace(spec); got != "true 42 [NET_RAW] [198.18.9.9 foo]" {
			t.Errorf("service inspect: %q", got)
		}
		id := strings.TrimSpace(must(t, mgr, "ps", "-q", "--filter", "label=com.docker.swarm.service.name=opts"))
		if id == "" {
			t.Fatal("no container of opts on the manager")
		}
		out := must(t, mgr, "exec", id, "sh", "-c",
			`tr '\0' ' ' </proc/1/cmdline; echo; cat /sys/fs/cgroup/pids/pids.max; grep foo /etc/hosts; grep CapEff /proc/self/status`)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 4 || !strings.Contains(lines[0], "init") || !strings.Contains(lines[0], "sleep 3600") ||
			lines[1] != "42" || !strings.HasPrefix(lines[2], "198.18.9.9") || !strings.HasSuffix(lines[2], "foo") {
			t.Fatalf("in the task: %q", out)
		}
		eff, err := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(lines[3], "CapEff:")), 16, 64)
		if err != nil || eff&(1<<13) != 0 || eff&1 == 0 { // CAP_NET_RAW dropped, CAP_CHOWN kept
			t.Errorf("capabilities in the task: %q (%v)", lines[3], err)
		}
		for _, bad := range []struct {
			flag, value, want string
		}{
			{"--cap-add", "NOPE", "unknown capability"},
			{"--add-host", "nocolon", "host:ip"},
			{"--limit-pids", "-1", "pids limit"},
		} {
			expectFail(t, mgr, []string{bad.want}, "service", "create", "-d", "--name", "badopts", bad.flag, bad.value, "busybox:latest", "true")
		}
		expectFail(t, mgr, []string{"pids limit of at least"}, "service", "create", "-d", "--name", "badopts", "--init", "--limit-pids", "8", "busybox:latest", "true")
		if r := mgr.Daemon.Run("service", "inspect", "badopts"); r.Code == 0 {
			t.Errorf("a refused service exists: %s", r)
		}
	})
	t.Run("update replaces tasks", func(t *testing.T) {
		must(t, mgr, "service", "create", "-d", "--name", "upd", "--replicas", "2", "--stop-grace-period", "1s",
			"-e", "GEN=1", "busybox:latest", "sleep", "3600")
		before := c.waitPlacement(t, mgr, "upd", 30*time.Second, "2 running", func(p placement) bool { return p.total == 2 })
		must(t, mgr, "service", "update", "-d", "--env-add", "GEN=2", "upd")
		after := c.waitPlacement(t, mgr, "upd", 60*time.Second, "2 running from the new spec", func(p placement) bool {
			if p.total != 2 || len(p.dupes) > 0 {
				return false
			}
			shut, r := taskList(mgr, "upd", "desired-state=shutdown")
			return r.Code == 0 && len(shut) >= 2
		})
		env := must(t, mgr, "service", "inspect", "--format", "{{.Spec.TaskTemplate.ContainerSpec.Env}}", "upd")
		if !strings.Contains(env, "GEN=2") || strings.Contains(env, "GEN=1") {
			t.Fatalf("env after update: %s", env)
		}
		t.Logf("before %s; after %s", before, after)
		// Image, limits and constraints in one update: the tasks are
		// replaced onto the workers, from the new image, with the limit.
		for _, h := range c.Hosts {
			must(t, h, "tag", "busybox:latest", "busybox:v2")
		}
		must(t, mgr, "service", "update", "-d", "--image", "busybox:v2", "--limit-memory", "64m",
			"--constraint-add", "node.role==worker", "upd")
		// Done when the rolling update is: two running tasks, both of the
		// new image, none on the manager.
		var ps string
		if !pollUntil(60*time.Second, func() bool {
			ps = must(t, mgr, "service", "ps", "--filter", "desired-state=running", "--format", "{{.Node}} {{.Image}} {{.CurrentState}}", "upd")
			lines := strings.Split(strings.TrimSpace(ps), "\n")
			if len(lines) != 2 {
				return false
			}
			for _, l := range lines {
				if f := strings.Fields(l); len(f) < 3 || f[0] == mgr.Name || f[1] != "busybox:v2" || f[2] != "Running" {
					return false
				}
			}
			return true
		}) {
			t.Fatalf("update to busybox:v2 on the workers did not finish:\n%s", ps)
		}
		spec := must(t, mgr, "service", "inspect", "--format",
			"{{.Spec.TaskTemplate.ContainerSpec.Image}} {{.Spec.TaskTemplate.Resources.Limits.MemoryBytes}} {{.Spec.TaskTemplate.Placement.Constraints}}", "upd")
		if !strings.HasPrefix(spec, "busybox:v2 67108864 [node.role==worker]") {
			t.Fatalf("spec after update: %s", spec)
		}
		// node ps lists what runs on a node, from any manager.
		onWorkers := 0
		for _, w := range c.workers {
			out := must(t, mgr, "node", "ps", "--filter", "desired-state=running", "--format", "{{.Name}} {{.Image}}", w.Name)
			onWorkers += strings.Count(out, "upd.")
			if strings.Contains(out, "upd.") && !strings.Contains(out, "busybox:v2") {
				t.Fatalf("node ps %s: %q", w.Name, out)
			}
		}
		if onWorkers != 2 {
			t.Fatalf("node ps of the workers shows %d tasks of upd, want 2 (service ps:\n%s)", onWorkers, ps)
		}
		must(t, mgr, "service", "rm", "upd")
	})

	t.Run("image missing on a node", func(t *testing.T) {
		// The image exists under this name on the manager and the first
		// worker only: tasks placed on the second worker fail there and are
		// placed again elsewhere.
		lacking := c.workers[1]
		for _, h := range []string{mgr.Name, c.workers[0].Name} {
			must(t, c.host(t, h), "tag", "busybox:latest", "only2:latest")
		}
		must(t, mgr, "service", "create", "-d", "--name", "img", "--replicas", "3", "--stop-grace-period", "1s",
			"--restart-delay", "500ms", "only2:latest", "sleep", "3600")
		c.waitPlacement(t, mgr, "img", 60*time.Second, "3 running on the nodes with the image", func(p placement) bool {
			return p.total == 3 && p.perNode[lacking.Name] == 0
		})
		out := must(t, mgr, "service", "ps", "--no-trunc", "--format", "{{.Node}}|{{.CurrentState}}|{{.Error}}", "img")
		found := false
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, lacking.Name+"|") && strings.Contains(line, "No such image") {
				found = true
			}
		}
		if !found {
			t.Fatalf("no task on %s failed with the missing image:\n%s", lacking.Name, out)
		}
		if got := serviceReplicas(mgr, "img"); got != "3/3" {
			t.Fatalf("service ls replicas %q, want 3/3", got)
		}
		must(t, mgr, "service", "rm", "img")
	})

	t.Run("restart policy and bounded history", func(t *testing.T) {
		// A task that exits 3 at once is restarted (condition any, the
		// default) into the same slot; the slot keeps at most 5 tasks.
		must(t, mgr, "service", "create", "-d", "--name", "crash", "--replicas", "1",
			"--restart-delay", "200ms", "busybox:latest", "sh", "-c", "exit 3")
		var ts []taskLine
		ok := pollUntil(60*time.Second, func() bool {
			var r = mgr.Daemon.Run("service", "ps", "crash")
			if r.Code != 0 {
				return false
			}
			ts, _ = taskList(mgr, "crash")
			failed := 0
			for _, tk := range ts {
				if strings.HasPrefix(tk.Current, "Failed") {
					failed++
				}
			}
			return failed >= 4
		})
		if !ok {
			t.Fatalf("the failing task was not restarted 4 times: %v", ts)
		}
		// Let several more restarts happen; history must stay bounded.
		time.Sleep(3 * time.Second)
		ts, r := taskList(mgr, "crash")
		if r.Code != 0 {
			t.Fatal(r)
		}
		if len(ts) > 5 {
			t.Fatalf("slot keeps %d tasks, want at most 5: %v", len(ts), ts)
		}
		// swarm update --task-history-limit bounds it tighter, at once.
		must(t, mgr, "swarm", "update", "--task-history-limit", "2")
		if !pollUntil(30*time.Second, func() bool {
			ts, _ = taskList(mgr, "crash")
			return len(ts) > 0 && len(ts) <= 2
		}) {
			t.Fatalf("history limit 2: slot keeps %d tasks: %v", len(ts), ts)
		}
		// --restart-condition none: a task that fails stays failed.
		must(t, mgr, "service", "create", "-d", "--name", "once", "--replicas", "1",
			"--restart-condition", "none", "busybox:latest", "sh", "-c", "exit 3")
		if !pollUntil(30*time.Second, func() bool {
			ts, _ = taskList(mgr, "once")
			return len(ts) == 1 && strings.HasPrefix(ts[0].Current, "Failed")
		}) {
			t.Fatalf("restart-condition none: %v", ts)
		}
		time.Sleep(2 * time.Second)
		if ts, _ = taskList(mgr, "once"); len(ts) != 1 {
			t.Fatalf("restart-condition none restarted the task: %v", ts)
		}
		names, _ := serviceNames(mgr)
		sort.Strings(names)
		must(t, mgr, append([]string{"service", "rm"}, names...)...)
	})
}
