package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/tests/harness"
)

// TestRunEtcFiles checks the /etc/hosts, /etc/hostname and /etc/resolv.conf
// a container gets, with --add-host, --dns, --dns-search and --dns-option,
// through shoal and the docker CLI, and that bad values are refused.
func TestRunEtcFiles(t *testing.T) {
	d := engine(t)
	out := func(t *testing.T, args ...string) string { t.Helper(); return runRm(t, d, args...) }
	t.Run("hosts", func(t *testing.T) {
		got := out(t, "--hostname", "web", "--add-host", "db:10.1.2.3", "--add-host", "v6=[fd00::1]", "--add-host", "gw:host-gateway",
			"busybox", "sh", "-c", "cat /etc/hosts; echo ---; cat /etc/hostname; hostname; ip -4 -o addr show eth0")
		hosts, rest, _ := strings.Cut(got, "---\n")
		for _, want := range []string{"127.0.0.1\tlocalhost\n", "::1\tlocalhost ip6-localhost ip6-loopback\n", "10.1.2.3\tdb\n", "fd00::1\tv6\n"} {
			if !strings.Contains(hosts, want) {
				t.Fatalf("/etc/hosts has no %q:\n%s", want, hosts)
			}
		}
		f := strings.Fields(rest)
		if len(f) < 6 || f[0] != "web" || f[1] != "web" {
			t.Fatalf("/etc/hostname, hostname, eth0: %q", rest)
		}
		ip := strings.Split(f[5], "/")[0]
		if !strings.Contains(hosts, ip+"\tweb\n") {
			t.Fatalf("/etc/hosts does not name the container's address %s:\n%s", ip, hosts)
		}
		gw := strings.Join(strings.Split(ip, ".")[:3], ".") + ".1"
		if !strings.Contains(hosts, gw+"\tgw\n") {
			t.Fatalf("host-gateway is not the bridge's address %s:\n%s", gw, hosts)
		}
		// The name resolves through the file (the address does not answer).
		if r := d.Run("run", "--rm", "--add-host", "db:10.1.2.3", "busybox", "ping", "-c1", "-W1", "-q", "db"); !strings.Contains(r.Stdout, "PING db (10.1.2.3)") {
			t.Fatalf("ping db: %s", r)
		}
	})
	t.Run("resolv.conf", func(t *testing.T) {
		got := out(t, "--dns", "192.0.2.53", "--dns", "2001:db8::53", "--dns-search", "example.org", "--dns-option", "ndots:2", "busybox", "cat", "/etc/resolv.conf")
		if !strings.Contains(got, "nameserver 192.0.2.53\nnameserver 2001:db8::53\nsearch example.org\noptions ndots:2\n") {
			t.Fatalf("resolv.conf:\n%s", got)
		}
		got = out(t, "busybox", "cat", "/etc/resolv.conf")
		if strings.Contains(got, "nameserver 127.") || !strings.Contains(got, "nameserver ") {
			t.Fatalf("default resolv.conf (no loopback servers, at least one): %q", got)
		}
	})
	t.Run("read-only", func(t *testing.T) {
		r := d.Run("run", "--rm", "--read-only", "--add-host", "a:1.2.3.4", "busybox", "sh", "-c", "cat /etc/hosts >/dev/null && touch /x")
		if r.Code == 0 || !strings.Contains(r.Stderr, "Read-only file system") {
			t.Fatalf("touch in a --read-only container: %s", r)
		}
		if got := out(t, "--read-only", "busybox", "sh", "-c", "echo 9.9.9.9 x >> /etc/hosts 2>&1 || echo refused"); !strings.Contains(got, "Read-only file system") && !strings.Contains(got, "refused") {
			t.Fatalf("writing /etc/hosts of a --read-only container: %q", got)
		}
		if got := out(t, "busybox", "sh", "-c", "touch /x && echo rw"); strings.TrimSpace(got) != "rw" {
			t.Fatalf("a default container's rootfs is not writable: %q", got)
		}
	})
	t.Run("inspect", func(t *testing.T) {
		d.Must("run", "--name", "etcfiles", "--add-host", "z:10.9.9.9", "busybox", "true")
		defer d.Run("rm", "-f", "etcfiles")
		p := strings.TrimSpace(d.Must("inspect", "--format", "{{.HostsPath}}", "etcfiles"))
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), "10.9.9.9\tz") {
			t.Fatalf("HostsPath %q: %q %v", p, b, err)
		}
		if got := strings.TrimSpace(d.Must("inspect", "--format", "{{json .HostConfig.ExtraHosts}}", "etcfiles")); got != `["z:10.9.9.9"]` {
			t.Fatalf("HostConfig.ExtraHosts: %s", got)
		}
	})
	t.Run("docker CLI", func(t *testing.T) {
		docker := dockerCLI(t, d)
		r := docker("run", "--rm", "--add-host", "db:10.4.5.6", "--dns", "192.0.2.1", "busybox", "cat", "/etc/hosts", "/etc/resolv.conf")
		if r.Code != 0 || !strings.Contains(r.Stdout, "10.4.5.6\tdb") || !strings.Contains(r.Stdout, "nameserver 192.0.2.1") {
			t.Fatalf("docker run --add-host --dns: %s", r)
		}
	})
	t.Run("refused", func(t *testing.T) {
		refused(t, d, []refusal{
			{[]string{"--add-host", "nocolon"}, "bad format for add-host"},
			{[]string{"--add-host", "a:notanip"}, `invalid IP address in add-host: "notanip"`},
			{[]string{"--add-host", ":1.2.3.4"}, "bad format for add-host"},
			{[]string{"--network", "none", "--add-host", "gw:host-gateway"}, "host-gateway needs the bridge network"},
			{[]string{"--dns", "1.2.3"}, "is not an IP address"},
			{[]string{"--dns-search", "bad domain"}, "invalid --dns-search"},
			{[]string{"--dns-option", "a b"}, "invalid --dns-option"},
		})
	})
}

