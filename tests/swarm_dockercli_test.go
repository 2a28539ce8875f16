package tests

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/tests/harness"
)

// TestSwarmSecurityDockerCLI drives the swarm security features through the
// docker CLI, the client users already have: autolock and unlock after a
// restart, unlock-key rotation, the certificate expiry setting (applied and
// bounded), the root CA and a node's certificate expiry in inspect.
func TestSwarmSecurityDockerCLI(t *testing.T) {
	const dockerBin = "/usr/local/bin/docker"
	if _, err := os.Stat(dockerBin); err != nil {
		t.Fatalf("no docker CLI at %s: the compatibility tests need it", dockerBin)
	}
	c := harness.NewCluster(t, 1)
	h := c.Hosts[0]
	docker := &harness.Daemon{Bin: dockerBin, Socket: h.Daemon.Socket}
	dockerMust := func(args ...string) string {
		t.Helper()
		r := docker.Run(args...)
		if r.Code != 0 {
			t.Fatalf("docker %s: %s", strings.Join(args, " "), r)
		}
		return r.Stdout
	}

	out := dockerMust("swarm", "init", "--advertise-addr", h.IP, "--autolock", "--cert-expiry", "2h")
	key := regexp.MustCompile(`SWMKEY-1-[A-Za-z0-9+/=_-]+`).FindString(out)
	if key == "" {
		t.Fatalf("docker swarm init --autolock printed no unlock key:\n%s", out)
	}
	if got := strings.TrimSpace(dockerMust("swarm", "unlock-key", "-q")); got != key {
		t.Fatalf("docker swarm unlock-key -q = %q, init printed %q", got, key)
	}

	// The expiry is applied: the node's certificate lives 2 h, not 90
	// days. Docker's TLSInfo has no expiry field, so the docker CLI cannot
	// show it; shoal's inspect does (Description.TLSInfo.CertExpiry).
	pretty := must(t, h, "node", "inspect", "--pretty", "self")
	m := regexp.MustCompile(`Certificate Expiry:\s+(\S+)`).FindStringSubmatch(pretty)
	if m == nil {
		t.Fatalf("shoal node inspect --pretty shows no certificate expiry:\n%s", pretty)
	}
	expiry, err := time.Parse(time.RFC3339, m[1])
	if left := time.Until(expiry); err != nil || left > 2*time.Hour || left < 90*time.Minute {
		t.Fatalf("certificate expiry %q (%v): want about 2 h from now after --cert-expiry 2h", m[1], err)
	}
	if got := strings.TrimSpace(dockerMust("info", "--format", "{{.Swarm.Cluster.Spec.CAConfig.NodeCertExpiry}}")); got != "2h0m0s" {
		t.Fatalf("NodeCertExpiry after --cert-expiry 2h = %q", got)
	}
	if r := docker.Run("swarm", "update", "--cert-expiry", "30m"); r.Code == 0 || !strings.Contains(r.Stderr, "1h") {
		t.Fatalf("docker swarm update --cert-expiry 30m (under Swarm's 1 h minimum) was not refused with a reason: %s", r)
	}
	if ca := dockerMust("swarm", "ca"); !strings.Contains(ca, "BEGIN CERTIFICATE") {
		t.Fatalf("docker swarm ca printed no certificate:\n%s", ca)
	}

	// Locked after a restart: the managers' API refuses, unlock with a
	// wrong key fails, with the right one the node serves again.
	h.Daemon.Restart()
	waitFor(t, "node locked after restart", func() bool { return localNodeState(t, h) == "locked" })
	if r := docker.Run("node", "ls"); r.Code == 0 {
		t.Fatalf("docker node ls on a locked manager succeeded:\n%s", r.Stdout)
	}
	if r := docker.RunStdin([]byte("SWMKEY-1-"+strings.Repeat("B", 43)+"\n"), "swarm", "unlock"); r.Code == 0 {
		t.Fatalf("docker swarm unlock with a wrong key succeeded")
	}
	if r := docker.RunStdin([]byte(key+"\n"), "swarm", "unlock"); r.Code != 0 {
		t.Fatalf("docker swarm unlock with the right key: %s", r)
	}
	waitFor(t, "node active after unlock", func() bool {
		return localNodeState(t, h) == "active" && docker.Run("node", "ls").Code == 0
	})

	// Rotation: the old key stops working at the next restart.
	newKey := strings.TrimSpace(dockerMust("swarm", "unlock-key", "--rotate", "-q"))
	if !strings.HasPrefix(newKey, "SWMKEY-1-") || newKey == key {
		t.Fatalf("docker swarm unlock-key --rotate -q = %q (old %q)", newKey, key)
	}
	h.Daemon.Restart()
	waitFor(t, "node locked after second restart", func() bool { return localNodeState(t, h) == "locked" })
	if r := docker.RunStdin([]byte(key+"\n"), "swarm", "unlock"); r.Code == 0 {
		t.Fatalf("docker swarm unlock with the rotated-out key succeeded")
	}
	if r := docker.RunStdin([]byte(newKey+"\n"), "swarm", "unlock"); r.Code != 0 {
		t.Fatalf("docker swarm unlock with the new key: %s", r)
	}
	waitFor(t, "node active after second unlock", func() bool { return docker.Run("node", "ls").Code == 0 })
}
