package tests

import (
	"bytes"
	"debug/buildinfo"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/tests/harness"
)

// TestStartRolesSkipTheRestOfTheBinary: the container init and the shim,
// executed at every container start, run from an init function before the
// packages they do not import are initialized (containerd/runtime/initmain,
// containerd/shim/shimmain). An import that sorts late in either role's
// dependencies (cobra, cilium/ebpf...) would silently bring back the whole
// binary's initialization, so the built binary's init trace is checked.
func TestStartRolesSkipTheRestOfTheBinary(t *testing.T) {
	bin := harness.Binary(t)
	for _, c := range []struct {
		role string
		// packages the role must not initialize
		not []string
	}{
		{"init", []string{"github.com/distribution/reference", "google.golang.org/grpc", "github.com/spf13/cobra", "github.com/shoal-project/shoal/api"}},
		{"shim", []string{"google.golang.org/grpc", "github.com/spf13/cobra", "github.com/shoal-project/shoal/api"}},
		{"runtime --root /nonexistent/state run --bundle /nonexistent/bundle x",
			[]string{"github.com/distribution/reference", "google.golang.org/grpc", "github.com/spf13/cobra", "github.com/shoal-project/shoal/api"}},
	} {
		// No configuration (init), flags (shim) or bundle (runtime run):
		// the role starts, reports the error and exits, after its
		// packages' initialization.
		cmd := exec.Command(bin, strings.Fields(c.role)...)
		cmd.Env = []string{"GODEBUG=inittrace=1"}
		out, _ := cmd.CombinedOutput()
		inited := map[string]bool{}
		for _, l := range strings.Split(string(out), "\n") {
			if f := strings.Fields(l); len(f) > 1 && f[0] == "init" {
				inited[f[1]] = true
			}
		}
		if !inited["github.com/shoal-project/shoal/containerd/runtime"] {
			t.Fatalf("%s: no init trace of package runtime (did the role start?):\n%s", c.role, out)
		}
		for _, p := range c.not {
			if inited[p] {
				t.Errorf("%s initializes %s: something it imports holds its dispatch back (%d packages initialized)", c.role, p, len(inited))
			}
		}
	}
}

// TestRuntimeRunFastPath drives `shoal runtime run` through the forms that
// containerd/ocicli/runmain takes before cobra is initialized, and through
// some it leaves to cobra: the container's exit status, the pid file, and
// cobra's errors for what the fast path does not know.
func TestRuntimeRunFastPath(t *testing.T) {
	bin := harness.Binary(t)
	dir := t.TempDir()
	bundle := busyboxBundle(t, dir, `["/bin/sh", "-c", "exit 7"]`, "")
	state := filepath.Join(dir, "state")
	pidFile := filepath.Join(dir, "pid")
	// cgroupsPath is empty: the container goes under the runtime's default
	// parent, /shoal, which is left behind; removed here while empty.
	t.Cleanup(func() {
		for _, c := range []string{"/sys/fs/cgroup/*/shoal", "/sys/fs/cgroup/shoal"} {
			ms, _ := filepath.Glob(c)
			for _, m := range ms {
				_ = os.Remove(m)
			}
		}
	})
	for _, c := range []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"--root", state, "run", "--bundle", bundle, "a1"}, 7, ""},
		{[]string{"--root=" + state, "run", "a2", "-b", bundle, "--pid-file", pidFile}, 7, ""},
		{[]string{"run", "--root", state, "--bundle=" + bundle, "--no-pivot", "a3"}, 7, ""},
		{[]string{"--root", state, "run", "--bundle", bundle, "--bogus", "a4"}, 1, "unknown flag: --bogus"},
		{[]string{"--root", state, "run", "--bundle", bundle}, 1, "accepts 1 arg"},
		{[]string{"--root", state, "run", "--bundle", bundle, "a5", "a6"}, 1, "accepts 1 arg"},
		{[]string{"--root", state, "run", "--bundle", filepath.Join(dir, "none"), "a7"}, 1, "shoal runtime: invalid argument: bundle"},
	} {
		cmd := exec.Command(bin, append([]string{"runtime"}, c.args...)...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		if code != c.code || !strings.Contains(stderr.String(), c.err) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", c.args, code, stderr.String(), c.code, c.err)
		}
	}
	if b, err := os.ReadFile(pidFile); err != nil || len(b) == 0 {
		t.Errorf("pid file: %q, %v", b, err)
	}
	if ents, _ := os.ReadDir(state); len(ents) != 0 {
		t.Errorf("state left behind: %v", ents)
	}
}

