package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/containerd/cgroups"
	"github.com/shoal-project/shoal/containerd/oci"
)

// TestMain makes the test binary double as the container init: the runtime
// re-executes /proc/self/exe with "init". The tests run twice: with the Go
// init (SHOAL_INIT=go), then, in a second run of this binary, with the
// cloned first process (firstproc.go) wherever a container qualifies for
// it: this binary is not sealed, so a run execs through the trampoline, as
// `shoal runtime run` does, and a create (firstProcUnsealed) directly, as a
// shim does.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		InitMain()
	}
	if len(os.Args) > 1 && os.Args[0] == "/proc/self/exe" {
		hostBinaryRan()
	}
	if os.Getenv("SHOAL_TEST_FIRSTPROC") != "" {
		firstProcUnsealed = true
		os.Exit(m.Run())
	}
	os.Setenv("SHOAL_INIT", "go")
	if code := m.Run(); code != 0 {
		os.Exit(code)
	}
	os.Unsetenv("SHOAL_INIT")
	fmt.Println("again, with the cloned first process:")
	cmd := exec.Command(os.Args[0], os.Args[1:]...)
	cmd.Env = append(os.Environ(), "SHOAL_TEST_FIRSTPROC=1")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	os.Exit(0)
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("needs /bin/busybox (busybox-static)")
	}
}

var applets = []string{"sh", "sleep", "cat", "echo", "hostname", "ls", "grep", "head", "tr", "wc",
	"ps", "readlink", "true", "id", "mount", "tail", "stat", "touch", "unshare", "tty", "stty", "cut"}

