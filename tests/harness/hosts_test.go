package harness

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	Sweep()
	tmp, err := buildBinary()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	Sweep()
	os.RemoveAll(tmp)
	os.Exit(code)
}

// buildBinary builds shoal into a new directory outside BaseDir and sets
// SHOAL_BIN, unless it is set: TestHostsSweep calls Sweep, which removes
// BaseDir, and with it a binary that Binary built there for later tests.
func buildBinary() (dir string, err error) {
	if os.Getenv("SHOAL_BIN") != "" {
		return "", nil
	}
	if dir, err = os.MkdirTemp("", "shoalbin-"); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "shoal")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/shoal-project/shoal/cmd/shoal")
	cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("go build: %v: %s", err, out)
	}
	return dir, os.Setenv("SHOAL_BIN", bin)
}

// tcpCheck listens on to's address inside its namespace and connects from
// from's, within timeout; the listener answers with its host's name.
func tcpCheck(from, to *Host, timeout time.Duration) error {
	l, err := to.Listen("tcp", net.JoinHostPort(to.IP, "0"))
	if err != nil {
		return err
	}
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			io.WriteString(c, to.Name)
			c.Close()
		}
	}()
	c, err := from.DialTimeout("tcp", l.Addr().String(), timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	b, err := io.ReadAll(c)
	if err != nil || string(b) != to.Name {
		return fmt.Errorf("read %q, %v; want %q", b, err, to.Name)
	}
	return nil
}

// alive reports whether pid runs (a zombie has ended).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil && !strings.Contains(string(b), ") Z ")
}

// trace is what a cluster made that must be gone after its test.
type trace struct {
	netns, cgroups, dirs []string
	pids                 []int
}

func (tr *trace) record(c *Cluster) {
	tr.netns = append(tr.netns, c.Switch)
	for _, h := range c.Hosts {
		tr.netns = append(tr.netns, h.NetNS)
		tr.dirs = append(tr.dirs, filepath.Dir(h.Daemon.Root))
		tr.cgroups = append(tr.cgroups, h.Daemon.CgroupParent)
		tr.pids = append(tr.pids, h.processes()...)
	}
}

func (tr *trace) assertGone(t *testing.T) {
	t.Helper()
	for _, p := range tr.netns {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("netns %s remains (%v)", p, err)
		}
	}
	for _, d := range tr.dirs {
		if _, err := os.Lstat(d); !os.IsNotExist(err) {
			t.Errorf("daemon directory %s remains", d)
		}
	}
	for _, cg := range tr.cgroups {
		if m, _ := filepath.Glob("/sys/fs/cgroup/*/" + cg); len(m) > 0 {
			t.Errorf("cgroups remain: %v", m)
		}
	}
	for _, pid := range tr.pids {
		if alive(pid) {
			t.Errorf("process %d remains", pid)
		}
	}
	if out, _ := exec.Command("ip", "-o", "link", "show").Output(); strings.Contains(string(out), Prefix) {
		t.Errorf("a link named %s... is in the root namespace:\n%s", Prefix, out)
	}
}

