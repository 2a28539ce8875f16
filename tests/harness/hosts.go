package harness

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// netnsDir is where `ip netns` keeps the bind mounts that name namespaces.
const netnsDir = "/run/netns/"

// switchBridge is the bridge in a cluster's switch namespace.
const switchBridge = Prefix + "br"

// partitionTable is the nftables table Partition adds inside a host namespace.
const partitionTable = Prefix + "_partition"

// Cluster is a set of test hosts on one switch: a network namespace holding a
// Linux bridge, with a veth to each host. The bridge lives in a namespace of
// its own, not the root one, so that the machine's firewall (iptables' FORWARD
// policy DROP on a Docker host, with br_netfilter sending bridged frames
// through it) never sees the hosts' traffic: the switch namespace starts with
// an empty ruleset and nothing else touches it. Hosts reach each other and
// nothing else, not even the root namespace.
type Cluster struct {
	Hosts  []*Host
	Switch string // netns path of the switch
	Subnet string // 198.18.K.0/24; host i has 198.18.K.i

	t testing.TB
	k int
	// cpuGroup, when set, is the cgroup (in every hierarchy) that holds
	// the cluster's daemons, shims and containers, with a CPU quota.
	cpuGroup string
}

// Host is one test host: a network namespace with eth0 on the cluster's
// switch and a `shoal daemon` running inside it.
type Host struct {
	Name   string // readable and the daemon's --node-name: node1, node2...
	IP     string // eth0's address, e.g. 198.18.7.2
	NetNS  string // /run/netns/...
	Daemon *Daemon

	t testing.TB
}

// NewCluster makes n test hosts on a fresh switch, each running a daemon, and
// registers the removal of all of it with t, which runs also when t fails.
// It must be called from the test's goroutine (it fails t on error).
func NewCluster(t testing.TB, n int) *Cluster {
	return NewClusterCPU(t, n, 0)
}

// NewClusterCPU is NewCluster on a slower machine: all its hosts together
// (daemons, shims, containers) get cpus CPUs of CFS quota, through one cgroup
// that every daemon runs in and that holds every daemon's --cgroup-parent.
// cpus <= 0 means no limit.
func NewClusterCPU(t testing.TB, n int, cpus float64) *Cluster {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("test hosts need root")
	}
	c := &Cluster{t: t}
	c.claim()
	if cpus > 0 {
		c.limitCPU(cpus)
	}
	for i := 0; i < n; i++ {
		c.AddHost()
	}
	return c
}

// limitCPU makes the cluster's CPU cgroup with a quota of cpus and
// registers its removal (after the hosts', which are registered later).
func (c *Cluster) limitCPU(cpus float64) {
	c.t.Helper()
	c.cpuGroup = fmt.Sprintf("%s-k%d-cpu", Prefix, c.k)
	c.t.Cleanup(func() { removeCgroups(c.cpuGroup) })
	const period = 100000
	quota := strconv.Itoa(int(cpus * period))
	if v1 := "/sys/fs/cgroup/cpu"; dirExists(v1 + "/cpu.cfs_quota_us") {
		dir := filepath.Join(v1, c.cpuGroup)
		err := os.MkdirAll(dir, 0o755)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, "cpu.cfs_period_us"), []byte(strconv.Itoa(period)), 0)
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, "cpu.cfs_quota_us"), []byte(quota), 0)
		}
		if err != nil {
			c.t.Fatalf("cpu limit of the test hosts: %v", err)
		}
		return
	}
	dir := filepath.Join("/sys/fs/cgroup", c.cpuGroup)
	err := os.WriteFile("/sys/fs/cgroup/cgroup.subtree_control", []byte("+cpu"), 0)
	if err == nil {
		err = os.MkdirAll(dir, 0o755)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "cpu.max"), []byte(quota+" "+strconv.Itoa(period)), 0)
	}
	if err != nil {
		c.t.Fatalf("cpu limit of the test hosts (cgroup v2): %v", err)
	}
}

