package tests

import (
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/tests/harness"
)

// TestClusterDiscovery is service discovery and VIP load balancing on an
// overlay network: one manager and two workers, a web service (busybox
// httpd serving its hostname, with a network alias) on the workers, a
// dnsrr service, and a client task on the manager. From the client,
// through its resolver at 127.0.0.11: http://web/ answers through the VIP
// and requests reach both web tasks, tasks.web lists the running web tasks
// and only those (also after a scale-up and a scale-down), the alias
// answers, the dnsrr service resolves to its task addresses, a task that
// fails its health check leaves, and a task added by a scale-up answers
// through the VIP (how long each took is logged, not checked).
func TestClusterDiscovery(t *testing.T) {
	sc, mgr := overlaySwarm(t)

	const subnet = "198.19.254.0/24"
	docker := dockerCLI(t, mgr.Daemon)
	mgr.Daemon.Must("network", "create", "-d", "overlay", "--subnet", subnet, "app")
	mgr.Daemon.Must("service", "create", "--detach", "--name", "web", "--network", "app,alias=www", "--replicas", "2",
		"--constraint", "node.role==worker", "busybox",
		"sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www")
	mgr.Daemon.Must("service", "create", "--detach", "--name", "rr", "--network", "app", "--endpoint-mode", "dnsrr",
		"--replicas", "2", "--constraint", "node.role==worker", "busybox", "sleep", "600")
	mgr.Daemon.Must("service", "create", "--detach", "--name", "hc", "--network", "app", "--replicas", "2",
		"--constraint", "node.role==worker", "--health-cmd", "test -f /ok", "--health-interval", "1s",
		"--health-retries", "1", "busybox", "sh", "-c", "touch /ok && exec sleep 600")
	mgr.Daemon.Must("service", "create", "--detach", "--name", "client", "--network", "app",
		"--constraint", "node.role==manager", "busybox", "sleep", "600")
	sc.waitPlacement(t, mgr, "web", 60*time.Second, "web running", func(p placement) bool { return p.total == 2 })
	sc.waitPlacement(t, mgr, "rr", 60*time.Second, "rr running", func(p placement) bool { return p.total == 2 })
	sc.waitPlacement(t, mgr, "hc", 60*time.Second, "hc running", func(p placement) bool { return p.total == 2 })
	sc.waitPlacement(t, mgr, "client", 30*time.Second, "client running", func(p placement) bool { return p.total == 1 })
	client := runningTaskContainer(t, mgr)
	exec := func(args ...string) harness.Result {
		return mgr.Daemon.Run(append([]string{"exec", client}, args...)...)
	}
	fetch := func(name string) harness.Result {
		return exec("timeout", "3", "wget", "-q", "-O", "-", "http://"+name+"/")
	}
	// lookup is the subnet's addresses nslookup gets from the resolver.
	_, sn, _ := net.ParseCIDR(subnet)
	lookup := func(name string) []string {
		r := exec("timeout", "3", "nslookup", name, "127.0.0.11")
		var out []string
		for _, f := range strings.Fields(r.Stdout) {
			if ip := net.ParseIP(f); ip != nil && sn.Contains(ip) && !slices.Contains(out, f) {
				out = append(out, f)
			}
		}
		slices.Sort(out)
		return out
	}
	addrs := func(svc string) []string {
		var out []string
		for _, w := range overlayTasks(t, mgr, docker, svc, subnet) {
			out = append(out, w.addr)
		}
		slices.Sort(out)
		return out
	}

	if r := exec("cat", "/etc/resolv.conf"); !strings.Contains(r.Stdout, "nameserver 127.0.0.11") {
		t.Fatalf("client's resolv.conf: %s", r)
	}
	// The service name answers through its VIP.
	var last harness.Result
	if !pollUntil(20*time.Second, func() bool { last = fetch("web"); return last.Code == 0 && strings.TrimSpace(last.Stdout) != "" }) {
		t.Fatalf("client cannot fetch http://web/: %s\nnslookup web: %s", last, exec("nslookup", "web", "127.0.0.11"))
	}
	vip := strings.TrimSpace(docker("service", "inspect", "--format", `{{range .Endpoint.VirtualIPs}}{{.Addr}}{{end}}`, "web").Stdout)
	if ip, _, err := net.ParseCIDR(vip); err != nil || !slices.Equal(lookup("web"), []string{ip.String()}) {
		t.Fatalf("web resolves to %v, want its VIP %q", lookup("web"), vip)
	}
	if got, want := lookup("tasks.web"), addrs("web"); !slices.Equal(got, want) {
		t.Fatalf("tasks.web resolves to %v, want the running tasks %v", got, want)
	}
	// Requests through the VIP reach both tasks.
	pages := map[string]bool{}
	for i := 0; i < 30 && len(pages) < 2; i++ {
		if r := fetch("web"); r.Code == 0 {
			pages[strings.TrimSpace(r.Stdout)] = true
		}
	}
	if len(pages) != 2 {
		t.Fatalf("30 requests to http://web/ reached %v, want both tasks", pages)
	}
	// The alias answers as the service.
	if r := fetch("www"); r.Code != 0 || !pages[strings.TrimSpace(r.Stdout)] {
		t.Fatalf("http://www/ (web's alias): %s", r)
	}
	// A dnsrr service resolves to its task addresses.
	if got, want := lookup("rr"), addrs("rr"); len(want) != 2 || !slices.Equal(got, want) {
		t.Fatalf("rr (dnsrr) resolves to %v, want its tasks %v", got, want)
	}
	// Other names are not the cluster's: no answer from the overlay.
	if got := lookup("nosuch"); len(got) != 0 {
		t.Fatalf("nosuch resolves to %v", got)
	}

	// A task that fails its health check leaves tasks.hc at once (the
	// one that replaces it joins later).
	if got, want := lookup("tasks.hc"), addrs("hc"); len(want) != 2 || !slices.Equal(got, want) {
		t.Fatalf("tasks.hc resolves to %v, want %v", got, want)
	}
	var sick, sickAddr string
	for _, h := range sc.Hosts[1:] {
		for _, v := range taskContainers(h) {
			if f := strings.Fields(v); len(f) == 2 && f[1] == "running" && strings.HasPrefix(f[0], "hc.") && sick == "" {
				sick = f[0]
				r := h.Daemon.Run("exec", sick, "ip", "-o", "-4", "addr", "show", "eth0")
				if f := strings.Fields(r.Stdout); len(f) > 3 {
					sickAddr, _, _ = strings.Cut(f[3], "/")
				}
				h.Daemon.Must("exec", sick, "rm", "/ok")
			}
		}
	}
	if sickAddr == "" {
		t.Fatalf("no running hc task container with an address on the workers")
	}
	failed := time.Now()
	if !pollUntil(10*time.Second, func() bool { return !slices.Contains(lookup("tasks.hc"), sickAddr) }) {
		t.Fatalf("unhealthy task %s (%s) still in tasks.hc: %v", sick, sickAddr, lookup("tasks.hc"))
	}
	// The probe runs every second; how soon it leaves is a figure (logged),
	// not a pass mark: timings belong to make bench, not to a test.
	t.Logf("unhealthy task left tasks.hc %v after its check file was removed", time.Since(failed).Round(time.Millisecond))

	// Scale up: the new task is listed and answers through the VIP.
	mgr.Daemon.Must("service", "scale", "--detach", "web=3")
	sc.waitPlacement(t, mgr, "web", 60*time.Second, "3 web tasks", func(p placement) bool { return p.total == 3 })
	// Requests back to back (a third of them reach the new task once it is
	// behind the VIP): the time includes a docker exec per request.
	// The time it takes is logged (the 2 s is a figure for the
	// note, measured on a loaded machine), the reaching is the test.
	start := time.Now()
	for len(pages) < 3 && time.Since(start) < 30*time.Second {
		if r := fetch("web"); r.Code == 0 {
			pages[strings.TrimSpace(r.Stdout)] = true
		}
	}
	took := time.Since(start)
	if len(pages) != 3 {
		t.Fatalf("%v after the scale-up the VIP reached only %v", took, pages)
	}
	t.Logf("the new web task answered through the VIP %v after it was listed running", took.Round(time.Millisecond))
	if got, want := lookup("tasks.web"), addrs("web"); len(want) != 3 || !slices.Equal(got, want) {
		t.Fatalf("tasks.web resolves to %v after the scale-up, want %v", got, want)
	}
	var want []string

	// Scale down: the stopped task leaves tasks.web.
	mgr.Daemon.Must("service", "scale", "--detach", "web=1")
	if !pollUntil(20*time.Second, func() bool {
		want = addrs("web")
		return len(want) == 1 && slices.Equal(lookup("tasks.web"), want)
	}) {
		t.Fatalf("tasks.web resolves to %v after the scale-down, want %v", lookup("tasks.web"), want)
	}
	page := ""
	for i := 0; i < 10; i++ {
		r := fetch("web")
		if r.Code != 0 || (page != "" && strings.TrimSpace(r.Stdout) != page) {
			t.Fatalf("request %d through the VIP after the scale-down: %s (first answer %q)", i, r, page)
		}
		page = strings.TrimSpace(r.Stdout)
	}
}
