package tests

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-project/shoal/tests/harness"
)

// swarmCluster is a swarm on test hosts: node1 ran `swarm init`, the next
// nManagers-1 hosts joined with the manager token, the rest with the worker
// token. Every host has busybox:latest imported.
type swarmCluster struct {
	*harness.Cluster
	managers, workers         []*harness.Host
	workerToken, managerToken string
}

// newSwarm builds a swarm of nManagers managers and nWorkers workers (for
// the tests and the benchmarks); initArgs are added to `swarm init`.
func newSwarm(t testing.TB, nManagers, nWorkers int, initArgs ...string) *swarmCluster {
	t.Helper()
	return newSwarmCPU(t, nManagers, nWorkers, 0, initArgs...)
}

// newSwarmCPU is newSwarm on hosts that share cpus CPUs (0: no limit).
func newSwarmCPU(t testing.TB, nManagers, nWorkers int, cpus float64, initArgs ...string) *swarmCluster {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("end-to-end tests need root")
	}
	c := &swarmCluster{Cluster: harness.NewClusterCPU(t, nManagers+nWorkers, cpus)}
	tar := harness.BusyboxTar(t)
	// Imports run side by side: each is a CLI call to its own daemon.
	var wg sync.WaitGroup
	results := make([]harness.Result, len(c.Hosts))
	for i, h := range c.Hosts {
		wg.Add(1)
		go func() { defer wg.Done(); results[i] = h.Daemon.Run("import", tar, "busybox:latest") }()
	}
	wg.Wait()
	for i, r := range results {
		if r.Code != 0 {
			t.Fatalf("import on %s: %s", c.Hosts[i].Name, r)
		}
	}
	first := c.Hosts[0]
	out := must(t, first, append([]string{"swarm", "init", "--advertise-addr", first.IP}, initArgs...)...)
	if !strings.Contains(out, "Swarm initialized") || !strings.Contains(out, first.IP+":2377") {
		t.Fatalf("swarm init printed:\n%s", out)
	}
	c.workerToken = strings.TrimSpace(must(t, first, "swarm", "join-token", "-q", "worker"))
	c.managerToken = strings.TrimSpace(must(t, first, "swarm", "join-token", "-q", "manager"))
	if !strings.HasPrefix(c.workerToken, "SWMTKN-") || !strings.HasPrefix(c.managerToken, "SWMTKN-") || c.workerToken == c.managerToken {
		t.Fatalf("join tokens: worker %q manager %q", c.workerToken, c.managerToken)
	}
	c.managers = []*harness.Host{first}
	for i, h := range c.Hosts[1:] {
		if i+1 < nManagers {
			c.join(t, h, c.managerToken, "manager")
			c.managers = append(c.managers, h)
		} else {
			c.join(t, h, c.workerToken, "worker")
			c.workers = append(c.workers, h)
		}
	}
	c.waitReady(t, first)
	return c
}

// waitReady waits until `node ls` on h shows every host of c, all Ready.
func (c *swarmCluster) waitReady(t testing.TB, h *harness.Host) {
	t.Helper()
	c.waitNodes(t, h, func(ns []nodeLine) bool {
		if len(ns) != len(c.Hosts) {
			return false
		}
		for _, n := range ns {
			if n.Status != "Ready" {
				return false
			}
		}
		return true
	}, 30*time.Second, "every node Ready")
}

// overlaySwarm is a swarm of three test hosts: node1 the one manager, two
// workers, busybox imported, every node Ready, its address pool testAddrPool.
// It returns the manager too.
func overlaySwarm(t *testing.T) (*swarmCluster, *harness.Host) {
	t.Helper()
	sc := newSwarm(t, 1, 2, "--default-addr-pool", testAddrPool)
	return sc, sc.managers[0]
}

// join joins h to the swarm through node1 and checks the role it says.
func (c *swarmCluster) join(t testing.TB, h *harness.Host, token, role string) {
	t.Helper()
	out := must(t, h, "swarm", "join", "--token", token, c.Hosts[0].IP+":2377")
	if want := "This node joined a swarm as a " + role + "."; strings.TrimSpace(out) != want {
		t.Fatalf("swarm join on %s printed %q, want %q", h.Name, out, want)
	}
}

// host returns the host named name (node1...).
func (c *swarmCluster) host(t testing.TB, name string) *harness.Host {
	for _, h := range c.Hosts {
		if h.Name == name {
			return h
		}
	}
	t.Fatalf("no host %s", name)
	return nil
}

