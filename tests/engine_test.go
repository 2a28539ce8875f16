package tests

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-project/shoal/tests/harness"
)

func TestMain(m *testing.M) {
	harness.Sweep()
	code := m.Run()
	harness.Sweep()
	os.Exit(code)
}

// engine starts a daemon with busybox imported as busybox:latest.
func engine(t *testing.T) *harness.Daemon {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("end-to-end tests need root")
	}
	d := harness.StartDaemon(t, harness.Options{})
	out := d.Must("import", harness.BusyboxTar(t), "busybox:latest")
	if !strings.HasPrefix(strings.TrimSpace(out), "sha256:") {
		t.Fatalf("import printed %q, want an image ID", out)
	}
	return d
}

func TestImages(t *testing.T) {
	d := engine(t)
	out := d.Must("images")
	if !regexp.MustCompile(`(?m)^REPOSITORY\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^busybox\s+latest\s+[0-9a-f]{12}\s`).MatchString(out) {
		t.Fatalf("images:\n%s", out)
	}
	d.Must("tag", "busybox", "mybox:v1")
	if out := d.Must("images", "--format", "{{.Repository}}:{{.Tag}}"); !strings.Contains(out, "mybox:v1") {
		t.Fatalf("tag not listed:\n%s", out)
	}
	if out := d.Must("history", "mybox:v1"); !strings.Contains(out, "CREATED BY") {
		t.Fatalf("history:\n%s", out)
	}
	id := strings.TrimSpace(d.Must("image", "inspect", "--format", "{{.Id}}", "busybox"))
	if !strings.HasPrefix(id, "sha256:") {
		t.Fatalf("image inspect id %q", id)
	}

	// save -> rmi -> load gives the same image back.
	archive := filepath.Join(t.TempDir(), "box.tar")
	d.Must("save", "-o", archive, "mybox:v1")
	d.Must("rmi", "mybox:v1")
	if out := d.Must("images", "-q", "mybox"); strings.TrimSpace(out) != "" {
		t.Fatalf("mybox still listed after rmi: %q", out)
	}
	if out := d.Must("load", "-i", archive); !strings.Contains(out, "Loaded image: mybox:v1") {
		t.Fatalf("load printed %q", out)
	}
	if got := strings.TrimSpace(d.Must("image", "inspect", "--format", "{{.Id}}", "mybox:v1")); got != id {
		t.Fatalf("loaded image id %s, want %s", got, id)
	}
	if out := d.Must("run", "--rm", "--network", "none", "mybox:v1", "echo", "loaded"); strings.TrimSpace(out) != "loaded" {
		t.Fatalf("run from loaded image: %q", out)
	}
}

