package tests

import (
	"strings"
	"testing"

	"github.com/shoal-project/shoal/tests/harness"
)

// Overlay pools in tests come from 198.18.0.0/15 (issue 7) but must not
// overlap the harness's underlay (198.18.K.0/24) or its bridges
// (198.19.1-250.0/24): 198.19.252.0/22 is free of both.
const testAddrPool = "198.19.252.0/22"

// TestClusterNetworks drives cluster networks with the docker CLI on a
// manager: swarm init's pool and data path port, create (the subnet and VNI
// come back at once), inspect as Docker shows it, overlapping subnets and an
// exhausted pool refused with one line and nothing made, rm, prune.
func TestClusterNetworks(t *testing.T) {
	c := harness.NewCluster(t, 1)
	h := c.Hosts[0]
	d := h.Daemon
	docker := dockerCLI(t, d)

	// Bad init settings: one line, and nothing of a swarm is left.
	r := d.Run("swarm", "init", "--advertise-addr", h.IP, "--default-addr-pool", testAddrPool, "--default-addr-pool-mask-length", "16")
	oneLineFailure(t, r, "mask length 16 is shorter than pool 198.19.252.0/22")
	r = d.Run("swarm", "init", "--advertise-addr", h.IP, "--data-path-port", "80")
	oneLineFailure(t, r, "data path port 80 is out of range 1024-49151")
	d.Must("swarm", "init", "--advertise-addr", h.IP, "--default-addr-pool", testAddrPool, "--default-addr-pool-mask-length", "24", "--data-path-port", "4790")
	if r := docker("info", "--format", "{{.Swarm.Cluster.DataPathPort}} {{.Swarm.Cluster.DefaultAddrPool}} {{.Swarm.Cluster.SubnetSize}}"); r.Code != 0 || strings.TrimSpace(r.Stdout) != "4790 [198.19.252.0/22] 24" {
		t.Fatalf("docker info: %s", r)
	}

	oneLineFailure(t, docker("network", "create", "-d", "overlay", "--opt", "encrypted=false", "secret"), `option encrypted="false": give it without a value`)
	r = docker("network", "create", "-d", "overlay", "--label", "team=web", "app")
	if r.Code != 0 || len(strings.TrimSpace(r.Stdout)) < 12 {
		t.Fatalf("network create: %s", r)
	}
	id := strings.TrimSpace(r.Stdout)
	const format = `{{.Id}} {{.Scope}} {{.Driver}} {{(index .IPAM.Config 0).Subnet}} {{(index .IPAM.Config 0).Gateway}} {{index .Options "com.docker.network.driver.overlay.vxlanid_list"}} {{.Attachable}} {{.Labels.team}}`
	if r := docker("network", "inspect", "--format", format, "app"); r.Code != 0 || strings.TrimSpace(r.Stdout) != id+" swarm overlay 198.19.252.0/24 198.19.252.1 4096 false web" {
		t.Fatalf("network inspect: %s", r)
	}
	oneLineFailure(t, docker("network", "create", "-d", "overlay", "--subnet", "198.19.252.128/25", "clash"),
		"subnet 198.19.252.128/25 overlaps subnet 198.19.252.0/24 of another network")
	oneLineFailure(t, docker("network", "create", "-d", "overlay", "--opt", "bogus=1", "clash"), `option "bogus" is not supported`)
	if r := docker("network", "create", "-d", "overlay", "--subnet", "198.19.253.0/24", "--gateway", "198.19.253.254", "user"); r.Code != 0 {
		t.Fatalf("network create --subnet: %s", r)
	}
	for _, n := range []string{"b", "c"} {
		if r := docker("network", "create", "-d", "overlay", n); r.Code != 0 {
			t.Fatalf("network create %s: %s", n, r)
		}
	}
	oneLineFailure(t, docker("network", "create", "-d", "overlay", "full"), "default address pool 198.19.252.0/22 is exhausted")
	if r := docker("network", "inspect", "--format", `{{(index .IPAM.Config 0).Subnet}} {{index .Options "com.docker.network.driver.overlay.vxlanid_list"}}`, "c"); r.Code != 0 || strings.TrimSpace(r.Stdout) != "198.19.255.0/24 4099" {
		t.Fatalf("network inspect c: %s", r)
	}
	r = docker("network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}}")
	for _, want := range []string{"app overlay swarm", "user overlay swarm", "b overlay swarm", "c overlay swarm"} {
		if r.Code != 0 || !strings.Contains(r.Stdout, want) || strings.Contains(r.Stdout, "full") || strings.Contains(r.Stdout, "clash") {
			t.Fatalf("network ls (want %q): %s", want, r)
		}
	}
	// docker's own rm adds "exit status 1" on a second line, with dockerd too.
	if r := docker("network", "rm", "nope"); r.Code == 0 || !strings.Contains(r.Stderr, "network nope not found") {
		t.Fatalf("network rm nope: %s", r)
	}
	// A removed network's subnet and VNI are free again.
	if r := docker("network", "rm", "b"); r.Code != 0 {
		t.Fatalf("network rm: %s", r)
	}
	if r := docker("network", "create", "-d", "overlay", "b2"); r.Code != 0 {
		t.Fatalf("network create after rm: %s", r)
	}
	if r := docker("network", "inspect", "--format", `{{(index .IPAM.Config 0).Subnet}} {{index .Options "com.docker.network.driver.overlay.vxlanid_list"}}`, "b2"); r.Code != 0 || strings.TrimSpace(r.Stdout) != "198.19.254.0/24 4098" {
		t.Fatalf("network inspect b2: %s", r)
	}
	if r := docker("network", "prune", "-f"); r.Code != 0 || !strings.Contains(r.Stdout, "app") || !strings.Contains(r.Stdout, "b2") {
		t.Fatalf("network prune: %s", r)
	}
	// Only the built-in networks (bridge, host, none) are left.
	if r := docker("network", "ls", "--format", "{{.Name}} {{.Driver}}"); r.Code != 0 || strings.Contains(r.Stdout, "overlay") {
		t.Fatalf("network ls after prune: %s", r)
	}
}

// oneLineFailure checks that r failed with a one-line error containing want.
func oneLineFailure(t *testing.T, r harness.Result, want string) {
	t.Helper()
	msg := strings.TrimSpace(r.Stderr)
	if r.Code == 0 || !strings.Contains(msg, want) || strings.Contains(msg, "\n") {
		t.Fatalf("want a one-line failure with %q, got: %s", want, r)
	}
}
