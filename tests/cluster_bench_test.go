package tests

// Benchmarks of the cluster on test hosts, run by `make bench` (bench/run.sh)
// as `go test -run '^$' -bench Cluster -benchtime 1x ./tests/`, never as timed
// tests: they print our figure beside a reference and never fail on speed.
// They fail only when something they measure does not work, with the command,
// its output and the daemons' log tails.
//
// Each benchmark runs its scenario once, whatever b.N (with -benchtime 1x,
// b.N is 1), and reports its figure with b.ReportMetric; ns/op is the same
// measured interval. The Docker Swarm figures printed beside ours are the
// reference numbers of DESIGN.md (a 2-core VM of this kind), not measured in
// this run: the measured Swarm anchor (one node) is bench/swarm.sh.
//
// Knobs: BENCH_CLUSTER_REPLICAS (1000) for BenchmarkClusterConverge.

import (
	"fmt"
	"os"
	goruntime "runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-project/shoal/tests/harness"
)

// BenchmarkClusterConverge1000 is benchmark (b) of the cluster issue: 10 test
// hosts, 1 manager + 9 workers (every node, the manager too, takes tasks, as
// in Swarm), busybox imported on each; `service create -d --replicas 1000`
// and the time until the service's replicas (`service ls`'s 1000/1000, read
// from the manager's API by this process: benchAPI) are all running, polled
// every 200 ms, bounded at 300 s. Target under 15 s.
//
// Memory: every replica is a shim (a Go process, ~4 MB private) plus the
// container and its namespaces. The benchmark halves the count until an
// estimate of 8 MiB per replica plus 3 GiB for everyone else fits in
// MemAvailable, says so when it does, and stops (fails) if MemAvailable
// drops under 1 GiB while it waits.
func BenchmarkClusterConverge1000(b *testing.B) { benchConverge(b, 0) }

// BenchmarkClusterConverge1000Slow is the same on a machine a third as fast
// (issue 9 item 10): the ten hosts together get a CFS quota of two thirds
// of a CPU of this 2-core machine. Every node stays alive throughout, so the
// target is no node declared down and no task started twice per slot.
func BenchmarkClusterConverge1000Slow(b *testing.B) {
	benchConverge(b, float64(goruntime.NumCPU())/3)
}

