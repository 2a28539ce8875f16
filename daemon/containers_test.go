package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/shoal-project/shoal/containerd/oci"
)

// These tests speak raw HTTP to check the exact statuses and messages of
// the Engine API, which the client turns into error classes.

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (d *testDaemon) create(name, body string, status int) string {
	d.t.Helper()
	b := d.call("POST", "/v1.44/containers/create?name="+name, body, status)
	var r struct{ Id string }
	json.Unmarshal(b, &r)
	return r.Id
}

func (d *testDaemon) inspect(id string) inspectResponse {
	d.t.Helper()
	var r inspectResponse
	if err := json.Unmarshal(d.call("GET", "/containers/"+id+"/json", "", 200), &r); err != nil {
		d.t.Fatal(err)
	}
	return r
}

func message(b []byte) string {
	var e errorResponse
	json.Unmarshal(b, &e)
	return e.Message
}

func TestContainerErrors(t *testing.T) {
	d := startDaemon(t)
	importBusybox(t, newClient(t, d), "bb:1")

	b := d.call("POST", "/containers/create", `{"Image": "nosuch", "Cmd": ["true"]}`, 404)
	if m := message(b); !strings.HasPrefix(m, "No such image: nosuch") {
		t.Errorf("missing image: %q", m)
	}
	b = d.call("POST", "/containers/create", `{"Image": "bb:1", "Cmd": ["true"],`, 400)
	if m := message(b); !strings.Contains(m, "invalid JSON") {
		t.Errorf("malformed body: %q", m)
	}
	b = d.call("POST", "/containers/create", `{"Image": "bb:1", "HostConfig": {"Memory": "1g"}}`, 400)
	if m := message(b); m != "invalid JSON: field HostConfig.Memory: cannot use a JSON string as int64" {
		t.Errorf("wrong type: %q", m)
	}
	id := d.create("one", `{"Image": "bb:1", "Cmd": ["sleep", "300"]}`, 201)
	b = d.call("POST", "/containers/create?name=one", `{"Image": "bb:1", "Cmd": ["true"]}`, 409)
	want := fmt.Sprintf(`Conflict. The container name "/one" is already in use by container %q. You have to remove (or rename) that container to be able to reuse that name.`, id)
	if m := message(b); m != want {
		t.Errorf("name conflict:\n got %q\nwant %q", m, want)
	}
	d.call("POST", "/containers/one/kill", "", 409) // not running
	d.call("POST", "/containers/one/stop", "", 304)
	d.call("POST", "/containers/one/start", "", 204)
	d.call("POST", "/containers/one/start", "", 304)
	b = d.call("DELETE", "/containers/one", "", 409)
	if m := message(b); !strings.Contains(m, "You cannot remove a running container") {
		t.Errorf("remove running: %q", m)
	}
	d.call("POST", "/containers/nosuch/start", "", 404)
	d.call("POST", "/containers/nosuch/wait", "", 404)
	d.call("GET", "/containers/nosuch/json", "", 404)
	d.call("GET", "/exec/nosuch/json", "", 404)
	b = d.call("GET", "/containers/one/archive?path=/data/nope", "", 404)
	if m := message(b); m != "Could not find the file /data/nope in container one" {
		t.Errorf("missing path: %q", m)
	}
	d.call("GET", "/containers/one/archive", "", 400)
	d.call("POST", "/containers/one/kill?signal=SIGUSR1", "", 204)
	d.call("DELETE", "/containers/one?force=1", "", 204)
	d.call("GET", "/containers/one/json", "", 404)

	// A command that does not exist: 400 with the words the CLI maps to 127.
	d.create("nocmd", `{"Image": "bb:1", "Cmd": ["/nosuch"]}`, 201)
	b = d.call("POST", "/containers/nocmd/start", "", 400)
	if m := message(b); !strings.Contains(m, "executable file not found") {
		t.Errorf("missing command: %q", m)
	}
	if st := d.inspect("nocmd").State; st.Running {
		t.Errorf("state after a failed start: %+v", st)
	}
	if _, err := os.Stat(filepath.Join(d.cfg.ExecRoot, "netns", d.inspect("nocmd").ID)); !os.IsNotExist(err) {
		t.Errorf("failed start left its netns: %v", err)
	}
	// With --rm the failed container goes, as with dockerd: a client that
	// waits for its removal must not wait forever.
	d.create("nocmdrm", `{"Image": "bb:1", "Cmd": ["/nosuch"], "HostConfig": {"AutoRemove": true}}`, 201)
	d.call("POST", "/containers/nocmdrm/start", "", 400)
	d.call("GET", "/containers/nocmdrm/json", "", 404)
	d.create("noexec", `{"Image": "bb:1", "Cmd": ["/data/hello.txt"]}`, 201)
	b = d.call("POST", "/containers/noexec/start", "", 400)
	if m := message(b); !strings.Contains(m, "permission denied") {
		t.Errorf("not executable: %q", m)
	}
}

