package daemon

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/overlaynet/bridge"
)

// TestMain makes the test binary double as the container init and the shim
// (the daemon re-executes itself, here the test binary, as both), and sweeps
// what crashed earlier runs left.
func TestMain(m *testing.M) {
	Reexec(os.Args)
	if os.Geteuid() == 0 {
		sweepLeftovers()
	}
	os.Exit(m.Run())
}

// Test daemons' bridges are named "shdt<pid>x<n>", so that a leftover of a
// crashed run is recognised by its dead pid.
const testBridgePrefix = "shdt"

var testSeq atomic.Int32

func sweepLeftovers() {
	cgroups, _ := filepath.Glob("/sys/fs/cgroup/*/shoal-dt*")
	for _, cg := range cgroups {
		name := filepath.Base(cg)
		pid, _, _ := strings.Cut(strings.TrimPrefix(name, "shoal-dt"), "x")
		if _, err := os.Stat("/proc/" + pid); err != nil {
			removeCgroups(name)
		}
	}
	sweepForwardRules()
	links, err := netlink.LinkList()
	if err != nil {
		return
	}
	for _, l := range links {
		name := l.Attrs().Name
		pid, _, ok := strings.Cut(strings.TrimPrefix(name, testBridgePrefix), "x")
		if !strings.HasPrefix(name, testBridgePrefix) || !ok {
			continue
		}
		if _, err := strconv.Atoi(pid); err != nil {
			continue
		}
		if _, err := os.Stat("/proc/" + pid); err == nil {
			continue
		}
		addrs, _ := netlink.AddrList(l, netlink.FAMILY_V4)
		if len(addrs) == 0 {
			netlink.LinkDel(l)
			continue
		}
		removeBridge(name, addrs[0].IPNet.String())
	}
}

// sweepForwardRules deletes the FORWARD rules of test bridges whose test
// process is gone, also when the bridge itself is gone already.
func sweepForwardRules() {
	_, _ = bridge.RemoveForwardRules(context.Background(), func(name string) bool {
		pid, _, ok := strings.Cut(strings.TrimPrefix(name, testBridgePrefix), "x")
		if !strings.HasPrefix(name, testBridgePrefix) || !ok {
			return false
		}
		_, err := os.Stat("/proc/" + pid)
		return err != nil
	})
}

// removeBridge tears down a test daemon's bridge, nftables table and FORWARD
// rules by adopting it, as the next daemon would, and removing it.
func removeBridge(name, subnet string) error {
	tmp, err := os.MkdirTemp("", "shdt-sweep")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	ctx := context.Background()
	n, err := bridge.New(ctx, bridge.Options{Name: name, Subnet: subnet, StateDir: tmp, NetNSDir: tmp})
	if err != nil {
		return err
	}
	return n.Remove(ctx)
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: namespaces, cgroups, netlink")
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("needs /bin/busybox (busybox-static)")
	}
}

// testDaemon is a daemon run in-process by Run over fresh roots, with its
// own socket, bridge, subnet and cgroup parent.
type testDaemon struct {
	t      testing.TB
	cfg    Config
	cancel context.CancelFunc
	done   chan error
	sock   string
	http   *http.Client
}

func startDaemon(t testing.TB) *testDaemon {
	t.Helper()
	requireRoot(t)
	root, err := os.MkdirTemp("", "sd")
	if err != nil {
		t.Fatal(err)
	}
	seq := testSeq.Add(1)
	cfg := Config{
		DataRoot: filepath.Join(root, "data"), ExecRoot: filepath.Join(root, "exec"),
		Host:         "unix://" + filepath.Join(root, "d.sock"),
		CgroupParent: fmt.Sprintf("shoal-dt%dx%d", os.Getpid(), seq),
		NodeName:     "test-node",
		BridgeName:   fmt.Sprintf("%s%dx%d", testBridgePrefix, os.Getpid(), seq),
		LogLevel:     "warn",
	}
	d := &testDaemon{t: t, cfg: cfg, sock: filepath.Join(root, "d.sock")}
	d.http = &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", d.sock)
	}}}
	t.Cleanup(func() { d.destroy(root) })
	// Another engineer's network may hold a random subnet: try a few.
	for try := 0; ; try++ {
		d.cfg.BIP = fmt.Sprintf("10.%d.%d.1/24", 200+rand.IntN(50), rand.IntN(256))
		err := d.start()
		if err == nil {
			return d
		}
		if try == 4 || !strings.Contains(err.Error(), "bridge network") {
			t.Fatalf("start daemon: %v", err)
		}
	}
}

