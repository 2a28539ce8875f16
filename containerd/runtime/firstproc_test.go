package runtime

import (
	"errors"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/containerd/seccomp"
)

// runFirstProc runs a container that must start through the cloned first
// process and returns its stdout.
func runFirstProc(t *testing.T, edit func(*specs.Spec), args ...string) string {
	t.Helper()
	requireFirstProc(t)
	r := newRuntime(t)
	o := newOutput(t)
	before := firstProcStarts.Load()
	code, err := r.Run(ctx(t), "fp", newBundle(t, edit, args...), o.opts())
	stdout, stderr := o.String()
	if err != nil || code != 0 {
		t.Fatalf("run: code %d, %v\nstdout: %s\nstderr: %s", code, err, stdout, stderr)
	}
	if firstProcStarts.Load() != before+1 {
		t.Fatal("the container did not start through the cloned first process")
	}
	return stdout
}

// requireFirstProc lets this test's containers start through the cloned
// first process, or skips it where there is none.
func requireFirstProc(t *testing.T) {
	t.Helper()
	requireRoot(t)
	if !cloneVMSupported || raceBuild || !procPidNSSupported() {
		t.Skip("no cloned first process here (architecture, -race build, or a kernel older than 6.15)")
	}
	t.Setenv("SHOAL_INIT", "")
	old := firstProcUnsealed
	firstProcUnsealed = true
	t.Cleanup(func() { firstProcUnsealed = old })
}

// The proc the thread mounts must be the new pid namespace's, not the
// runtime's own: a plain mount from the thread would list the host's pids.
func TestFirstProcSeesOwnPidNamespace(t *testing.T) {
	out := runFirstProc(t, nil, "sh", "-c", `echo $$; ls /proc | grep -c '^[0-9]'; cat /proc/1/cmdline | tr '\0' ' '`)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || lines[0] != "1" {
		t.Fatalf("want pid 1 and a count of pids, got %q", out)
	}
	// sh, ls and grep (and perhaps cat's predecessor) at most.
	if n := lines[1]; n != "1" && n != "2" && n != "3" {
		t.Fatalf("/proc lists %s processes: not the container's own pid namespace", n)
	}
	if !strings.HasPrefix(lines[2], "sh -c") {
		t.Fatalf("pid 1 is %q, want the container's sh", lines[2])
	}
}

// Everything the process sets for itself after its release: user, groups,
// capabilities (all four sets and the bounding set), no_new_privs, seccomp,
// rlimits, working directory and umask.
func TestFirstProcCredentialsAndLimits(t *testing.T) {
	umask := uint32(0o027)
	out := runFirstProc(t, func(s *specs.Spec) {
		s.Process.User = specs.User{UID: 1000, GID: 1001, AdditionalGids: []uint32{2000, 2001}, Umask: &umask}
		s.Process.Capabilities = &specs.LinuxCapabilities{
			Bounding:    []string{"CAP_NET_BIND_SERVICE", "CAP_CHOWN"},
			Effective:   []string{"CAP_NET_BIND_SERVICE"},
			Permitted:   []string{"CAP_NET_BIND_SERVICE"},
			Inheritable: []string{"CAP_NET_BIND_SERVICE"},
			Ambient:     []string{"CAP_NET_BIND_SERVICE"},
		}
		s.Process.NoNewPrivileges = true
		s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 123, Hard: 456}}
		s.Process.Cwd = "/tmp"
	}, "sh", "-c", `grep -E '^(Uid|Gid|Groups|Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):' /proc/self/status; ulimit -n; ulimit -H -n; pwd; umask; echo fds $(ls /proc/self/fd)`)
	for _, want := range []string{
		"Uid:\t1000\t1000\t1000\t1000", "Gid:\t1001\t1001\t1001\t1001", "Groups:\t2000 2001",
		"CapInh:\t0000000000000400", "CapPrm:\t0000000000000400", "CapEff:\t0000000000000400",
		"CapBnd:\t0000000000000401", "CapAmb:\t0000000000000400", "NoNewPrivs:\t1", "Seccomp:\t2",
		"\n123\n456\n/tmp\n0027\nfds 0 1 2 3\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
}

// Failures are reported as the Go init reports them: an executable that is
// not there is ErrExecNotFound at create, and nothing is left behind.
func TestFirstProcExecNotFound(t *testing.T) {
	requireFirstProc(t)
	r := newRuntime(t)
	o := newOutput(t)
	_, err := r.Run(ctx(t), "fp", newBundle(t, nil, "/no/such/binary"), o.opts())
	if !errors.Is(err, ErrExecNotFound) {
		t.Fatalf("want ErrExecNotFound, got %v", err)
	}
	if ids, _ := r.List(); len(ids) != 0 {
		t.Fatalf("left behind: %v", ids)
	}
}

// A failure in the process itself comes back as its step and errno, and is
// worded as an error (exec failures with the Go init's kinds).
func TestFirstProcStepError(t *testing.T) {
	if err := stepError(stepRlimit, int(unix.EPERM), "sh"); err == nil || err.Error() != "setrlimit: operation not permitted" {
		t.Fatalf("got %v", err)
	}
	if err := stepError(stepExec, int(unix.EACCES), "/x"); !errors.Is(err, ErrExecPermission) {
		t.Fatalf("exec EACCES: got %v", err)
	}
	if err := stepError(99, int(unix.EINVAL), "sh"); err == nil || !strings.Contains(err.Error(), "step 99") {
		t.Fatalf("unknown step: got %v", err)
	}
}