func TestRunExitCodesAndIsolation(t *testing.T) {
	d := engine(t)
	cases := []struct {
		name string
		args []string
		code int
		out  string
	}{
		{"echo", []string{"echo", "hello"}, 0, "hello"},
		{"exit code", []string{"sh", "-c", "exit 3"}, 3, ""},
		{"pid 1", []string{"sh", "-c", "echo $$"}, 0, "1"},
		{"not found", []string{"/nonexistent"}, 127, ""},
		{"not executable", []string{"/etc/passwd"}, 126, ""},
		// The shell expands the glob itself (no fork): only PID 1, the shell, is
		// visible, not the host's hundreds of processes.
		{"only own processes", []string{"sh", "-c", "echo /proc/[0-9]*"}, 0, "/proc/1"},
		{"capabilities", []string{"sh", "-c", "grep CapEff /proc/self/status"}, 0, "CapEff:\t00000000a80425fb"},
		{"env and workdir", []string{"-e", "FOO=bar", "-w", "/tmp", "sh", "-c", "echo $FOO $(pwd)"}, 0, "bar /tmp"},
		{"user", []string{"-u", "65534:65534", "id", "-u"}, 0, "65534"},
		{"hostname", []string{"--hostname", "boxy", "hostname"}, 0, "boxy"},
		{"own network", []string{"--network", "none", "sh", "-c", "ls /sys/class/net | tr '\\n' ' '"}, 0, "lo"},
		{"read-only sys", []string{"sh", "-c", "touch /sys/x 2>/dev/null || echo ro"}, 0, "ro"},
		{"no new privileges", []string{"--security-opt", "no-new-privileges", "sh", "-c", "grep NoNewPrivs /proc/self/status"}, 0, "NoNewPrivs:\t1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"run", "--rm"}, c.args[:len(c.args)-countCmd(c.args)]...)
			args = append(args, "busybox")
			args = append(args, c.args[len(c.args)-countCmd(c.args):]...)
			r := d.Run(args...)
			if r.Code != c.code {
				t.Fatalf("shoal %s: %s", strings.Join(args, " "), r)
			}
			if c.out != "" && strings.TrimSpace(r.Stdout) != c.out {
				t.Fatalf("shoal %s: stdout %q, want %q", strings.Join(args, " "), r.Stdout, c.out)
			}
		})
	}
	// -i: stdin reaches the container; the CLI's half-close is its EOF.
	if r := d.RunStdin([]byte("one\ntwo\n"), "run", "--rm", "-i", "busybox", "wc", "-l"); r.Code != 0 || strings.TrimSpace(r.Stdout) != "2" {
		t.Fatalf("run -i: %s", r)
	}
	// logs -f follows until the container ends.
	d.Must("run", "-d", "--name", "counter", "busybox", "sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.2; done")
	if r := d.Run("logs", "-f", "counter"); r.Code != 0 || strings.Join(strings.Fields(r.Stdout), " ") != "line1 line2 line3" {
		t.Fatalf("logs -f: %s", r)
	}
	d.Must("rm", "counter")
	// The container's hostname defaults to its short ID, as docker does.
	id := strings.TrimSpace(d.Must("run", "-d", "busybox", "sleep", "30"))
	defer d.Run("rm", "-f", id)
	if out := strings.TrimSpace(d.Must("exec", id, "hostname")); out != id[:12] {
		t.Fatalf("hostname %q, want %q", out, id[:12])
	}
}

// countCmd returns how many trailing args are the command (after the flags).
func countCmd(args []string) int {
	i := 0
	for i < len(args) && strings.HasPrefix(args[i], "-") {
		switch args[i] {
		case "-e", "-w", "-u", "--hostname", "--network", "--security-opt":
			i += 2
		default:
			i++
		}
	}
	return len(args) - i
}

func TestLimits(t *testing.T) {
	d := engine(t)
	t.Run("memory", func(t *testing.T) {
		// dd touches its whole 64 MiB buffer: over a 16 MiB limit, the kernel OOM-kills it.
		r := d.Run("run", "--name", "oom", "-m", "16m", "busybox", "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1")
		defer d.Run("rm", "-f", "oom")
		if r.Code != 137 {
			t.Fatalf("over-limit run: %s", r)
		}
		if out := strings.TrimSpace(d.Run("inspect", "--format", "{{.State.OOMKilled}} {{.State.ExitCode}}", "oom").Stdout); out != "true 137" {
			t.Fatalf("inspect after OOM: %q", out)
		}
	})
	t.Run("pids", func(t *testing.T) {
		// The fork loop runs in a subshell (ash exits when a fork fails), and the
		// count uses builtins only: at the limit a fork for ls would fail too.
		// Without the limit the count is 31.
		r := d.Run("run", "--rm", "--pids-limit", "8", "busybox", "sh", "-c",
			"(i=0; while [ $i -lt 30 ]; do sleep 3 & i=$((i+1)); done) 2>/dev/null; n=0; for p in /proc/[0-9]*; do n=$((n+1)); done; echo $n")
		n, err := strconv.Atoi(strings.TrimSpace(r.Stdout))
		if err != nil || n > 8 || n < 2 {
			t.Fatalf("processes under a pids limit of 8: %s", r)
		}
	})
	t.Run("cpus", func(t *testing.T) {
		if r := d.Run("run", "-d", "--name", "cpu", "--cpus", "0.5", "busybox", "sleep", "100"); r.Code != 0 {
			t.Fatalf("run --cpus: %s", r)
		}
		defer d.Run("rm", "-f", "cpu")
		if out := strings.TrimSpace(d.Run("inspect", "--format", "{{.HostConfig.NanoCpus}}", "cpu").Stdout); out != "500000000" {
			t.Fatalf("NanoCpus %q", out)
		}
		// What the kernel enforces: half of each CFS period, read from the
		// host side in the running container's own cgroup.
		pid := strings.TrimSpace(d.Must("inspect", "--format", "{{.State.Pid}}", "cpu"))
		quota, period := cfsQuota(t, pid)
		if quota*2 != period {
			t.Fatalf("container %s: CFS quota %d per period %d, want half", pid, quota, period)
		}
	})
}

