package tests

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// nodeTLS is what `node inspect` says of a node's certificate.
type nodeTLS struct {
	TrustRoot           string
	CertIssuerPublicKey []byte
	CertExpiry          time.Time
}

// TestClusterCertificates drives certificates through real daemons on test
// hosts (2 managers, 2 workers): node inspect shows each certificate's
// expiry; swarm update refuses an expiry under an hour and a heartbeat
// period shoal cannot apply, and honours --cert-expiry 1h; swarm ca
// --rotate, while a worker is down, moves every other node onto a new root
// without stopping a service, prints the new root and re-pins the join
// tokens; a renewed worker restarts on its renewed certificate; the worker
// that was down through the rotation is refused and joins again.
func TestClusterCertificates(t *testing.T) {
	c := newSwarm(t, 2, 2)
	m1, w1, w2 := c.managers[0], c.workers[0], c.workers[1]
	must(t, m1, "service", "create", "-d", "--name", "web", "--replicas", "4", "--stop-grace-period", "1s", "busybox", "sleep", "86400")
	c.waitPlacement(t, m1, "web", 60*time.Second, "4 running", func(p placement) bool { return p.total == 4 })

	tlsOf := func(name string) nodeTLS {
		t.Helper()
		out := must(t, m1, "node", "inspect", name)
		var ns []struct{ Description struct{ TLSInfo nodeTLS } }
		if err := json.Unmarshal([]byte(out), &ns); err != nil || len(ns) != 1 {
			t.Fatalf("node inspect %s: %v\n%s", name, err, out)
		}
		return ns[0].Description.TLSInfo
	}
	before := tlsOf(w1.Name)
	if d := time.Until(before.CertExpiry); d < 89*24*time.Hour || d > 90*24*time.Hour {
		t.Fatalf("node inspect: certificate expires in %s, want Swarm's 90 days", d)
	}
	if !strings.Contains(before.TrustRoot, "BEGIN CERTIFICATE") || len(before.CertIssuerPublicKey) == 0 {
		t.Fatalf("node inspect TLSInfo: %+v", before)
	}
	if out := must(t, m1, "node", "inspect", "--pretty", w1.Name); !strings.Contains(out, "Certificate Expiry:\t"+before.CertExpiry.Format(time.RFC3339)) {
		t.Fatalf("node inspect --pretty does not show the certificate's expiry:\n%s", out)
	}
	oldRoot := must(t, m1, "swarm", "ca")
	if !strings.HasPrefix(oldRoot, "-----BEGIN CERTIFICATE-----") {
		t.Fatalf("swarm ca printed %q", oldRoot)
	}

	expectFail(t, m1, []string{"node certificate expiry must be at least 1h0m0s, got 30m0s"}, "swarm", "update", "--cert-expiry", "30m")
	expectFail(t, m1, []string{"heartbeat period is fixed at 1s"}, "swarm", "update", "--dispatcher-heartbeat", "5s")
	must(t, m1, "swarm", "update", "--cert-expiry", "1h")

	w2.KillAll()
	c.waitNodes(t, m1, func(ns []nodeLine) bool { n, _ := nodeByName(ns, w2.Name); return n.Status == "Down" }, 30*time.Second, w2.Name+" Down")
	start := time.Now()
	out := must(t, m1, "swarm", "ca", "--rotate")
	t.Logf("swarm ca --rotate took %s:\n%s", time.Since(start).Round(time.Millisecond), out)
	i := strings.Index(out, "-----BEGIN CERTIFICATE-----")
	if i < 0 || out[i:] == oldRoot {
		t.Fatalf("swarm ca --rotate did not print a new root:\n%s", out)
	}
	newRoot := out[i:]
	if got := must(t, c.managers[1], "swarm", "ca"); got != newRoot {
		t.Fatalf("the other manager's root after the rotation:\n%s", got)
	}
	after := tlsOf(w1.Name)
	if string(after.CertIssuerPublicKey) == string(before.CertIssuerPublicKey) {
		t.Fatal("the worker's certificate was not renewed onto the new root")
	}
	if d := time.Until(after.CertExpiry); d > time.Hour || d < 50*time.Minute {
		t.Fatalf("renewed certificate expires in %s, want the 1h set before", d)
	}
	if tok := strings.TrimSpace(must(t, m1, "swarm", "join-token", "-q", "worker")); tok == c.workerToken ||
		tok[strings.LastIndex(tok, "-"):] != c.workerToken[strings.LastIndex(c.workerToken, "-"):] {
		t.Fatalf("worker token after the rotation %q (before %q): want a new root digest and the same secret", tok, c.workerToken)
	} else {
		c.workerToken = tok
	}
	c.waitPlacement(t, m1, "web", 30*time.Second, "4 running after the rotation", func(p placement) bool { return p.total == 4 })

	// A renewed node restarts on the certificate it saved.
	w1.Restart()
	c.waitNodes(t, m1, func(ns []nodeLine) bool { n, _ := nodeByName(ns, w1.Name); return n.Status == "Ready" }, 30*time.Second, w1.Name+" Ready after a restart")

	// The worker that was down through the rotation holds an old-root
	// certificate nobody trusts now: it stays Down, and joins again.
	w2.Restart()
	time.Sleep(5 * time.Second)
	if ns, _ := nodeList(m1); func() bool { n, _ := nodeByName(ns, w2.Name); return n.Status != "Down" }() {
		t.Fatalf("%s came back with an old-root certificate:\n%s", w2.Name, nodeTable(ns))
	}
	must(t, w2, "swarm", "leave", "--force")
	c.join(t, w2, c.workerToken, "worker")
	c.waitNodes(t, m1, func(ns []nodeLine) bool {
		for _, n := range ns {
			if n.Hostname == w2.Name && n.Status == "Ready" {
				return true
			}
		}
		return false
	}, 30*time.Second, w2.Name+" joined again")
}