func benchConverge(b *testing.B, cpus float64) {
	const (
		hosts       = 10
		perReplica  = 8    // MiB, estimate
		reserveMB   = 3072 // MiB left for everyone else
		floorMB     = 1024 // stop waiting below this
		pollEvery   = 200 * time.Millisecond
		boundFast   = 300 * time.Second
		targetSec   = 15.0
		wantDefault = 1000
	)
	bound := boundFast
	if cpus > 0 {
		bound = 3 * boundFast
	}
	want := wantDefault
	if v := os.Getenv("BENCH_CLUSTER_REPLICAS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("BENCH_CLUSTER_REPLICAS=%q: want a positive count", v)
		}
		want = n
	}
	n := want
	avail := benchMemAvailableMB()
	for n > 50 && n*perReplica+reserveMB > avail {
		n /= 2
	}
	if n != want {
		fmt.Printf("cluster replicas reduced: MemAvailable %d MiB does not hold %d replicas (~%d MiB each + %d MiB reserve): measuring %d\n", avail, want, perReplica, reserveMB, n)
	}
	b.StopTimer()
	s := newSwarmCPU(b, 1, hosts-1, cpus)
	m := s.managers[0]
	benchRemoveService(b, s, func() *harness.Host { return m }, "b")

	var low atomic.Int64 // MemAvailable (MiB) when it went under floorMB
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Second):
				if a := benchMemAvailableMB(); a > 0 && a < floorMB {
					low.Store(int64(a))
				}
			}
		}
	}()

	availBefore := benchMemAvailableMB()
	logFrom := len(m.Daemon.Log())
	api := newBenchAPI(m.Daemon)
	defer api.c.CloseIdleConnections()
	args := []string{"service", "create", "-d", "--name", "b", "--replicas", strconv.Itoa(n), "busybox:latest", "sleep", "3600"}
	load0 := benchLoadavg()
	b.ResetTimer()
	b.StartTimer()
	start := time.Now()
	profiled := benchProfileDaemons(s.Hosts, os.Getenv("BENCH_PPROF_DIR"), 12*time.Second)
	m.Daemon.Must(args...)
	createTook := time.Since(start)
	// Every 5 s, beside the measured poll: the last `service ls` figure, the
	// containers the engines run and hold, and the machine's load.
	var lastLS atomic.Value
	lastLS.Store("")
	sampleStop := make(chan struct{})
	sampled := make(chan []string, 1)
	go func() {
		var samples []string
		for {
			select {
			case <-sampleStop:
				sampled <- samples
				return
			case <-time.After(5 * time.Second):
			}
			el := time.Since(start)
			running, all := benchEngineCounts(s.Hosts)
			notReady := "-"
			if states, err := api.nodeStates(); err == nil {
				var nr []string
				for h, st := range states {
					if st != "Ready" {
						nr = append(nr, h+"="+st)
					}
				}
				if len(nr) > 0 {
					sort.Strings(nr)
					notReady = strings.Join(nr, ",")
				}
			}
			samples = append(samples, fmt.Sprintf("  %5.1fs service ls %-9s engines: %4d running of %4d containers; not Ready: %s; load %s",
				el.Seconds(), lastLS.Load(), running, all, notReady, benchLoadavg()))
		}
	}()
	samples := func() string { close(sampleStop); return strings.Join(<-sampled, "\n") }
	var last string // the last poll's "running/desired", or its error
	var lastRunning int
	var took time.Duration
	milestones := map[int]time.Duration{}
	// Down transitions as `node ls` shows them, polled with service ls:
	// this counts for any daemon version, whatever it logs.
	nodeState := map[string]string{}
	polledDowns := 0
	for {
		if states, err := api.nodeStates(); err == nil {
			for h, st := range states {
				if st == "Down" && nodeState[h] != "Down" {
					polledDowns++
				}
				nodeState[h] = st
			}
		}
		r, d, err := api.replicas("b")
		el := time.Since(start)
		last = fmt.Sprintf("%d/%d", r, d)
		if err != nil {
			last = err.Error()
		}
		if err == nil {
			lastLS.Store(last)
			lastRunning = r
			for _, q := range []int{n / 10, n / 4, n / 2, 3 * n / 4, 9 * n / 10} {
				if _, seen := milestones[q]; !seen && r >= q {
					milestones[q] = el
				}
			}
			if r == n && d == n {
				took = el
				break
			}
		}
		if a := low.Load(); a != 0 {
			b.StopTimer()
			b.Fatalf("MemAvailable fell to %d MiB with %d/%d running after %.1f s: this machine cannot hold %d replicas; rerun with BENCH_CLUSTER_REPLICAS=%d\n%s\nprogress:\n%s",
				a, lastRunning, n, el.Seconds(), n, lastRunning/2, benchTaskSummary(m, "b"), samples())
		}
		if el > bound {
			b.StopTimer()
			b.Fatalf("%d replicas not running after %v: last replicas (service ls) on %s: %s\n%s%s\nprogress:\n%s\nwarnings and errors in the daemons' logs:\n%s",
				n, bound, m.Name, last, benchTaskSummary(m, "b"), benchGone(s.Hosts), samples(), benchLogDigest(s.Hosts))
		}
		time.Sleep(pollEvery)
	}
	b.StopTimer()
	if err := profiled(); err != nil {
		b.Logf("profiles: %v", err)
	}
	b.Logf("progress (load before: %s):\n%s", load0, samples())
	b.Logf("service ps b (history included) at %d/%d: %s", n, n, benchTaskSummary(m, "b"))
	b.Logf("warnings and errors in the daemons' logs:\n%s", benchLogDigest(s.Hosts))
	sec := took.Seconds()
	b.ReportMetric(sec, "s-to-"+strconv.Itoa(n)+"-running")
	usedMB := availBefore - benchMemAvailableMB()
	var ms []string
	for _, q := range []int{n / 10, n / 4, n / 2, 3 * n / 4, 9 * n / 10} {
		ms = append(ms, fmt.Sprintf("%d at %.1f s", q, milestones[q].Seconds()))
	}
	b.Logf("service create -d took %v; progress: %s; MemAvailable dropped %d MiB (%.1f MiB per replica)",
		createTook.Round(time.Millisecond), strings.Join(ms, ", "), usedMB, float64(usedMB)/float64(n))
	label := fmt.Sprintf("cluster %d replicas, 10 hosts (1 mgr + 9 workers), to %d/%d", n, n, n)
	if cpus > 0 {
		label = fmt.Sprintf("cluster %d replicas, 10 hosts on %.2f CPUs, to %d/%d", n, cpus, n, n)
	}
	note := fmt.Sprintf("target < %.0f s; reference (DESIGN.md, not measured here): Swarm, 5 hosts, 30 replicas in 4.2 s", targetSec)
	if cpus > 0 {
		note = "a machine a third as fast: the target is the next line's 0 / 0"
	}
	if n != want {
		note = fmt.Sprintf("only %d of %d fit in memory; ", n, want) + note
	}
	benchLine(label, fmt.Sprintf("%.2f", sec), "s", note)
	// Health during convergence (issue 9 item 10): nodes declared down
	// (every node here was alive throughout) and tasks beyond one per slot
	// (rescheduled or restarted), both target 0.
	downs := max(polledDowns, strings.Count(m.Daemon.Log()[logFrom:], "dispatcher: node down"))
	extra := "?"
	if r := m.Daemon.Run("service", "ps", "-q", "b"); r.Code == 0 {
		extra = strconv.Itoa(len(strings.Fields(r.Stdout)) - n)
	}
	benchLine(fmt.Sprintf("cluster %d replicas: nodes declared down / extra task starts", n), fmt.Sprintf("%d / %s", downs, extra), "", "target 0 / 0 (every node stays alive)")
}