// cfsQuota reads the CFS quota and period of process pid's cpu cgroup:
// cpu.cfs_quota_us and cpu.cfs_period_us on a v1 cpu hierarchy, cpu.max on a
// host with only cgroup v2.
func cfsQuota(t *testing.T, pid string) (quota, period int64) {
	t.Helper()
	b, err := os.ReadFile("/proc/" + pid + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	v2 := ""
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" {
			v2 = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c != "cpu" {
				continue
			}
			dir := filepath.Join("/sys/fs/cgroup", parts[1], parts[2])
			if _, err := os.Stat(dir); err != nil {
				dir = filepath.Join("/sys/fs/cgroup/cpu", parts[2])
			}
			read := func(f string) int64 {
				b, err := os.ReadFile(filepath.Join(dir, f))
				if err != nil {
					t.Fatal(err)
				}
				n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
				if err != nil {
					t.Fatalf("%s/%s: %v", dir, f, err)
				}
				return n
			}
			return read("cpu.cfs_quota_us"), read("cpu.cfs_period_us")
		}
	}
	b, err = os.ReadFile(filepath.Join("/sys/fs/cgroup", v2, "cpu.max"))
	if err != nil {
		t.Fatalf("no cpu cgroup for pid %s: %v", pid, err)
	}
	if _, err := fmt.Sscan(string(b), &quota, &period); err != nil {
		t.Fatalf("cpu.max %q: %v", b, err)
	}
	return quota, period
}