// runRm runs `run --rm ARGS...` and returns its output, failing on error.
func runRm(t *testing.T, d *harness.Daemon, args ...string) string {
	t.Helper()
	r := d.Run(append([]string{"run", "--rm"}, args...)...)
	if r.Code != 0 {
		t.Fatalf("run %s: %s", strings.Join(args, " "), r)
	}
	return r.Stdout
}

// refusal is a run that must fail: its flags and a part of the error.
type refusal struct {
	args []string
	msg  string
}

// refused runs each `run --rm ARGS busybox true` and wants exit 125, one
// line of error with the message, no panic and no container left.
func refused(t *testing.T, d *harness.Daemon, cases []refusal) {
	t.Helper()
	before := d.Must("ps", "-aq")
	for _, c := range cases {
		r := d.Run(append(append([]string{"run", "--rm"}, c.args...), "busybox", "true")...)
		if r.Code != 125 || !strings.Contains(r.Stderr, c.msg) {
			t.Errorf("run %s: want exit 125 and %q: %s", strings.Join(c.args, " "), c.msg, r)
		}
		if strings.Contains(r.Stderr, "panic") || strings.Count(strings.TrimSpace(r.Stderr), "\n") > 0 {
			t.Errorf("run %s: error is not one line: %q", strings.Join(c.args, " "), r.Stderr)
		}
	}
	if after := d.Must("ps", "-aq"); after != before {
		t.Fatalf("refused runs left containers:\n%s\nbefore:\n%s", after, before)
	}
}

