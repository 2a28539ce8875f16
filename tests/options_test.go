package tests

import (
	"os"
	"strings"
	"testing"

	"github.com/shoal-project/shoal/tests/harness"
)

// TestHostConfigOptions runs containers with each of sysctl, ulimit, pid,
// ipc, shm-size, group-add, cpuset and memory-swap, and observes the option
// from inside the container; then each bad value is refused with one line
// and leaves no container behind.
func TestHostConfigOptions(t *testing.T) {
	d := engine(t)
	// out runs a container and returns its trimmed output, failing on error.
	out := func(t *testing.T, args ...string) string {
		t.Helper()
		return strings.TrimSpace(runRm(t, d, args...))
	}
	t.Run("domainname", func(t *testing.T) {
		// The UTS namespace's domain name, and /etc/hosts names the
		// container host.domain, as dockerd writes it (bridge network).
		got := out(t, "-h", "myhost", "--domainname", "example.test", "busybox", "sh", "-c", "cat /proc/sys/kernel/domainname; grep myhost /etc/hosts | cut -f2")
		if got != "example.test\nmyhost.example.test myhost" {
			t.Fatalf("domainname and /etc/hosts: %q", got)
		}
	})
	t.Run("host hostname", func(t *testing.T) {
		// --network host and --uts host name the container as the host,
		// in its hostname, /etc/hostname and HOSTNAME, as dockerd; only
		// --uts host shares the host's UTS namespace.
		host, _ := os.Hostname()
		want := host + "\n" + host + "\n" + host
		for _, args := range [][]string{{"--network", "host"}, {"--uts", "host"}} {
			got := out(t, append(args, "busybox", "sh", "-c", "hostname; cat /etc/hostname; echo $HOSTNAME")...)
			if got != want {
				t.Errorf("%v: %q, want the host's name %q", args, got, host)
			}
		}
		self, _ := os.Readlink("/proc/self/ns/uts")
		if got := out(t, "--uts", "host", "busybox", "readlink", "/proc/self/ns/uts"); got != self {
			t.Errorf("--uts host: namespace %s, the host's is %s", got, self)
		}
		if got := out(t, "--network", "host", "busybox", "readlink", "/proc/self/ns/uts"); got == self {
			t.Errorf("--network host shares the host's UTS namespace")
		}
		failsWith(t, d.Run("run", "--rm", "--uts", "host", "-h", "x", "busybox", "true"), "conflicting options: hostname and the UTS mode")
	})
	t.Run("ulimit", func(t *testing.T) {
		if got := out(t, "--ulimit", "nofile=512:1024", "--ulimit", "nproc=300", "busybox", "sh", "-c", "ulimit -n; ulimit -Hn; ulimit -u"); got != "512\n1024\n300" {
			t.Fatalf("ulimit -n, -Hn, -u: %q, want 512, 1024, 300", got)
		}
		if got := out(t, "--ulimit", "core=0", "busybox", "sh", "-c", "ulimit -c"); got != "0" {
			t.Fatalf("ulimit -c: %q", got)
		}
	})
	t.Run("sysctl", func(t *testing.T) {
		host, _ := os.ReadFile("/proc/sys/kernel/shmmax")
		got := out(t, "--sysctl", "kernel.shmmax=123456789", "--sysctl", "net.ipv4.ip_unprivileged_port_start=80",
			"busybox", "cat", "/proc/sys/kernel/shmmax", "/proc/sys/net/ipv4/ip_unprivileged_port_start")
		if got != "123456789\n80" {
			t.Fatalf("sysctls seen in the container: %q", got)
		}
		if after, _ := os.ReadFile("/proc/sys/kernel/shmmax"); string(after) != string(host) {
			t.Fatalf("the host's kernel.shmmax changed: %q -> %q", host, after)
		}
	})
	t.Run("group-add", func(t *testing.T) {
		if got := out(t, "--group-add", "1234", "--group-add", "nogroup", "busybox", "id", "-G"); got != "0 1234 65534" {
			t.Fatalf("id -G: %q, want 0 1234 65534", got)
		}
		if got := out(t, "-u", "nobody", "--group-add", "1234", "busybox", "id", "-G"); got != "65534 1234" {
			t.Fatalf("id -G as nobody: %q", got)
		}
		// The primary group is a supplementary group too, as Docker sets
		// them since 20.10.18 (CVE-2022-36109): dockerd prints this.
		if got := out(t, "-u", "7:8", "busybox", "id"); got != "uid=7 gid=8 groups=8" {
			t.Fatalf("id as 7:8: %q, want uid=7 gid=8 groups=8", got)
		}
		d.Must("run", "-d", "--name", "groups", "--group-add", "1234", "busybox", "sleep", "100")
		defer d.Run("rm", "-f", "groups")
		for _, c := range []struct{ user, want string }{{"", "0 1234"}, {"nobody", "65534 1234"}} {
			args := []string{"exec", "groups", "id", "-G"}
			if c.user != "" {
				args = []string{"exec", "-u", c.user, "groups", "id", "-G"}
			}
			if got := strings.TrimSpace(d.Must(args...)); got != c.want {
				t.Fatalf("exec -u %q id -G in a --group-add container: %q, want %q", c.user, got, c.want)
			}
		}
	})
	t.Run("shm-size", func(t *testing.T) {
		df := func(args ...string) string {
			f := strings.Fields(out(t, append(args, "busybox", "sh", "-c", "df -k /dev/shm | tail -1")...))
			if len(f) < 2 {
				t.Fatalf("df of /dev/shm: %q", f)
			}
			return f[1]
		}
		if got := df(); got != "65536" {
			t.Fatalf("default /dev/shm: %s KiB, want 65536", got)
		}
		if got := df("--shm-size", "32m"); got != "32768" {
			t.Fatalf("/dev/shm with --shm-size 32m: %s KiB", got)
		}
	})
	t.Run("pid", func(t *testing.T) {
		if got := out(t, "busybox", "cat", "/proc/1/comm"); got != "cat" {
			t.Fatalf("pid 1 of a private pid namespace is %q, want cat", got)
		}
		host, _ := os.ReadFile("/proc/1/comm")
		if got := out(t, "--pid", "host", "busybox", "cat", "/proc/1/comm"); got != strings.TrimSpace(string(host)) {
			t.Fatalf("--pid host: pid 1 is %q, the host's is %q", got, host)
		}
		d.Must("run", "-d", "--name", "pidowner", "busybox", "sleep", "100")
		defer d.Run("rm", "-f", "pidowner")
		if got := out(t, "--pid", "container:pidowner", "busybox", "cat", "/proc/1/comm"); got != "sleep" {
			t.Fatalf("--pid container:pidowner: pid 1 is %q, want sleep", got)
		}
	})
	t.Run("ipc", func(t *testing.T) {
		hostNS, err := os.Readlink("/proc/self/ns/ipc")
		if err != nil {
			t.Fatal(err)
		}
		if got := out(t, "busybox", "readlink", "/proc/self/ns/ipc"); got == hostNS {
			t.Fatalf("a default container shares the host's IPC namespace %s", got)
		}
		if got := out(t, "--ipc", "shareable", "busybox", "readlink", "/proc/self/ns/ipc"); got == hostNS {
			t.Fatalf("--ipc shareable shares the host's IPC namespace %s", got)
		}
		if got := out(t, "--ipc", "host", "busybox", "readlink", "/proc/self/ns/ipc"); got != hostNS {
			t.Fatalf("--ipc host: namespace %s, the host's is %s", got, hostNS)
		}
		if got := out(t, "--ipc", "none", "busybox", "sh", "-c", "grep -c ' /dev/shm ' /proc/mounts || true"); got != "0" {
			t.Fatalf("--ipc none: /dev/shm is mounted (%s)", got)
		}
	})
	t.Run("cpuset", func(t *testing.T) {
		if got := out(t, "--cpuset-cpus", "1", "--cpuset-mems", "0", "busybox", "sh", "-c", "grep Cpus_allowed_list /proc/self/status"); !strings.HasSuffix(got, "\t1") {
			t.Fatalf("--cpuset-cpus 1: %q", got)
		}
		d.Must("run", "-d", "--name", "pinned", "--cpuset-cpus", "0", "busybox", "sleep", "100")
		defer d.Run("rm", "-f", "pinned")
		id := strings.TrimSpace(d.Must("inspect", "--format", "{{.Id}}", "pinned"))
		b, err := os.ReadFile("/sys/fs/cgroup/cpuset/" + d.CgroupParent + "/" + id + "/cpuset.cpus")
		if err != nil || strings.TrimSpace(string(b)) != "0" {
			t.Fatalf("the container's cpuset cgroup: %q %v", b, err)
		}
	})
	t.Run("memory-swap", func(t *testing.T) {
		if got := out(t, "-m", "32m", "--memory-swap", "48m", "busybox", "cat", "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"); got != "50331648" {
			t.Fatalf("memory.memsw.limit_in_bytes with -m 32m --memory-swap 48m: %q", got)
		}
		if got := out(t, "-m", "32m", "--memory-swap", "-1", "busybox", "cat", "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"); got != "9223372036854771712" {
			t.Fatalf("memory.memsw.limit_in_bytes with --memory-swap -1: %q", got)
		}
	})
	t.Run("refused", func(t *testing.T) {
		refused(t, d, []refusal{
			{[]string{"--sysctl", "kernel.core_pattern=|/tmp/x"}, "sysctl 'kernel.core_pattern' is not allowed"},
			{[]string{"--sysctl", "vm.swappiness=1"}, "sysctl 'vm.swappiness' is not allowed"},
			{[]string{"--network", "host", "--sysctl", "net.ipv4.ip_forward=0"}, "not allowed in the host's network namespace"},
			{[]string{"--ipc", "host", "--sysctl", "kernel.shmmax=1"}, "not allowed in the host's IPC namespace"},
			{[]string{"--sysctl", "novalue"}, "is not KEY=VALUE"},
			{[]string{"--pid", "bogus"}, "invalid PID mode: bogus"},
			{[]string{"--pid", "container:nosuch"}, "No such container"},
			{[]string{"--ipc", "bogus"}, "invalid IPC mode: bogus"},
			{[]string{"--ipc", "container:x"}, "is not supported"},
			{[]string{"--ipc", "host", "--shm-size", "1m"}, "--shm-size cannot be used with --ipc host"},
			{[]string{"-m", "32m", "--memory-swap", "16m"}, "Minimum memoryswap limit should be larger than memory limit"},
			{[]string{"--memory-swap", "64m"}, "You should always set the Memory limit when using Memoryswap limit"},
			{[]string{"--cpuset-cpus", "99"}, "Requested CPUs are not available - requested 99"},
			{[]string{"--cpuset-cpus", "1-0"}, "Invalid value 1-0 for cpuset cpus"},
			{[]string{"--cpuset-mems", "7"}, "Requested memory nodes are not available"},
			{[]string{"--ulimit", "bogus=1"}, "invalid ulimit type: bogus"},
			{[]string{"--ulimit", "nofile=20:10"}, "ulimit soft limit must be less than or equal to hard limit: 20 > 10"},
			{[]string{"--shm-size", "-1"}, "invalid"},
			{[]string{"--group-add", "a:b"}, "invalid group"},
		})
	})
	t.Run("unknown group at start", func(t *testing.T) {
		r := d.Run("run", "--rm", "--group-add", "nosuchgroup", "busybox", "true")
		if r.Code == 0 || !strings.Contains(r.Stderr, "Unable to find group nosuchgroup") {
			t.Fatalf("run --group-add nosuchgroup: %s", r)
		}
	})
	t.Run("info", func(t *testing.T) {
		if got := d.Must("info", "--format", "{{json .SecurityOptions}}"); strings.Contains(got, "no-new-privileges") {
			t.Fatalf("info claims no-new-privileges, which is off by default: %s", got)
		}
	})
	t.Run("docker CLI", func(t *testing.T) {
		docker := "/usr/local/bin/docker"
		if _, err := os.Stat(docker); err != nil {
			t.Fatalf("no docker CLI at %s: the compatibility tests need it", docker)
		}
		// The docker CLI takes -H unix://SOCKET as shoal's does.
		run := (&harness.Daemon{Bin: docker, Socket: d.Socket}).Run
		r := run("run", "--rm", "--ulimit", "nofile=256:512", "--shm-size", "16m", "--group-add", "4321", "busybox", "sh", "-c", "ulimit -n; df -k /dev/shm | tail -1 | awk '{print $2}'; id -G")
		if r.Code != 0 || strings.TrimSpace(r.Stdout) != "256\n16384\n0 4321" {
			t.Fatalf("docker run --ulimit --shm-size --group-add: %s", r)
		}
		r = run("run", "--rm", "--sysctl", "kernel.shmmax=7654321", "--pid", "host", "busybox", "cat", "/proc/sys/kernel/shmmax")
		if r.Code != 0 || strings.TrimSpace(r.Stdout) != "7654321" {
			t.Fatalf("docker run --sysctl --pid host: %s", r)
		}
		r = run("run", "--rm", "--sysctl", "net.ipv4.ip_forward=1", "--network", "host", "busybox", "true")
		if r.Code != 125 || !strings.Contains(r.Stderr, "not allowed in the host's network namespace") {
			t.Fatalf("docker run --network host --sysctl net.*: %s", r)
		}
		r = run("run", "--rm", "-m", "32m", "--memory-swap", "16m", "busybox", "true")
		if r.Code != 125 || !strings.Contains(r.Stderr, "Minimum memoryswap limit") {
			t.Fatalf("docker run --memory-swap below --memory: %s", r)
		}
		// Options the engine does not apply are refused, not ignored.
		for flag, args := range map[string][]string{
			"--cpu-quota":     {"--cpu-quota", "50000"},
			"--oom-score-adj": {"--oom-score-adj", "100"},
		} {
			r = run(append(append([]string{"run", "--rm"}, args...), "busybox", "true")...)
			if r.Code != 125 || !strings.Contains(r.Stderr, flag+" is not supported") {
				t.Errorf("docker run %s: %s", strings.Join(args, " "), r)
			}
		}
		// Log drivers other than json-file, local and none, in dockerd's words.
		r = run("run", "--rm", "--log-driver", "syslog", "busybox", "true")
		if r.Code != 125 || !strings.Contains(r.Stderr, "no log driver named 'syslog' is registered") {
			t.Errorf("docker run --log-driver syslog: %s", r)
		}
	})
}