// nodeLine is one line of `node ls`.
type nodeLine struct {
	ID, Hostname, Status, Availability, ManagerStatus string
}

const nodeLineFormat = "{{.ID}}|{{.Hostname}}|{{.Status}}|{{.Availability}}|{{.ManagerStatus}}"

// nodeList runs `node ls` on h and parses it.
func nodeList(h *harness.Host) ([]nodeLine, harness.Result) {
	r := h.Daemon.Run("node", "ls", "--format", nodeLineFormat)
	if r.Code != 0 {
		return nil, r
	}
	var out []nodeLine
	for _, line := range strings.Split(strings.TrimSpace(r.Stdout), "\n") {
		f := strings.Split(line, "|")
		if len(f) != 5 {
			continue
		}
		out = append(out, nodeLine{f[0], f[1], f[2], f[3], f[4]})
	}
	return out, r
}

func nodeByName(ns []nodeLine, name string) (nodeLine, bool) {
	for _, n := range ns {
		if n.Hostname == name {
			return n, true
		}
	}
	return nodeLine{}, false
}

// nodeTable prints node lines in failure messages.
type nodeTable []nodeLine

func (ns nodeTable) String() string {
	var b strings.Builder
	for _, n := range ns {
		fmt.Fprintf(&b, "  %s %s %s %s %q\n", n.ID, n.Hostname, n.Status, n.Availability, n.ManagerStatus)
	}
	return b.String()
}

// waitNodes polls `node ls` on h until cond holds or timeout passes.
func (c *swarmCluster) waitNodes(t testing.TB, h *harness.Host, cond func([]nodeLine) bool, timeout time.Duration, what string) []nodeLine {
	t.Helper()
	var last []nodeLine
	var lastR harness.Result
	deadline := time.Now().Add(timeout)
	for {
		ns, r := nodeList(h)
		if r.Code == 0 {
			last = ns
			if cond(ns) {
				return ns
			}
		}
		lastR = r
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting (node ls on %s) for %s; last:\n%s%s%s", timeout, h.Name, what, nodeTable(last), lastR, swept(h))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// leader returns the host whose MANAGER STATUS is Leader, asking h.
func (c *swarmCluster) leader(t *testing.T, h *harness.Host) *harness.Host {
	t.Helper()
	var name string
	c.waitNodes(t, h, func(ns []nodeLine) bool {
		n := 0
		for _, r := range ns {
			if r.ManagerStatus == "Leader" {
				name = r.Hostname
				n++
			}
		}
		return n == 1
	}, 20*time.Second, "exactly one leader")
	return c.host(t, name)
}

// taskLine is one task of `service ps`.
type taskLine struct {
	Name, Node, Desired, Current string
}

func (t taskLine) running() bool { return strings.HasPrefix(t.Current, "Running") }

// taskList runs `service ps svc` on h (every task, history included).
func taskList(h *harness.Host, svc string, filters ...string) ([]taskLine, harness.Result) {
	args := []string{"service", "ps", "--no-trunc", "--format", "{{.Name}}|{{.Node}}|{{.DesiredState}}|{{.CurrentState}}"}
	for _, f := range filters {
		args = append(args, "--filter", f)
	}
	r := h.Daemon.Run(append(args, svc)...)
	if r.Code != 0 {
		return nil, r
	}
	var out []taskLine
	for _, line := range strings.Split(strings.TrimSpace(r.Stdout), "\n") {
		f := strings.Split(line, "|")
		if len(f) != 4 {
			continue
		}
		// History rows carry " \_ " before the name in tables; trim it in
		// case --format does too.
		out = append(out, taskLine{strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(f[0]), `\_`)), f[1], f[2], f[3]})
	}
	return out, r
}

// placement is where svc's tasks run: those with desired and current state
// running, per node, and the slots with more than one of them.
type placement struct {
	perNode map[string]int
	total   int
	dupes   []string // slot names with more than one running task
	raw     []taskLine
}

func (p placement) String() string {
	keys := make([]string, 0, len(p.perNode))
	for k := range p.perNode {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "%d running:", p.total)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%d", k, p.perNode[k])
	}
	if len(p.dupes) > 0 {
		fmt.Fprintf(&b, " duplicated slots %v", p.dupes)
	}
	return b.String()
}