// TestRunCIDFile checks --cidfile: the ID is written, an existing file is
// refused before anything is created, and a failed create leaves no file.
func TestRunCIDFile(t *testing.T) {
	d := engine(t)
	dir := t.TempDir()
	cid := filepath.Join(dir, "cid")
	d.Must("run", "-d", "--cidfile", cid, "--name", "withcid", "busybox", "sleep", "100")
	defer d.Run("rm", "-f", "withcid")
	b, err := os.ReadFile(cid)
	id := strings.TrimSpace(d.Must("inspect", "--format", "{{.Id}}", "withcid"))
	if err != nil || string(b) != id {
		t.Fatalf("cidfile %q (%v), want %s", b, err, id)
	}
	before := d.Must("ps", "-aq")
	r := d.Run("run", "--rm", "--cidfile", cid, "busybox", "true")
	if r.Code != 125 || !strings.Contains(r.Stderr, "container ID file found") {
		t.Fatalf("run with an existing cidfile: %s", r)
	}
	if after := d.Must("ps", "-aq"); after != before {
		t.Fatalf("a refused --cidfile run left a container:\n%s", after)
	}
	bad := filepath.Join(dir, "bad")
	if r := d.Run("create", "--cidfile", bad, "--add-host", "x", "busybox", "true"); r.Code != 125 {
		t.Fatalf("create with a bad --add-host: %s", r)
	}
	if _, err := os.Stat(bad); !os.IsNotExist(err) {
		t.Fatalf("a failed create left its cidfile: %v", err)
	}
	// Past the options, a failed create exits 1, as docker's.
	if r := d.Run("create", "--cidfile", filepath.Join(dir, "no", "such", "dir"), "busybox", "true"); r.Code != 1 || !strings.Contains(r.Stderr, "container ID file") {
		t.Fatalf("create with a cidfile in a missing directory: %s", r)
	}
	docker := dockerCLI(t, d)
	if r := docker("create", "--cidfile", filepath.Join(dir, "docker"), "--name", "dockercid", "busybox", "true"); r.Code != 0 {
		t.Fatalf("docker create --cidfile: %s", r)
	}
	defer d.Run("rm", "-f", "dockercid")
}

// hostCapBnd is this process's capability bounding set.
func hostCapBnd(t *testing.T) uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapBnd:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no CapBnd in /proc/self/status")
	return 0
}

// capEff is the effective capability mask a container's process has.
func capEff(t *testing.T, d *harness.Daemon, args ...string) string {
	t.Helper()
	out := runRm(t, d, append(args, "busybox", "grep", "CapEff", "/proc/self/status")...)
	return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(out), "CapEff:"))
}