// TestRuntimeRunScriptCannotRunHostBinary is CVE-2019-5736's first half
// against `shoal runtime run`, which runs from the file on disk and whose
// own clone execs the container's program (containerd/runtime/firstproc.go):
// a program that is a script "#!/proc/self/exe version" would run that
// file, shoal itself, as the container's process (as it did before the
// sealed trampoline: shoal's `version` command, refusing the script's path
// as an argument, exit 1), which could then hold it until it can write it. Through the
// trampoline the interpreter is the trampoline's sealed copy, which
// refuses: exit 126, and the binary is unchanged.
func TestRuntimeRunScriptCannotRunHostBinary(t *testing.T) {
	bin := harness.Binary(t)
	before := sha(t, bin)
	dir := t.TempDir()
	bundle := filepath.Join(dir, "bundle")
	if err := harness.MakeBusyboxRootfs(filepath.Join(bundle, "rootfs")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "rootfs", "evil"), []byte("#!/proc/self/exe version\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// The daemon's specs' form: a RLIMIT_NOFILE, which the cloned first
	// process needs.
	config := `{"ociVersion": "1.0.2", "root": {"path": "rootfs"},
	  "process": {"args": ["/evil"], "cwd": "/", "env": ["PATH=/bin"],
	    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]},
	  "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
	  "linux": {"cgroupsPath": "/shoal-test-evil", "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}, {"type": "network"}]}}`
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "runtime", "--root", filepath.Join(dir, "state"), "run", "--bundle", bundle, "evil")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if code != 126 || strings.Contains(stdout.String()+stderr.String(), "version") {
		t.Errorf("the script's interpreter was not the sealed trampoline: exit %d\nstdout: %s\nstderr: %s", code, stdout.String(), stderr.String())
	}
	if after := sha(t, bin); after != before {
		t.Errorf("the binary changed: sha256 %x -> %x", before, after)
	}
}

// TestShimRunsFromEmbeddedBinary: the daemon starts each container's shim
// (and through it the init) from the small binary embedded by `make build`
// (cmd/shoal-shim, containerd/shimbin), executed from a sealed memfd: not
// from shoal itself, whose start costs several times more, and never from a
// file on disk. The same for the Go init of `shoal runtime` where it runs
// one (create and start apart, exec): checked here through the shim the
// daemon starts.
func TestShimRunsFromEmbeddedBinary(t *testing.T) {
	bin := harness.Binary(t)
	own, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	d := harness.StartDaemon(t, harness.Options{})
	d.Must("import", harness.BusyboxTar(t), "busybox:latest")
	id := strings.TrimSpace(d.Must("run", "-d", "busybox:latest", "sleep", "300"))
	t.Cleanup(func() { d.Run("rm", "-f", id) })
	// The shim is the parent of the container's first process.
	pid := strings.TrimSpace(d.Must("inspect", "-f", "{{.State.Pid}}", id))
	stat, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		t.Fatalf("container pid %q: %v", pid, err)
	}
	shim := 0
	if _, after, ok := bytes.Cut(stat, []byte(") ")); ok {
		if f := strings.Fields(string(after)); len(f) > 1 {
			shim, _ = strconv.Atoi(f[1]) // state, then ppid
		}
	}
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", shim))
	if args := bytes.Split(cmdline, []byte{0}); len(args) < 2 || string(args[1]) != "shim" {
		t.Fatalf("the parent %d of container pid %s is not a shim: %q", shim, pid, cmdline)
	}
	exe := fmt.Sprintf("/proc/%d/exe", shim)
	link, err := os.Readlink(exe)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(link, "/memfd:shoal-shim") {
		t.Fatalf("the shim runs from %q, want the embedded shoal-shim's sealed memfd", link)
	}
	st, err := os.Stat(exe)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size()*4 > own.Size() {
		t.Errorf("the shim's binary has %d bytes, shoal %d: not the small one", st.Size(), own.Size())
	}
	mustBeSealed(t, exe, "the shim's binary "+link)
	// The container works through it.
	if out := d.Must("exec", id, "echo", "through-the-shim"); !strings.Contains(out, "through-the-shim") {
		t.Fatalf("exec: %q", out)
	}
}

