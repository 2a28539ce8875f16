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
// answers, the dnsrr service resolves to its task addresses, and a task
// added by a scale-up answers through the VIP within seconds.
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
	mgr.Daemon.Must("service", "create", "--detach", "--name", "client", "--network", "app",
		"--constraint", "node.role==manager", "busybox", "sleep", "600")
	sc.waitPlacement(t, mgr, "web", 60*time.Second, "web running", func(p placement) bool { return p.total == 2 })
	sc.waitPlacement(t, mgr, "rr", 60*time.Second, "rr running", func(p placement) bool { return p.total == 2 })
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

	// Scale up: the new task is listed and answers through the VIP within
	// seconds of running.
	mgr.Daemon.Must("service", "scale", "--detach", "web=3")
	sc.waitPlacement(t, mgr, "web", 60*time.Second, "3 web tasks", func(p placement) bool { return p.total == 3 })
	start := time.Now()
	var want []string
	if !pollUntil(10*time.Second, func() bool {
		want = addrs("web")
		return len(want) == 3 && slices.Equal(lookup("tasks.web"), want)
	}) {
		t.Fatalf("tasks.web resolves to %v after the scale-up, want %v", lookup("tasks.web"), want)
	}
	if !pollUntil(5*time.Second, func() bool {
		if r := fetch("web"); r.Code == 0 {
			pages[strings.TrimSpace(r.Stdout)] = true
		}
		return len(pages) == 3
	}) {
		t.Fatalf("after the scale-up the VIP reached only %v", pages)
	}
	t.Logf("new web task answered through the VIP %v after it ran", time.Since(start).Round(time.Millisecond))

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
