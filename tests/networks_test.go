package tests

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/shoal-project/shoal/tests/harness"
)

// userSubnet is a /26 of 198.18.0.0/15 for this test process (never 10/8).
func userSubnet(i int) string {
	n := (os.Getpid()*4 + i) % (256 * 4)
	return fmt.Sprintf("198.18.%d.%d/26", n/4, n%4*64)
}

// userNetwork creates a user network whose bridge the harness sweeps with
// the daemon's own, and removes it at the end of the test.
func userNetwork(t *testing.T, d *harness.Daemon, name, suffix string, args ...string) {
	t.Helper()
	d.Must(append([]string{"network", "create", "-o", "com.docker.network.bridge.name=" + d.Bridge + suffix}, append(args, name)...)...)
	t.Cleanup(func() {
		if ids := strings.Fields(d.Run("ps", "-aq", "--filter", "network="+name).Stdout); len(ids) > 0 {
			d.Run(append([]string{"rm", "-f"}, ids...)...)
		}
		d.Run("network", "rm", name)
	})
}

// extResolver serves ext.test -> 198.18.77.77 on a loopback address of the
// host at port 53, standing in for the host's resolvers (no internet here).
func extResolver(t *testing.T) string {
	t.Helper()
	addr := fmt.Sprintf("127.%d.%d.53", os.Getpid()%200+20, os.Getpid()/200%250+1)
	pc, err := net.ListenPacket("udp4", addr+":53")
	if err != nil {
		t.Fatalf("cannot serve DNS on %s:53: %v", addr, err)
	}
	srv := &mdns.Server{PacketConn: pc, Handler: mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(r)
		if q := r.Question[0]; q.Name == "ext.test." && q.Qtype == mdns.TypeA {
			m.Answer = append(m.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: q.Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 5}, A: net.IPv4(198, 18, 77, 77)})
		} else {
			m.Rcode = mdns.RcodeNameError
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown(); pc.Close() })
	return addr
}