func TestPortInUseLeavesContainerCreated(t *testing.T) {
	d := startDaemon(t)
	importBusybox(t, newClient(t, d), "bb:1")
	port := freePort(t)
	body := fmt.Sprintf(`{"Image": "bb:1", "Cmd": ["sleep", "300"], "HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "%d"}]}}}`, port)
	first := d.create("first", body, 201)
	d.call("POST", "/containers/first/start", "", 204)
	in := d.inspect("first")
	if in.NetworkSettings.IPAddress == "" || in.NetworkSettings.Networks["bridge"] == nil || !in.NetworkSettings.Networks["bridge"].IPAddress.IsValid() {
		t.Fatalf("no address: %+v", in.NetworkSettings)
	}
	if pb := in.NetworkSettings.Ports; len(pb) != 1 || fmt.Sprint(pb) != fmt.Sprintf("map[80/tcp:[{0.0.0.0 %d}]]", port) {
		t.Errorf("ports %v", pb)
	}
	// GraphDriver.Data as dockerd's overlay2 names it: the running
	// container's files are in MergedDir, what it writes in UpperDir.
	if g := in.GraphDriver; g == nil || g.Name != "overlayfs" || g.Data["LowerDir"] == "" || g.Data["WorkDir"] == "" {
		t.Errorf("GraphDriver %+v", g)
	} else {
		if _, err := os.Stat(filepath.Join(g.Data["MergedDir"], "bin", "busybox")); err != nil {
			t.Errorf("MergedDir: %v", err)
		}
		if fi, err := os.Stat(g.Data["UpperDir"]); err != nil || !fi.IsDir() {
			t.Errorf("UpperDir: %v", err)
		}
	}

	second := d.create("second", body, 201) // create does not claim ports, as in Docker
	b := d.call("POST", "/containers/second/start", "", 500)
	want := fmt.Sprintf("driver failed programming external connectivity on endpoint second (%s): Bind for 0.0.0.0:%d failed: port is already allocated", second, port)
	if m := message(b); m != want {
		t.Errorf("port clash:\n got %q\nwant %q", m, want)
	}
	in = d.inspect("second")
	if in.State.Status != container.StateCreated || in.State.Running || in.NetworkSettings.IPAddress != "" || in.NetworkSettings.SandboxKey != "" {
		t.Errorf("after the clash: %+v %+v", in.State, in.NetworkSettings)
	}
	if _, err := os.Stat(filepath.Join(d.cfg.ExecRoot, "netns", second)); !os.IsNotExist(err) {
		t.Errorf("netns left by the failed start: %v", err)
	}
	// Stopping the first frees the port at once: the second starts.
	d.call("POST", "/containers/first/stop?t=0", "", 204)
	if in := d.inspect("first"); in.NetworkSettings.IPAddress != "" || len(in.NetworkSettings.Ports) != 0 {
		t.Errorf("stopped container keeps %+v", in.NetworkSettings)
	}
	if _, err := os.Stat(filepath.Join(d.cfg.ExecRoot, "netns", first)); !os.IsNotExist(err) {
		t.Errorf("netns of a stopped container: %v", err)
	}
	d.call("POST", "/containers/second/start", "", 204)
	// The published port answers through the DNAT: a TCP connect reaches
	// the container's namespace (nothing listens there, so it is refused,
	// but by the container's kernel, not timed out).
	d.call("DELETE", "/containers/first?force=1", "", 204)
	d.call("DELETE", "/containers/second?force=1", "", 204)
}