// newBundle makes a bundle with a static busybox rootfs and Docker's
// default spec running args; edit may change the spec.
func newBundle(t *testing.T, edit func(*specs.Spec), args ...string) string {
	t.Helper()
	dir := t.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "proc", "sys", "dev", "etc", "tmp"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin/busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range applets {
		if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	s := oci.DefaultSpec()
	s.Process.Args = args
	s.Hostname = "shoaltest"
	if edit != nil {
		edit(s)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// newRuntime returns a Runtime whose containers live under a cgroup parent
// of their own, removed (with any leftovers) when the test ends.
func newRuntime(t *testing.T) *Runtime {
	t.Helper()
	r := New(t.TempDir())
	r.CgroupParent = fmt.Sprintf("/shoal-test-%d", os.Getpid())
	t.Cleanup(func() {
		ids, _ := r.List()
		for _, id := range ids {
			_ = r.Delete(context.Background(), id, true)
		}
		removeCgroupTree(r.CgroupRoot, r.CgroupParent)
	})
	return r
}

func removeCgroupTree(root, parent string) {
	dirs, _ := filepath.Glob(filepath.Join(root, "*", strings.TrimPrefix(parent, "/")))
	for _, d := range dirs {
		subs, _ := filepath.Glob(filepath.Join(d, "*"))
		for _, s := range subs {
			if fi, err := os.Stat(s); err == nil && fi.IsDir() {
				_ = unix.Rmdir(s)
			}
		}
		_ = unix.Rmdir(d)
	}
}

type output struct{ out, err *os.File }

func newOutput(t *testing.T) output {
	t.Helper()
	o, err := os.CreateTemp(t.TempDir(), "stdout")
	if err != nil {
		t.Fatal(err)
	}
	e, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close(); e.Close() })
	return output{o, e}
}

func (o output) String() (string, string) {
	a, _ := os.ReadFile(o.out.Name())
	b, _ := os.ReadFile(o.err.Name())
	return string(a), string(b)
}

func (o output) opts() CreateOptions { return CreateOptions{Stdout: o.out, Stderr: o.err} }

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestRunIsolation(t *testing.T) {
	requireRoot(t)
	r := newRuntime(t)
	bundle := newBundle(t, nil, "sh", "-c",
		`echo pid=$$; hostname; grep CapEff /proc/self/status; ls /proc | grep -c '^[0-9]'; cat /proc/self/cgroup | grep memory; id -u`)
	o := newOutput(t)
	code, err := r.Run(ctx(t), "iso", bundle, o.opts())
	stdout, stderr := o.String()
	if err != nil || code != 0 {
		t.Fatalf("run: code %d, err %v, stderr %q", code, err, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 6 {
		t.Fatalf("unexpected output %q", stdout)
	}
	if lines[0] != "pid=1" {
		t.Errorf("container shell is %s, want pid=1", lines[0])
	}
	if lines[1] != "shoaltest" {
		t.Errorf("hostname %q", lines[1])
	}
	if f := strings.Fields(lines[2]); len(f) != 2 || f[1] != "00000000a80425fb" {
		t.Errorf("CapEff line %q, want 00000000a80425fb", lines[2])
	}
	// sh, ls and grep (plus a short-lived subshell at most).
	if lines[3] != "3" && lines[3] != "2" && lines[3] != "4" {
		t.Errorf("/proc shows %s processes: not isolated", lines[3])
	}
	// The cgroup namespace is rooted at the container's cgroup.
	if lines[4] != "4:memory:/" && !strings.HasSuffix(lines[4], ":memory:/") {
		t.Errorf("cgroup line %q, want memory:/ (cgroup namespace)", lines[4])
	}
	if lines[5] != "0" {
		t.Errorf("uid %s", lines[5])
	}
	if _, err := os.Stat(r.dir("iso")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state dir left after run: %v", err)
	}
}

func TestCreateStartStateKillDelete(t *testing.T) {
	requireRoot(t)
	r := newRuntime(t)
	bundle := newBundle(t, nil, "sleep", "60")
	o := newOutput(t)
	c := ctx(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	opts := o.opts()
	opts.PidFile = pidFile
	if err := r.Create(c, "life", bundle, opts); err != nil {
		t.Fatal(err)
	}
	st, err := r.State("life")
	if err != nil || st.Status != specs.StateCreated || st.Pid == 0 || st.Bundle != bundle {
		t.Fatalf("after create: %+v, %v", st, err)
	}
	if b, _ := os.ReadFile(pidFile); string(b) != fmt.Sprint(st.Pid) {
		t.Errorf("pid file %q, want %d", b, st.Pid)
	}
	if err := r.Create(c, "life", bundle, opts); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate create: %v, want ErrExists", err)
	}
	// The process must not have run yet: the init is still our binary.
	if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", st.Pid)); strings.Contains(exe, "busybox") {
		t.Errorf("process ran before start: %s", exe)
	}
	if err := r.Start(c, "life"); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(c, "life"); !errors.Is(err, ErrState) {
		t.Errorf("second start: %v, want ErrState", err)
	}
	if st, _ = r.State("life"); st.Status != specs.StateRunning {
		t.Fatalf("after start: %s", st.Status)
	}
	if err := r.Delete(c, "life", false); !errors.Is(err, ErrState) {
		t.Errorf("delete of a running container: %v, want ErrState", err)
	}
	cg, err := r.Cgroup("life")
	if err != nil {
		t.Fatal(err)
	}
	pids, err := cg.Pids()
	if err != nil || len(pids) != 1 || pids[0] != st.Pid {
		t.Errorf("cgroup holds %v (%v), want [%d]", pids, err, st.Pid)
	}
	if err := r.Kill("life", unix.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	code, err := r.Wait(c, "life")
	if err != nil || code != 137 {
		t.Errorf("wait: %d, %v; want 137", code, err)
	}
	if st, _ = r.State("life"); st.Status != specs.StateStopped || st.Pid != 0 {
		t.Errorf("after kill: %+v", st)
	}
	if err := r.Kill("life", unix.SIGKILL, false); !errors.Is(err, ErrState) {
		t.Errorf("kill of a stopped container: %v, want ErrState", err)
	}
	if err := r.Delete(c, "life", false); err != nil {
		t.Fatal(err)
	}
	assertGone(t, r, "life", bundle, cg)
}

// assertGone checks that nothing of a container is left: state, cgroup
// directories, mounts.
func assertGone(t *testing.T, r *Runtime, id, bundle string, cg cgroups.Manager) {
	t.Helper()
	if _, err := r.State(id); !errors.Is(err, ErrNotFound) {
		t.Errorf("state still there: %v", err)
	}
	if _, err := os.Stat(r.dir(id)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state dir still there")
	}
	if cg != nil {
		dirs, _ := filepath.Glob(filepath.Join(r.CgroupRoot, "*", cg.Path()))
		if len(dirs) != 0 {
			t.Errorf("cgroup dirs left: %v", dirs)
		}
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), bundle) {
		t.Errorf("mounts of the bundle left in the host namespace")
	}
}

func TestCreateFailuresLeaveNothing(t *testing.T) {
	requireRoot(t)
	r := newRuntime(t)
	c := ctx(t)
	cases := []struct {
		name string
		edit func(*specs.Spec)
		args []string
		want error
	}{
		{"missing", nil, []string{"/bin/nonexistent"}, ErrExecNotFound},
		{"notonpath", nil, []string{"nonexistent"}, ErrExecNotFound},
		{"noexec", nil, []string{"/etc"}, ErrExecPermission},
		{"badmount", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/x", Type: "bind", Source: "/nonexistent-source", Options: []string{"bind"}})
		}, []string{"true"}, nil},
		{"badsysctl", func(s *specs.Spec) { s.Linux.Sysctl = map[string]string{"net.nonexistent.key": "1"} }, []string{"true"}, nil},
		{"dupns", func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.PIDNamespace})
		}, []string{"true"}, ErrInvalid},
		{"badnspath", func(s *specs.Spec) {
			for i := range s.Linux.Namespaces {
				if s.Linux.Namespaces[i].Type == specs.NetworkNamespace {
					s.Linux.Namespaces[i].Path = "/proc/self/ns/uts" // wrong type
				}
			}
		}, []string{"true"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bundle := newBundle(t, tc.edit, tc.args...)
			o := newOutput(t)
			err := r.Create(c, tc.name, bundle, o.opts())
			if err == nil {
				t.Fatal("create succeeded")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("multi-line error %q", err)
			}
			cg, _ := cgroups.New(cgroups.DetectAt(r.CgroupRoot), r.CgroupRoot, r.cgroupPath(tc.name, &specs.Spec{}))
			assertGone(t, r, tc.name, bundle, cg)
		})
	}
}

