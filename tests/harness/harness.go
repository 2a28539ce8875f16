// Package harness runs shoal daemons for end-to-end tests: each with its own data
// root, exec root, socket, cgroup parent and bridge, so several run side by side,
// and each removed with everything it made when the test ends, also on failure.
//
// Every name a test makes starts with Prefix, so that Sweep can remove what a
// crashed earlier run left behind (mounts, processes, cgroups, links, nft tables)
// before a new run starts.
package harness

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Prefix starts every directory, cgroup and link name the harness makes.
const Prefix = "shoale2e"

// BaseDir holds the roots of every daemon under test.
const BaseDir = "/tmp/" + Prefix

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// Binary returns the shoal binary under test: $SHOAL_BIN, or one built once per
// test process from ./cmd/shoal.
func Binary(t testing.TB) string {
	t.Helper()
	if b := os.Getenv("SHOAL_BIN"); b != "" {
		return b
	}
	buildOnce.Do(func() {
		if err := os.MkdirAll(BaseDir, 0o755); err != nil {
			buildErr = err
			return
		}
		dir, err := os.MkdirTemp(BaseDir, "bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "shoal")
		cmd := exec.Command("go", "build", "-o", builtBin, "github.com/shoal-project/shoal/cmd/shoal")
		cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false", "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build shoal: %v", buildErr)
	}
	return builtBin
}

// Daemon is one running `shoal daemon` under test.
type Daemon struct {
	Bin          string
	Name         string // unique per daemon; used in every path and name below
	Root         string // --data-root
	ExecRoot     string // --exec-root
	Socket       string
	CgroupParent string
	Bridge       string
	BIP          string // bridge subnet (CIDR of the gateway address)
	NetNS        string // when set, the daemon runs inside this network namespace (path)
	NodeName     string // --node-name; Name when empty

	t   testing.TB
	cmd *exec.Cmd
	log *os.File
	// exited is closed once cmd is reaped: every thread of the daemon
	// gone and its descriptors closed (a tunnel device with them).
	exited chan struct{}
	args   []string // Options.Args, kept for Restart
}

// Options change how a daemon starts.
type Options struct {
	// NetNS is a netns path to run the daemon in (with nsenter --net).
	NetNS string
	// NodeName is the daemon's --node-name; empty means the daemon's unique
	// Name. Test hosts set a readable one ("node1") that tests can match in
	// `node ls` output.
	NodeName string
	// Args are extra daemon flags.
	Args []string
	// Bin is the shoal binary to run; empty means Binary's.
	Bin string
}

var seq struct {
	sync.Mutex
	n int
}

func nextName() string {
	seq.Lock()
	defer seq.Unlock()
	seq.n++
	// Two base-36 digits: 1,296 daemons per test process before a name
	// repeats, and "br"+name still fits a 15-byte link name.
	return fmt.Sprintf("%s%d%02s", Prefix[:5], os.Getpid()%10000, strconv.FormatInt(int64(seq.n%1296), 36))
}

// StartDaemon starts a daemon with fresh roots and registers its removal.
func StartDaemon(t testing.TB, opts Options) *Daemon {
	t.Helper()
	holdRunLock()
	bin := opts.Bin
	if bin == "" {
		bin = Binary(t)
	}
	name := nextName()
	seq.Lock()
	n := seq.n
	seq.Unlock()
	dir := filepath.Join(BaseDir, name)
	d := &Daemon{
		Bin:          bin,
		Name:         name,
		Root:         filepath.Join(dir, "data"),
		ExecRoot:     filepath.Join(dir, "exec"),
		Socket:       filepath.Join(dir, "exec", "shoal.sock"),
		CgroupParent: Prefix + "-" + name,
		Bridge:       "br" + name,
		BIP:          bridgeIP(os.Getpid()+n, opts.NetNS == ""),
		NetNS:        opts.NetNS,
		NodeName:     opts.NodeName,
		t:            t,
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("mkdir %s: %v", dir, err)
	}
	t.Cleanup(func() { d.remove() })
	d.args = opts.Args
	d.start(opts.Args)
	return d
}

// bridgeIP is the --bip of the seq'th daemon, a /24 of 198.19.1-250.0/16.
// On the host (onHost) a /24 that a route of the host already covers or
// holds (another bridge: a network a user or another program made) is
// skipped, as the daemon would refuse it at start.
func bridgeIP(seq int, onHost bool) string {
	var routes [][2]uint32 // destination, mask, as /proc/net/route has them
	if onHost {
		routes = hostRoutes()
	}
	for i := 0; i < 250; i++ {
		k := (seq+i)%250 + 1
		// 198.19.k.0/24 in /proc/net/route's byte order (little endian).
		net, mask := uint32(198)|uint32(19)<<8|uint32(k)<<16, uint32(0x00ffffff)
		free := true
		for _, r := range routes {
			if r[1] != 0 && (net&r[1] == r[0] || r[0]&mask == net) {
				free = false
			}
		}
		if free {
			return fmt.Sprintf("198.19.%d.1/24", k)
		}
	}
	return fmt.Sprintf("198.19.%d.1/24", seq%250+1)
}

// hostRoutes reads the IPv4 routes of the harness's own network namespace.
func hostRoutes() [][2]uint32 {
	b, err := os.ReadFile("/proc/net/route")
	if err != nil {
		return nil
	}
	var out [][2]uint32
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		dst, err1 := strconv.ParseUint(f[1], 16, 32)
		mask, err2 := strconv.ParseUint(f[7], 16, 32)
		if err1 == nil && err2 == nil {
			out = append(out, [2]uint32{uint32(dst), uint32(mask)})
		}
	}
	return out
}

func (d *Daemon) start(extra []string) {
	d.t.Helper()
	node := d.NodeName
	if node == "" {
		node = d.Name
	}
	args := []string{"daemon",
		"--data-root", d.Root, "--exec-root", d.ExecRoot, "-H", "unix://" + d.Socket,
		"--cgroup-parent", d.CgroupParent, "--node-name", node,
		"--bridge-name", d.Bridge, "--bip", d.BIP}
	args = append(args, extra...)
	var cmd *exec.Cmd
	if d.NetNS != "" {
		cmd = exec.Command("nsenter", append([]string{"--net=" + d.NetNS, d.Bin}, args...)...)
	} else {
		cmd = exec.Command(d.Bin, args...)
	}
	logf, err := os.OpenFile(filepath.Join(filepath.Dir(d.Root), "daemon.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		d.t.Fatalf("daemon log: %v", err)
	}
	d.log = logf
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group: killing the daemon must not be confused with the test.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		d.t.Fatalf("start daemon: %v", err)
	}
	d.cmd = cmd
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	d.exited = exited
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			d.t.Fatalf("daemon exited at start:\n%s", d.Log())
		default:
		}
		if r := d.Run("version"); r.Code == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.t.Fatalf("daemon did not answer within 20s:\n%s", d.Log())
}