// joinCPU moves a host's daemon into the cluster's CPU cgroup; what it starts
// later (shims) follows it, and its containers' cgroups are under it.
func (c *Cluster) joinCPU(d *Daemon) {
	c.t.Helper()
	procs := filepath.Join("/sys/fs/cgroup", c.cpuGroup, "cgroup.procs")
	if dirExists("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") {
		procs = filepath.Join("/sys/fs/cgroup/cpu", c.cpuGroup, "cgroup.procs")
	}
	if err := os.WriteFile(procs, []byte(strconv.Itoa(d.PID())), 0); err != nil {
		c.t.Fatalf("move daemon %s into the cluster's cpu cgroup: %v", d.Name, err)
	}
}

func dirExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// claim picks the cluster's K by creating the switch namespace: creation
// fails when the name exists, so a K held by a live run in another process,
// or by a crashed run's leftover that Sweep has not removed yet, is skipped
// rather than shared. The search starts from the pid to spread processes.
func (c *Cluster) claim() {
	c.t.Helper()
	start := os.Getpid() % 254
	for j := 0; j < 254; j++ {
		k := (start+j)%254 + 1
		name := fmt.Sprintf("%s-k%d-sw", Prefix, k)
		out, err := exec.Command("ip", "netns", "add", name).CombinedOutput()
		if err != nil {
			if _, serr := os.Stat(netnsDir + name); serr == nil {
				continue
			}
			c.t.Fatalf("ip netns add %s: %v: %s", name, err, out)
		}
		c.k, c.Switch, c.Subnet = k, netnsDir+name, fmt.Sprintf("198.18.%d.0/24", k)
		// Registered first, so it runs last: after every host is gone.
		c.t.Cleanup(func() {
			if err := deleteNetns(c.Switch); err != nil {
				c.t.Errorf("remove switch: %v", err)
			}
		})
		if err := ipBatch(name, "link add name "+switchBridge+" type bridge", "link set "+switchBridge+" up"); err != nil {
			c.t.Fatalf("switch bridge: %v", err)
		}
		plainSwitch(name)
		return
	}
	c.t.Fatal("no free 198.18.K.0/24 for a test cluster: run Sweep")
}

// plainSwitch makes the switch namespace's bridge forward frames as a switch
// does, without handing them to netfilter: br_netfilter's sysctls are per
// namespace and start at 1 wherever br_netfilter is in the kernel (built in
// on these machines), and then every frame, and every fragment of a large datagram, went
// through the bridge's netfilter hooks, a cost no real switch has (perf of
// the encrypted overlay bench: about a tenth of the daemons' CPU). Without
// br_netfilter there is nothing to turn off.
func plainSwitch(netns string) {
	for _, k := range []string{"iptables", "ip6tables", "arptables"} {
		exec.Command("ip", "netns", "exec", netns, "sysctl", "-qw", "net.bridge.bridge-nf-call-"+k+"=0").Run()
	}
}

// GWBridgeSubnet is the subnet of every test host's NAT bridge for overlay
// tasks (daemon --gwbridge-subnet): outside the hosts' 198.18.K.0/24, the
// daemons' --bip (198.19.1-250.0/24) and the tests' overlay address pool
// (198.19.252.0/22).
const GWBridgeSubnet = "198.19.251.0/24"