// TestUserNetworks: two containers on a user network resolve each other by
// name, alias and short ID and reach each other; a container on another
// network can do neither; other names go to the upstream resolver; a network
// in use cannot be removed; networks and their resolvers survive a daemon
// restart; bad input is refused with nothing made.
func TestUserNetworks(t *testing.T) {
	d := engine(t)
	subA, subB := userSubnet(0), userSubnet(1)
	userNetwork(t, d, "neta", "a", "--subnet", subA, "--label", "team=x")
	userNetwork(t, d, "netb", "b", "--subnet", subB)

	ls := d.Must("network", "ls")
	for _, want := range []string{`(?m)^[0-9a-f]{12}\s+bridge\s+bridge\s+local$`, `(?m)^[0-9a-f]{12}\s+host\s+host\s+local$`,
		`(?m)^[0-9a-f]{12}\s+none\s+null\s+local$`, `(?m)^[0-9a-f]{12}\s+neta\s+bridge\s+local$`} {
		if !regexp.MustCompile(want).MatchString(ls) {
			t.Fatalf("network ls has no line %s:\n%s", want, ls)
		}
	}
	if got := strings.TrimSpace(d.Must("network", "ls", "--filter", "label=team=x", "--format", "{{.Name}}")); got != "neta" {
		t.Fatalf("ls --filter label=team=x: %q", got)
	}
	if got := strings.TrimSpace(d.Must("network", "inspect", "-f", "{{(index .IPAM.Config 0).Subnet}} {{.Driver}}", "neta")); got != subA+" bridge" {
		t.Fatalf("inspect neta: %q, want %s bridge", got, subA)
	}

	t.Run("bad input", func(t *testing.T) {
		before := d.Must("network", "ls", "-q")
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"network", "create", "--subnet", subA, "overlap"}, "overlaps"},
			{[]string{"network", "create", "--subnet", "198.18.1.0/33", "badcidr"}, "--subnet"},
			{[]string{"network", "create", "--subnet", userSubnet(2), "neta"}, "already exists"},
			{[]string{"network", "create", "--attachable", "--subnet", userSubnet(2), "att"}, "attachable"},
			{[]string{"network", "create", "-o", "foo=bar", "--subnet", userSubnet(2), "badopt"}, "not supported"},
			{[]string{"network", "create", "-d", "overlay", "ov"}, "This node is not a swarm manager"},
			{[]string{"network", "rm", "nosuchnet"}, "not found"},
			{[]string{"network", "rm", "bridge"}, "pre-defined"},
			{[]string{"run", "--rm", "--network", "nosuchnet", "busybox", "true"}, "network nosuchnet not found"},
			{[]string{"run", "--rm", "--network-alias", "x", "busybox", "true"}, "user defined networks"},
		} {
			r := d.Run(c.args...)
			if r.Code == 0 || !strings.Contains(r.Stderr, c.want) || strings.Count(strings.TrimSpace(r.Stderr), "\n") > 0 {
				t.Errorf("%v: want a one-line error with %q, got %s", c.args, c.want, r)
			}
		}
		if after := d.Must("network", "ls", "-q"); after != before {
			t.Fatalf("a refused create left a network:\n%s\nbefore:\n%s", after, before)
		}
	})

	d.Must("run", "-d", "--name", "web", "--network", "neta", "--network-alias", "www", "busybox", "sleep", "600")
	webIP := strings.TrimSpace(d.Must("inspect", "-f", "{{.NetworkSettings.Networks.neta.IPAddress}}", "web"))
	webID := strings.TrimSpace(d.Must("inspect", "-f", "{{.Id}}", "web"))[:12]
	if !strings.HasPrefix(webIP, strings.Join(strings.Split(subA, ".")[:3], ".")+".") {
		t.Fatalf("web's address %q is not in %s", webIP, subA)
	}
	// The endpoint as dockerd shows it: the network's ID (not its name),
	// the aliases asked for, and every name the container answers to.
	netID := strings.TrimSpace(d.Must("network", "inspect", "-f", "{{.Id}}", "neta"))
	ep := strings.TrimSpace(d.Must("inspect", "-f", "{{.NetworkSettings.Networks.neta.NetworkID}} {{json .NetworkSettings.Networks.neta.Aliases}} {{json .NetworkSettings.Networks.neta.DNSNames}}", "web"))
	if want := netID + ` ["www"] ["web","www","` + webID + `"]`; ep != want {
		t.Fatalf("web's endpoint on neta: %s, want %s", ep, want)
	}
	ping := func(t *testing.T, net, target string) harness.Result {
		t.Helper()
		return d.Run("run", "--rm", "--network", net, "busybox", "ping", "-c1", "-W2", target)
	}

	t.Run("same network", func(t *testing.T) {
		if got := runRm(t, d, "--network", "neta", "busybox", "cat", "/etc/resolv.conf"); !strings.Contains(got, "nameserver 127.0.0.11\n") ||
			strings.Count(got, "nameserver") != 1 || !strings.Contains(got, "ndots:0") {
			t.Fatalf("resolv.conf on a user network:\n%s", got)
		}
		for _, name := range []string{"web", "www", webID} {
			if r := ping(t, "neta", name); r.Code != 0 || !strings.Contains(r.Stdout, "("+webIP+")") {
				t.Fatalf("ping %s from neta: %s", name, r)
			}
		}
	})
	t.Run("other network", func(t *testing.T) {
		if r := ping(t, "netb", "web"); r.Code == 0 || strings.Contains(r.Stdout+r.Stderr, webIP) {
			t.Fatalf("web resolved from netb: %s", r)
		}
		if r := ping(t, "netb", webIP); r.Code == 0 {
			t.Fatalf("web reached from netb: %s", r)
		}
		if r := ping(t, "bridge", webIP); r.Code == 0 {
			t.Fatalf("web reached from the default bridge: %s", r)
		}
	})
	t.Run("connect", func(t *testing.T) {
		d.Must("run", "-d", "--name", "other", "--network", "netb", "busybox", "sleep", "600")
		defer d.Run("rm", "-f", "other")
		d.Must("network", "connect", "--alias", "oth", "neta", "other")
		otherIP := strings.TrimSpace(d.Must("network", "inspect", "-f", `{{range .Containers}}{{if eq .Name "other"}}{{.IPv4Address}}{{end}}{{end}}`, "neta"))
		otherIP, _, _ = strings.Cut(otherIP, "/")
		if r := ping(t, "neta", "oth"); r.Code != 0 || !strings.Contains(r.Stdout, "("+otherIP+")") {
			t.Fatalf("ping oth (connected to neta at %q) from neta: %s", otherIP, r)
		}
		if r := d.Run("exec", "other", "ping", "-c1", "-W2", "www"); r.Code != 0 || !strings.Contains(r.Stdout, "("+webIP+")") {
			t.Fatalf("ping www from a container connected to neta: %s", r)
		}
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"network", "connect", "neta", "other"}, "already exists"},
			{[]string{"network", "connect", "bridge", "other"}, "only user-defined"},
			{[]string{"network", "connect", "nosuchnet", "other"}, "not found"},
			{[]string{"network", "disconnect", "netb", "other"}, "cannot be disconnected"},
			{[]string{"network", "connect", "neta", "web"}, "already exists"},
		} {
			if r := d.Run(c.args...); r.Code == 0 || !strings.Contains(r.Stderr, c.want) {
				t.Errorf("%v: want an error with %q, got %s", c.args, c.want, r)
			}
		}
		d.Must("network", "disconnect", "neta", "other")
		if r := ping(t, "neta", "oth"); r.Code == 0 {
			t.Fatalf("oth still resolves after disconnect: %s", r)
		}
		if r := d.Run("exec", "other", "ping", "-c1", "-W1", webIP); r.Code == 0 {
			t.Fatalf("web still reached after disconnect: %s", r)
		}
	})
	t.Run("fixed ip", func(t *testing.T) {
		fixed := netip.MustParsePrefix(subA).Addr()
		for i := 0; i < 40; i++ {
			fixed = fixed.Next()
		}
		if got := runRm(t, d, "--network", "neta", "--ip", fixed.String(), "busybox", "ip", "-4", "-o", "addr", "show", "eth0"); !strings.Contains(got, " "+fixed.String()+"/26 ") {
			t.Fatalf("--ip %s: %s", fixed, got)
		}
		for _, c := range [][]string{{"--network", "neta", "--ip", "198.18.255.250"}, {"--ip", fixed.String()}} {
			r := d.Run(append(append([]string{"run", "--rm"}, c...), "busybox", "true")...)
			if r.Code == 0 || !strings.Contains(r.Stderr, "address") {
				t.Errorf("run %v: want an error about the address, got %s", c, r)
			}
		}
	})
	t.Run("fixed ip on a pool subnet", func(t *testing.T) {
		userNetwork(t, d, "netp", "p")
		sub := strings.TrimSpace(d.Must("network", "inspect", "-f", "{{(index .IPAM.Config 0).Subnet}}", "netp"))
		p, err := netip.ParsePrefix(sub)
		if err != nil {
			t.Fatalf("subnet of netp %q: %v", sub, err)
		}
		ip := p.Addr().Next().Next().Next()
		r := d.Run("run", "--rm", "--network", "netp", "--ip", ip.String(), "busybox", "true")
		if r.Code == 0 || !strings.Contains(r.Stderr, "user configured subnets") {
			t.Fatalf("--ip %s on a default-pool subnet: want refused, got %s", ip, r)
		}
		if ids := strings.Fields(d.Run("ps", "-aq", "--filter", "network=netp").Stdout); len(ids) > 0 {
			t.Fatalf("a refused run left containers %v", ids)
		}
	})
	t.Run("internal", func(t *testing.T) {
		userNetwork(t, d, "neti", "i", "--internal", "--subnet", userSubnet(4))
		got := runRm(t, d, "--network", "neti", "busybox", "sh", "-c", "ip route; ping -c1 -W1 198.18.77.77 >/dev/null 2>&1 && echo reached || echo unreachable")
		if strings.Contains(got, "default") || !strings.Contains(got, "unreachable") {
			t.Fatalf("a container on an --internal network has a way out:\n%s", got)
		}
	})
	t.Run("forwarded", func(t *testing.T) {
		up := extResolver(t)
		r := d.Run("run", "--rm", "--network", "neta", "--dns", up, "busybox", "ping", "-c1", "-W1", "ext.test")
		if !strings.Contains(r.Stdout, "PING ext.test (198.18.77.77)") {
			t.Fatalf("ext.test through the embedded resolver to %s: %s", up, r)
		}
	})
	t.Run("rm in use", func(t *testing.T) {
		r := d.Run("network", "rm", "neta")
		if r.Code == 0 || !strings.Contains(r.Stderr, "active endpoints") {
			t.Fatalf("network rm of a network in use: %s", r)
		}
	})
	t.Run("restart", func(t *testing.T) {
		d.Restart()
		if got := d.Must("network", "ls", "--format", "{{.Name}}"); !strings.Contains(got, "neta\n") || !strings.Contains(got, "netb\n") {
			t.Fatalf("networks after a restart:\n%s", got)
		}
		if r := ping(t, "neta", "www"); r.Code != 0 || !strings.Contains(r.Stdout, "("+webIP+")") {
			t.Fatalf("ping www after a restart: %s", r)
		}
	})
	t.Run("prune", func(t *testing.T) {
		userNetwork(t, d, "netc", "c", "--subnet", userSubnet(3))
		out := d.Must("network", "prune", "-f")
		if !strings.Contains(out, "netc") || !strings.Contains(out, "netb") || strings.Contains(out, "neta") {
			t.Fatalf("network prune (neta is in use):\n%s", out)
		}
		if r := d.Run("network", "inspect", "netc"); r.Code == 0 {
			t.Fatalf("netc is still there after prune")
		}
	})
	d.Must("rm", "-f", "web")
	if r := d.Run("network", "rm", "neta"); r.Code != 0 {
		t.Fatalf("network rm after its container went: %s", r)
	}
	if out, _ := runHost("ip", "link", "show", d.Bridge+"a"); !strings.Contains(out, "does not exist") {
		t.Fatalf("bridge of a removed network is still there: %s", out)
	}
}

