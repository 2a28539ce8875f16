package tests

// The routing mesh's benchmark, run by bench/run.sh's `mesh` section. It
// prints our figure beside an anchor measured in the same run, as a ratio,
// and fails only when something it measures does not work.

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/shoal-project/shoal/tests/harness"
)

var (
	abRate   = regexp.MustCompile(`Requests per second:\s+([0-9.]+)`)
	abFailed = regexp.MustCompile(`Failed requests:\s+([0-9]+)`)
)

// BenchmarkMeshRequests: a manager, a worker and a client host outside the
// cluster. One task (busybox httpd, a 1 KiB page) on the worker publishes
// port 8080 through the routing mesh and 8081 in mode host. The same client
// (ab, BENCH_MESH_REQUESTS requests, 8 at a time, new connection each) asks
// through the manager's mesh port, which runs no task (DNAT there, the
// entry sandbox, the ingress overlay to the worker, the return path back),
// and directly at the worker's host port (DNAT on the task's node only), in
// turns, three runs each; medians. Target: >= 80 % of the direct rate.
func BenchmarkMeshRequests(b *testing.B) {
	b.StopTimer()
	n := benchEnvInt(b, "BENCH_MESH_REQUESTS", 3000)
	s := newSwarm(b, 1, 1, "--default-addr-pool", testAddrPool)
	mgr, wrk := s.Hosts[0], s.Hosts[1]
	client := s.AddHost()
	benchRemoveService(b, s, func() *harness.Host { return mgr }, "mb")
	mgr.Daemon.Must("network", "create", "-d", "overlay", "mbnet")
	const page = `mkdir -p /www && head -c 1024 /dev/zero | tr '\0' x > /www/index.html && exec httpd -f -p 80 -h /www`
	mgr.Daemon.Must("service", "create", "-d", "--name", "mb", "--network", "mbnet", "--constraint", "node.role==worker",
		"--publish", "8080:80", "--publish", "mode=host,published=8081,target=80", "busybox:latest", "sh", "-c", page)
	urls := map[string]string{"mesh": "http://" + mgr.IP + ":8080/index.html", "direct": "http://" + wrk.IP + ":8081/index.html"}
	for what, u := range urls {
		if !benchPoll(60*time.Second, 250*time.Millisecond, func() bool { _, err := getBody(httpFrom(client), u); return err == nil }) {
			b.Fatalf("%s %s does not answer", what, u)
		}
	}
	rates := map[string][]float64{}
	for range 3 {
		for _, what := range []string{"mesh", "direct"} {
			r := client.Exec("ab", "-q", "-n", strconv.Itoa(n), "-c", "8", urls[what])
			m, f := abRate.FindStringSubmatch(r.Stdout), abFailed.FindStringSubmatch(r.Stdout)
			if r.Code != 0 || m == nil || f == nil || f[1] != "0" {
				b.Fatalf("ab %s: %s", what, r)
			}
			v, _ := strconv.ParseFloat(m[1], 64)
			rates[what] = append(rates[what], v)
		}
	}
	med := func(v []float64) float64 { v = slices.Clone(v); slices.Sort(v); return v[len(v)/2] }
	mesh, direct := med(rates["mesh"]), med(rates["direct"])
	fmt.Printf("mesh requests/s (ab -n %d -c 8, 1 KiB page, busybox httpd; client outside the cluster): through a node without the task %.0f, direct to the task's node (mode=host) %.0f: %.2fx (target >= 0.80; runs mesh %v direct %v)\n",
		n, mesh, direct, mesh/direct, rates["mesh"], rates["direct"])
}