// AddHost adds a host to the cluster and starts its daemon, as a new machine
// joins a network; the daemon has not joined any swarm yet.
func (c *Cluster) AddHost() *Host {
	c.t.Helper()
	i := len(c.Hosts) + 1
	name := fmt.Sprintf("%s-k%d-n%d", Prefix, c.k, i)
	h := &Host{Name: fmt.Sprintf("node%d", i), IP: fmt.Sprintf("198.18.%d.%d", c.k, i), NetNS: netnsDir + name, t: c.t}
	// We hold this K's switch, so a host namespace of the same name can
	// only be a crashed run's leftover: it goes, with what still runs in it.
	if _, err := os.Stat(h.NetNS); err == nil {
		killNetns(h.NetNS)
		if err := deleteNetns(h.NetNS); err != nil {
			c.t.Fatalf("leftover %s: %v", name, err)
		}
	}
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		c.t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	c.t.Cleanup(h.remove) // before StartDaemon's, so it runs after the daemon is gone
	// Both ends are made inside their namespaces: the root namespace never
	// holds a link of ours, even for a moment, whatever happens.
	port, sw := fmt.Sprintf("%s-n%d", Prefix, i), filepath.Base(c.Switch)
	err := ipBatch("", fmt.Sprintf("link add name %s netns %s type veth peer name eth0 netns %s", port, sw, name))
	if err == nil {
		err = ipBatch(sw, "link set "+port+" master "+switchBridge, "link set "+port+" up")
	}
	if err == nil {
		err = ipBatch(name, "addr add "+h.IP+"/24 dev eth0", "link set eth0 up", "link set lo up")
	}
	if err != nil {
		c.t.Fatalf("host %s: %v", h.Name, err)
	}
	// The NAT bridge of overlay tasks takes a test address too (each
	// host's is in its own namespace, so they may all have the same).
	opts := Options{NetNS: h.NetNS, NodeName: h.Name, Args: []string{"--gwbridge-subnet", GWBridgeSubnet}}
	if c.cpuGroup != "" {
		// The last --cgroup-parent wins: the host's containers go under
		// the cluster's CPU cgroup.
		opts.Args = append(opts.Args, "--cgroup-parent", c.cpuGroup+"/"+h.Name)
	}
	h.Daemon = StartDaemon(c.t, opts)
	if c.cpuGroup != "" {
		c.joinCPU(h.Daemon)
	}
	c.Hosts = append(c.Hosts, h)
	return h
}

// remove kills whatever still runs in the host and deletes its namespace,
// which takes eth0 and its peer on the switch with it.
func (h *Host) remove() {
	killNetns(h.NetNS)
	if err := deleteNetns(h.NetNS); err != nil {
		h.t.Errorf("remove host %s: %v", h.Name, err)
	}
}

// Command returns a command that runs inside the host's network namespace
// (nsenter --net only: it keeps the machine's mount namespace and /sys).
func (h *Host) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"--net=" + h.NetNS, name}, args...)...)
}

// Exec runs a command inside the host's network namespace, for at most a
// minute, and returns what it did.
func (h *Host) Exec(args ...string) Result {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + h.NetNS}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	code := 0
	if err := cmd.Run(); err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	return Result{Stdout: out.String(), Stderr: errb.String(), Code: code}
}

// Listen opens a listener inside the host's network namespace; it serves
// from the test process, so KillAll leaves it open (but unreachable).
func (h *Host) Listen(network, address string) (l net.Listener, err error) {
	err = inNetNS(h.NetNS, func() (e error) { l, e = net.Listen(network, address); return })
	return l, err
}

// DialTimeout connects from inside the host's network namespace.
func (h *Host) DialTimeout(network, address string, timeout time.Duration) (c net.Conn, err error) {
	err = inNetNS(h.NetNS, func() (e error) { c, e = net.DialTimeout(network, address, timeout); return })
	return c, err
}

// KillAll makes the host a lost node: SIGKILL to the daemon and to
// everything else of the host (shims, containers, commands run in its
// namespace), then eth0 down, as if the machine had lost power. Roots, mounts
// and cgroups stay, as on a real machine, for Restart to find.
func (h *Host) KillAll() {
	h.t.Helper()
	h.Daemon.Kill9()
	if left := killProcs(h.processes); len(left) > 0 {
		h.t.Fatalf("host %s: processes survive SIGKILL: %v", h.Name, left)
	}
	if err := ipBatch(filepath.Base(h.NetNS), "link set eth0 down"); err != nil {
		h.t.Fatalf("host %s: %v", h.Name, err)
	}
}