func TestExecJoinsContainer(t *testing.T) {
	requireRoot(t)
	r := newRuntime(t)
	bundle := newBundle(t, nil, "sleep", "60")
	c := ctx(t)
	if err := r.Create(c, "ex", bundle, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(c, "ex"); err != nil {
		t.Fatal(err)
	}
	st, _ := r.State("ex")
	// Start returns once the init was told to go (as runc's); its execve
	// of the container's process may come a moment later.
	deadline := time.Now().Add(5 * time.Second)
	for {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", st.Pid))
		if strings.TrimSpace(string(comm)) == "sleep" || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	spec := oci.DefaultSpec()
	p := *spec.Process
	p.Args = []string{"sh", "-c", `hostname; cat /proc/1/comm; echo $$; grep CapEff /proc/self/status; cat /proc/self/cgroup | grep pids`}
	o := newOutput(t)
	proc, err := r.Exec(c, "ex", p, Stdio{Stdout: o.out, Stderr: o.err})
	if err != nil {
		t.Fatal(err)
	}
	ps, err := proc.Wait()
	stdout, stderr := o.String()
	if err != nil || ps.ExitCode() != 0 {
		t.Fatalf("exec: %v %v %q", ps, err, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 5 || lines[0] != "shoaltest" || lines[1] != "sleep" || lines[2] == fmt.Sprint(proc.Pid) {
		t.Errorf("exec did not join the container's uts/pid namespaces: %q", stdout)
	}
	if len(lines) == 5 && !strings.HasSuffix(lines[3], "00000000a80425fb") {
		t.Errorf("exec CapEff %q", lines[3])
	}
	if len(lines) == 5 && !strings.HasSuffix(lines[4], ":pids:/") {
		t.Errorf("exec not in the container's cgroup (namespace): %q", lines[4])
	}
	for _, ns := range []string{"mnt", "net", "ipc", "uts", "pid"} {
		a, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", st.Pid, ns))
		b, _ := os.Readlink("/proc/self/ns/" + ns)
		if a == b {
			t.Errorf("container shares the host's %s namespace", ns)
		}
	}
	if err := r.Delete(c, "ex", true); err != nil {
		t.Fatal(err)
	}
	assertGone(t, r, "ex", bundle, nil)
}

func TestMemoryLimitOOMKill(t *testing.T) {
	requireRoot(t)
	if cgroups.DetectAt(cgroups.DefaultRoot) == cgroups.Unavailable {
		t.Skip("no cgroups")
	}
	r := newRuntime(t)
	bundle := newBundle(t, func(s *specs.Spec) {
		if err := oci.WithMemory(s, 16<<20, 16<<20); err != nil {
			t.Fatal(err)
		}
	}, "sh", "-c", `a=aaaaaaaaaaaaaaaa; while true; do a=$a$a; done`)
	c := ctx(t)
	o := newOutput(t)
	if err := r.Create(c, "oom", bundle, o.opts()); err != nil {
		t.Fatal(err)
	}
	before, err := r.OOMKillCount("oom")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(c, "oom"); err != nil {
		t.Fatal(err)
	}
	code, err := r.Wait(c, "oom")
	if err != nil {
		t.Fatal(err)
	}
	after, err := r.OOMKillCount("oom")
	if err != nil {
		t.Fatal(err)
	}
	if code != 137 || after <= before {
		t.Errorf("exit %d, oom kills %d -> %d; want 137 and an increase", code, before, after)
	}
	if err := r.Delete(c, "oom", false); err != nil {
		t.Fatal(err)
	}
}

func TestPidsLimitStopsForkLoop(t *testing.T) {
	requireRoot(t)
	r := newRuntime(t)
	// busybox sh exits at its first failed fork; without a limit the loop
	// would start all 30 sleeps.
	bundle := newBundle(t, func(s *specs.Spec) { oci.WithPidsLimit(s, 5) },
		"sh", "-c", `i=0; while [ $i -lt 30 ]; do sleep 60 & echo started; i=$((i+1)); done`)
	c := ctx(t)
	o := newOutput(t)
	if err := r.Create(c, "pids", bundle, o.opts()); err != nil {
		t.Fatal(err)
	}
	cg, err := r.Cgroup("pids")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(c, "pids"); err != nil {
		t.Fatal(err)
	}
	code, err := r.Wait(c, "pids")
	if err != nil {
		t.Fatal(err)
	}
	stdout, stderr := o.String()
	started := strings.Count(stdout, "started")
	if code == 0 || started < 1 || started > 4 || !strings.Contains(stderr, "fork") {
		t.Errorf("exit %d, %d sleeps started, stderr %q; want a fork failure after at most 4", code, started, stderr)
	}
	if err := r.Delete(c, "pids", true); err != nil {
		t.Fatal(err)
	}
	assertGone(t, r, "pids", bundle, cg)
}

func TestSeccompDefaultProfileEnforced(t *testing.T) {
	requireRoot(t)
	r := newRuntime(t)
	// unshare(CLONE_NEWUSER) needs no capability (the kernel lets any
	// process make a user namespace) and the container's root is a
	// pivot_root, not a chroot, so only Docker's seccomp profile stops it:
	// without the filter `unshare -U` runs true and prints rc=0. mount would
	// not do here, it already fails for want of CAP_SYS_ADMIN.
	bundle := newBundle(t, nil, "sh", "-c",
		`unshare -U true 2>&1; echo rc=$?; grep -E '^(Seccomp|Cap(Inh|Prm|Eff|Bnd|Amb)):' /proc/self/status`)
	o := newOutput(t)
	code, err := r.Run(ctx(t), "sc", bundle, o.opts())
	stdout, stderr := o.String()
	if err != nil || code != 0 {
		t.Fatalf("run: %d %v %q", code, err, stderr)
	}
	if !strings.Contains(stdout, "rc=1") || !strings.Contains(stdout, "Operation not permitted") {
		t.Errorf("unshare(CLONE_NEWUSER) was not refused with EPERM: %q", stdout)
	}
	// Docker's defaults: the 14 default capabilities (0xa80425fb) in the
	// bounding, permitted and effective sets, none inheritable or ambient
	// (CVE-2022-24769), and a seccomp filter (mode 2).
	want := map[string]string{
		"Seccomp": "2",
		"CapBnd":  "00000000a80425fb",
		"CapPrm":  "00000000a80425fb",
		"CapEff":  "00000000a80425fb",
		"CapInh":  "0000000000000000",
		"CapAmb":  "0000000000000000",
	}
	got := map[string]string{}
	for _, line := range strings.Split(stdout, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			got[k] = strings.TrimSpace(v)
		}
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("/proc/self/status %s = %q, want %q", k, got[k], v)
		}
	}
}

func TestReadonlyRootMaskedPaths(t *testing.T) {
	requireRoot(t)
	r := newRuntime(t)
	bundle := newBundle(t, func(s *specs.Spec) { s.Root.Readonly = true },
		"sh", "-c", `touch /x 2>/dev/null && echo rw || echo ro; cat /proc/kcore | wc -c; ls /sys/firmware | wc -l; echo 1 > /proc/sys/kernel/domainname 2>/dev/null && echo sysrw || echo sysro`)
	o := newOutput(t)
	code, err := r.Run(ctx(t), "ro", bundle, o.opts())
	stdout, stderr := o.String()
	if err != nil || code != 0 {
		t.Fatalf("run: %d %v %q", code, err, stderr)
	}
	if got := strings.Fields(stdout); strings.Join(got, " ") != "ro 0 0 sysro" {
		t.Errorf("got %q, want ro, empty kcore, empty /sys/firmware, ro /proc/sys", stdout)
	}
}

func TestParseStat(t *testing.T) {
	line := []byte("42 (a) b) c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 1000 100 0 0 0")
	state, start, ok := parseStat(line)
	if !ok || state != 'S' || start != 123456 {
		t.Errorf("parseStat = %c %d %v", state, start, ok)
	}
	if _, _, ok := parseStat([]byte("garbage")); ok {
		t.Error("garbage parsed")
	}
	_, myStart, ok := procStat(os.Getpid())
	if !ok || !alive(os.Getpid(), myStart) {
		t.Fatal("own process not alive")
	}
	if alive(os.Getpid(), myStart+1) {
		t.Error("a different start time must read as another process")
	}
	if alive(1<<30, 0) {
		t.Error("absent pid alive")
	}
}

func TestStatusOfReusedPid(t *testing.T) {
	r := New(t.TempDir())
	st := &containerState{ID: "x", Pid: os.Getpid(), StartTime: 1}
	if err := os.MkdirAll(r.dir("x"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := r.save(st); err != nil {
		t.Fatal(err)
	}
	s, err := r.State("x")
	if err != nil || s.Status != specs.StateStopped || s.Pid != 0 {
		t.Errorf("reused pid: %+v %v; want stopped", s, err)
	}
	if _, err := r.State("../x"); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad id: %v", err)
	}
	if _, err := r.State("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing: %v", err)
	}
}

func TestParseMountOptions(t *testing.T) {
	flags, prop, data := parseMountOptions([]string{"nosuid", "ro", "rw", "rbind", "rprivate", "mode=755", "size=1k"})
	if flags != unix.MS_NOSUID|unix.MS_BIND|unix.MS_REC {
		t.Errorf("flags %#x", flags)
	}
	if len(prop) != 1 || prop[0] != unix.MS_PRIVATE|unix.MS_REC {
		t.Errorf("prop %v", prop)
	}
	if data != "mode=755,size=1k" {
		t.Errorf("data %q", data)
	}
}

// BenchmarkRunTrue measures create+start+wait+delete of /bin/true with
// Docker's default spec through the library, as the daemon uses it (no CLI
// process start). Compare with `crun run` / `runc run` of the same bundle.
func BenchmarkRunTrue(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	dir := b.TempDir()
	r := New(dir)
	r.CgroupParent = fmt.Sprintf("/shoal-bench-%d", os.Getpid())
	defer removeCgroupTree(r.CgroupRoot, r.CgroupParent)
	bundle := benchBundle(b)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		code, err := r.Run(ctx, fmt.Sprintf("b%d", i), bundle, CreateOptions{})
		if err != nil || code != 0 {
			b.Fatalf("run: %d %v", code, err)
		}
	}
}

func benchBundle(b *testing.B) string {
	dir := b.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "proc", "sys", "dev"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		b.Skip("needs /bin/busybox")
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin/busybox"), bb, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.Symlink("busybox", filepath.Join(rootfs, "bin/true")); err != nil {
		b.Fatal(err)
	}
	s := oci.DefaultSpec()
	s.Process.Args = []string{"/bin/true"}
	raw, _ := json.Marshal(s)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), raw, 0o644); err != nil {
		b.Fatal(err)
	}
	return dir
}