// What the cloned first process does not cover goes to the Go init, and an
// unsealed binary (this test's) execs through the trampoline.
func TestFirstProcPath(t *testing.T) {
	if !cloneVMSupported || raceBuild || !procPidNSSupported() {
		t.Skip("no cloned first process here")
	}
	t.Setenv("SHOAL_INIT", "")
	const base = unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWNET
	nofile := []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 1024, Hard: 1024}}
	spec := func() *specs.Spec {
		return &specs.Spec{Process: &specs.Process{Rlimits: nofile},
			Mounts: []specs.Mount{{Destination: "/proc", Type: "proc", Options: []string{"nosuid", "noexec", "nodev"}}}}
	}
	compile := func(p *specs.LinuxSeccomp) *seccomp.Program {
		prog, err := seccomp.Compile(p)
		if err != nil {
			t.Fatal(err)
		}
		return prog
	}
	noExecveat := compile(&specs.LinuxSeccomp{DefaultAction: specs.ActAllow,
		Syscalls: []specs.LinuxSyscall{{Names: []string{"execveat"}, Action: specs.ActErrno}}})
	onlyExecve := compile(&specs.LinuxSeccomp{DefaultAction: specs.ActKillProcess,
		Syscalls: []specs.LinuxSyscall{{Names: []string{"execve", "write", "exit_group"}, Action: specs.ActAllow}}})
	for _, c := range []struct {
		name     string
		cfg      initConfig
		clone    uintptr
		unsealed bool // the tests' seam
		want     firstProcExec
	}{
		{"run", initConfig{Mode: modeRun, Spec: spec()}, base, false, execTrampoline},
		{"run, default seccomp profile", initConfig{Mode: modeRun, Spec: spec(), Seccomp: compile(seccomp.DefaultProfile())}, base, false, execTrampoline},
		{"run, seccomp refuses execveat", initConfig{Mode: modeRun, Spec: spec(), Seccomp: noExecveat}, base, false, viaGoInit},
		{"run, seccomp allows only execve", initConfig{Mode: modeRun, Spec: spec(), Seccomp: onlyExecve}, base, false, viaGoInit},
		{"create and start apart", initConfig{Mode: modeCreate, Spec: spec(), Fifo: true}, base, false, viaGoInit},
		{"create and start apart, tests' seam", initConfig{Mode: modeCreate, Spec: spec(), Fifo: true}, base, true, execDirect},
		{"exec", initConfig{Mode: modeExec, Spec: spec()}, base, true, viaGoInit},
		{"user namespace", initConfig{Mode: modeRun, Spec: spec(), UserNS: true}, base | unix.CLONE_NEWUSER, true, viaGoInit},
		{"mount namespace to join", initConfig{Mode: modeRun, Spec: spec(), MountNS: "/proc/1/ns/mnt"}, base &^ unix.CLONE_NEWNS, true, viaGoInit},
		{"no pivot", initConfig{Mode: modeRun, Spec: spec(), NoPivot: true}, base, true, viaGoInit},
		{"joined pid namespace", initConfig{Mode: modeRun, Spec: spec()}, base &^ unix.CLONE_NEWPID, true, viaGoInit},
		{"proc with a flag fsmount lacks", initConfig{Mode: modeRun, Spec: &specs.Spec{Process: &specs.Process{Rlimits: nofile},
			Mounts: []specs.Mount{{Destination: "/proc", Type: "proc", Options: []string{"sync"}}}}}, base, true, viaGoInit},
		{"no RLIMIT_NOFILE in the spec", initConfig{Mode: modeRun, Spec: &specs.Spec{Process: &specs.Process{}}}, base, true, viaGoInit},
	} {
		firstProcUnsealed = c.unsealed
		if got := firstProcPath(&c.cfg, c.clone); got != c.want {
			t.Errorf("%s: path %d, want %d", c.name, got, c.want)
		}
	}
	firstProcUnsealed = false
	t.Setenv("SHOAL_INIT", "go")
	if firstProcPath(&initConfig{Mode: modeRun, Spec: spec()}, base) != viaGoInit {
		t.Error("SHOAL_INIT=go: still cloned")
	}
}

// A step of the process itself that fails (here an RLIMIT_NOFILE above
// what the kernel allows) fails the create with that step and errno, and
// leaves nothing behind.
func TestFirstProcStepFailure(t *testing.T) {
	requireFirstProc(t)
	r := newRuntime(t)
	o := newOutput(t)
	before := firstProcStarts.Load()
	bundle := newBundle(t, func(s *specs.Spec) {
		s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 1 << 40, Hard: 1 << 40}}
	}, "true")
	_, err := r.Run(ctx(t), "fp", bundle, o.opts())
	if err == nil || !strings.HasPrefix(err.Error(), "setrlimit: ") || !errors.Is(err, unix.EPERM) {
		t.Fatalf("want setrlimit: operation not permitted, got %v", err)
	}
	if firstProcStarts.Load() != before+1 {
		t.Fatal("the container did not start through the cloned first process")
	}
	if ids, _ := r.List(); len(ids) != 0 {
		t.Fatalf("left behind: %v", ids)
	}
}
