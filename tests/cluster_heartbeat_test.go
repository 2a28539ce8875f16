package tests

import (
	"crypto/rand"
	"encoding/binary"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-project/shoal/tests/harness"
)

// TestClusterHeartbeatFast: a manager answers its agents' heartbeats on UDP
// 2377 from a process of its own (manager/heartbeat). The worker's beats
// arrive there and are answered (nft counters in the manager's namespace);
// datagrams that are not an agent's authentic beat get no answer; the
// answering process, killed, is started again while the worker stays
// READY; and it ends with its daemon.
func TestClusterHeartbeatFast(t *testing.T) {
	s := newSwarm(t, 1, 1)
	m, w := s.managers[0], s.workers[0]
	server := func() int {
		pids := heartbeatServers(t, m.Daemon.PID())
		if len(pids) > 1 {
			t.Fatalf("%d answering processes: %v", len(pids), pids)
		}
		if len(pids) == 0 {
			return 0
		}
		return pids[0]
	}
	var first int
	waitFor(t, "the manager's heartbeat-server process", func() bool { first = server(); return first != 0 })

	// Count the datagrams on the manager's UDP 2377 for a few periods.
	m.Nft(`table inet hbcount {
	chain in { type filter hook input priority 0; udp dport 2377 counter; }
	chain out { type filter hook output priority 0; udp sport 2377 counter; }
}`)
	defer m.Nft("delete table inet hbcount")
	time.Sleep(4 * time.Second)
	in, out := nftCounters(t, m)
	if in < 3 || out < 3 {
		t.Fatalf("in 4 s the manager's UDP 2377 got %d datagrams and sent %d: the worker does not beat through the fast path", in, out)
	}

	// Strangers: garbage, and a beat of a real-looking slot under a key
	// that is not the session's. Neither may be answered.
	conn, err := w.DialTimeout("udp", net.JoinHostPort(m.IP, "2377"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	forged := make([]byte, 64)
	copy(forged, "SHB1")
	for slot := uint32(0); slot < 4; slot++ {
		binary.BigEndian.PutUint32(forged[4:], slot)
		for gen := uint64(1); gen < 4; gen++ {
			binary.BigEndian.PutUint64(forged[8:], gen)
			binary.BigEndian.PutUint64(forged[16:], 1<<40)
			binary.BigEndian.PutUint64(forged[24:], uint64(time.Now().UnixNano()))
			rand.Read(forged[48:])
			conn.Write(forged)
		}
	}
	garbage := make([]byte, 200)
	rand.Read(garbage)
	conn.Write(garbage)
	conn.Write(nil)
	conn.SetReadDeadline(time.Now().Add(time.Second))
	if n, err := conn.Read(make([]byte, 512)); err == nil {
		t.Fatalf("a forged beat or garbage was answered (%d bytes)", n)
	}

	// The answering process, killed, is started again; the worker's beats
	// go over gRPC meanwhile and it is never declared down.
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var second int
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if second = server(); second != 0 && second != first {
			break
		}
		ns, r := nodeList(m)
		if r.Code == 0 {
			if n, ok := nodeByName(ns, w.Name); ok && n.Status != "Ready" {
				t.Fatalf("worker %s while the answering process was down:\n%s", n.Status, nodeTable(ns))
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if second == 0 || second == first {
		t.Fatalf("answering process not started again after SIGKILL (was %d, now %d)", first, second)
	}

	// It ends with its daemon, also a daemon killed with SIGKILL.
	m.Daemon.Kill9()
	waitFor(t, "the answering process to end with its daemon", func() bool { return !processAlive(second) })
}

// heartbeatServers lists the live children of pid that run as the
// heartbeat-server.
func heartbeatServers(t *testing.T, pid int) []int {
	t.Helper()
	tasks, _ := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	var out []int
	for _, task := range tasks {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + task.Name() + "/children")
		for _, f := range strings.Fields(string(b)) {
			cl, _ := os.ReadFile("/proc/" + f + "/cmdline")
			if c, _ := strconv.Atoi(f); c > 0 && strings.Contains(string(cl), "heartbeat-server") && processAlive(c) {
				out = append(out, c)
			}
		}
	}
	return out
}

// processAlive reports whether pid runs and is not a zombie.
func processAlive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z'
}

var packetsRE = regexp.MustCompile(`counter packets (\d+)`)

// nftCounters reads the hbcount table's two counters (in, out).
func nftCounters(t *testing.T, h *harness.Host) (in, out int) {
	t.Helper()
	r := h.Exec("nft", "list", "table", "inet", "hbcount")
	ms := packetsRE.FindAllStringSubmatch(r.Stdout, -1)
	if r.Code != 0 || len(ms) != 2 {
		t.Fatalf("nft counters on %s: %s", h.Name, r)
	}
	in, _ = strconv.Atoi(ms[0][1])
	out, _ = strconv.Atoi(ms[1][1])
	return in, out
}