func TestHostsCluster(t *testing.T) {
	var tr trace
	t.Run("cluster", func(t *testing.T) {
		start := time.Now()
		c := NewCluster(t, 3)
		t.Logf("NewCluster(t, 3): %v, subnet %s", time.Since(start), c.Subnet)
		for i, h := range c.Hosts {
			h.Daemon.Must("version")
			if got := strings.TrimSpace(h.Daemon.Must("info", "--format", "{{.Name}}")); got != h.Name || h.Name != fmt.Sprintf("node%d", i+1) {
				t.Errorf("host %s: daemon's node name %q", h.Name, got)
			}
			if r := h.Exec("ip", "-4", "-o", "addr", "show", "dev", "eth0"); !strings.Contains(r.Stdout, " "+h.IP+"/24 ") {
				t.Errorf("host %s eth0: %s", h.Name, r)
			}
		}
		h1, h2, h3 := c.Hosts[0], c.Hosts[1], c.Hosts[2]
		for _, p := range [][2]*Host{{h1, h2}, {h2, h3}, {h3, h1}} {
			if err := tcpCheck(p[0], p[1], 5*time.Second); err != nil {
				t.Fatalf("TCP %s -> %s: %v", p[0].Name, p[1].Name, err)
			}
		}

		// Partition: eth0 drops both ways, loopback and the daemon still work.
		h3.Partition()
		h3.Partition() // idempotent
		if err := tcpCheck(h1, h3, 500*time.Millisecond); err == nil {
			t.Error("partitioned host reachable")
		}
		if err := tcpCheck(h3, h1, 500*time.Millisecond); err == nil {
			t.Error("partitioned host reaches out")
		}
		lo := &Host{Name: h3.Name, IP: "127.0.0.1", NetNS: h3.NetNS}
		if err := tcpCheck(h3, lo, 5*time.Second); err != nil {
			t.Errorf("loopback of a partitioned host: %v", err)
		}
		h3.Daemon.Must("version")
		h3.Heal()
		h3.Heal()
		if err := tcpCheck(h1, h3, 5*time.Second); err != nil {
			t.Errorf("healed host: %v", err)
		}

		// A lost node: daemon, shim, container and a command in the
		// namespace all die, and the host is unreachable.
		h2.Daemon.Must("import", BusyboxTar(t), "busybox:latest")
		id := strings.TrimSpace(h2.Daemon.Must("run", "-d", "busybox", "sleep", "600"))
		sleeper := h2.Command("sleep", "600")
		if err := sleeper.Start(); err != nil {
			t.Fatal(err)
		}
		go sleeper.Wait()
		// The sleeper is in the namespace only once nsenter has entered it
		// and exec'd: until then it is a child of ours in the root one.
		var before []int
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if before = h2.processes(); len(before) >= 4 || time.Now().After(deadline) {
				break
			}
		}
		if len(before) < 4 { // daemon, shim, container, sleeper
			t.Fatalf("host %s processes before KillAll: %v", h2.Name, before)
		}
		h2.KillAll()
		for _, pid := range append(before, sleeper.Process.Pid) {
			if alive(pid) {
				t.Errorf("process %d survives KillAll", pid)
			}
		}
		if left := h2.processes(); len(left) > 0 {
			t.Errorf("host processes after KillAll: %v", left)
		}
		if err := tcpCheck(h1, h2, 500*time.Millisecond); err == nil {
			t.Error("a killed host is reachable")
		}
		h2.Restart()
		h2.Daemon.Must("version")
		if err := tcpCheck(h1, h2, 5*time.Second); err != nil {
			t.Errorf("restarted host: %v", err)
		}
		if out := h2.Daemon.Must("ps", "-aq", "--no-trunc"); !strings.Contains(out, id) {
			t.Errorf("restarted daemon lost container %s: %q", id[:12], out)
		}
		tr.record(c)
	})
	tr.assertGone(t)
}

// TestHostsFive builds a five-host cluster (the size of the cluster tests),
// checks a ring of TCP connections over it and leaves one host killed.
func TestHostsFive(t *testing.T) {
	var tr trace
	t.Run("cluster", func(t *testing.T) {
		start := time.Now()
		c := NewCluster(t, 5)
		t.Logf("NewCluster(t, 5): %v", time.Since(start))
		for i, h := range c.Hosts {
			next := c.Hosts[(i+1)%len(c.Hosts)]
			if err := tcpCheck(h, next, 5*time.Second); err != nil {
				t.Errorf("TCP %s -> %s: %v", h.Name, next.Name, err)
			}
		}
		tr.record(c)
		// Left lost at the end: cleanup must cope with a dead daemon too.
		c.Hosts[4].KillAll()
	})
	tr.assertGone(t)
}

// leftover makes a network namespace as a crashed run leaves it, with a
// process still in it (one that names no harness path, so only the
// namespace ties it to the run), and returns that process.
func leftover(t *testing.T, name string, lines ...string) *exec.Cmd {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() { deleteNetns(netnsDir + name) })
	if err := ipBatch(name, lines...); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("nsenter", "--net="+netnsDir+name, "sleep", "600")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	go cmd.Wait()
	return cmd
}