func TestLifecycleLogsExec(t *testing.T) {
	d := engine(t)
	id := strings.TrimSpace(d.Must("run", "-d", "--name", "web", "busybox", "sh", "-c", "echo started; echo oops >&2; trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done"))
	if len(id) != 64 {
		t.Fatalf("run -d printed %q, want a 64-hex ID", id)
	}
	waitFor(t, "log line", func() bool { return strings.Contains(d.Run("logs", "web").Stdout, "started") })
	r := d.Run("logs", "web")
	if !strings.Contains(r.Stderr, "oops") || strings.Contains(r.Stdout, "oops") {
		t.Fatalf("logs keep streams apart: %s", r)
	}
	if ts := d.Must("logs", "--timestamps", "web"); !regexp.MustCompile(`(?m)^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z started$`).MatchString(ts) {
		t.Fatalf("logs --timestamps:\n%s", ts)
	}
	ps := d.Must("ps")
	if !regexp.MustCompile(`(?m)^CONTAINER ID\s+IMAGE\s+COMMAND\s+CREATED\s+STATUS\s+PORTS\s+NAMES`).MatchString(ps) ||
		!regexp.MustCompile(`(?m)^`+id[:12]+`\s+busybox\s+.*Up .*\s+web$`).MatchString(ps) {
		t.Fatalf("ps:\n%s", ps)
	}
	if q := strings.TrimSpace(d.Must("ps", "-q")); q != id[:12] {
		t.Fatalf("ps -q %q", q)
	}
	if out := strings.TrimSpace(d.Must("exec", "web", "sh", "-c", "echo $$; cat /proc/1/cmdline | tr '\\0' ' '")); !strings.Contains(out, "sh -c echo started") {
		t.Fatalf("exec does not see the container's PID 1: %q", out)
	}
	if r := d.Run("exec", "web", "sh", "-c", "exit 5"); r.Code != 5 {
		t.Fatalf("exec exit code: %s", r)
	}
	if out := d.RunStdin([]byte("piped\n"), "exec", "-i", "web", "cat"); strings.TrimSpace(out.Stdout) != "piped" {
		t.Fatalf("exec -i: %s", out)
	}
	if top := d.Must("top", "web"); !strings.Contains(top, "PID") || !strings.Contains(top, "sleep") && !strings.Contains(top, "sh") {
		t.Fatalf("top:\n%s", top)
	}
	// ps options are applied (they were once ignored): ps's columns, the
	// container's processes only (its sh, and the sleep it may be in).
	top := strings.Fields(d.Must("top", "web", "-o", "pid,comm"))
	if len(top) < 4 || top[0] != "PID" || top[1] != "COMMAND" || len(top)%2 != 0 || !slices.Contains(top, "sh") {
		t.Fatalf("top -o pid,comm: %q", top)
	}
	for i := 3; i < len(top); i += 2 {
		if top[i] != "sh" && top[i] != "sleep" {
			t.Fatalf("top -o pid,comm lists %q, not the container's", top[i])
		}
	}
	// cp both ways.
	src := filepath.Join(t.TempDir(), "in.txt")
	os.WriteFile(src, []byte("copied in\n"), 0o644)
	d.Must("cp", src, "web:/tmp/in.txt")
	if out := d.Must("exec", "web", "cat", "/tmp/in.txt"); out != "copied in\n" {
		t.Fatalf("cp in: %q", out)
	}
	dst := t.TempDir()
	d.Must("cp", "web:/etc/passwd", dst)
	if b, err := os.ReadFile(filepath.Join(dst, "passwd")); err != nil || !strings.HasPrefix(string(b), "root:") {
		t.Fatalf("cp out: %q %v", b, err)
	}
	// commit keeps the change; it pauses the container unless --pause=false.
	d.Must("commit", "web", "withfile:v1")
	d.Must("commit", "--pause=false", "web", "withfile:v2")
	if out := d.Must("run", "--rm", "--network", "none", "withfile:v1", "cat", "/tmp/in.txt"); out != "copied in\n" {
		t.Fatalf("committed image lacks the file: %q", out)
	}
	// Stop: the trap answers SIGTERM, so exit 0 well before the grace period.
	start := time.Now()
	d.Must("stop", "web")
	if time.Since(start) > 8*time.Second {
		t.Fatalf("stop took %v although the container exits on SIGTERM", time.Since(start))
	}
	if out := strings.TrimSpace(d.Must("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", "web")); out != "exited 0" {
		t.Fatalf("state after stop: %q", out)
	}
	if !strings.Contains(d.Must("logs", "web"), "bye") {
		t.Fatal("SIGTERM trap output missing from logs")
	}
	if w := strings.TrimSpace(d.Must("wait", "web")); w != "0" {
		t.Fatalf("wait: %q", w)
	}
	// A container that ignores SIGTERM is killed after -t.
	d.Must("run", "-d", "--name", "stubborn", "busybox", "sh", "-c", "trap '' TERM; while true; do sleep 0.1; done")
	start = time.Now()
	d.Must("stop", "-t", "1", "stubborn")
	if el := time.Since(start); el < time.Second || el > 6*time.Second {
		t.Fatalf("stop -t 1 took %v", el)
	}
	if out := strings.TrimSpace(d.Must("inspect", "--format", "{{.State.ExitCode}}", "stubborn")); out != "137" {
		t.Fatalf("exit code after SIGKILL: %q", out)
	}
	d.Must("rm", "web", "stubborn")
	assertNoTrace(t, d, id)
}

