package tests

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/tests/harness"
)

// TestClusterMesh checks the routing mesh (`--publish 8080:80`, mode
// ingress): the port answers on every node, the manager that runs no task
// of the service included, from a client host outside the cluster; the
// connections spread over both tasks; each task sees the client's own
// address (Swarm shows an address of its ingress sandbox instead); UDP goes
// the same way; the ingress network is made with the first such service and
// cannot be removed while it is used; a service scaled to 0 refuses at once
// and answers again once scaled up; a worker killed with -9 and restarted
// keeps one copy of its rules; `swarm leave` leaves nothing of the mesh.
func TestClusterMesh(t *testing.T) {
	sc := newSwarm(t, 1, 2, "--default-addr-pool", testAddrPool)
	mgr, w1, w2 := sc.Hosts[0], sc.Hosts[1], sc.Hosts[2]
	client := sc.AddHost() // on the test network, not a node
	const web = `mkdir -p /www/cgi-bin && printf '#!/bin/sh\necho Content-Type: text/plain\necho\necho $REMOTE_ADDR $(hostname)\n' > /www/cgi-bin/ip && chmod +x /www/cgi-bin/ip && exec httpd -f -p 80 -h /www`

	if r := mgr.Daemon.Run("network", "ls", "--filter", "name=ingress", "--format", "{{.Name}}"); strings.TrimSpace(r.Stdout) != "" {
		t.Fatalf("an ingress network before any service publishes a port: %s", r)
	}
	mgr.Daemon.Must("service", "create", "--detach", "--name", "web", "--replicas", "2", "--constraint", "node.role==worker",
		"--publish", "8080:80", "--publish", "published=9090,target=9090,protocol=udp", "busybox", "sh", "-c", web)
	sc.waitPlacement(t, mgr, "web", 60*time.Second, "web running on both workers", func(p placement) bool { return p.total == 2 && len(p.perNode) == 2 })
	docker := dockerCLI(t, mgr.Daemon)
	if r := docker("network", "inspect", "--format", "{{.Ingress}} {{.Scope}} {{.Driver}}", "ingress"); r.Code != 0 || strings.TrimSpace(r.Stdout) != "true swarm overlay" {
		t.Fatalf("docker network inspect ingress: %s", r)
	}
	expectFail(t, mgr, []string{"in use by service web"}, "network", "rm", "ingress")

	// Through every node, from outside: both tasks answer, and each sees
	// the client's address.
	hc := httpFrom(client)
	for _, h := range []*harness.Host{mgr, w1, w2} {
		seen := map[string]bool{}
		var last string
		var err error
		for i := 0; i < 200 && len(seen) < 2; i++ {
			last, err = getBody(hc, "http://"+h.IP+":8080/cgi-bin/ip")
			if err != nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			f := strings.Fields(last)
			if len(f) != 2 {
				t.Fatalf("through %s: answer %q", h.Name, last)
			}
			if addr := strings.TrimSuffix(strings.TrimPrefix(f[0], "[::ffff:"), "]"); addr != client.IP {
				t.Fatalf("through %s the task saw the client as %q, want its own address %s", h.Name, addr, client.IP)
			}
			seen[f[1]] = true
		}
		if len(seen) < 2 {
			t.Fatalf("through %s: tasks answering %v (last %q, %v)\nmesh table:\n%s", h.Name, seen, last, err,
				h.Exec("nft", "list", "table", "ip", "shoal-mesh"))
		}
	}

	// UDP: a socket in one task's namespace answers with the address it
	// saw; the datagram enters through the manager.
	taskNS := ""
	r := mgr.Daemon.Must("service", "ps", "--no-trunc", "--filter", "desired-state=running", "--format", "{{.ID}}", "web")
	for _, id := range strings.Fields(r) {
		for _, h := range []*harness.Host{w1, w2} {
			p := filepath.Join(h.Daemon.Root, "swarm", "netns", "task-"+id)
			if _, err := os.Stat(p); err == nil && taskNS == "" {
				taskNS = p
			}
		}
	}
	if taskNS == "" {
		t.Fatalf("no task namespace found for tasks %q", r)
	}
	pc, err := harness.ListenPacketIn(taskNS, "udp4", ":9090")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 512)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo([]byte(from.(*net.UDPAddr).IP.String()), from)
		}
	}()
	udpSeen := ""
	if !pollUntil(20*time.Second, func() bool {
		// Two tasks, one listening: a few tries reach it.
		c, err := client.DialTimeout("udp4", mgr.IP+":9090", time.Second)
		if err != nil {
			return false
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(300 * time.Millisecond))
		if _, err := c.Write([]byte("who")); err != nil {
			return false
		}
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		if err != nil {
			return false
		}
		udpSeen = string(buf[:n])
		return true
	}) {
		diag, _ := runHost("nsenter", "--net="+taskNS, "sh", "-c", "grep -A1 ^Udp: /proc/net/snmp; nft list table ip shoal-ingress-return; ip -s link show eth0")
		t.Fatalf("no UDP answer through the manager's port 9090\nmesh table:\n%s\ntask namespace %s:\n%s", mgr.Exec("nft", "list", "table", "ip", "shoal-mesh"), taskNS, diag)
	}
	if udpSeen != client.IP {
		t.Fatalf("the UDP server saw the client as %s, want %s", udpSeen, client.IP)
	}

	// Scaled to 0: refused at once; scaled up: answering again.
	mgr.Daemon.Must("service", "scale", "--detach", "web=0")
	if !pollUntil(20*time.Second, func() bool {
		_, err := getBody(hc, "http://"+mgr.IP+":8080/cgi-bin/ip")
		return err != nil && strings.Contains(err.Error(), "refused")
	}) {
		t.Fatalf("web scaled to 0 still answers (or times out) through the manager\n%s", mgr.Exec("nft", "list", "table", "ip", "shoal-mesh"))
	}
	mgr.Daemon.Must("service", "scale", "--detach", "web=1")
	if !pollUntil(30*time.Second, func() bool { _, err := getBody(hc, "http://"+mgr.IP+":8080/cgi-bin/ip"); return err == nil }) {
		t.Fatal("web scaled back to 1 does not answer through the manager")
	}

	// kill -9 and restart of a worker: its entry still carries traffic,
	// with one copy of its table.
	tables := func(h *harness.Host) int { return strings.Count(h.Exec("nft", "list", "tables").Stdout, "shoal-mesh") }
	if n := tables(w1); n != 1 {
		t.Fatalf("%s has %d mesh tables", w1.Name, n)
	}
	w1.Daemon.Kill9()
	w1.Daemon.Restart()
	if !pollUntil(30*time.Second, func() bool { _, err := getBody(hc, "http://"+w1.IP+":8080/cgi-bin/ip"); return err == nil }) {
		t.Fatalf("after kill -9 and restart %s's published port does not answer", w1.Name)
	}
	if n := tables(w1); n != 1 {
		t.Fatalf("%s has %d mesh tables after the restart", w1.Name, n)
	}

	// The docker CLI publishes through the mesh too.
	if r := docker("service", "create", "--detach", "--name", "web2", "--constraint", "node.role==worker", "-p", "8081:80", "busybox", "sh", "-c", web); r.Code != 0 {
		t.Fatalf("docker service create -p: %s", r)
	}
	if !pollUntil(60*time.Second, func() bool { _, err := getBody(hc, "http://"+mgr.IP+":8081/cgi-bin/ip"); return err == nil }) {
		t.Fatal("a service the docker CLI published does not answer through the manager")
	}

	// A node that leaves takes its mesh down.
	w2.Daemon.Must("swarm", "leave")
	if n := tables(w2); n != 0 {
		t.Fatalf("%s keeps its mesh table after swarm leave:\n%s", w2.Name, w2.Exec("nft", "list", "ruleset").Stdout)
	}
	if r := w2.Exec("ip", "link", "show", "shoal_ingress"); r.Code == 0 {
		t.Fatalf("%s keeps its ingress link after swarm leave: %s", w2.Name, r.Stdout)
	}
	if _, err := os.Stat(filepath.Join(w2.Daemon.Root, "swarm", "ingress-sbox")); err == nil {
		t.Fatalf("%s keeps its ingress sandbox after swarm leave", w2.Name)
	}
}