func TestTerminal(t *testing.T) {
	requireRoot(t)
	r := newRuntime(t)
	master, slave, err := OpenPty()
	if err != nil {
		t.Skip(err)
	}
	defer master.Close()
	defer slave.Close()
	bundle := newBundle(t, func(s *specs.Spec) { s.Process.Terminal = true },
		"sh", "-c", `[ -t 0 ] && echo stdin-tty; [ -c /dev/console ] && echo console; echo end`)
	out := make(chan string, 1)
	go func() {
		var buf bytes.Buffer
		b := make([]byte, 512)
		for !strings.Contains(buf.String(), "end") {
			n, err := master.Read(b)
			buf.Write(b[:n])
			if err != nil {
				break
			}
		}
		out <- buf.String()
	}()
	code, err := r.Run(ctx(t), "tty", bundle, CreateOptions{Stdin: slave, Stdout: slave, Stderr: slave})
	if err != nil || code != 0 {
		t.Fatalf("run: %d %v", code, err)
	}
	select {
	case got := <-out:
		if !strings.Contains(got, "stdin-tty") || !strings.Contains(got, "console") {
			t.Errorf("terminal output %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no output on the pty master")
	}
	// Without a terminal on stdin, process.terminal is refused.
	if err := r.Create(ctx(t), "notty", bundle, CreateOptions{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("terminal without a tty: %v", err)
	}
}

func TestValidateID(t *testing.T) {
	for _, ok := range []string{"a", "abc-1.2_3+x", strings.Repeat("a", 128), "7e79aba4-b54b-4110-80f5-67f5994dc62e"} {
		if err := validateID(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "..", ".x", "-x", "a/b", "a b", strings.Repeat("a", 129), "x\n"} {
		if err := validateID(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestCgroupMountShowsOwnCgroup(t *testing.T) {
	requireRoot(t)
	if m := cgroups.Detect(); m != cgroups.Legacy && m != cgroups.Hybrid {
		t.Skip("v1 layout expected")
	}
	r := newRuntime(t)
	bundle := newBundle(t, func(s *specs.Spec) {
		if err := oci.WithMemory(s, 32<<20, -1); err != nil {
			t.Fatal(err)
		}
	}, "sh", "-c", `cat /sys/fs/cgroup/memory/memory.limit_in_bytes; ls /sys/fs/cgroup; touch /sys/fs/cgroup/memory/x 2>/dev/null && echo writable; true`)
	o := newOutput(t)
	code, err := r.Run(ctx(t), "cgmount", bundle, o.opts())
	stdout, stderr := o.String()
	if err != nil || code != 0 {
		t.Fatalf("run: %d %v %q", code, err, stderr)
	}
	if !strings.HasPrefix(stdout, "33554432\n") {
		t.Errorf("container does not see its own memory cgroup: %q", stdout)
	}
	if strings.Contains(stdout, "systemd") || strings.Contains(stdout, "writable") {
		t.Errorf("cgroup mount exposes the host or is writable: %q", stdout)
	}
}

// TestForceDeleteOfAnotherProcessesContainer: a Runtime that did not start
// the container (another `shoal runtime delete -f`, the daemon removing a
// shim's container) waits for the init through a pidfd, and returns once
// it is gone.
func TestForceDeleteOfAnotherProcessesContainer(t *testing.T) {
	requireRoot(t)
	owner := newRuntime(t)
	c := ctx(t)
	if err := owner.Create(c, "other", newBundle(t, nil, "sleep", "60"), newOutput(t).opts()); err != nil {
		t.Fatal(err)
	}
	if err := owner.Start(c, "other"); err != nil {
		t.Fatal(err)
	}
	st, err := owner.load("other")
	if err != nil {
		t.Fatal(err)
	}
	other := New(owner.root)
	other.CgroupParent = owner.CgroupParent
	start := time.Now()
	if err := other.Delete(c, "other", true); err != nil {
		t.Fatal(err)
	}
	if alive(st.Pid, st.StartTime) {
		t.Errorf("init %d still alive after the delete", st.Pid)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("delete took %s", d)
	}
	if _, err := owner.Wait(c, "other"); err != nil {
		t.Errorf("owner's wait: %v", err)
	}
}

func TestReadyMessageIsSyncMsgJSON(t *testing.T) {
	b, err := json.Marshal(syncMsg{Ready: true})
	if err != nil {
		t.Fatal(err)
	}
	if string(b)+"\n" != readyMsg {
		t.Fatalf("readyMsg %q, json.Marshal gives %q", readyMsg, b)
	}
}