// TestHostsSweep leaves what a crashed run would (a switch and a host of the
// K this process tries first, a link in the root namespace) and checks that
// NewCluster works beside them, that Sweep removes them, and that a lone
// leftover host of the K a cluster claims is replaced.
func TestHostsSweep(t *testing.T) {
	k := os.Getpid()%254 + 1
	sw := fmt.Sprintf("%s-k%d-sw", Prefix, k)
	host := fmt.Sprintf("%s-k%d-n1", Prefix, k)
	p1 := leftover(t, sw, "link add name "+Prefix+"br type bridge", "link set "+Prefix+"br up")
	p2 := leftover(t, host, "link set lo up")
	if err := ipBatch("", "link add name "+Prefix+"-n1 netns "+sw+" type veth peer name eth0 netns "+host,
		"link add name "+Prefix+"-x type veth peer name "+Prefix+"-y"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeLinks(Prefix) })

	t.Run("beside leftovers", func(t *testing.T) {
		c := NewCluster(t, 2)
		if c.k == k {
			t.Fatalf("claimed K %d, which a leftover holds", k)
		}
		if err := tcpCheck(c.Hosts[0], c.Hosts[1], 5*time.Second); err != nil {
			t.Fatal(err)
		}
	})

	Sweep()
	for _, name := range []string{sw, host} {
		if _, err := os.Lstat(netnsDir + name); !os.IsNotExist(err) {
			t.Errorf("Sweep left netns %s", name)
		}
	}
	if out, _ := exec.Command("ip", "-o", "link", "show").Output(); strings.Contains(string(out), Prefix) {
		t.Errorf("Sweep left a link:\n%s", out)
	}
	time.Sleep(50 * time.Millisecond) // for the Wait goroutines to reap
	for _, p := range []*exec.Cmd{p1, p2} {
		if alive(p.Process.Pid) {
			t.Errorf("Sweep left process %d of a leftover namespace", p.Process.Pid)
		}
	}

	p3 := leftover(t, host, "link set lo up")
	var tr trace
	claimed := 0
	t.Run("lone leftover host", func(t *testing.T) {
		c := NewCluster(t, 2)
		if claimed = c.k; claimed != k {
			t.Logf("claimed K %d, not %d: another process holds it?", c.k, k)
		}
		if err := tcpCheck(c.Hosts[0], c.Hosts[1], 5*time.Second); err != nil {
			t.Fatal(err)
		}
		tr.record(c)
	})
	if claimed == k && alive(p3.Process.Pid) {
		t.Errorf("the process of a replaced leftover host survives")
	}
	tr.assertGone(t)
}

// A leftover FORWARD rule with a comment (as the daemon's bridge writes
// them) is removed by the sweep.
func TestRemoveFirewallCommentedRule(t *testing.T) {
	link := fmt.Sprintf("shoaltst%d", os.Getpid()%100000)
	rule := []string{"FORWARD", "-i", link, "-m", "comment", "--comment", "shoal bridge " + link, "-j", "ACCEPT"}
	if out, err := exec.Command("iptables", append([]string{"-A"}, rule...)...).CombinedOutput(); err != nil {
		t.Fatalf("iptables -A: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("iptables", append([]string{"-D"}, rule...)...).Run() })
	removeFirewall(link)
	if err := exec.Command("iptables", append([]string{"-C"}, rule...)...).Run(); err == nil {
		t.Fatalf("the commented rule of %s is still in FORWARD after the sweep", link)
	}
}

// TestBridgeIPSkipsTakenSubnet: a /24 that a link of the host already
// holds (a user's bridge, a scratch daemon's) is not handed to a test
// daemon, which would refuse to start on it; in a test host's own
// namespace it is.
func TestBridgeIPSkipsTakenSubnet(t *testing.T) {
	k := os.Getpid()%200 + 20
	want := fmt.Sprintf("198.19.%d.1/24", k)
	link := Prefix + "-bt"
	exec.Command("ip", "link", "del", link).Run() // a crashed run's
	t.Cleanup(func() { exec.Command("ip", "link", "del", link).Run() })
	for _, args := range [][]string{
		{"link", "add", link, "type", "bridge"},
		{"addr", "add", fmt.Sprintf("198.19.%d.7/24", k), "dev", link},
		{"link", "set", link, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	if got := bridgeIP(k-1, true); got == want {
		t.Errorf("on the host: %s, which %s holds", got, link)
	}
	if got := bridgeIP(k-1, false); got != want {
		t.Errorf("in a test host: %s, want %s", got, want)
	}
}