// TestClientWithoutEngine: the shoal file that users run is the client (the
// CLI and the OCI runtime command line) with the engine embedded, so that
// every CLI command starts a program of a third of the engine's size; the
// daemon runs the engine from a sealed memfd copy, named "shoal" for ps.
func TestClientWithoutEngine(t *testing.T) {
	bin := harness.Binary(t)
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatalf("build info of %s: %v", bin, err)
	}
	for _, dep := range info.Deps {
		switch dep.Path {
		case "google.golang.org/grpc", "github.com/hashicorp/raft", "github.com/hashicorp/memberlist", "github.com/vishvananda/netlink":
			t.Errorf("the client links %s: it is the engine, not the client", dep.Path)
		}
	}
	d := harness.StartDaemon(t, harness.Options{})
	exe := fmt.Sprintf("/proc/%d/exe", d.PID())
	link, err := os.Readlink(exe)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(link, "/memfd:shoal ") {
		t.Fatalf("the daemon runs from %q, want the embedded engine's sealed memfd", link)
	}
	mustBeSealed(t, exe, "the engine's binary "+link)
	if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", d.PID())); strings.TrimSpace(string(comm)) != "shoal" {
		t.Errorf("the daemon's process name is %q, want shoal", comm)
	}
	// The client drives it.
	if out := d.Must("info", "--format", "{{.Name}}"); strings.TrimSpace(out) == "" {
		t.Errorf("info through the client: %q", out)
	}
}

// mustBeSealed fails the test unless the executable at exe (a /proc/PID/exe)
// is a memfd that not even root can change. An open for writing would fail
// anyway while the file is executed (ETXTBSY), so the seals are read.
func mustBeSealed(t *testing.T, exe, what string) {
	t.Helper()
	f, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
	f.Close()
	if want := unix.F_SEAL_WRITE | unix.F_SEAL_GROW | unix.F_SEAL_SHRINK | unix.F_SEAL_SEAL; err != nil || seals&want != want {
		t.Fatalf("%s is not sealed: seals %#x, %v", what, seals, err)
	}
}

// TestRuntimeCreateStartDelete: `shoal runtime create`, `start`, `state`
// and `delete` of a bundle, the OCI lifecycle in separate calls. create
// hands the init more files than run does (the exec fifo): the sealed
// shim binary, executed as /proc/self/fd/N, must not sit at a number the
// child's files are moved to first (the client, which opens few files,
// had it at 6: "fork/exec /proc/self/fd/6: permission denied").
func TestRuntimeCreateStartDelete(t *testing.T) {
	bin := harness.Binary(t)
	dir := t.TempDir()
	bundle := busyboxBundle(t, dir, `["/bin/sleep", "30"]`, "/shoal-rtcreate/c1")
	state := filepath.Join(dir, "state")
	// The output goes to a file: the container's init inherits it, and a
	// pipe would not end before the container does.
	rt := func(args ...string) (string, error) {
		f, err := os.CreateTemp(dir, "out")
		if err != nil {
			return "", err
		}
		defer f.Close()
		cmd := exec.Command(bin, append([]string{"runtime", "--root", state}, args...)...)
		cmd.Stdout, cmd.Stderr = f, f
		err = cmd.Run()
		out, _ := os.ReadFile(f.Name())
		return string(out), err
	}
	t.Cleanup(func() {
		rt("delete", "-f", "c1")
		for _, c := range []string{"/sys/fs/cgroup/*/shoal-rtcreate", "/sys/fs/cgroup/shoal-rtcreate"} {
			ms, _ := filepath.Glob(c)
			for _, m := range ms {
				_ = os.Remove(m)
			}
		}
	})
	if out, err := rt("create", "--bundle", bundle, "c1"); err != nil {
		t.Fatalf("create: %v: %s", err, out)
	}
	if out, err := rt("start", "c1"); err != nil {
		t.Fatalf("start: %v: %s", err, out)
	}
	out, err := rt("state", "c1")
	if err != nil || !strings.Contains(out, `"running"`) {
		t.Fatalf("state: %v: %s", err, out)
	}
	if out, err := rt("delete", "-f", "c1"); err != nil {
		t.Fatalf("delete: %v: %s", err, out)
	}
	if _, err := rt("state", "c1"); err == nil {
		t.Fatal("state of a deleted container succeeds")
	}
}

// busyboxBundle writes an OCI bundle under dir (a busybox rootfs, the
// process args as a JSON array, new namespaces, the cgroups path if any)
// and returns its path.
func busyboxBundle(t *testing.T, dir, args, cgroupsPath string) string {
	t.Helper()
	bundle := filepath.Join(dir, "bundle")
	if err := harness.MakeBusyboxRootfs(filepath.Join(bundle, "rootfs")); err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`{"ociVersion": "1.0.2", "root": {"path": "rootfs"},
	  "process": {"args": %s, "cwd": "/", "env": ["PATH=/bin"]},
	  "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
	  "linux": {"cgroupsPath": %q, "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}, {"type": "network"}]}}`,
		args, cgroupsPath)
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	return bundle
}
