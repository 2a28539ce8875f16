package tests

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/tests/harness"
)

// httpFrom is an HTTP client whose connections start in h's namespace, so
// the server sees h's address.
func httpFrom(h *harness.Host) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return h.DialTimeout(network, addr, 3*time.Second)
		},
	}}
}

func getBody(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", resp.Status, b)
	}
	return strings.TrimSpace(string(b)), err
}

// TestClusterPublishHost checks `--publish mode=host`: the port answers on
// the task's node only, DNATed to the task's leg on the node's gateway
// bridge without SNAT, so the task (busybox httpd's CGI REMOTE_ADDR) sees
// the client's own address; a second task wanting the same port on that node
// fails with the reason in `service ps`; --publish-add/--publish-rm move the
// port; a kill -9 and restart of the daemon keeps the port answering, its
// rules not doubled; a removed service and a node that leaves the swarm
// leave no rule.
func TestClusterPublishHost(t *testing.T) {
	sc := newSwarm(t, 1, 1, "--default-addr-pool", testAddrPool)
	mgr, wrk := sc.Hosts[0], sc.Hosts[1]
	mgr.Daemon.Must("network", "create", "-d", "overlay", "app")
	const web = `mkdir -p /www/cgi-bin && printf '#!/bin/sh\necho Content-Type: text/plain\necho\necho $REMOTE_ADDR\n' > /www/cgi-bin/ip && chmod +x /www/cgi-bin/ip && exec httpd -f -p 80 -h /www`

	mgr.Daemon.Must("service", "create", "--detach", "--name", "web", "--network", "app",
		"--constraint", "node.role==worker", "--publish", "mode=host,published=8081,target=80", "busybox", "sh", "-c", web)
	sc.waitPlacement(t, mgr, "web", 60*time.Second, "web running", func(p placement) bool { return p.total == 1 })
	if out := mgr.Daemon.Must("service", "inspect", "--format", "{{json .Endpoint.Ports}}", "web"); !strings.Contains(out, `"PublishMode":"host"`) || !strings.Contains(out, `"PublishedPort":8081`) {
		t.Fatalf("inspect shows Endpoint.Ports %s", out)
	}

	client := httpFrom(mgr)
	var body string
	var err error
	if !pollUntil(20*time.Second, func() bool { body, err = getBody(client, "http://"+wrk.IP+":8081/cgi-bin/ip"); return err == nil }) {
		t.Fatalf("mode=host port on the task's node does not answer: %v\n%s", err, wrk.Exec("nft", "list", "ruleset"))
	}
	// httpd listens on ::, so an IPv4 client shows as [::ffff:a.b.c.d].
	if body = strings.TrimSuffix(strings.TrimPrefix(body, "[::ffff:"), "]"); body != mgr.IP {
		t.Fatalf("the task saw the client as %q, want the client's own address %s", body, mgr.IP)
	}
	// Not on a node without the task.
	if _, err := getBody(httpFrom(wrk), "http://"+mgr.IP+":8081/cgi-bin/ip"); err == nil {
		t.Fatal("a mode=host port answers on a node without the task")
	}

	// The same port on the same node for another task: it fails, saying why.
	mgr.Daemon.Must("service", "create", "--detach", "--name", "twin", "--network", "app",
		"--constraint", "node.role==worker", "--publish", "mode=host,published=8081,target=80", "busybox", "sleep", "600")
	var ps string
	if !pollUntil(30*time.Second, func() bool {
		ps = mgr.Daemon.Run("service", "ps", "--no-trunc", "--format", "{{.Error}}", "twin").Stdout
		return strings.Contains(ps, "port is already allocated")
	}) {
		t.Fatalf("a task whose host port is taken on its node does not fail with the reason: %q", ps)
	}
	mgr.Daemon.Must("service", "rm", "twin")

	// kill -9 and restart: the port still answers, published once.
	rules := strings.Count(wrk.Exec("nft", "list", "ruleset").Stdout, "8081")
	wrk.Daemon.Kill9()
	wrk.Daemon.Restart()
	if !pollUntil(30*time.Second, func() bool { body, err = getBody(client, "http://"+wrk.IP+":8081/cgi-bin/ip"); return err == nil }) {
		t.Fatalf("after kill -9 and restart the port does not answer: %v", err)
	}
	sc.waitPlacement(t, mgr, "web", 30*time.Second, "web running after the restart", func(p placement) bool { return p.total == 1 })
	if n := strings.Count(wrk.Exec("nft", "list", "ruleset").Stdout, "8081"); rules == 0 || n != rules {
		t.Fatalf("port 8081 is in %d places of the worker's rules after the restart, %d before:\n%s", n, rules, wrk.Exec("nft", "list", "ruleset").Stdout)
	}

	// --publish-rm (by target port, as Docker's) and --publish-add move the port.
	mgr.Daemon.Must("service", "update", "--detach", "--publish-rm", "80", "--publish-add", "mode=host,published=8082,target=80", "web")
	if !pollUntil(60*time.Second, func() bool { _, err = getBody(client, "http://"+wrk.IP+":8082/cgi-bin/ip"); return err == nil }) {
		t.Fatalf("after --publish-add the new port does not answer: %v\n%s", err, mgr.Daemon.Run("service", "ps", "--no-trunc", "web"))
	}
	if !pollUntil(10*time.Second, func() bool { _, err = getBody(client, "http://"+wrk.IP+":8081/cgi-bin/ip"); return err != nil }) {
		t.Fatal("after --publish-rm the old port still answers")
	}
	// The docker CLI sees the ports as it would on Docker Swarm.
	const ports = `{{range .Endpoint.Ports}}{{.PublishedPort}}:{{.TargetPort}}/{{.Protocol}} {{.PublishMode}}{{end}}`
	if r := dockerCLI(t, mgr.Daemon)("service", "inspect", "--format", ports, "web"); r.Code != 0 || strings.TrimSpace(r.Stdout) != "8082:80/tcp host" {
		t.Fatalf("docker service inspect of the ports: %s", r)
	}

	mgr.Daemon.Must("service", "rm", "web")
	if !pollUntil(30*time.Second, func() bool {
		return !strings.Contains(wrk.Exec("nft", "list", "ruleset").Stdout, "8082")
	}) {
		t.Fatalf("a removed service's port is still in the worker's rules:\n%s", wrk.Exec("nft", "list", "ruleset").Stdout)
	}
	wrk.Daemon.Must("swarm", "leave")
	if r := wrk.Exec("nft", "list", "table", "ip", "shoal-shoal_gwbridge"); r.Code == 0 {
		t.Fatalf("the worker's gateway bridge table survives swarm leave:\n%s", r.Stdout)
	}
}