// TestRunCapabilitiesAndSeccomp checks --cap-add, --cap-drop and
// --security-opt seccomp=unconfined|FILE from inside containers, through
// shoal and the docker CLI, and refuses bad values.
func TestRunCapabilitiesAndSeccomp(t *testing.T) {
	d := engine(t)
	t.Run("caps", func(t *testing.T) {
		for _, c := range []struct {
			args []string
			want string
		}{
			{nil, "00000000a80425fb"},
			{[]string{"--cap-drop", "chown", "--cap-drop", "CAP_NET_RAW"}, "00000000a80405fa"},
			{[]string{"--cap-drop", "ALL", "--cap-add", "chown"}, "0000000000000001"},
			// ALL is what this host's bounding set has (a test host may lack some).
			{[]string{"--cap-add", "ALL", "--cap-drop", "sys_admin"}, fmt.Sprintf("%016x", hostCapBnd(t)&^(1<<21))},
			{[]string{"--cap-add", "NET_ADMIN", "--cap-drop", "NET_ADMIN"}, "00000000a80435fb"}, // add wins, as dockerd
		} {
			if got := capEff(t, d, c.args...); got != c.want {
				t.Errorf("CapEff with %v: %s, want %s", c.args, got, c.want)
			}
		}
		// The dropped capability is gone: root cannot chown.
		r := d.Run("run", "--rm", "--cap-drop", "CHOWN", "busybox", "sh", "-c", "touch /f && chown 1 /f")
		if r.Code == 0 || !strings.Contains(r.Stderr, "Operation not permitted") {
			t.Fatalf("chown without CAP_CHOWN: %s", r)
		}
		// An added capability comes with the system calls it is for.
		if r := d.Run("run", "--rm", "busybox", "mount", "-t", "tmpfs", "none", "/tmp"); r.Code == 0 {
			t.Fatalf("mount without CAP_SYS_ADMIN worked: %s", r)
		}
		if got := runRm(t, d, "--cap-add", "SYS_ADMIN", "busybox", "sh", "-c", "mkdir /m && mount -t tmpfs none /m && grep -c ' /m tmpfs' /proc/mounts"); strings.TrimSpace(got) != "1" {
			t.Fatalf("mount with --cap-add SYS_ADMIN: %q", got)
		}
	})
	t.Run("seccomp", func(t *testing.T) {
		mode := func(args ...string) string {
			return strings.Fields(runRm(t, d, append(args, "busybox", "grep", "^Seccomp:", "/proc/self/status")...))[1]
		}
		if got := mode(); got != "2" {
			t.Fatalf("default Seccomp: %s, want 2 (filter)", got)
		}
		if got := mode("--security-opt", "seccomp=unconfined"); got != "0" {
			t.Fatalf("seccomp=unconfined: Seccomp %s, want 0", got)
		}
		if got := mode("--security-opt", "seccomp=builtin"); got != "2" {
			t.Fatalf("seccomp=builtin: Seccomp %s, want 2", got)
		}
		if got := strings.TrimSpace(runRm(t, d, "--security-opt", "no-new-privileges", "busybox", "grep", "^NoNewPrivs:", "/proc/self/status")); got != "NoNewPrivs:\t1" {
			t.Fatalf("no-new-privileges: %q", got)
		}
		profile := filepath.Join(t.TempDir(), "nomkdir.json")
		if err := os.WriteFile(profile, []byte(`{
  "defaultAction": "SCMP_ACT_ALLOW",
  "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
  "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]
}`), 0o644); err != nil {
			t.Fatal(err)
		}
		r := d.Run("run", "--rm", "--security-opt", "seccomp="+profile, "busybox", "mkdir", "/newdir")
		if r.Code == 0 || !strings.Contains(r.Stderr, "Operation not permitted") {
			t.Fatalf("mkdir under a profile that refuses it: %s", r)
		}
		if got := runRm(t, d, "--security-opt", "seccomp="+profile, "busybox", "sh", "-c", "touch /f && echo ok"); strings.TrimSpace(got) != "ok" {
			t.Fatalf("touch under the same profile: %q", got)
		}
		docker := dockerCLI(t, d)
		r = docker("run", "--rm", "--security-opt", "seccomp="+profile, "busybox", "mkdir", "/newdir")
		if r.Code == 0 || !strings.Contains(r.Stderr, "Operation not permitted") {
			t.Fatalf("docker run with a profile that refuses mkdir: %s", r)
		}
		r = docker("run", "--rm", "--cap-add", "SYS_ADMIN", "--cap-drop", "CHOWN", "busybox", "sh", "-c", "mkdir /m && mount -t tmpfs none /m && grep CapEff /proc/self/status")
		if r.Code != 0 || !strings.Contains(r.Stdout, "00000000a82425fa") {
			t.Fatalf("docker run --cap-add SYS_ADMIN --cap-drop CHOWN: %s", r)
		}
	})
	t.Run("refused", func(t *testing.T) {
		dir := t.TempDir()
		badJSON := filepath.Join(dir, "bad.json")
		badAction := filepath.Join(dir, "action.json")
		os.WriteFile(badJSON, []byte("{not json"), 0o644)
		os.WriteFile(badAction, []byte(`{"defaultAction": "SCMP_ACT_BOGUS"}`), 0o644)
		refused(t, d, []refusal{
			{[]string{"--cap-add", "FOO"}, `unknown capability: "CAP_FOO"`},
			{[]string{"--cap-drop", "cap_bogus"}, `unknown capability: "CAP_BOGUS"`},
			{[]string{"--security-opt", "seccomp=" + filepath.Join(dir, "missing.json")}, "opening seccomp profile"},
			{[]string{"--security-opt", "seccomp=" + badJSON}, "compacting json for seccomp profile"},
			{[]string{"--security-opt", "seccomp=" + badAction}, "seccomp profile"},
			{[]string{"--security-opt", "apparmor=unconfined"}, `security option "apparmor=unconfined" is not supported`},
			{[]string{"--privileged"}, "privileged"},
		})
	})
}

