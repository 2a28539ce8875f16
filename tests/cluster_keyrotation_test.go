package tests

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/tests/harness"
)

// swarmDataKeys is what GET /swarm shows of the cluster's data keys: the
// rotation period (shoal's Spec.EncryptionConfig.DataKeyRotation) and when
// each key was made, newest first.
type swarmDataKeys struct {
	Spec struct {
		EncryptionConfig struct {
			DataKeyRotation time.Duration
		}
	}
	DataKeys []struct{ CreatedAt time.Time }
}

// getSwarm reads GET /swarm from d's socket (the CLI has no swarm inspect,
// and Docker's types drop shoal's fields).
func getSwarm(t *testing.T, d *harness.Daemon) swarmDataKeys {
	t.Helper()
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", d.Socket)
		},
	}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("http://shoal/swarm")
	if err != nil {
		t.Fatalf("GET /swarm: %v", err)
	}
	defer resp.Body.Close()
	var sw swarmDataKeys
	if err := json.NewDecoder(resp.Body).Decode(&sw); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /swarm: %s, %v", resp.Status, err)
	}
	return sw
}

// TestClusterDataKeyRotation: with `swarm init --data-key-rotation 1m`, a
// TCP connection between tasks on two workers over an encrypted overlay
// carries a numbered line every 100ms through two rotations of the cluster's
// data key: the server receives every line in order, never stalls long and
// never sees the connection end; GET /swarm shows the keys' creation times
// moving on, and both workers' daemons say they re-keyed their tunnels. Out
// of bounds periods are refused with one line.
func TestClusterDataKeyRotation(t *testing.T) {
	sc := newSwarm(t, 1, 2, "--default-addr-pool", testAddrPool, "--data-key-rotation", "1m")
	mgr := sc.managers[0]
	docker := dockerCLI(t, mgr.Daemon)
	if sw := getSwarm(t, mgr.Daemon); sw.Spec.EncryptionConfig.DataKeyRotation != time.Minute || len(sw.DataKeys) == 0 {
		t.Fatalf("GET /swarm after init --data-key-rotation 1m: %+v", sw)
	}
	for _, bad := range []string{"59s", "12h1m"} {
		r := mgr.Daemon.Run("swarm", "update", "--data-key-rotation", bad)
		d, _ := time.ParseDuration(bad)
		if want := "data key rotation must be between 1m0s and 12h0m0s, got " + d.String(); r.Code == 0 || !strings.Contains(r.Stderr, want) ||
			strings.Count(strings.TrimSpace(r.Stderr), "\n") != 0 {
			t.Fatalf("swarm update --data-key-rotation %s: %s (want one line with %q)", bad, r, want)
		}
	}

	const subnet = "198.19.253.0/24"
	if r := docker("network", "create", "-d", "overlay", "--subnet", subnet, "--opt", "encrypted", "rot"); r.Code != 0 {
		t.Fatalf("network create: %s", r)
	}
	var ids []string
	for _, h := range sc.workers {
		ids = append(ids, strings.TrimSpace(must(t, h, "info", "--format", "{{.Swarm.NodeID}}")))
	}
	// The server keeps what it receives, and says so if the connection
	// ended; neither task is restarted, so a break shows. Its nc reads a
	// stdin that never ends: busybox nc ends the connection at its stdin's
	// end.
	if r := docker("service", "create", "--detach", "--name", "sink", "--network", "rot", "--restart-condition", "none",
		"--constraint", "node.id=="+ids[0], "busybox",
		"sh", "-c", "sleep 3600 | nc -l -p 7000 > /tmp/got; echo ended > /tmp/ended; exec sleep 3600"); r.Code != 0 {
		t.Fatalf("service create sink: %s", r)
	}
	sc.waitPlacement(t, mgr, "sink", 60*time.Second, "sink running", func(p placement) bool { return p.total == 1 })
	tasks := overlayTasks(t, mgr, docker, "sink", subnet)
	if len(tasks) != 1 {
		t.Fatalf("sink tasks: %v", tasks)
	}
	if r := docker("service", "create", "--detach", "--name", "source", "--network", "rot", "--restart-condition", "none",
		"--constraint", "node.id=="+ids[1], "busybox",
		"sh", "-c", "i=0; while i=$((i+1)); do echo $i; sleep 0.1; done | nc "+tasks[0].addr+" 7000; echo ended > /tmp/ended; exec sleep 3600"); r.Code != 0 {
		t.Fatalf("service create source: %s", r)
	}
	sc.waitPlacement(t, mgr, "source", 60*time.Second, "source running", func(p placement) bool { return p.total == 1 })
	var sink string
	if !pollUntil(30*time.Second, func() bool {
		for _, v := range taskContainers(sc.workers[0]) {
			if f := strings.Fields(v); len(f) == 2 && f[1] == "running" && strings.HasPrefix(f[0], "sink.") {
				sink = f[0]
			}
		}
		return sink != ""
	}) {
		t.Fatalf("no running sink container on %s: %v", sc.workers[0].Name, taskContainers(sc.workers[0]))
	}

	// received is how many lines the sink has, after checking that they
	// are 1, 2, 3... and that its connection has not ended.
	received := func() int {
		t.Helper()
		r := sc.workers[0].Daemon.Run("exec", sink, "sh", "-c", "cat /tmp/ended 2>/dev/null; cat /tmp/got")
		if r.Code != 0 {
			t.Fatalf("read the sink: %s", r)
		}
		lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
		if strings.TrimSpace(r.Stdout) == "" {
			return 0
		}
		if lines[0] == "ended" {
			t.Fatalf("the connection ended after %d lines", len(lines)-1)
		}
		// The last line may be cut mid-write: only the ones before it count.
		whole := lines[:len(lines)-1]
		for i, l := range whole {
			if l != strconv.Itoa(i+1) {
				t.Fatalf("line %d is %q: the stream lost or reordered data", i+1, l)
			}
		}
		return len(whole)
	}
	if !pollUntil(30*time.Second, func() bool { return received() > 5 }) {
		t.Fatalf("no data through the encrypted overlay: %d lines", received())
	}

	// Through two rotations after the stream started: the newest key's
	// creation time moves on twice while lines keep arriving.
	start := time.Now()
	first := getSwarm(t, mgr.Daemon).DataKeys[0].CreatedAt
	seen := map[time.Time]bool{first: true}
	last, lastGrowth, maxStall := received(), time.Now(), time.Duration(0)
	// A rotation reaches both ends within a moment of each other, and a
	// node opens under a new key at once but seals with it only 5s later
	// (overlaynet/encrypt): no line should wait. The line arrives every
	// 0.1s and checks run every second; 5s without a byte is a rotation
	// that cut the path (it was 20s while WireGuard's handshake retry was
	// part of a rotation).
	const stallLimit = 5 * time.Second
	for len(seen) < 3 {
		if time.Since(start) > 150*time.Second {
			t.Fatalf("after %s the cluster's data key was made %d times (want 3 distinct newest keys): %v", time.Since(start).Round(time.Second), len(seen), seen)
		}
		time.Sleep(time.Second)
		if n := received(); n > last {
			maxStall = max(maxStall, time.Since(lastGrowth))
			last, lastGrowth = n, time.Now()
		} else if stall := time.Since(lastGrowth); stall > stallLimit {
			t.Fatalf("no byte arrived for %s after line %d (key rotations seen: %d)", stall.Round(time.Second), last, len(seen)-1)
		}
		seen[getSwarm(t, mgr.Daemon).DataKeys[0].CreatedAt] = true
	}
	// A few seconds more past the last rotation, for the re-key to settle.
	time.Sleep(5 * time.Second)
	if n := received(); n <= last {
		t.Fatalf("no line after the last rotation (%d lines)", n)
	} else {
		last = n
	}
	t.Logf("%d lines over one connection in %s through %d rotations; longest time between two reads that saw it grow: %s",
		last, time.Since(start).Round(time.Second), len(seen)-1, maxStall.Round(100*time.Millisecond))
	for _, h := range sc.workers {
		if n := strings.Count(h.Daemon.Log(), "new cluster data key: gossip and encrypted networks' tunnels re-keyed"); n < 2 {
			t.Errorf("%s re-keyed its tunnels %d times, want 2 or more", h.Name, n)
		}
	}
}