// placementOf reads svc's placement through h.
func placementOf(h *harness.Host, svc string) (placement, harness.Result) {
	ts, r := taskList(h, svc, "desired-state=running")
	p := placement{perNode: map[string]int{}, raw: ts}
	if r.Code != 0 {
		return p, r
	}
	slots := map[string]int{}
	for _, t := range ts {
		if !t.running() {
			continue
		}
		p.perNode[t.Node]++
		p.total++
		slots[t.Name]++
	}
	for s, n := range slots {
		if n > 1 {
			p.dupes = append(p.dupes, s)
		}
	}
	sort.Strings(p.dupes)
	return p, r
}

// waitPlacement polls svc's placement through h until cond holds.
func (c *swarmCluster) waitPlacement(t *testing.T, h *harness.Host, svc string, timeout time.Duration, what string, cond func(placement) bool) placement {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last placement
	var lastR harness.Result
	for {
		p, r := placementOf(h, svc)
		lastR = r
		if r.Code == 0 {
			last = p
			if cond(p) {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s of %s; last: %v\n%s%s", timeout, what, svc, last, lastR, swept(h))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// serviceReplicas is the REPLICAS column of `service ls` for svc ("" if absent).
func serviceReplicas(h *harness.Host, svc string) string {
	r := h.Daemon.Run("service", "ls", "--format", "{{.Name}} {{.Replicas}}")
	for _, line := range strings.Split(r.Stdout, "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == svc {
			return f[1]
		}
	}
	return ""
}

// serviceNames lists `service ls` names on h.
func serviceNames(h *harness.Host) ([]string, harness.Result) {
	r := h.Daemon.Run("service", "ls", "--format", "{{.Name}}")
	if r.Code != 0 {
		return nil, r
	}
	names := strings.Fields(r.Stdout)
	sort.Strings(names)
	return names, r
}

// pollUntil calls cond every 250 ms until it holds or timeout passes.
func pollUntil(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// taskContainers lists the task containers on h's engine, running or not:
// task ID -> "name state".
func taskContainers(h *harness.Host) map[string]string {
	r := h.Daemon.Run("ps", "-a", "--no-trunc", "--format", `{{.Names}}|{{.Label "com.docker.swarm.task.id"}}|{{.State}}`)
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(r.Stdout), "\n") {
		f := strings.Split(line, "|")
		if len(f) == 3 && f[1] != "" {
			out[f[1]] = f[0] + " " + f[2]
		}
	}
	return out
}

// expectFail runs args on h and checks that it fails, with a message that
// contains one of want (case-insensitive), and without a panic.
func expectFail(t *testing.T, h *harness.Host, want []string, args ...string) harness.Result {
	t.Helper()
	r := h.Daemon.Run(args...)
	if r.Code == 0 {
		t.Errorf("shoal %s on %s succeeded, want an error: %s", strings.Join(args, " "), h.Name, r)
		return r
	}
	low := strings.ToLower(r.Stderr)
	ok := len(want) == 0
	for _, w := range want {
		if strings.Contains(low, strings.ToLower(w)) {
			ok = true
		}
	}
	if !ok {
		t.Errorf("shoal %s on %s: error does not say %q: %s%s", strings.Join(args, " "), h.Name, want, r, swept(h))
	}
	if strings.Contains(r.Stderr, "panic") || strings.Contains(r.Stderr, "goroutine ") {
		t.Errorf("shoal %s on %s: panic: %s", strings.Join(args, " "), h.Name, r)
	}
	return r
}

// must runs the CLI on h and fails t (not the test that started h's daemon,
// as Daemon.Must would) unless it exits 0; it returns stdout.
func must(t testing.TB, h *harness.Host, args ...string) string {
	t.Helper()
	r := h.Daemon.Run(args...)
	if r.Code != 0 {
		log := h.Daemon.Log()
		if len(log) > 2000 {
			log = log[len(log)-2000:]
		}
		t.Fatalf("shoal %s on %s: %s\ndaemon log tail:\n%s%s", strings.Join(args, " "), h.Name, r, log, swept(h))
	}
	return r.Stdout
}

// swept explains a failure whose cause is outside the test: h's daemon
// directory is gone while the test runs, which is what harness.Sweep in
// another test process (any `go test ./tests/` on this machine) does to
// every test host.
func swept(h *harness.Host) string {
	if _, err := os.Stat(h.Daemon.Root); err != nil {
		return "\nNOTE: " + h.Daemon.Root + " is gone: another test process's harness.Sweep removed this test's hosts"
	}
	return ""
}

// grepLines returns the lines of log that contain any of words, for a
// failure message that shows a daemon's view of one thing only.
func grepLines(log string, words ...string) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		for _, w := range words {
			if strings.Contains(l, w) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}