// TestRunStopLabelsEnvFile checks --stop-signal, --stop-timeout, --label,
// --label-file (with ps --filter label=, image labels included) and
// --env-file through shoal, and the same filters through the docker CLI.
func TestRunStopLabelsEnvFile(t *testing.T) {
	d := engine(t)
	dir := t.TempDir()
	t.Run("stop-signal", func(t *testing.T) {
		d.Must("run", "-d", "--name", "usr1", "--stop-signal", "USR1", "busybox", "sh", "-c", `trap "echo got usr1; exit 3" USR1; while true; do sleep 0.1; done`)
		defer d.Run("rm", "-f", "usr1")
		time.Sleep(300 * time.Millisecond) // the trap is set
		d.Must("stop", "usr1")
		if got := strings.TrimSpace(d.Must("inspect", "--format", "{{.State.ExitCode}} {{.Config.StopSignal}}", "usr1")); got != "3 USR1" {
			t.Fatalf("exit code and stop signal after stop: %q, want 3 USR1", got)
		}
		if got := d.Must("logs", "usr1"); !strings.Contains(got, "got usr1") {
			t.Fatalf("logs: %q", got)
		}
	})
	t.Run("stop-timeout", func(t *testing.T) {
		// PID 1 without a handler ignores SIGTERM: stop must kill after 1 s, not 10.
		d.Must("run", "-d", "--name", "deaf", "--stop-timeout", "1", "busybox", "sleep", "100")
		defer d.Run("rm", "-f", "deaf")
		start := time.Now()
		d.Must("stop", "deaf")
		if took := time.Since(start); took < 900*time.Millisecond || took > 6*time.Second {
			t.Fatalf("stop with --stop-timeout 1 took %v", took)
		}
		if got := strings.TrimSpace(d.Must("inspect", "--format", "{{.State.ExitCode}} {{.Config.StopTimeout}}", "deaf")); got != "137 1" {
			t.Fatalf("exit code and stop timeout: %q", got)
		}
	})
	t.Run("labels", func(t *testing.T) {
		d.Must("import", "--change", "LABEL team=db tier=back", harness.BusyboxTar(t), "labelled")
		lf := filepath.Join(dir, "labels")
		os.WriteFile(lf, []byte("# labels\nfromfile=yes\n\nowner=ann\n"), 0o644)
		d.Must("create", "--name", "l1", "--label", "app=web", "--label-file", lf, "busybox", "true")
		d.Must("create", "--name", "l2", "--label", "app=api", "--label", "tier=front", "labelled", "true")
		defer d.Run("rm", "-f", "l1", "l2")
		for filter, want := range map[string]string{
			"label=app":          "l1 l2",
			"label=app=web":      "l1",
			"label=fromfile=yes": "l1",
			"label=team=db":      "l2",
			"label=tier=front":   "l2", // the given label wins over the image's
			"label=tier=back":    "",
		} {
			got := strings.Fields(d.Must("ps", "-a", "--filter", filter, "--format", "{{.Names}}"))
			slices.Sort(got)
			if strings.Join(got, " ") != want {
				t.Errorf("ps --filter %s: %q, want %q", filter, got, want)
			}
		}
		docker := dockerCLI(t, d)
		r := docker("ps", "-a", "--filter", "label=team=db", "--filter", "label=app", "--format", "{{.Names}} {{.Label \"owner\"}}{{.Label \"app\"}}")
		if r.Code != 0 || strings.TrimSpace(r.Stdout) != "l2 api" {
			t.Fatalf("docker ps --filter label=: %s", r)
		}
	})
	t.Run("env-file", func(t *testing.T) {
		ef := filepath.Join(dir, "env")
		os.WriteFile(ef, []byte("# settings\nA=1\nB=two words\n\n"), 0o644)
		got := runRm(t, d, "--env-file", ef, "-e", "A=override", "busybox", "sh", "-c", `echo "$A|$B"`)
		if strings.TrimSpace(got) != "override|two words" {
			t.Fatalf("--env-file then -e: %q", got)
		}
	})
	t.Run("refused", func(t *testing.T) {
		refused(t, d, []refusal{
			{[]string{"--stop-signal", "SIGBOGUS"}, "invalid stop signal"},
			{[]string{"--stop-timeout", "soon"}, "invalid argument"},
			{[]string{"--env-file", filepath.Join(dir, "missing")}, "open env file"},
			{[]string{"--label-file", filepath.Join(dir, "missing")}, "open label file"},
			{[]string{"--label", "=x"}, "invalid label"},
		})
	})
}