func TestShutdownLeavesContainersRunning(t *testing.T) {
	d := startDaemon(t)
	importBusybox(t, newClient(t, d), "bb:1")
	port := freePort(t)
	d.create("keeper", fmt.Sprintf(`{"Image": "bb:1", "Cmd": ["sleep", "300"], "HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "%d"}]}}}`, port), 201)
	d.call("POST", "/containers/keeper/start", "", 204)
	d.create("quick", `{"Image": "bb:1", "Cmd": ["sleep", "1"]}`, 201)
	d.call("POST", "/containers/quick/start", "", 204)
	before := d.inspect("keeper")
	quick := d.inspect("quick").ID

	// Streams in flight (logs -f, wait) end with the daemon, not hold it.
	streams := make(chan error, 2)
	for _, path := range []string{"/containers/keeper/logs?follow=1&stdout=1", "/containers/keeper/wait"} {
		resp, err := d.do(map[bool]string{true: "GET", false: "POST"}[strings.Contains(path, "logs")], path, nil)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			_, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			streams <- err
		}()
	}
	began := time.Now()
	d.stop()
	if took := time.Since(began); took > 3*time.Second {
		t.Errorf("graceful stop with streams open took %v", took)
	}
	for range 2 {
		select {
		case <-streams:
		case <-time.After(5 * time.Second):
			t.Fatal("a stream outlived the daemon")
		}
	}
	if err := syscall.Kill(before.State.Pid, 0); err != nil {
		t.Fatalf("container died with the daemon: %v", err)
	}
	// A second daemon on the live one's socket is refused before it touches anything.
	if err := d.start(); err != nil {
		t.Fatal(err)
	}
	other := d.cfg
	other.DataRoot = filepath.Join(filepath.Dir(d.cfg.DataRoot), "other-data")
	other.BridgeName += "b"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := Run(ctx, other); !errors.Is(err, ErrSocketInUse) {
		t.Fatalf("second daemon on a live socket: %v", err)
	}
	if _, err := os.Stat(other.DataRoot); !os.IsNotExist(err) {
		t.Errorf("refused daemon made its data root: %v", err)
	}
	// The restarted daemon re-adopted the container and its network.
	after := d.inspect("keeper")
	if !after.State.Running || after.State.Pid != before.State.Pid || after.NetworkSettings.IPAddress != before.NetworkSettings.IPAddress {
		t.Fatalf("after restart: %+v %+v", after.State, after.NetworkSettings)
	}
	// The one that exited while no daemon ran has had its network released.
	deadline := time.Now().Add(10 * time.Second)
	for d.inspect("quick").State.Running && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	d.call("POST", "/containers/quick/wait", "", 200)
	if _, err := os.Stat(filepath.Join(d.cfg.ExecRoot, "netns", quick)); !os.IsNotExist(err) {
		t.Errorf("netns of a container that exited meanwhile: %v", err)
	}
	// The adopted container's exit is still watched: its port is freed.
	d.call("POST", "/containers/keeper/stop?t=0", "", 204)
	if in := d.inspect("keeper"); in.NetworkSettings.IPAddress != "" {
		t.Errorf("adopted container keeps its address after stop: %+v", in.NetworkSettings)
	}
	d.create("taker", fmt.Sprintf(`{"Image": "bb:1", "Cmd": ["sleep", "300"], "HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "%d"}]}}}`, port), 201)
	d.call("POST", "/containers/taker/start", "", 204)
}

func TestAttachStdin(t *testing.T) {
	d := startDaemon(t)
	c := newClient(t, d)
	importBusybox(t, c, "bb:1")
	id := d.create("cat", `{"Image": "bb:1", "Cmd": ["cat"], "OpenStdin": true, "StdinOnce": true, "AttachStdin": true}`, 201)
	conn, err := net.Dial("unix", d.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1.44/containers/%s/attach?stream=1&stdin=1&stdout=1&stderr=1 HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n", id)
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil || !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 101 UPGRADED") {
		t.Fatalf("upgrade answer %q %v", buf[:n], err)
	}
	d.call("POST", "/containers/cat/start", "", 204)
	conn.Write([]byte("through stdin\n"))
	conn.(*net.UnixConn).CloseWrite()
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	var out []byte
	for {
		n, err := conn.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			break
		}
	}
	if want := "\x01\x00\x00\x00\x00\x00\x00\x0ethrough stdin\n"; !strings.HasSuffix(string(out), want) {
		t.Errorf("attach output %q", out)
	}
	var w container.WaitResponse
	json.Unmarshal(d.call("POST", "/containers/cat/wait", "", 200), &w)
	if w.StatusCode != 0 {
		t.Errorf("cat exit %d", w.StatusCode)
	}
}

