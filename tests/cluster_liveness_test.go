package tests

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-project/shoal/tests/harness"
)

// TestClusterBusyNodeStaysReady is issue 9 item 10 in small: a manager and
// a worker whose hosts together get a fifth of a CPU (a CFS quota on the
// test hosts), and a service of 40 replicas on the worker, created at once.
// The worker is busy starting containers for a long while, but alive: it
// must never be declared down, and no task may be started twice for a slot
// (rescheduled off a live node). Then its daemon is stopped (SIGSTOP) for
// 2 s, less than the grace, while it runs them: still no Down, no task
// moved. SHOAL_LIVENESS_REPLICAS and SHOAL_LIVENESS_CPUS change the load.
func TestClusterBusyNodeStaysReady(t *testing.T) {
	replicas, cpus := 40, 0.2
	if v := os.Getenv("SHOAL_LIVENESS_REPLICAS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("SHOAL_LIVENESS_REPLICAS=%q: want a positive count", v)
		}
		replicas = n
	}
	if v := os.Getenv("SHOAL_LIVENESS_CPUS"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			t.Fatalf("SHOAL_LIVENESS_CPUS=%q: want a positive number", v)
		}
		cpus = f
	}
	s := newSwarmCPU(t, 1, 1, cpus)
	m, w := s.managers[0], s.workers[0]
	benchRemoveService(t, s, func() *harness.Host { return m }, "busy")

	logFrom := len(m.Daemon.Log())
	downs := map[string]int{}
	state := map[string]string{}
	watchNodes := func() {
		ns, r := nodeList(m)
		if r.Code != 0 {
			return
		}
		for _, n := range ns {
			if n.Status == "Down" && state[n.Hostname] != "Down" {
				downs[n.Hostname]++
			}
			state[n.Hostname] = n.Status
		}
	}
	start := time.Now()
	must(t, m, "service", "create", "-d", "--name", "busy", "--replicas", strconv.Itoa(replicas),
		"--constraint", "node.role==worker", "busybox:latest", "sleep", "3600")
	want := strconv.Itoa(replicas) + "/" + strconv.Itoa(replicas)
	converged := pollUntil(300*time.Second, func() bool {
		watchNodes()
		return serviceReplicas(m, "busy") == want
	})
	took := time.Since(start)
	t.Logf("%d replicas on %s (hosts on %.2f CPUs): %s after %v, load %s", replicas, w.Name, cpus, serviceReplicas(m, "busy"), took.Round(time.Millisecond), benchLoadavg())
	if !converged {
		t.Fatalf("service busy not converged in 300 s: %s\n%s\nwarnings and errors:\n%s", serviceReplicas(m, "busy"), benchTaskSummary(m, "busy"), benchLogDigest(s.Hosts))
	}

	// Stopped for less than the grace (3 heartbeat periods) while it runs
	// its tasks: a node that is alive but does not get the CPU.
	pid := w.Daemon.PID()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	pollUntil(5*time.Second, func() bool { watchNodes(); return false })

	downs["(manager log)"] = strings.Count(m.Daemon.Log()[logFrom:], "dispatcher: node down")
	tasks := len(strings.Fields(must(t, m, "service", "ps", "-q", "busy")))
	t.Logf("nodes declared down: %v; tasks of busy: %d for %d slots", downs, tasks, replicas)
	for n, c := range downs {
		if c != 0 {
			t.Errorf("%s: declared down %d times, but every node was alive", n, c)
		}
	}
	if tasks != replicas {
		t.Errorf("%d tasks for %d slots: tasks were started twice (rescheduled off a live node)\n%s", tasks, replicas, benchTaskSummary(m, "busy"))
	}
	if r := serviceReplicas(m, "busy"); r != want {
		t.Errorf("after the stop: %s running, want %s", r, want)
	}
}