// BenchmarkClusterFailover is benchmark (d) of the cluster issue on one swarm
// of 3 managers (node1..node3) and 2 workers (node4, node5), with service s
// of 10 replicas spread over the 5 nodes:
//
//	(d1) KillAll of a worker that runs tasks, then the time until `service ps
//	     s --filter desired-state=running` through a manager shows 10 tasks
//	     Running on the other nodes (polled every 100 ms). Target under 5 s.
//	(d2) KillAll of the leader (from `node ls`), then the time until a write,
//	     `service scale -d s=11` through another manager, succeeds (tried every
//	     100 ms). Target under 3 s.
//
// Both clocks start just before KillAll, which takes its own time (reported
// in the log) to kill the daemon, shims and containers and down the link.
// Service s has the default restart policy (delay 5 s, as Docker's); beside
// it, service s0 (10 replicas, --restart-delay 0s) heals from the same kill,
// which shows how much of (d1) is the restart delay. (d2) reports both when
// the first successful write returns and when the write issued at the kill
// returns; the new leader's log says when it was elected.
func BenchmarkClusterFailover(b *testing.B) {
	b.StopTimer()
	s := newSwarm(b, 3, 2)
	var alive atomic.Pointer[harness.Host]
	alive.Store(s.managers[0])
	benchRemoveService(b, s, alive.Load, "s", "s0")
	m := s.managers[0]
	// s is the service measured, with the default restart policy (condition
	// any, delay 5 s, as Docker's). s0 is the same with --restart-delay 0s,
	// healing from the same kill: the difference is the restart delay.
	m.Daemon.Must("service", "create", "-d", "--name", "s", "--replicas", "10", "busybox:latest", "sleep", "3600")
	m.Daemon.Must("service", "create", "-d", "--name", "s0", "--replicas", "10", "--restart-delay", "0s", "busybox:latest", "sleep", "3600")

	// running lists, through h, the nodes of each service's tasks whose
	// desired and current state are running, one entry per task; others
	// counts the current states (first word) of the other desired-running
	// tasks, by service, state and node. (A replacement held by its restart
	// delay is desired Ready: it shows in none of them until released.)
	var others map[string]int
	running := func(h *harness.Host) (map[string][]string, harness.Result) {
		r := h.Daemon.Run("service", "ps", "--no-trunc", "--filter", "desired-state=running", "--format", "{{.Name}}|{{.Node}}|{{.CurrentState}}", "s", "s0")
		nodes := map[string][]string{}
		others = map[string]int{}
		if r.Code != 0 {
			return nil, r
		}
		for _, line := range strings.Split(strings.TrimSpace(r.Stdout), "\n") {
			f := strings.SplitN(line, "|", 3)
			if len(f) != 3 {
				continue
			}
			svc, _, _ := strings.Cut(strings.TrimSpace(f[0]), ".")
			if strings.HasPrefix(f[2], "Running") {
				nodes[svc] = append(nodes[svc], f[1])
			} else {
				others[svc+":"+strings.Fields(f[2] + " ?")[0]+"@"+f[1]]++
			}
		}
		return nodes, r
	}
	perNode := func(nodes []string) map[string]int {
		p := map[string]int{}
		for _, n := range nodes {
			p[n]++
		}
		return p
	}
	elsewhere := func(nodes []string, victim string) int {
		n := 0
		for _, node := range nodes {
			if node != victim {
				n++
			}
		}
		return n
	}
	var before map[string][]string
	var lastR harness.Result
	if !benchPoll(120*time.Second, 250*time.Millisecond, func() bool {
		before, lastR = running(m)
		p := perNode(before["s"])
		return len(before["s"]) == 10 && len(before["s0"]) == 10 && (p[s.workers[0].Name] > 0 || p[s.workers[1].Name] > 0)
	}) {
		b.Fatalf("10 replicas each of s and s0 not running, with a worker among s's, after 120 s: running %v, %v; last service ps: %s\n%s\n%s",
			perNode(before["s"]), perNode(before["s0"]), lastR, benchTaskSummary(m, "s"), benchTaskSummary(m, "s0"))
	}
	b.Logf("placement before the kills: s %v, s0 %v", perNode(before["s"]), perNode(before["s0"]))

	// (d1) a worker that runs tasks of s.
	victim := s.workers[0]
	if perNode(before["s"])[victim.Name] == 0 {
		victim = s.workers[1]
	}
	// Beside the measured poll, a second manager's `node ls` says when the
	// victim went Down: the heal splits into detection and restart.
	downAt := benchWatch(s.managers[1], []string{"node", "ls", "--format", "{{.Hostname}} {{.Status}}"}, func(out string) bool {
		return strings.Contains(out, victim.Name+" Down\n")
	})
	b.StartTimer()
	t0 := time.Now()
	downAt.start(t0)
	victim.KillAll()
	killTook := time.Since(t0)
	var heal, heal0 time.Duration
	var after map[string][]string
	var timeline []string // changes of the non-running tasks' states
	lastOthers := ""
	for {
		nodes, r := running(m)
		el := time.Since(t0)
		lastR = r
		if r.Code == 0 {
			if o := fmt.Sprint(others); o != lastOthers {
				timeline = append(timeline, fmt.Sprintf("%.1fs %s", el.Seconds(), o))
				lastOthers = o
			}
			after = nodes
			if heal0 == 0 && elsewhere(nodes["s0"], victim.Name) == 10 {
				heal0 = el
			}
			if heal == 0 && elsewhere(nodes["s"], victim.Name) == 10 {
				heal = el
			}
			if heal != 0 && heal0 != 0 {
				break
			}
		}
		if el > 120*time.Second {
			b.StopTimer()
			b.Fatalf("(d1) after KillAll of worker %s, 10 replicas each of s and s0 not Running on the other nodes within 120 s: last `shoal service ps --filter desired-state=running s s0` on %s: running s %v, s0 %v; %s\n%s\n%s",
				victim.Name, m.Name, perNode(after["s"]), perNode(after["s0"]), r, benchTaskSummary(m, "s"), benchTaskSummary(m, "s0")+benchGone(s.Hosts))
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.StopTimer()
	b.Logf("(d1) KillAll of %s took %v; %s Down in node ls on %s after %s; 10 of s running elsewhere after %v: %v; 10 of s0 (restart delay 0) after %v: %v",
		victim.Name, killTook.Round(time.Millisecond), victim.Name, s.managers[1].Name, downAt.stop(),
		heal.Round(time.Millisecond), perNode(after["s"]), heal0.Round(time.Millisecond), perNode(after["s0"]))
	b.Logf("(d1) desired-running tasks not Running (service:state@node), as they changed: %s", strings.Join(timeline, "; "))

	// (d2) the leader.
	var leaderName string
	if !benchPoll(20*time.Second, 250*time.Millisecond, func() bool {
		lastR = m.Daemon.Run("node", "ls", "--format", "{{.Hostname}} {{.ManagerStatus}}")
		leaderName = benchLeader(lastR.Stdout)
		return lastR.Code == 0 && leaderName != ""
	}) {
		b.Fatalf("(d2) no Leader in `shoal node ls --format '{{.Hostname}} {{.ManagerStatus}}'` on %s: %s", m.Name, lastR)
	}
	leader := s.host(b, leaderName)
	var survivors []*harness.Host
	for _, h := range s.managers {
		if h != leader {
			survivors = append(survivors, h)
		}
	}
	writer, watcher := survivors[0], survivors[1]
	alive.Store(writer)
	logFrom := map[*harness.Host]int{writer: len(writer.Daemon.Log()), watcher: len(watcher.Daemon.Log())}
	// The third manager's `node ls` says when a new leader shows.
	elected := benchWatch(watcher, []string{"node", "ls", "--format", "{{.Hostname}} {{.ManagerStatus}}"}, func(out string) bool {
		l := benchLeader(out)
		return l != "" && l != leader.Name
	})
	// The write is tried every 100 ms, each try in its own CLI process
	// (at most 100 at once: 10 s of tries), so that one try blocked on the
	// dead leader does not hide that a later one works: the figure is when
	// the first successful try returns. The try issued at the kill is
	// reported too.
	type try struct {
		n          int
		start, end time.Duration
		r          harness.Result
	}
	tries := make(chan try, 4096)
	var inflight atomic.Int32
	var wg sync.WaitGroup
	b.StartTimer()
	t0 = time.Now()
	elected.start(t0)
	leader.KillAll()
	killTook = time.Since(t0)
	var write time.Duration
	var all []try
	for n := 1; write == 0; {
		for drained := false; !drained; {
			select {
			case t := <-tries:
				all = append(all, t)
				if t.r.Code == 0 && (write == 0 || t.end < write) {
					write = t.end
				}
			default:
				drained = true
			}
		}
		if write != 0 {
			break
		}
		el := time.Since(t0)
		if el > 120*time.Second {
			b.StopTimer()
			wg.Wait()
			last := "none returned"
			if len(all) > 0 {
				last = all[len(all)-1].r.String()
			}
			b.Fatalf("(d2) after KillAll of leader %s, `shoal service scale -d s=11` on %s still fails after 120 s (%d tries returned); last: %s%s",
				leader.Name, writer.Name, len(all), last, benchGone(s.Hosts))
		}
		if inflight.Load() < 100 {
			inflight.Add(1)
			wg.Add(1)
			go func(n int, start time.Duration) {
				defer wg.Done()
				defer inflight.Add(-1)
				r := writer.Daemon.Run("service", "scale", "-d", "s=11")
				tries <- try{n, start, time.Since(t0), r}
			}(n, el)
			n++
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.StopTimer()
	wg.Wait() // the tries still blocked end within the CLI's 60 s bound
	close(tries)
	for t := range tries {
		all = append(all, t)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].n < all[j].n })
	first := all[0]
	var won try
	for _, t := range all {
		if t.r.Code == 0 && t.end == write {
			won = t
		}
	}
	// The write must have happened: the spec says 11 replicas.
	if r := writer.Daemon.Run("service", "inspect", "--format", "{{.Spec.Mode.Replicated.Replicas}}", "s"); strings.TrimSpace(r.Stdout) != "11" {
		b.Errorf("(d2) `shoal service scale -d s=11` on %s exited 0 after %v (try #%d: %s) but service inspect on %s says replicas %q: %s",
			writer.Name, write, won.n, won.r, writer.Name, strings.TrimSpace(r.Stdout), r)
	}
	firstOut := "ok"
	if first.r.Code != 0 {
		firstOut = "failed: " + strings.TrimSpace(first.r.Stderr)
	}
	var failed []string
	for _, t := range all {
		if t.r.Code != 0 {
			failed = append(failed, fmt.Sprintf("#%d %.1f-%.1fs", t.n, t.start.Seconds(), t.end.Seconds()))
		}
	}
	b.Logf("(d2) leader killed at %s (UTC); the first successful try was #%d, started after %v: %q", t0.UTC().Format("15:04:05.000"), won.n, won.start.Round(time.Millisecond), strings.TrimSpace(won.r.Stdout+won.r.Stderr))
	elect := "(not in the logs)"
	for _, h := range survivors {
		if at, ok := benchLogTime(h.Daemon.Log(), logFrom[h], `msg="manager: this node is the leader"`); ok {
			elect = fmt.Sprintf("%s after %v", h.Name, at.Sub(t0).Round(time.Millisecond))
		}
	}
	b.Logf("(d2) new leader by its log (manager: this node is the leader): %s", elect)
	b.Logf("(d2) KillAll of leader %s took %v; node ls on %s first showed a new leader after %s; first successful write through %s returned after %v; the try issued at the kill returned after %v (%s); %d tries, failed: %v",
		leader.Name, killTook.Round(time.Millisecond), watcher.Name, elected.stop(), writer.Name, write.Round(time.Millisecond),
		first.end.Round(time.Millisecond), firstOut, len(all), failed)
	for h, from := range logFrom {
		if lines := benchLogLines(h.Daemon.Log(), from, "raft", "leader", "election"); lines != "" {
			b.Logf("(d2) %s log after the kill (raft/leader lines):\n%s", h.Name, lines)
		}
	}

	b.ReportMetric(heal.Seconds(), "s-worker-heal")
	b.ReportMetric(heal0.Seconds(), "s-worker-heal-delay0")
	b.ReportMetric(write.Seconds(), "s-leader-write")
	b.ReportMetric(first.end.Seconds(), "s-first-write-return")
	benchLine("cluster lost worker: 10/10 running again (3 mgr + 2 wkr)", fmt.Sprintf("%.2f", heal.Seconds()), "s",
		fmt.Sprintf("target < 5 s; %s of Swarm's 10.9 s (DESIGN.md reference, not measured here)", benchRatio(heal.Seconds(), 10.9)))
	benchLine("cluster lost worker, --restart-delay 0s: 10/10 again", fmt.Sprintf("%.2f", heal0.Seconds()), "s",
		fmt.Sprintf("the same kill; %s of the default-delay figure (a lost node's tasks skip the restart delay)", benchRatio(heal0.Seconds(), heal.Seconds())))
	benchLine("cluster leader killed: a write works via another manager", fmt.Sprintf("%.2f", write.Seconds()), "s",
		fmt.Sprintf("target < 3 s; %s of Swarm's 20.3 s (DESIGN.md reference, not measured here)", benchRatio(write.Seconds(), 20.3)))
	benchLine("cluster leader killed: the write issued at the kill returns", fmt.Sprintf("%.2f", first.end.Seconds()), "s",
		fmt.Sprintf("%s; %s of Swarm's 20.3 s (DESIGN.md reference)", map[bool]string{true: "succeeded", false: "failed"}[first.r.Code == 0], benchRatio(first.end.Seconds(), 20.3)))
}

// BenchmarkClusterManagerRSS10kTasks is benchmark (e) of the cluster issue:
// one test host after swarm init, 10 services of 1000 replicas with a
// constraint no node matches, so that 10,000 tasks stay pending in the store
// and no container runs; then the daemon's VmRSS (manager, worker and engine
// in one process), beside its RSS idle in the swarm before.
func BenchmarkClusterManagerRSS10kTasks(b *testing.B) {
	const services, replicas = 10, 1000
	b.StopTimer()
	s := newSwarm(b, 1, 0)
	h := s.managers[0]
	var names []string
	for i := 0; i < services; i++ {
		names = append(names, fmt.Sprintf("p%d", i))
	}
	benchRemoveService(b, s, func() *harness.Host { return h }, names...)
	pid := h.Daemon.PID()
	status := fmt.Sprintf("/proc/%d/status", pid)
	time.Sleep(2 * time.Second)
	idleKB := benchMeminfoKB(status, "VmRSS:")
	if pid == 0 || idleKB == 0 {
		b.Fatalf("no VmRSS for the daemon (pid %d)", pid)
	}

	b.StartTimer()
	t0 := time.Now()
	for _, name := range names {
		h.Daemon.Must("service", "create", "-d", "--name", name, "--replicas", strconv.Itoa(replicas),
			"--constraint", "node.labels.none==x", "busybox:latest", "sleep", "3600")
	}
	createTook := time.Since(t0)
	var got int
	var states map[string]int
	var lastR harness.Result
	var storedTook time.Duration // until service ps lists every task
	// Every task listed, then every task Pending (past New: the scheduler
	// saw it and found no node), bounded at 180 s.
	if !benchPoll(180*time.Second, time.Second, func() bool {
		lastR = h.Daemon.Run(append([]string{"service", "ps", "--format", "{{.CurrentState}}"}, names...)...)
		if lastR.Code != 0 {
			return false
		}
		states = map[string]int{}
		got = 0
		for _, line := range strings.Split(strings.TrimSpace(lastR.Stdout), "\n") {
			if line == "" {
				continue
			}
			got++
			states[strings.Fields(line)[0]]++
		}
		if got == services*replicas && storedTook == 0 {
			storedTook = time.Since(t0)
		}
		return got == services*replicas && states["Pending"] == got
	}) {
		b.StopTimer()
		b.Fatalf("180 s after creating %d tasks (10 x `service create -d --replicas 1000 --constraint node.labels.none==x`), `shoal service ps --format {{.CurrentState}} p0..p9` lists %d (all listed after %v), by state %v, want all Pending; last: exit %d, stderr %s\n%s",
			services*replicas, got, storedTook, states, lastR.Code, lastR.Stderr, benchTaskSummary(h, "p0"))
	}
	pendingTook := time.Since(t0)
	b.StopTimer()
	time.Sleep(5 * time.Second) // the scheduler's retries and the store settle
	rssKB := benchMeminfoKB(status, "VmRSS:")
	hwmKB := benchMeminfoKB(status, "VmHWM:")
	if r := h.Daemon.Run("ps", "-aq"); strings.TrimSpace(r.Stdout) != "" {
		b.Errorf("containers run although no node matches the constraint: %s", r.Stdout)
	}
	mb := float64(rssKB) / 1024
	b.ReportMetric(mb, "MB-rss-10k-tasks")
	b.Logf("10 x service create -d took %v; 10,000 tasks in service ps after %v, all Pending after %v; VmRSS idle in swarm %.1f MB, with 10k tasks %.1f MB, VmHWM %.1f MB",
		createTook.Round(time.Millisecond), storedTook.Round(time.Millisecond), pendingTook.Round(time.Millisecond), float64(idleKB)/1024, mb, float64(hwmKB)/1024)
	benchLine("cluster manager RSS, 10,000 pending tasks (1 node)", fmt.Sprintf("%.1f", mb), "MB",
		fmt.Sprintf("idle in swarm %.1f MB, peak %.1f MB; %s of dockerd+containerd idle ~170 MB (DESIGN.md reference)",
			float64(idleKB)/1024, float64(hwmKB)/1024, benchRatio(mb, 170)))
}