func TestDaemonsSideBySide(t *testing.T) {
	a, b := startDaemon(t), startDaemon(t)
	for _, d := range []*testDaemon{a, b} {
		importBusybox(t, newClient(t, d), "bb:1")
		d.create("web", `{"Image": "bb:1", "Cmd": ["sleep", "300"]}`, 201)
		d.call("POST", "/containers/web/start", "", 204)
	}
	ia, ib := a.inspect("web"), b.inspect("web")
	if ia.ID == ib.ID || ia.NetworkSettings.Gateway == ib.NetworkSettings.Gateway {
		t.Fatalf("the daemons share state: %s %s, gateways %s %s", ia.ID, ib.ID, ia.NetworkSettings.Gateway, ib.NetworkSettings.Gateway)
	}
	var list []container.Summary
	json.Unmarshal(a.call("GET", "/containers/json", "", 200), &list)
	if len(list) != 1 || list[0].ID != ia.ID {
		t.Errorf("daemon a lists %+v", list)
	}
	a.call("DELETE", "/containers/web?force=1", "", 204)
	if !b.inspect("web").State.Running {
		t.Error("removing a's container stopped b's")
	}
	// Prune takes the stopped containers only.
	b.create("done", `{"Image": "bb:1", "Cmd": ["true"]}`, 201)
	var pr container.PruneReport
	json.Unmarshal(b.call("POST", "/containers/prune", "", 200), &pr)
	if len(pr.ContainersDeleted) != 1 || !b.inspect("web").State.Running {
		t.Errorf("prune: %+v", pr)
	}
	b.call("GET", "/containers/done/json", "", 404)
}

// TestInspectShowsAppliedDefaults: what a request leaves to the daemon is
// shown as the container runs it, as dockerd does (the docker CLI sends
// MemorySwappiness -1 and PidsLimit 0 for "not set"; dockerd shows null).
func TestInspectShowsAppliedDefaults(t *testing.T) {
	d := startDaemon(t)
	importBusybox(t, newClient(t, d), "bb:1")
	d.create("defaults", `{"Image": "bb:1", "Cmd": ["true"], "HostConfig": {"NetworkMode": "none", "MemorySwappiness": -1, "PidsLimit": 0}}`, 201)
	hc := d.inspect("defaults").HostConfig
	if hc.ShmSize != 64<<20 || hc.IpcMode != "private" || hc.CgroupnsMode != "private" || hc.PidsLimit != nil || hc.MemorySwappiness != nil {
		t.Errorf("defaults: shm %d ipc %q cgroupns %q pids %v swappiness %v", hc.ShmSize, hc.IpcMode, hc.CgroupnsMode, hc.PidsLimit, hc.MemorySwappiness)
	}
	if !slices.Equal(hc.MaskedPaths, oci.DefaultMaskedPaths) || !slices.Equal(hc.ReadonlyPaths, oci.DefaultReadonlyPaths) {
		t.Errorf("masked %q read-only %q", hc.MaskedPaths, hc.ReadonlyPaths)
	}
	d.create("given", `{"Image": "bb:1", "Cmd": ["true"], "HostConfig": {"NetworkMode": "none", "ShmSize": 33554432, "PidsLimit": 50, "IpcMode": "shareable"}}`, 201)
	hc = d.inspect("given").HostConfig
	if hc.ShmSize != 32<<20 || hc.PidsLimit == nil || *hc.PidsLimit != 50 || hc.IpcMode != "shareable" {
		t.Errorf("given: shm %d pids %v ipc %q", hc.ShmSize, hc.PidsLimit, hc.IpcMode)
	}
}