// TestRunDevice checks --device: the node is made with the host's numbers,
// the cgroup lets the container use it with the permissions given and no
// more, and bad values are refused.
func TestRunDevice(t *testing.T) {
	const dev = "/dev/loop0" // a block device the default rules do not allow
	if _, err := os.Stat(dev); err != nil {
		t.Skip("no " + dev)
	}
	d := engine(t)
	if r := d.Run("run", "--rm", "busybox", "ls", "/dev/xda"); r.Code == 0 {
		t.Fatalf("a default container has /dev/xda: %s", r)
	}
	got := runRm(t, d, "--device", dev+":/dev/xda", "busybox", "sh", "-c", "stat -c '%t:%T %F' /dev/xda && dd if=/dev/xda of=/dev/null bs=512 count=1 2>&1 && echo read")
	if !strings.Contains(got, "7:0 block special file") || !strings.Contains(got, "read") {
		t.Fatalf("--device %s:/dev/xda: %q", dev, got)
	}
	// Read-only: writing is refused by the device cgroup.
	r := d.Run("run", "--rm", "--device", dev+":/dev/xda:r", "busybox", "sh", "-c", "dd if=/dev/xda of=/dev/null bs=512 count=1 2>/dev/null && echo read; dd if=/dev/zero of=/dev/xda bs=512 count=1 conv=notrunc")
	if r.Code == 0 || !strings.Contains(r.Stdout, "read") || !strings.Contains(r.Stderr, "Operation not permitted") {
		t.Fatalf("--device %s:/dev/xda:r then a write: %s", dev, r)
	}
	docker := dockerCLI(t, d)
	if r := docker("run", "--rm", "--device", dev+":/dev/xdb:rm", "busybox", "sh", "-c", "dd if=/dev/xdb of=/dev/null bs=512 count=1"); r.Code != 0 {
		t.Fatalf("docker run --device: %s", r)
	}
	t.Run("refused", func(t *testing.T) {
		refused(t, d, []refusal{
			{[]string{"--device", "/dev/nosuchdev"}, `error gathering device information while adding custom device "/dev/nosuchdev"`},
			{[]string{"--device", "/etc/passwd"}, "not a device node"},
			{[]string{"--device", dev + ":/dev/x:rwz"}, "invalid device mode: rwz"},
			{[]string{"--device", "relative"}, "paths must be absolute"},
			{[]string{"--device", "a:b:c:d"}, "invalid device specification"},
		})
	})
}

// TestRunPrivileged checks that --privileged is refused by a default daemon
// and, on a daemon started with --allow-privileged, gives every capability,
// no seccomp filter, the host's devices and a writable /sys.
func TestRunPrivileged(t *testing.T) {
	d := engine(t)
	r := d.Run("run", "--rm", "--privileged", "busybox", "true")
	if r.Code != 125 || !strings.Contains(r.Stderr, "start it with --allow-privileged") {
		t.Fatalf("--privileged on a default daemon: %s", r)
	}
	p := harness.StartDaemon(t, harness.Options{Args: []string{"--allow-privileged"}})
	p.Must("import", harness.BusyboxTar(t), "busybox:latest")
	got := runRm(t, p, "--privileged", "busybox", "sh", "-c",
		"grep -E '^(CapEff|Seccomp):' /proc/self/status; ls /dev/loop0 >/dev/null && echo devices; grep -c ' /sys sysfs rw' /proc/mounts; mkdir /m && mount -t tmpfs none /m && echo mounted")
	want := fmt.Sprintf("CapEff:\t%016x\nSeccomp:\t0\n", hostCapBnd(t))
	if !strings.HasPrefix(got, want) || !strings.Contains(got, "devices\n1\nmounted") {
		t.Fatalf("a privileged container:\n%s\nwant it to start with:\n%s", got, want)
	}
	// A container that is not privileged on that daemon keeps the defaults.
	if got := capEff(t, p); got != "00000000a80425fb" {
		t.Fatalf("CapEff of a default container on an --allow-privileged daemon: %s", got)
	}
}

