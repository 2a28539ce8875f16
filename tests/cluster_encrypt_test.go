package tests

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-project/shoal/tests/harness"
)

// underlayCapture runs tcpdump on h's eth0 (UDP only) until the returned
// function is called, which gives back the raw capture.
func underlayCapture(t *testing.T, h *harness.Host) func() []byte {
	t.Helper()
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Fatal("no tcpdump: the encrypted overlay test needs it (make deps)")
	}
	file := filepath.Join(t.TempDir(), "capture.pcap")
	cmd := h.Command("tcpdump", "-Z", "root", "--immediate-mode", "-i", "eth0", "-U", "-s", "0", "-w", file, "udp")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("tcpdump on %s: %v", h.Name, err)
	}
	done := false
	stop := func() []byte {
		if !done {
			done = true
			cmd.Process.Signal(syscall.SIGINT)
			cmd.Wait()
			t.Logf("tcpdump on %s: %s", h.Name, strings.TrimSpace(stderr.String()))
		}
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("tcpdump on %s: %v (%s)", h.Name, err, stderr.String())
		}
		return b
	}
	t.Cleanup(func() { stop() })
	// tcpdump says "listening on" once its socket is open.
	if !pollUntil(5*time.Second, func() bool { return strings.Contains(stderr.String(), "listening on") }) {
		t.Fatalf("tcpdump on %s did not start: %s", h.Name, stderr.String())
	}
	return stop
}

// TestClusterEncryptedOverlay: `network create --opt encrypted` is accepted
// and shown as Docker shows it; a task fetches a page holding a marker from
// a task on another node over an encrypted network and over a plaintext one
// while the underlay is captured on the fetching node: the marker shows in
// the plaintext capture (so the capture can see it) and never in the
// encrypted one, which does carry the tunnel's packets. When the services
// go, the tunnels go with them (their UDP ports are free again).
func TestClusterEncryptedOverlay(t *testing.T) {
	sc, mgr := overlaySwarm(t)
	docker := dockerCLI(t, mgr.Daemon)
	nets := []struct{ name, subnet, opt string }{
		{"sec", "198.19.254.0/24", "encrypted"},
		{"plain", "198.19.255.0/24", "com.docker.network.driver.mtu=1400"},
	}
	for _, n := range nets {
		if r := docker("network", "create", "-d", "overlay", "--subnet", n.subnet, "--opt", n.opt, n.name); r.Code != 0 {
			t.Fatalf("network create %s: %s", n.name, r)
		}
	}
	if r := docker("network", "inspect", "--format", "{{json .Options}}", "sec"); r.Code != 0 || !strings.Contains(r.Stdout, `"encrypted":""`) {
		t.Fatalf("network inspect sec: %s", r)
	}
	vni := strings.TrimSpace(must(t, mgr, "network", "inspect", "--format", `{{index .Options "com.docker.network.driver.overlay.vxlanid_list"}}`, "sec"))

	// The page's marker is built by the shell, so that the service spec
	// (which crosses the underlay to the workers, in TLS) never holds it.
	const marker = "SHOAL-42-ENCRYPTION-MARKER"
	for _, n := range nets {
		if r := docker("service", "create", "--detach", "--name", n.name, "--network", n.name, "--replicas", "2",
			"--replicas-max-per-node", "1", "--constraint", "node.role==worker", "busybox",
			"sh", "-c", "mkdir -p /www && echo SHOAL-$((6*7))-ENCRYPTION-MARKER > /www/index.html && exec httpd -f -p 80 -h /www"); r.Code != 0 {
			t.Fatalf("service create %s: %s", n.name, r)
		}
	}
	hostOf := map[string]*harness.Host{}
	for _, h := range sc.workers {
		hostOf[strings.TrimSpace(must(t, h, "info", "--format", "{{.Swarm.NodeID}}"))] = h
	}
	for _, n := range nets {
		sc.waitPlacement(t, mgr, n.name, 60*time.Second, n.name+" on both workers", func(p placement) bool {
			return p.total == 2 && len(p.perNode) == 2
		})
	}

	fetch := func(svc, subnet string) (seen []byte) {
		t.Helper()
		tasks := overlayTasks(t, mgr, docker, svc, subnet)
		if len(tasks) != 2 || hostOf[tasks[0].node] == nil {
			t.Fatalf("%s tasks: %v", svc, tasks)
		}
		from := hostOf[tasks[0].node]
		var ctr string
		for _, v := range taskContainers(from) {
			if f := strings.Fields(v); len(f) == 2 && f[1] == "running" && strings.HasPrefix(f[0], svc+".") {
				ctr = f[0]
			}
		}
		if ctr == "" {
			t.Fatalf("no running %s container on %s: %v", svc, from.Name, taskContainers(from))
		}
		stop := underlayCapture(t, from)
		var last harness.Result
		if !pollUntil(30*time.Second, func() bool {
			last = from.Daemon.Run("exec", ctr, "timeout", "3", "wget", "-q", "-O", "-", "http://"+tasks[1].addr+"/")
			return last.Code == 0 && strings.Contains(last.Stdout, marker)
		}) {
			t.Fatalf("%s on %s cannot fetch the page of %s: %s", svc, from.Name, tasks[1].addr, last)
		}
		time.Sleep(300 * time.Millisecond)
		return stop()
	}
	if seen := fetch("plain", nets[1].subnet); !bytes.Contains(seen, []byte(marker)) {
		t.Fatalf("the underlay capture does not show the marker on a plaintext network (%d bytes): it could not show a leak", len(seen))
	}
	seen := fetch("sec", nets[0].subnet)
	if bytes.Contains(seen, []byte(marker)) {
		t.Fatal("the marker crossed the underlay in plaintext on an encrypted network")
	}
	if len(seen) < 1000 {
		t.Fatalf("the encrypted fetch put almost nothing on the underlay (%d bytes): not captured where it flows", len(seen))
	}

	// The tunnels go with the tasks.
	port := tunnelPort(t, vni)
	for _, h := range sc.workers {
		if r := h.Exec("ss", "-Hnlu", "sport = :"+port); r.Code != 0 || strings.TrimSpace(r.Stdout) == "" {
			t.Fatalf("%s has no tunnel on UDP %s while it runs a task of sec: %s", h.Name, port, r)
		}
	}
	if r := docker("service", "rm", "sec"); r.Code != 0 {
		t.Fatalf("service rm sec: %s", r)
	}
	for _, h := range sc.workers {
		var last harness.Result
		if !pollUntil(30*time.Second, func() bool {
			last = h.Exec("ss", "-Hnlu", "sport = :"+port)
			return last.Code == 0 && strings.TrimSpace(last.Stdout) == ""
		}) {
			t.Fatalf("%s still has the tunnel on UDP %s after its tasks went: %s", h.Name, port, last)
		}
	}
}

// tunnelPort is the UDP port of network vni's tunnel on every node
// (overlaynet/encrypt.Port, which tests may not import).
func tunnelPort(t *testing.T, vni string) string {
	t.Helper()
	n, err := strconv.Atoi(vni)
	if err != nil {
		t.Fatalf("VNI %q: %v", vni, err)
	}
	return strconv.Itoa(51820 + n%4096)
}
