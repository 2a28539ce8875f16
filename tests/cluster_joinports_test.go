package tests

import (
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/tests/harness"
)

// TestClusterJoinPortsBlocked: a node whose firewall drops the overlay's
// data path port or gossip port is refused at `swarm join` with one line
// naming the port, and nothing is made (the manager still lists one node,
// the node is not in a swarm); with the rule gone the same join works. The
// swarm uses a data path port of its own (4800), which the joining node
// learns from the manager.
func TestClusterJoinPortsBlocked(t *testing.T) {
	c := harness.NewCluster(t, 2)
	mgr, h := c.Hosts[0], c.Hosts[1]
	must(t, mgr, "swarm", "init", "--advertise-addr", mgr.IP, "--data-path-port", "4800")
	token := strings.TrimSpace(must(t, mgr, "swarm", "join-token", "-q", "worker"))

	const table = "shoal_test_joinports"
	nft := func(script string) {
		t.Helper()
		cmd := h.Command("nft", "-f", "-")
		cmd.Stdin = strings.NewReader(script)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nft on %s: %v: %s", h.Name, err, out)
		}
	}
	open := func() { nft("table inet " + table + " {}\ndelete table inet " + table + "\n") }
	t.Cleanup(open)

	for _, tc := range []struct{ rule, want string }{
		{"udp dport 4800 drop", "data path port 4800/udp"},
		{"udp dport 7946 drop", "gossip port 7946/udp"},
		{"tcp dport 7946 drop", "gossip port 7946/tcp"},
	} {
		nft("table inet " + table + " {\n\tchain in { type filter hook input priority -300; " + tc.rule + "; }\n}\n")
		start := time.Now()
		r := expectFail(t, h, []string{tc.want}, "swarm", "join", "--token", token, mgr.IP+":2377")
		t.Logf("%s: refused after %s: %s", tc.rule, time.Since(start).Round(time.Millisecond), strings.TrimSpace(r.Stderr))
		if n := strings.Count(strings.TrimSpace(r.Stderr), "\n"); n != 0 {
			t.Errorf("%s: the error is %d lines, want one: %q", tc.rule, n+1, r.Stderr)
		}
		if s := localNodeState(t, h); s != "inactive" {
			t.Errorf("%s: after the refused join %s is %q, want inactive", tc.rule, h.Name, s)
		}
		if ids := strings.Fields(must(t, mgr, "node", "ls", "-q")); len(ids) != 1 {
			t.Errorf("%s: the refused join left nodes behind: %v", tc.rule, ids)
		}
		open()
	}
	out := must(t, h, "swarm", "join", "--token", token, mgr.IP+":2377")
	if !strings.Contains(out, "joined a swarm as a worker") {
		t.Fatalf("join with the ports open printed %q", out)
	}
	if ids := strings.Fields(must(t, mgr, "node", "ls", "-q")); len(ids) != 2 {
		t.Fatalf("after the join the manager lists %v, want 2 nodes", ids)
	}
}