// TestUserNetworksClients drives the network routes with the docker CLI
// and docker-py.
func TestUserNetworksClients(t *testing.T) {
	d := engine(t)
	docker := dockerCLI(t, d)
	since := fmt.Sprint(time.Now().Unix())
	sub := userSubnet(5)
	if r := docker("network", "create", "-o", "com.docker.network.bridge.name="+d.Bridge+"d", "--subnet", sub, "dnet"); r.Code != 0 {
		t.Fatalf("docker network create: %s", r)
	}
	t.Cleanup(func() { d.Run("network", "rm", "dnet") })
	if r := docker("network", "ls"); r.Code != 0 || !regexp.MustCompile(`(?m)^[0-9a-f]{12}\s+dnet\s+bridge\s+local\s*$`).MatchString(r.Stdout) {
		t.Fatalf("docker network ls: %s", r)
	}
	if r := docker("network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}}{{end}}", "dnet"); strings.TrimSpace(r.Stdout) != sub {
		t.Fatalf("docker network inspect: %s", r)
	}
	if r := docker("run", "-d", "--name", "dc", "--network", "dnet", "busybox", "sleep", "600"); r.Code != 0 {
		t.Fatalf("docker run --network dnet: %s", r)
	}
	if r := docker("network", "create", "-o", "com.docker.network.bridge.name="+d.Bridge+"e", "--subnet", userSubnet(7), "dnet2"); r.Code != 0 {
		t.Fatalf("docker network create: %s", r)
	}
	t.Cleanup(func() { d.Run("network", "rm", "dnet2") })
	if r := docker("network", "connect", "--alias", "dca", "dnet2", "dc"); r.Code != 0 {
		t.Fatalf("docker network connect: %s", r)
	}
	if r := docker("network", "inspect", "-f", "{{range .Containers}}{{.Name}}{{end}}", "dnet2"); strings.TrimSpace(r.Stdout) != "dc" {
		t.Fatalf("docker network inspect after connect: %s", r)
	}
	if r := docker("network", "disconnect", "dnet2", "dc"); r.Code != 0 {
		t.Fatalf("docker network disconnect: %s", r)
	}
	if r := docker("network", "rm", "dnet2"); r.Code != 0 {
		t.Fatalf("docker network rm after disconnect: %s", r)
	}
	until := fmt.Sprint(time.Now().Unix() + 1)
	ev := d.Must("events", "--since", since, "--until", until, "--filter", "type=network", "--filter", "network=dnet2", "--format", "{{.Action}} {{.Actor.Attributes.name}}")
	if want := "create dnet2\nconnect dnet2\ndisconnect dnet2\ndestroy dnet2\n"; ev != want {
		t.Fatalf("network events:\n%s\nwant:\n%s", ev, want)
	}
	if r := docker("network", "rm", "dnet"); r.Code == 0 || !strings.Contains(r.Stderr, "active endpoints") {
		t.Fatalf("docker network rm in use: %s", r)
	}
	docker("rm", "-f", "dc")
	if r := docker("network", "rm", "dnet"); r.Code != 0 {
		t.Fatalf("docker network rm: %s", r)
	}

	sub2 := userSubnet(6)
	got := dockerPy(t, d, fmt.Sprintf(`
ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=%q)])
n = c.networks.create('pynet', driver='bridge', ipam=ipam, options={'com.docker.network.bridge.name': %q})
print(n.name, c.networks.get('pynet').attrs['IPAM']['Config'][0]['Subnet'])
print(sorted(x.name for x in c.networks.list(names=['pynet'])))
n.remove()
print(len(c.networks.list(names=['pynet'])))
`, sub2, d.Bridge+"p"))
	if want := "pynet " + sub2 + "\n['pynet']\n0"; got != want {
		t.Fatalf("docker-py:\n%s\nwant:\n%s", got, want)
	}
}