func TestDaemonRestartKeepsContainers(t *testing.T) {
	d := engine(t)
	id := strings.TrimSpace(d.Must("run", "-d", "busybox", "sh", "-c", "echo before; sleep 1000"))
	waitFor(t, "log line", func() bool { return strings.Contains(d.Run("logs", id).Stdout, "before") })
	pid := strings.TrimSpace(d.Must("inspect", "--format", "{{.State.Pid}}", id))
	d.Kill9()
	if n, _ := strconv.Atoi(pid); n <= 0 || syscall.Kill(n, 0) != nil {
		t.Fatalf("container process %s died with the daemon", pid)
	}
	d.Restart()
	if out := strings.TrimSpace(d.Must("inspect", "--format", "{{.State.Running}} {{.State.Pid}}", id)); out != "true "+pid {
		t.Fatalf("after restart: %q, want running with pid %s", out, pid)
	}
	if !strings.Contains(d.Must("logs", id), "before") {
		t.Fatal("logs lost across the restart")
	}
	// A container that exits while the daemon is down keeps its exit code.
	id2 := strings.TrimSpace(d.Must("run", "-d", "busybox", "sh", "-c", "sleep 1; exit 7"))
	d.Kill9()
	time.Sleep(1500 * time.Millisecond)
	d.Restart()
	waitFor(t, "exit while daemon down", func() bool {
		return strings.TrimSpace(d.Run("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", id2).Stdout) == "exited 7"
	})
	d.Must("stop", "-t", "1", id)
	d.Must("rm", id, id2)
	assertNoTrace(t, d, id)
	assertNoTrace(t, d, id2)
}

func TestBridgeNetworkAndPorts(t *testing.T) {
	d := engine(t)
	port := 20000 + os.Getpid()%10000
	id := strings.TrimSpace(d.Must("run", "-d", "--name", "www", "-p", fmt.Sprintf("%d:80", port), "busybox", "httpd", "-f", "-p", "80", "-h", "/var/www"))
	ip := strings.TrimSpace(d.Must("inspect", "--format", "{{.NetworkSettings.IPAddress}}", id))
	if !strings.HasPrefix(ip, "198.19.") {
		t.Fatalf("container IP %q not in the daemon's bridge subnet %s", ip, d.BIP)
	}
	// Another container reaches it by IP over the bridge.
	waitFor(t, "httpd via bridge", func() bool {
		r := d.Run("run", "--rm", "busybox", "wget", "-q", "-O", "-", "http://"+ip+"/")
		return strings.Contains(r.Stdout, "hello from shoal")
	})
	// The host reaches it through the published port.
	gw := strings.Split(d.BIP, "/")[0]
	waitFor(t, "published port", func() bool {
		return strings.Contains(httpGet(fmt.Sprintf("http://%s:%d/", gw, port)), "hello from shoal") &&
			strings.Contains(httpGet(fmt.Sprintf("http://127.0.0.1:%d/", port)), "hello from shoal")
	})
	if ps := d.Must("ps"); !strings.Contains(ps, fmt.Sprintf("0.0.0.0:%d->80/tcp", port)) {
		t.Fatalf("ps PORTS column:\n%s", ps)
	}
	// The same host port again is refused, and the second container is not left running.
	r := d.Run("run", "-d", "--name", "www2", "-p", fmt.Sprintf("%d:80", port), "busybox", "httpd", "-f")
	if r.Code == 0 || !strings.Contains(r.Stderr, "already allocated") {
		t.Fatalf("second publish of port %d: %s", port, r)
	}
	if st := strings.TrimSpace(d.Run("inspect", "--format", "{{.State.Running}}", "www2").Stdout); st == "true" {
		t.Fatal("container with a conflicting port is running")
	}
	d.Run("rm", "-f", "www2")
	d.Must("rm", "-f", "www")
	assertNoTrace(t, d, id)
	// The failed create left nothing either: no record, rootfs, netns or veth.
	for _, dir := range []string{filepath.Join(d.Root, "containers"), filepath.Join(d.Root, "containers-rootfs"), filepath.Join(d.ExecRoot, "containers"), filepath.Join(d.ExecRoot, "netns")} {
		if ents, _ := os.ReadDir(dir); len(ents) > 0 {
			t.Errorf("%s still holds %d entries after every container was removed", dir, len(ents))
		}
	}
}