// PID is the daemon's process id, 0 when it is not running. A daemon of a
// test host runs under `nsenter --net`, which execs it in place: the same pid.
func (d *Daemon) PID() int {
	if d.cmd == nil || d.cmd.Process == nil {
		return 0
	}
	return d.cmd.Process.Pid
}

// Log returns what the daemon printed so far.
func (d *Daemon) Log() string {
	b, _ := os.ReadFile(filepath.Join(filepath.Dir(d.Root), "daemon.log"))
	return string(b)
}

// Result is what one CLI invocation did.
type Result struct {
	Stdout, Stderr string
	Code           int
}

func (r Result) String() string {
	return fmt.Sprintf("exit %d\nstdout: %s\nstderr: %s", r.Code, r.Stdout, r.Stderr)
}

// Run runs the CLI against this daemon and returns what it did.
func (d *Daemon) Run(args ...string) Result {
	return d.RunStdin(nil, args...)
}

// RunStdin runs the CLI with stdin.
func (d *Daemon) RunStdin(stdin []byte, args ...string) Result {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.Bin, append([]string{"-H", "unix://" + d.Socket}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	code := 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	return Result{Stdout: out.String(), Stderr: errb.String(), Code: code}
}

// Must runs the CLI and fails the test unless it exits 0; it returns stdout.
func (d *Daemon) Must(args ...string) string {
	d.t.Helper()
	r := d.Run(args...)
	if r.Code != 0 {
		d.t.Fatalf("shoal %s: %s\ndaemon log tail:\n%s", strings.Join(args, " "), r, tail(d.Log(), 2000))
	}
	return r.Stdout
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// Kill9 kills the daemon with SIGKILL, leaving its shims and containers running.
func (d *Daemon) Kill9() {
	if d.cmd != nil && d.cmd.Process != nil {
		_ = d.cmd.Process.Signal(syscall.SIGKILL)
		d.waitExited(5 * time.Second)
	}
	d.cmd = nil
}

// waitExited waits until the daemon's process is reaped, at most timeout,
// and reports whether it was. Its state in /proc is not enough: the group
// leader shows as a zombie while its other threads are still exiting with
// the process's descriptors open (a TUN device outlived a kill -9 so,
// TestClusterEncryptedOverlayRestart).
func (d *Daemon) waitExited(timeout time.Duration) bool {
	select {
	case <-d.exited:
		return true
	case <-time.After(timeout):
		return false
	}
}

// Stop stops the daemon gracefully (containers keep running).
func (d *Daemon) Stop() {
	if d.cmd != nil && d.cmd.Process != nil {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		if !d.waitExited(15 * time.Second) {
			_ = d.cmd.Process.Signal(syscall.SIGKILL)
			d.waitExited(5 * time.Second)
		}
	}
	d.cmd = nil
}

// Restart starts the daemon again on the same roots.
func (d *Daemon) Restart(extra ...string) {
	d.t.Helper()
	d.Stop()
	d.start(append(append([]string{}, d.args...), extra...))
}

// remove stops the daemon and removes every container, mount, cgroup, link and
// directory it made.
func (d *Daemon) remove() {
	if d.cmd != nil {
		if d.t.Failed() {
			d.t.Logf("daemon %s log tail:\n%s", d.Name, tail(d.Log(), 4000))
		}
		// Remove containers through the daemon first: the normal path.
		if ids := strings.Fields(d.Run("ps", "-aq").Stdout); len(ids) > 0 {
			d.Run(append([]string{"rm", "-f"}, ids...)...)
		}
		d.Stop()
	}
	if d.log != nil {
		d.log.Close()
	}
	sweepMatching(filepath.Join(BaseDir, d.Name), d.CgroupParent, d.Bridge)
}