// start runs the daemon and waits until it answers.
func (d *testDaemon) start() error {
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	d.done = make(chan error, 1)
	go func() { d.done <- Run(ctx, d.cfg) }()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-d.done:
			cancel()
			d.done = nil
			return err
		case <-time.After(20 * time.Millisecond):
		}
		if resp, err := d.http.Get("http://d/_ping"); err == nil {
			resp.Body.Close()
			return nil
		}
	}
	return errors.New("daemon did not answer in 20s")
}

// stop stops the daemon gracefully, as SIGTERM does.
func (d *testDaemon) stop() {
	d.t.Helper()
	if d.done == nil {
		return
	}
	d.cancel()
	select {
	case err := <-d.done:
		if err != nil {
			d.t.Errorf("daemon ended with %v", err)
		}
	case <-time.After(20 * time.Second):
		d.t.Error("daemon did not stop in 20s")
	}
	d.done = nil
}

// destroy removes everything the daemon made, also when the test failed.
func (d *testDaemon) destroy(root string) {
	if d.done == nil {
		// Stopped: a daemon comes up once more to remove the containers.
		if err := d.start(); err != nil {
			d.t.Logf("restart for clean-up: %v", err)
		}
	}
	if d.done != nil {
		if resp, err := d.do("GET", "/containers/json?all=1", nil); err == nil {
			var list []struct{ Id string }
			decode(d.t, resp, &list)
			for _, c := range list {
				if r, err := d.do("DELETE", "/containers/"+c.Id+"?force=1", nil); err == nil {
					r.Body.Close()
				}
			}
		}
		d.stop()
	}
	if err := removeBridge(d.cfg.BridgeName, d.cfg.BIP); err != nil {
		d.t.Logf("remove bridge: %v", err)
	}
	removeCgroups(d.cfg.CgroupParent)
	unmountUnder(root)
	os.RemoveAll(root)
}

// unmountUnder detaches every mount below dir, deepest first: the
// daemon's secrets tmpfs stays mounted when it stops, by design.
func unmountUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return
	}
	var under []string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 1 && strings.HasPrefix(f[1], dir+"/") {
			under = append(under, f[1])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(under)))
	for _, m := range under {
		_ = unix.Unmount(m, unix.MNT_DETACH)
	}
}

// removeCgroups removes the cgroup parent of a test daemon, with the
// cgroups under it (the shims'), in every hierarchy; cgroup directories go
// with rmdir only, deepest first.
func removeCgroups(parent string) {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/" + parent)
	if fi, err := os.Stat("/sys/fs/cgroup/" + parent); err == nil && fi.IsDir() {
		roots = append(roots, "/sys/fs/cgroup/"+parent)
	}
	for _, root := range roots {
		var dirs []string
		filepath.WalkDir(root, func(path string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			syscall.Rmdir(dirs[i])
		}
	}
}

func (d *testDaemon) do(method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequest(method, "http://d"+path, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return d.http.Do(req)
}

// call does a request and checks its status; it returns the body.
func (d *testDaemon) call(method, path, body string, status int) []byte {
	d.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	resp, err := d.do(method, path, r)
	if err != nil {
		d.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		d.t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, b, status)
	}
	return b
}

func decode(t testing.TB, resp *http.Response, v any) {
	t.Helper()
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("decode: %v", err)
	}
}

// busyboxTar is a rootfs with a static busybox and the applets the tests use.
func busyboxTar(t testing.TB) []byte {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, dir := range []string{"bin", "etc", "tmp", "data"} {
		tw.WriteHeader(&tar.Header{Name: dir + "/", Typeflag: tar.TypeDir, Mode: 0o755})
	}
	tw.WriteHeader(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bb))})
	tw.Write(bb)
	for _, applet := range []string{"sh", "echo", "cat", "sleep", "ls", "true", "id", "wc", "hostname"} {
		tw.WriteHeader(&tar.Header{Name: "bin/" + applet, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777})
	}
	passwd := "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n"
	tw.WriteHeader(&tar.Header{Name: "etc/passwd", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(passwd))})
	tw.Write([]byte(passwd))
	tw.WriteHeader(&tar.Header{Name: "data/hello.txt", Typeflag: tar.TypeReg, Mode: 0o644, Size: 6})
	tw.Write([]byte("hello\n"))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