func TestBadInput(t *testing.T) {
	d := engine(t)
	// A layer is unpacked into <images>/snapshots/tmp-*/fs under the data
	// root: "../../" from there is <images>/snapshots, and enough "../" reach
	// the host's /. Both escapes are looked for where they would land.
	hostile := filepath.Join(t.TempDir(), "evil.tar")
	writeTar(t, hostile, "../../escaped-by-shoal-test", "pwned")
	deep := filepath.Join(t.TempDir(), "deep.tar")
	writeTar(t, deep, strings.Repeat("../", 40)+"escaped-by-shoal-test", "pwned")
	defer os.Remove("/escaped-by-shoal-test")
	truncated := filepath.Join(t.TempDir(), "short.tar")
	b, _ := os.ReadFile(harness.BusyboxTar(t))
	os.WriteFile(truncated, b[:len(b)/2], 0o644)
	d.Must("run", "-d", "--name", "taken", "busybox", "sleep", "100")
	defer d.Run("rm", "-f", "taken")

	cases := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"unknown image", []string{"run", "--rm", "--pull", "never", "nosuch", "true"}, 125, "No such image"},
		{"bad reference", []string{"run", "--rm", "Bad:Ref!!", "true"}, 125, "invalid reference format"},
		{"bad memory", []string{"run", "--rm", "-m", "12x", "busybox", "true"}, 125, "invalid"},
		{"name conflict", []string{"run", "--name", "taken", "busybox", "true"}, 125, "already in use"},
		{"hostile tar", []string{"import", hostile, "evil:1"}, 1, `"../../escaped-by-shoal-test" escapes the root`},
		{"hostile tar to /", []string{"import", deep, "evil:2"}, 1, "escapes the root"},
		{"truncated tar", []string{"import", truncated, "short:1"}, 1, "truncated or corrupt tar"},
		{"unknown container", []string{"logs", "nosuchcontainer"}, 1, "No such container"},
		{"rmi unknown", []string{"rmi", "nosuch:tag"}, 1, "No such image"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := d.Run(c.args...)
			if r.Code != c.code || !strings.Contains(r.Stderr, c.msg) {
				t.Fatalf("shoal %s: %s", strings.Join(c.args, " "), r)
			}
			if strings.Contains(r.Stderr, "panic") || strings.Count(strings.TrimSpace(r.Stderr), "\n") > 1 {
				t.Fatalf("error is not one clear line: %q", r.Stderr)
			}
		})
	}
	if _, err := os.Stat("/escaped-by-shoal-test"); err == nil {
		t.Error("hostile tar wrote /escaped-by-shoal-test on the host")
	}
	filepath.WalkDir(d.Root, func(p string, e os.DirEntry, err error) error {
		if err == nil && e.Name() == "escaped-by-shoal-test" {
			t.Errorf("hostile tar wrote %s, outside its layer", p)
		}
		return nil
	})
	t.Run("absolute and symlinked names", func(t *testing.T) {
		// Docker's rule: "/x" names x in the image, and a symlink in the
		// archive is never followed out of it. An escape would write the
		// absolute path itself, or the symlink's target, on the host.
		host := t.TempDir()
		tarball := filepath.Join(t.TempDir(), "links.tar")
		writeTarEntries(t, tarball, "",
			&tar.Header{Name: host + "/abs-pwned", Typeflag: tar.TypeReg, Mode: 0o644},
			&tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: host},
			&tar.Header{Name: "link/link-pwned", Typeflag: tar.TypeReg, Mode: 0o644})
		d.Must("import", tarball, "links:1")
		defer d.Run("rmi", "links:1")
		for _, name := range []string{"abs-pwned", "link-pwned"} {
			if _, err := os.Lstat(filepath.Join(host, name)); err == nil {
				t.Errorf("import wrote %s on the host", filepath.Join(host, name))
			}
		}
		// Both landed inside the layer, under the path the name gave.
		found := map[string]bool{}
		filepath.WalkDir(d.Root, func(p string, e os.DirEntry, err error) error {
			if err == nil && strings.HasSuffix(p, "/fs"+host+"/"+e.Name()) {
				found[e.Name()] = true
			}
			return nil
		})
		if !found["abs-pwned"] || !found["link-pwned"] {
			t.Errorf("the entries are not in the layer under fs%s: %v", host, found)
		}
	})
	if out := d.Must("images", "--format", "{{.Repository}}"); strings.Contains(out, "evil") || strings.Contains(out, "short") {
		t.Errorf("a bad archive left an image:\n%s", out)
	}
	t.Run("no daemon", func(t *testing.T) {
		r := (&harness.Daemon{Bin: d.Bin, Socket: filepath.Join(t.TempDir(), "none.sock")}).Run("ps")
		if r.Code == 0 || !strings.Contains(r.Stderr, "Cannot connect") {
			t.Fatalf("ps without a daemon: %s", r)
		}
	})
	t.Run("malformed JSON", func(t *testing.T) {
		code, body := apiPost(t, d.Socket, "/containers/create", "{not json")
		if code != 400 || !strings.Contains(body, "message") {
			t.Fatalf("POST malformed JSON: %d %s", code, body)
		}
		var e struct{ Message string }
		if json.Unmarshal([]byte(body), &e) != nil || e.Message == "" {
			t.Fatalf("error body is not docker's {\"message\":...}: %s", body)
		}
	})
}