// TestRunInit checks --init: the command is not PID 1, orphans are reaped
// (a control container without --init keeps the zombie), stop's SIGTERM
// reaches a command that would ignore it as PID 1, and exit codes pass
// through, with shoal and the docker CLI.
func TestRunInit(t *testing.T) {
	d := engine(t)
	if got := strings.TrimSpace(runRm(t, d, "--init", "busybox", "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; echo; echo $$")); !strings.HasPrefix(got, "/dev/init container-init -- sh -c") || strings.HasSuffix(got, "\n1") {
		t.Fatalf("PID 1 and the shell's pid with --init: %q", got)
	}
	zombies := func(name string, args ...string) string {
		d.Must(append([]string{"run", "-d", "--name", name}, append(args, "busybox", "sh", "-c", "(sleep 0.2 &); exec sleep 100")...)...)
		time.Sleep(1500 * time.Millisecond)
		return d.Must("exec", name, "ps", "-o", "stat,comm")
	}
	defer d.Run("rm", "-f", "reaped", "unreaped")
	if got := zombies("unreaped"); !strings.Contains(got, "Z ") {
		t.Fatalf("control: without --init the orphan is not reaped, so a zombie is expected:\n%s", got)
	}
	if got := zombies("reaped", "--init"); strings.Contains(got, "Z ") {
		t.Fatalf("a zombie with --init:\n%s", got)
	}
	// An update may not lower the pids limit under what the init needs
	// either (containers.InitMinPids).
	if r := d.Run("update", "--pids-limit", "5", "reaped"); r.Code == 0 || !strings.Contains(r.Stderr, "pids limit of at least") {
		t.Fatalf("update --pids-limit 5 of a --init container: %s", r)
	}
	// sleep as PID 1 ignores SIGTERM; under the init it is not PID 1.
	d.Must("run", "-d", "--name", "sleeper", "--init", "--stop-timeout", "8", "busybox", "sleep", "100")
	defer d.Run("rm", "-f", "sleeper")
	start := time.Now()
	d.Must("stop", "sleeper")
	if took := time.Since(start); took > 4*time.Second {
		t.Fatalf("stop of a --init container took %v: SIGTERM was not forwarded", took)
	}
	if got := strings.TrimSpace(d.Must("inspect", "--format", "{{.State.ExitCode}} {{.HostConfig.Init}}", "sleeper")); got != "143 true" {
		t.Fatalf("exit code and HostConfig.Init after stop: %q, want 143 true", got)
	}
	if r := d.Run("run", "--rm", "--init", "busybox", "sh", "-c", "exit 3"); r.Code != 3 {
		t.Fatalf("exit 3 under --init: %s", r)
	}
	if r := d.Run("run", "--rm", "--init", "busybox", "nosuchcommand"); r.Code != 127 || !strings.Contains(r.Stderr, "nosuchcommand") {
		t.Fatalf("a missing command under --init: %s", r)
	}
	docker := dockerCLI(t, d)
	if r := docker("run", "--rm", "--init", "busybox", "sh", "-c", "kill -USR1 $$; sleep 1"); r.Code != 138 {
		t.Fatalf("docker run --init, the command killed by SIGUSR1: %s, want exit 138", r)
	}
	// The init's Go runtime threads count against a pids limit: a limit
	// it cannot start under (7 crashed it with a Go runtime dump) is
	// refused at create, nothing made; one it can is applied.
	if r := d.Run("run", "--rm", "--name", "tightinit", "--init", "--pids-limit", "7", "busybox", "true"); r.Code != 125 || !strings.Contains(r.Stderr, "pids limit of at least") || strings.Contains(r.Stderr, "goroutine") {
		t.Fatalf("--init --pids-limit 7: %s", r)
	}
	if r := d.Run("inspect", "tightinit"); r.Code == 0 {
		t.Fatalf("a refused --init container exists: %s", r)
	}
	if got := strings.TrimSpace(runRm(t, d, "--init", "--pids-limit", "16", "busybox", "sh", "-c", "cat /sys/fs/cgroup/pids/pids.max")); got != "16" {
		t.Fatalf("--init --pids-limit 16: pids.max %q", got)
	}
}