// Restart brings eth0 up and starts the daemon again on the same roots in the
// same namespace (stopping it first if it still runs). A Partition stays.
func (h *Host) Restart() {
	h.t.Helper()
	if err := ipBatch(filepath.Base(h.NetNS), "link set eth0 up"); err != nil {
		h.t.Fatalf("host %s: %v", h.Name, err)
	}
	h.Daemon.Restart()
}

// Partition cuts the host off: every packet in or out of eth0 is dropped
// inside the host's namespace, while loopback, the daemon's socket and the
// link itself stay up, so peers see timeouts, not errors, as in a real
// network split. It can be called again; Heal undoes it.
func (h *Host) Partition() {
	h.t.Helper()
	// Creating the table empty and deleting it first makes the script
	// idempotent; nft applies it as one transaction. Drops are final over
	// all base chains, so no accept rule of the daemon's own can undo them.
	h.Nft(`table inet ` + partitionTable + ` {}
delete table inet ` + partitionTable + `
table inet ` + partitionTable + ` {
	chain cut_in { type filter hook input priority -300; iifname "eth0" drop; }
	chain cut_forward { type filter hook forward priority -300; iifname "eth0" drop; oifname "eth0" drop; }
	chain cut_out { type filter hook output priority -300; oifname "eth0" drop; }
}
`)
}

// Heal undoes Partition; it is a no-op on a host that is not partitioned.
func (h *Host) Heal() {
	h.t.Helper()
	h.Nft("table inet " + partitionTable + " {}\ndelete table inet " + partitionTable + "\n")
}

// Nft applies an nft script inside the host's network namespace (one
// transaction); a failure fails the test.
func (h *Host) Nft(script string) {
	h.t.Helper()
	cmd := h.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		h.t.Fatalf("host %s: nft: %v: %s", h.Name, err, out)
	}
}

// processes lists the live processes of the host: those in its network
// namespace (the daemon, shims, Exec'd commands), in its daemon's cgroups
// (containers, which have namespaces of their own) and those whose command
// line names the daemon's roots.
func (h *Host) processes() []int {
	cg := map[int]bool{}
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/" + h.Daemon.CgroupParent)
	for _, root := range roots {
		filepath.WalkDir(root, func(path string, e os.DirEntry, err error) error {
			if err == nil && !e.IsDir() && e.Name() == "cgroup.procs" {
				b, _ := os.ReadFile(path)
				for _, f := range strings.Fields(string(b)) {
					if pid, err := strconv.Atoi(f); err == nil {
						cg[pid] = true
					}
				}
			}
			return nil
		})
	}
	dir := filepath.Dir(h.Daemon.Root) + "/"
	ns, _ := nsID(h.NetNS)
	return scanProcs(func(pid int, netns uint64, cmdline string) bool {
		return cg[pid] || (ns != 0 && netns == ns) || strings.Contains(cmdline, dir)
	})
}

// ipBatch runs ip commands (one per line, `ip` left out) in the named
// namespace, or the root one for "", in one process.
func ipBatch(netns string, lines ...string) error {
	args := []string{"-batch", "-"}
	if netns != "" {
		args = append([]string{"-n", netns}, args...)
	}
	cmd := exec.Command("ip", args...)
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s <<%q: %v: %s", strings.Join(args, " "), lines, err, out)
	}
	return nil
}

// inNetNS runs fn on an OS thread switched into the namespace at path.
// Sockets belong to the namespace they are made in, so what fn opens stays
// there after the thread switches back. The goroutine is new so that the
// caller's thread is never touched, and a thread that cannot switch back is
// left locked, which makes the runtime end it rather than reuse it.
func inNetNS(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		target, err := os.Open(path)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err == nil {
			defer self.Close()
			if err = unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
				err = fmt.Errorf("setns %s: %w", path, err)
			}
		}
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		err = fn()
		if unix.Setns(int(self.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// ListenPacketIn opens a packet socket inside the network namespace at
// path (a task's, say): the test serves from inside it without a process
// there.
func ListenPacketIn(path, network, address string) (c net.PacketConn, err error) {
	err = inNetNS(path, func() (e error) { c, e = net.ListenPacket(network, address); return })
	return c, err
}