// TestCLISendsTheDaemonsAPIVersion: the CLI sends its API version without
// negotiating (cli/apiclient.APIVersion); a daemon that served an older one
// would refuse every request of its own CLI ("too new").
func TestCLISendsTheDaemonsAPIVersion(t *testing.T) {
	d := harness.StartDaemon(t, harness.Options{})
	out := strings.TrimSpace(d.Must("version", "--format", "{{.Client.APIVersion}} {{.Server.APIVersion}}"))
	c, s, _ := strings.Cut(out, " ")
	if c == "" || c != s {
		t.Fatalf("client API version %q, daemon's %q", c, s)
	}
	// info describes the host as dockerd does: uname's machine name and
	// the distribution's own name for itself.
	arch, _ := exec.Command("uname", "-m").Output()
	osr, _ := os.ReadFile("/etc/os-release")
	pretty := ""
	for _, l := range strings.Split(string(osr), "\n") {
		if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
			pretty = strings.Trim(v, `"`)
		}
	}
	if got := strings.TrimSpace(d.Must("info", "--format", "{{.Architecture}}|{{.OperatingSystem}}")); got != strings.TrimSpace(string(arch))+"|"+pretty {
		t.Errorf("info: %q, want uname -m and PRETTY_NAME %q|%q", got, strings.TrimSpace(string(arch)), pretty)
	}
	// make build stamps the commit it built from (docker version's "Git
	// commit"), where the tree is a git checkout.
	if head, err := exec.Command("git", "rev-parse", "--short=7", "HEAD").Output(); err == nil {
		if got := strings.TrimSpace(d.Must("version", "--format", "{{.Server.GitCommit}}")); got != strings.TrimSpace(string(head)) {
			t.Errorf("the daemon's GitCommit %q, HEAD is %s", got, head)
		}
	}
}
