package containers

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/containerd/images"
	"github.com/shoal-project/shoal/containerd/logs"
	"github.com/shoal-project/shoal/containerd/runtime"
	"github.com/shoal-project/shoal/containerd/shim"
)

// TestMain makes the test binary double as the container init and the shim:
// the engine re-executes it as `shim`, the runtime as `init`.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "init":
			runtime.InitMain()
		case "shim":
			shim.Main(os.Args[2:])
		case ExecShimArg:
			ExecShimMain(os.Args[2:])
		case "test-daemon":
			testDaemonMain(os.Args[2:])
		case "swap":
			swapMain(os.Args[2:])
		}
	}
	// Race-built shims would otherwise linger a second in os.Exit, which
	// the stop-timing tests would count.
	os.Setenv("GORACE", "atexit_sleep_ms=0")
	os.Exit(m.Run())
}

// testEnv is an engine over a fresh data root with a busybox image.
type testEnv struct {
	t      testing.TB
	e      *Engine
	opts   Options
	cancel context.CancelFunc
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("needs /bin/busybox (busybox-static)")
	}
}

// busyboxTar is a rootfs of /bin/busybox and its applet symlinks.
func busyboxTar(t testing.TB) []byte {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	list, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(h *tar.Header, body []byte) {
		h.Size = int64(len(body))
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"bin/", "etc/", "proc/", "sys/", "dev/", "root/"} {
		add(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755}, nil)
	}
	add(&tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777}, nil)
	add(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755}, bb)
	add(&tar.Header{Name: "etc/passwd", Typeflag: tar.TypeReg, Mode: 0o644},
		[]byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\napp:x:1000:1001::/tmp:/bin/sh\n"))
	add(&tar.Header{Name: "etc/group", Typeflag: tar.TypeReg, Mode: 0o644}, []byte("root:x:0:\nstaff:x:50:\n"))
	add(&tar.Header{Name: "notexec", Typeflag: tar.TypeReg, Mode: 0o644}, []byte("#!/bin/sh\n"))
	for _, a := range strings.Fields(string(list)) {
		if a != "busybox" {
			add(&tar.Header{Name: "bin/" + a, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777}, nil)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// newEnv opens an engine whose data root, exec root and cgroup parent are
// the test's own; everything is removed when the test ends, also on failure.
func newEnv(t testing.TB) *testEnv {
	t.Helper()
	requireRoot(t)
	// A short root: shim socket paths must fit in sun_path.
	root, err := os.MkdirTemp("/tmp", "shoalct")
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	imgs, err := images.Open(filepath.Join(root, "data"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := imgs.Import(context.Background(), bytes.NewReader(busyboxTar(t)), "busybox:latest", images.ImportOptions{
		Config: ocispec.ImageConfig{Cmd: []string{"sh"}},
	}); err != nil {
		t.Fatal(err)
	}
	env := &testEnv{t: t, opts: Options{
		Root: filepath.Join(root, "data"), ExecRoot: filepath.Join(root, "exec"),
		CgroupParent: fmt.Sprintf("shoal-test-ct-%d", os.Getpid()), Images: imgs, Binary: self,
	}}
	env.open()
	t.Cleanup(func() {
		if env.e != nil {
			for _, c := range env.e.List(true) {
				if err := env.e.Remove(context.Background(), c.ID, true); err != nil {
					t.Errorf("cleanup: remove %s: %v", c.ID[:12], err)
				}
			}
			env.cancel()
		}
		// A restart or start in flight when the test ended can still make
		// a shim after the first sweep: sweep until nothing is left.
		for end := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			killShims(root)
			unmountUnder(root)
			removeCgroups(env.opts.CgroupParent)
			if left, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", env.opts.CgroupParent)); len(left) == 0 || time.Now().After(end) {
				break
			}
		}
		os.RemoveAll(root)
	})
	return env
}

// open (re)opens the engine, as a daemon start does.
func (env *testEnv) open() {
	env.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	e, err := Open(ctx, env.opts)
	if err != nil {
		cancel()
		env.t.Fatal(err)
	}
	env.e, env.cancel = e, cancel
}

// crash drops the engine without stopping anything, as a kill -9 of the daemon would.
func (env *testEnv) crash() {
	env.cancel()
	env.e = nil
}

func (env *testEnv) create(cfg Config) Container {
	env.t.Helper()
	if cfg.Image == "" {
		cfg.Image = "busybox"
	}
	if cfg.NetworkMode == "" {
		cfg.NetworkMode = "none"
	}
	c, err := env.e.Create(context.Background(), "", cfg)
	if err != nil {
		env.t.Fatalf("create: %v", err)
	}
	return c
}

func (env *testEnv) run(cfg Config) Container {
	env.t.Helper()
	c := env.create(cfg)
	if err := env.e.Start(context.Background(), c.ID); err != nil {
		env.t.Fatalf("start: %v", err)
	}
	return c
}

func (env *testEnv) wait(id string, d time.Duration) State {
	env.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	st, err := env.e.Wait(ctx, id, WaitNotRunning, nil)
	if err != nil {
		env.t.Fatalf("wait %s: %v", id[:12], err)
	}
	return st
}

func (env *testEnv) logs(id string) string {
	env.t.Helper()
	var b strings.Builder
	err := env.e.Logs(context.Background(), id, LogsOptions{Tail: -1}, func(e logs.Entry) error {
		b.WriteString(e.Stream + ":" + e.Log)
		return nil
	})
	if err != nil {
		env.t.Fatal(err)
	}
	return b.String()
}

// killShims ends the shims left of a test (their command line names the
// root; the current one of an engine outlives its last container) and
// waits until they are gone, so that their cgroup can be removed.
func killShims(root string) {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte("\x00shim\x00")) && bytes.Contains(b, []byte(root)) {
			var pid int
			if _, err := fmt.Sscan(ent.Name(), &pid); err == nil && unix.Kill(pid, unix.SIGKILL) == nil {
				pids = append(pids, pid)
			}
		}
	}
	// Gone, or a zombie (out of its cgroups) that its engine reaps.
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range pids {
		for time.Now().Before(deadline) {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			if _, after, ok := bytes.Cut(b, []byte(") ")); err != nil || ok && bytes.HasPrefix(after, []byte("Z")) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

func mountsUnder(dir string) []string {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir) {
			out = append(out, f[4])
		}
	}
	return out
}

func unmountUnder(dir string) {
	ms := mountsUnder(dir)
	for i := len(ms) - 1; i >= 0; i-- {
		_ = unix.Unmount(ms[i], unix.MNT_DETACH)
	}
}

func removeCgroups(parent string) {
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", parent))
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

// traces lists what of container id is left on the host.
func (env *testEnv) traces(id string) []string {
	var left []string
	for _, m := range mountsUnder(filepath.Dir(env.opts.Root)) {
		if strings.Contains(m, id) {
			left = append(left, "mount "+m)
		}
	}
	cgs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", env.opts.CgroupParent, id))
	for _, d := range cgs {
		left = append(left, "cgroup "+d)
	}
	// A removal's files go to a trash and are deleted right after it is
	// answered (Engine.discard): give that a moment.
	var paths []string
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		paths = nil
		filepath.Walk(filepath.Dir(env.opts.Root), func(p string, fi os.FileInfo, err error) error {
			if err == nil && strings.Contains(filepath.Base(p), id) {
				paths = append(paths, "path "+p)
			}
			return nil
		})
		if len(paths) == 0 || time.Now().After(end) {
			break
		}
	}
	left = append(left, paths...)
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte(id)) {
			left = append(left, "process "+ent.Name()+" "+strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return left
}

// demux splits stdcopy frames into stdout and stderr.
func demux(t *testing.T, b []byte) (string, string) {
	t.Helper()
	var out, errs strings.Builder
	for len(b) > 0 {
		if len(b) < 8 {
			t.Fatalf("short frame header: %q", b)
		}
		n := int(binary.BigEndian.Uint32(b[4:8]))
		if len(b) < 8+n {
			t.Fatalf("short frame: want %d bytes, have %d", n, len(b)-8)
		}
		switch b[0] {
		case 1:
			out.Write(b[8 : 8+n])
		case 2:
			errs.Write(b[8 : 8+n])
		default:
			t.Fatalf("bad stream %d", b[0])
		}
		b = b[8+n:]
	}
	return out.String(), errs.String()
}

func TestRunEchoLogsAndExitCode(t *testing.T) {
	env := newEnv(t)
	c := env.run(Config{Cmd: []string{"sh", "-c", "echo hello; echo oops >&2; exit 3"}})
	st := env.wait(c.ID, 10*time.Second)
	if st.ExitCode != 3 || st.Running || st.Status != "exited" || st.FinishedAt.IsZero() {
		t.Fatalf("state after exit: %+v", st)
	}
	if got := env.logs(c.ID); !strings.Contains(got, "stdout:hello\n") || !strings.Contains(got, "stderr:oops\n") {
		t.Fatalf("log: %q", got)
	}
	// The record on disk says the same: a restarted daemon reads it.
	env.crash()
	env.open()
	got, err := env.e.Get(c.ID[:12])
	if err != nil || got.State.ExitCode != 3 || got.State.Status != "exited" || got.Name != c.Name {
		t.Fatalf("after reopen: %+v %v", got.State, err)
	}
}

func TestCommandNotFoundAndNotExecutable(t *testing.T) {
	env := newEnv(t)
	for _, tc := range []struct {
		cmd  string
		code int
	}{{"/no/such/cmd", 127}, {"/notexec", 126}} {
		c := env.create(Config{Cmd: []string{tc.cmd}})
		err := env.e.Start(context.Background(), c.ID)
		var ee *ExecError
		if !errors.As(err, &ee) || ee.Code != tc.code {
			t.Fatalf("start %s: want ExecError %d, got %v", tc.cmd, tc.code, err)
		}
		got, _ := env.e.Get(c.ID)
		if got.State.Running || got.State.ExitCode != tc.code {
			t.Fatalf("state after failed start of %s: %+v", tc.cmd, got.State)
		}
		if err := env.e.Remove(context.Background(), c.ID, false); err != nil {
			t.Fatal(err)
		}
		if left := env.traces(c.ID); len(left) > 0 {
			t.Fatalf("left after failed start + remove: %v", left)
		}
	}
}

func TestStopSignalThenKill(t *testing.T) {
	env := newEnv(t)
	// sh as pid 1 with a TERM trap: the stop signal ends it.
	trap := env.run(Config{Cmd: []string{"sh", "-c", "trap 'exit 7' TERM; while true; do sleep 0.05; done"}})
	// sleep as pid 1 has no handler: the kernel drops SIGTERM, so stop must SIGKILL after the timeout.
	deaf := env.run(Config{Cmd: []string{"sleep", "1000"}})
	time.Sleep(100 * time.Millisecond) // let the shell install its trap
	one := 1
	t0 := time.Now()
	if err := env.e.Stop(context.Background(), trap.ID, &one); err != nil {
		t.Fatal(err)
	}
	if st, _ := env.e.Get(trap.ID); st.State.ExitCode != 7 || time.Since(t0) > 900*time.Millisecond {
		t.Fatalf("trap: exit %d after %v, want 7 before the timeout", st.State.ExitCode, time.Since(t0))
	}
	t0 = time.Now()
	if err := env.e.Stop(context.Background(), deaf.ID, &one); err != nil {
		t.Fatal(err)
	}
	if st, _ := env.e.Get(deaf.ID); st.State.ExitCode != 137 || time.Since(t0) < time.Second {
		t.Fatalf("deaf: exit %d after %v, want 137 after 1s", st.State.ExitCode, time.Since(t0))
	}
	if err := env.e.Stop(context.Background(), deaf.ID, &one); !errors.Is(err, ErrNotModified) {
		t.Fatalf("stop of a stopped container: %v", err)
	}
}

func TestRemoveRunningNeedsForceAndLeavesNothing(t *testing.T) {
	env := newEnv(t)
	c := env.run(Config{Cmd: []string{"sleep", "1000"}})
	if err := env.e.Remove(context.Background(), c.ID, false); !errors.Is(err, ErrConflict) {
		t.Fatalf("remove running without force: %v", err)
	}
	if err := env.e.Remove(context.Background(), c.ID, true); err != nil {
		t.Fatal(err)
	}
	if _, err := env.e.Get(c.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get after remove: %v", err)
	}
	if left := env.traces(c.ID); len(left) > 0 {
		t.Fatalf("left after remove: %v", left)
	}
}

func TestCreateFailureLeavesNothing(t *testing.T) {
	env := newEnv(t)
	before := env.e.List(true)
	for _, cfg := range []Config{
		{Image: "nosuchimage"},
		{Image: "busybox", Binds: []string{"relative:/x"}},
		{Image: "busybox", NetworkMode: "container:other"},
		{Image: "busybox", Entrypoint: []string{}, Cmd: []string{}},
		{Image: "busybox", WorkingDir: "relative"},
		{Image: "busybox", Env: []string{"=novar"}},
		{Image: "busybox", NetworkMode: "bridge", NetNSPath: "relative/netns"},
	} {
		if _, err := env.e.Create(context.Background(), "", cfg); err == nil {
			t.Fatalf("create %+v succeeded", cfg)
		}
	}
	if _, err := env.e.Create(context.Background(), "bad name!", Config{Image: "busybox"}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("bad name: %v", err)
	}
	c := env.create(Config{})
	if _, err := env.e.Create(context.Background(), c.Name, Config{Image: "busybox"}); !errors.Is(err, ErrConflict) {
		t.Fatalf("name in use: %v", err)
	}
	if got := env.e.List(true); len(got) != len(before)+1 {
		t.Fatalf("list after failed creates: %d records", len(got))
	}
	ents, _ := os.ReadDir(filepath.Join(env.opts.Root, "containers"))
	if len(ents) != 1 {
		t.Fatalf("container dirs after failed creates: %d", len(ents))
	}
}

func TestReadoptAfterDaemonCrash(t *testing.T) {
	env := newEnv(t)
	long := env.run(Config{Cmd: []string{"sleep", "1000"}})
	short := env.run(Config{Cmd: []string{"sh", "-c", "read x; exit 5"}, OpenStdin: true})
	env.crash()

	// While no daemon runs: the short one ends (its stdin closes when the shim
	// is told so; here we kill it directly through the runtime state).
	rt := runtime.New(filepath.Join(env.opts.ExecRoot, "runtime"))
	if err := rt.Kill(short.ID, unix.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(env.opts.ExecRoot, "shim", short.ID, "exit.json")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the shim recorded no exit while the daemon was down")
		}
		time.Sleep(20 * time.Millisecond)
	}
	env.open()
	got, err := env.e.Get(long.ID)
	if err != nil || !got.State.Running || got.State.Pid == 0 {
		t.Fatalf("long-running container after reopen: %+v %v", got.State, err)
	}
	if unix.Kill(got.State.Pid, 0) != nil {
		t.Fatalf("pid %d of the re-adopted container is gone", got.State.Pid)
	}
	st := env.wait(short.ID, 5*time.Second)
	if st.ExitCode != 137 || st.Running {
		t.Fatalf("container that died while the daemon was down: %+v", st)
	}
	// The re-adopted one is still under control: stop reaches it.
	zero := 0
	if err := env.e.Stop(context.Background(), long.ID, &zero); err != nil {
		t.Fatal(err)
	}
	if st := env.wait(long.ID, 5*time.Second); st.ExitCode != 137 {
		t.Fatalf("stop after re-adoption: %+v", st)
	}
	for _, id := range []string{long.ID, short.ID} {
		if err := env.e.Remove(context.Background(), id, false); err != nil {
			t.Fatal(err)
		}
		if left := env.traces(id); len(left) > 0 {
			t.Fatalf("left after remove: %v", left)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and a polling reader.
type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.b.Bytes()...)
}

func TestAttachStdinBeforeStart(t *testing.T) {
	env := newEnv(t)
	c := env.create(Config{Cmd: []string{"sh", "-c", "echo ready; cat; echo done >&2"}, OpenStdin: true, StdinOnce: true})
	var out syncBuffer
	errc := make(chan error, 1)
	go func() {
		errc <- env.e.Attach(context.Background(), c.ID, strings.NewReader("line1\nline2\n"), &out)
	}()
	// Attach registers before the start: the first line must not be missed.
	deadline := time.Now().Add(2 * time.Second)
	for {
		env.e.mu.Lock()
		n := len(env.e.records[c.ID].pending)
		env.e.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("attach did not register")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := env.e.Start(context.Background(), c.ID); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("attach did not end with the container")
	}
	stdout, stderr := demux(t, out.Bytes())
	if stdout != "ready\nline1\nline2\n" || stderr != "done\n" {
		t.Fatalf("attached stdout %q stderr %q", stdout, stderr)
	}
	if st := env.wait(c.ID, 5*time.Second); st.ExitCode != 0 {
		t.Fatalf("exit: %+v", st)
	}
}

func TestExecTopAndCopy(t *testing.T) {
	env := newEnv(t)
	c := env.run(Config{Cmd: []string{"sleep", "1000"}, Env: []string{"FOO=bar"}})

	id, err := env.e.ExecCreate(c.ID, ExecConfig{Cmd: []string{"sh", "-c", "echo $FOO; id -u; echo err >&2; exit 4"}, User: "app"})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := env.e.ExecStart(context.Background(), id, nil, &out); err != nil {
		t.Fatal(err)
	}
	stdout, stderr := demux(t, out.Bytes())
	if stdout != "bar\n1000\n" || stderr != "err\n" {
		t.Fatalf("exec stdout %q stderr %q", stdout, stderr)
	}
	if x, err := env.e.ExecInspect(id); err != nil || x.ExitCode != 4 || x.Running {
		t.Fatalf("exec inspect: %+v %v", x, err)
	}
	if err := env.e.ExecStart(context.Background(), id, nil, &out); !errors.Is(err, ErrConflict) {
		t.Fatalf("second exec start: %v", err)
	}
	missing, _ := env.e.ExecCreate(c.ID, ExecConfig{Cmd: []string{"/nope"}})
	var ee *ExecError
	if err := env.e.ExecStart(context.Background(), missing, nil, io.Discard); !errors.As(err, &ee) || ee.Code != 127 {
		t.Fatalf("exec of a missing command: %v", err)
	}
	// An exec that cannot start at all (no such user) has failed: 126, as
	// dockerd's, not the 0 of an exec that never ran.
	nouser, _ := env.e.ExecCreate(c.ID, ExecConfig{Cmd: []string{"true"}, User: "nosuchuser"})
	if err := env.e.ExecStart(context.Background(), nouser, nil, io.Discard); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("exec as an unknown user: %v", err)
	}
	if x, err := env.e.ExecInspect(nouser); err != nil || x.ExitCode != 126 || x.Running {
		t.Fatalf("exec inspect after an unknown user: %+v %v", x, err)
	}

	// ps -ef on the host and, as without ps, from /proc: the same columns.
	top, err := env.e.Top(c.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	cg, _ := env.e.rt.Cgroup(c.ID)
	pids, _ := cg.Pids()
	for _, l := range []TopList{top, procTop(pids)} {
		rows := l.Processes
		if len(rows) != 1 || rows[0][len(rows[0])-1] != "sleep 1000" || len(rows[0]) != len(l.Titles) || l.Titles[1] != "PID" {
			t.Fatalf("top: %v %v", l, err)
		}
		if now, stime := time.Now(), rows[0][4]; stime != now.Format("15:04") && stime != now.Add(-time.Minute).Format("15:04") {
			t.Fatalf("top STIME %q, started just now", stime)
		}
	}
	// ps options are ps's: its columns, the container's rows only.
	if top, err := env.e.Top(c.ID, "-o pid,comm"); err != nil || !slices.Equal(top.Titles, []string{"PID", "COMMAND"}) ||
		len(top.Processes) != 1 || top.Processes[0][1] != "sleep" {
		t.Fatalf("top -o pid,comm: %+v %v", top, err)
	}
	if _, err := env.e.Top(c.ID, "--no-such-option"); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("top with a bad ps option: %v", err)
	}

	// cp in, then cp out.
	var in bytes.Buffer
	tw := tar.NewWriter(&in)
	tw.WriteHeader(&tar.Header{Name: "dir/", Typeflag: tar.TypeDir, Mode: 0o755})
	tw.WriteHeader(&tar.Header{Name: "dir/hello.txt", Typeflag: tar.TypeReg, Mode: 0o644, Size: 6})
	tw.Write([]byte("hello\n"))
	tw.Close()
	if err := env.e.ExtractToDir(context.Background(), c.ID, "/tmp", &in); err != nil {
		t.Fatal(err)
	}
	var tarOut bytes.Buffer
	if err := env.e.ArchivePath(context.Background(), c.ID, "/tmp/dir", &tarOut); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(&tarOut)
	var names []string
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, h.Name)
		if h.Name == "dir/hello.txt" {
			b, _ := io.ReadAll(tr)
			if string(b) != "hello\n" {
				t.Fatalf("copied content %q", b)
			}
		}
	}
	if strings.Join(names, ",") != "dir/,dir/hello.txt" {
		t.Fatalf("archive names %v", names)
	}
	// A symlink last in the path is described and archived itself, as
	// dockerd's (the CLI's cp -L asks for LinkTarget by name); a trailing
	// "/" asks for a directory.
	var links bytes.Buffer
	tw = tar.NewWriter(&links)
	tw.WriteHeader(&tar.Header{Name: "abs", Typeflag: tar.TypeSymlink, Linkname: "/tmp/dir/hello.txt"})
	tw.WriteHeader(&tar.Header{Name: "rel", Typeflag: tar.TypeSymlink, Linkname: "dir/hello.txt"})
	tw.WriteHeader(&tar.Header{Name: "dangling", Typeflag: tar.TypeSymlink, Linkname: "../nowhere"})
	tw.Close()
	if err := env.e.ExtractToDir(context.Background(), c.ID, "/tmp", &links); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{"abs": "/tmp/dir/hello.txt", "rel": "/tmp/dir/hello.txt", "dangling": "/nowhere"} {
		st, err := env.e.StatPath(c.ID, "/tmp/"+name)
		if err != nil || st.Mode&os.ModeSymlink == 0 || st.LinkTarget != target || st.Name != name {
			t.Errorf("stat of the symlink %s: %+v %v, want a symlink to %s", name, st, err, target)
		}
	}
	var linkTar bytes.Buffer
	if err := env.e.ArchivePath(context.Background(), c.ID, "/tmp/abs", &linkTar); err != nil {
		t.Fatal(err)
	}
	if h, err := tar.NewReader(&linkTar).Next(); err != nil || h.Typeflag != tar.TypeSymlink || h.Name != "abs" || h.Linkname != "/tmp/dir/hello.txt" {
		t.Fatalf("archive of a symlink: %+v %v", h, err)
	}
	if st, err := env.e.StatPath(c.ID, "/tmp/dir/"); err != nil || !st.Mode.IsDir() {
		t.Errorf("stat of a directory with a trailing /: %+v %v", st, err)
	}
	if _, err := env.e.StatPath(c.ID, "/tmp/dir/hello.txt/"); !errors.Is(err, ErrNotFound) {
		t.Errorf("stat of a file with a trailing /: %v", err)
	}
	// A path escaping through .. stays inside the rootfs (a file the host
	// has and the container has not).
	if err := env.e.ArchivePath(context.Background(), c.ID, "/../../../etc/os-release", io.Discard); !errors.Is(err, ErrNotFound) {
		t.Fatalf("escaping path: %v", err)
	}
	// The exec'd process saw the copied file (the same mounted rootfs).
	id, _ = env.e.ExecCreate(c.ID, ExecConfig{Cmd: []string{"cat", "/tmp/dir/hello.txt"}})
	out.Reset()
	if err := env.e.ExecStart(context.Background(), id, nil, &out); err != nil {
		t.Fatal(err)
	}
	if stdout, _ := demux(t, out.Bytes()); stdout != "hello\n" {
		t.Fatalf("copied file seen inside: %q", stdout)
	}
}

func TestCommitAndLogsFollow(t *testing.T) {
	env := newEnv(t)
	c := env.run(Config{Cmd: []string{"sh", "-c", "echo one; echo made > /made; sleep 0.3; echo two"}})
	var got []string
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := env.e.Logs(ctx, c.ID, LogsOptions{Tail: -1, Follow: true}, func(e logs.Entry) error {
		got = append(got, e.Log)
		return nil
	})
	if err != nil || strings.Join(got, "") != "one\ntwo\n" {
		t.Fatalf("follow: %q %v", got, err)
	}
	if ctx.Err() != nil {
		t.Fatal("follow did not stop when the container exited")
	}
	img, err := env.e.Commit(context.Background(), c.ID, CommitOptions{Ref: "made:1"})
	if err != nil {
		t.Fatal(err)
	}
	c2 := env.run(Config{Image: img.ID, Cmd: []string{"cat", "/made"}})
	env.wait(c2.ID, 10*time.Second)
	if l := env.logs(c2.ID); l != "stdout:made\n" {
		t.Fatalf("committed image: %q", l)
	}
}

func TestAutoRemove(t *testing.T) {
	env := newEnv(t)
	c := env.run(Config{Cmd: []string{"true"}, AutoRemove: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := env.e.Wait(ctx, c.ID, WaitRemoved, nil); err != nil {
		t.Fatal(err)
	}
	if left := env.traces(c.ID); len(left) > 0 {
		t.Fatalf("left after auto-remove: %v", left)
	}
}

// rootfsVolatile reports whether running container id's root is an overlay
// mounted with overlayfs' "volatile" (newer kernels show it as
// fsync=volatile), as its own processes see it. The host's mount table
// must not hold it: the runtime mounts it in the container's namespace.
func (env *testEnv) rootfsVolatile(id string) (mounted, volatile bool) {
	env.t.Helper()
	target := filepath.Join(env.e.bundleDir(id), "rootfs")
	host, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(host), "\n") {
		if f := strings.Fields(line); len(f) >= 5 && f[4] == target {
			env.t.Errorf("%s is mounted in the host's namespace: %s", target, line)
		}
	}
	c, err := env.e.Get(id)
	if err != nil || c.State.Pid == 0 {
		env.t.Fatalf("container %s: pid %d, %v", id[:12], c.State.Pid, err)
	}
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", c.State.Pid))
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || f[4] != "/" {
			continue
		}
		_, super, _ := strings.Cut(line, " - ")
		if sf := strings.Fields(super); len(sf) < 3 || sf[0] != "overlay" {
			continue
		}
		opts := strings.Split(strings.Fields(super)[2], ",")
		return true, slices.Contains(opts, "volatile") || slices.Contains(opts, "fsync=volatile")
	}
	return false, false
}

// TestAutoRemoveIsEphemeral: a --rm container's rootfs is a volatile
// overlay (its changes are never synced: they go with it), another's is
// not; and a --rm container that is not running when the engine opens (a
// crash cut its removal short, or it was never started) is removed then,
// as dockerd does, which is what makes its unsynced record safe.
func TestAutoRemoveIsEphemeral(t *testing.T) {
	env := newEnv(t)
	rm := env.run(Config{Cmd: []string{"sleep", "60"}, AutoRemove: true})
	keep := env.run(Config{Cmd: []string{"sleep", "60"}})
	if mounted, volatile := env.rootfsVolatile(rm.ID); !mounted || !volatile {
		t.Errorf("--rm container: rootfs mounted %v, volatile %v; want volatile", mounted, volatile)
	}
	if mounted, volatile := env.rootfsVolatile(keep.ID); !mounted || volatile {
		t.Errorf("plain container: rootfs mounted %v, volatile %v; want not volatile", mounted, volatile)
	}
	for _, id := range []string{rm.ID, keep.ID} {
		if err := env.e.Kill(id, unix.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Not found: removed already.
	if _, err := env.e.Wait(ctx, rm.ID, WaitRemoved, nil); err != nil && !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}

	created := env.create(Config{Cmd: []string{"true"}, AutoRemove: true})
	plain := env.create(Config{Cmd: []string{"true"}})
	env.crash()
	env.open()
	if _, err := env.e.Get(created.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("--rm container created before the restart: %v, want it removed", err)
	}
	if left := env.traces(created.ID); len(left) > 0 {
		t.Errorf("left of the --rm container after the restart: %v", left)
	}
	for _, id := range []string{plain.ID, keep.ID} {
		if _, err := env.e.Get(id); err != nil {
			t.Errorf("container without --rm after the restart: %v", err)
		}
	}
}

// TestSetNetworkSavedWithStart: the network a created container is given is
// kept in memory and written with its start (one record write per start,
// not two), and the record on disk has it once the container has started.
func TestSetNetworkSavedWithStart(t *testing.T) {
	env := newEnv(t)
	c := env.create(Config{Cmd: []string{"true"}})
	rec := filepath.Join(env.opts.Root, "containers", c.ID, "config.v2.json")
	inode := func() uint64 {
		var st unix.Stat_t
		if err := unix.Stat(rec, &st); err != nil {
			t.Fatal(err)
		}
		return st.Ino
	}
	created := inode()
	// The test's own namespace: a namespace file to join, as a bridge's.
	nsPath := fmt.Sprintf("/proc/%d/ns/net", os.Getpid())
	if err := env.e.SetNetwork(c.ID, nsPath, NetworkSettings{IPAddress: "198.18.7.7"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := env.e.Get(c.ID); got.Config.NetNSPath != nsPath || got.Config.Network.IPAddress != "198.18.7.7" {
		t.Fatalf("network not recorded: %q %+v", got.Config.NetNSPath, got.Config.Network)
	}
	if inode() != created {
		t.Error("the record was written for the network of a container not started yet")
	}
	if err := env.e.Start(context.Background(), c.ID); err != nil {
		t.Fatal(err)
	}
	env.wait(c.ID, 10*time.Second)
	b, err := os.ReadFile(rec)
	if err != nil {
		t.Fatal(err)
	}
	var onDisk Container
	if err := json.Unmarshal(b, &onDisk); err != nil {
		t.Fatal(err)
	}
	if onDisk.Config.NetNSPath != nsPath || onDisk.Config.Network.IPAddress != "198.18.7.7" {
		t.Errorf("record on disk after the start: netns %q, network %+v", onDisk.Config.NetNSPath, onDisk.Config.Network)
	}
}

// TestAutoRemoveExitedWhileDown: a --rm container that exits while no
// engine runs (its record, never written at its exit, still says running)
// is removed when the engine opens again.
func TestAutoRemoveExitedWhileDown(t *testing.T) {
	env := newEnv(t)
	c := env.run(Config{Cmd: []string{"sleep", "0.3"}, AutoRemove: true})
	env.crash()
	time.Sleep(time.Second)
	env.open()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := env.e.Wait(ctx, c.ID, WaitRemoved, nil); err != nil && !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	if _, err := env.e.Get(c.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("--rm container that exited while the engine was down: %v, want it removed", err)
	}
	if left := env.traces(c.ID); len(left) > 0 {
		t.Errorf("left of it: %v", left)
	}
}

// Running containers do not cost the engine a thread each: the shims are
// waited for in the netpoller (runtime.AwaitExit), not in waitid(2).
func TestRunningContainersHoldNoThreads(t *testing.T) {
	env := newEnv(t)
	threads := func() int {
		ents, err := os.ReadDir("/proc/self/task")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	env.run(Config{Cmd: []string{"sleep", "1000"}}) // the first start's one-time threads
	time.Sleep(100 * time.Millisecond)
	before := threads()
	const n = 10
	for i := 0; i < n; i++ {
		env.run(Config{Cmd: []string{"sleep", "1000"}})
	}
	time.Sleep(100 * time.Millisecond)
	if after := threads(); after-before >= n/2 {
		t.Fatalf("%d threads with %d more containers running, %d before", after, n, before)
	}
}

// TestRemoveDeletesAfterAnswering: a removal moves the container's
// directories out of its paths before it returns (a new container can
// take them, nothing lists it), deletes them right after, and what a
// crash left in the trash is deleted when the engine opens.
func TestRemoveDeletesAfterAnswering(t *testing.T) {
	env := newEnv(t)
	c := env.run(Config{Cmd: []string{"sh", "-c", "dd if=/dev/zero of=/big bs=1M count=8 2>/dev/null"}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := env.e.Wait(ctx, c.ID, WaitNotRunning, nil); err != nil {
		t.Fatal(err)
	}
	if err := env.e.Remove(ctx, c.ID, false); err != nil {
		t.Fatal(err)
	}
	rootfs := filepath.Join(env.opts.Root, "containers-rootfs", c.ID)
	for _, p := range []string{env.e.containerDir(c.ID), env.e.bundleDir(c.ID), env.e.shimDir(c.ID), rootfs} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after the removal returned: %v", p, err)
		}
	}
	if left := env.traces(c.ID); len(left) > 0 {
		t.Fatalf("left after remove: %v", left)
	}
	for _, d := range []string{filepath.Join(env.opts.Root, "trash"), filepath.Join(env.opts.ExecRoot, "trash"), filepath.Join(env.opts.Root, "tmp")} {
		if ents, err := os.ReadDir(d); err != nil || len(ents) != 0 {
			t.Errorf("%s after the deletion: %d entries, %v", d, len(ents), err)
		}
	}

	// A crash between the move and the deletion.
	leftovers := []string{filepath.Join(env.opts.Root, "trash", "x-1"), filepath.Join(env.opts.ExecRoot, "trash", "y-2")}
	for _, p := range leftovers {
		if err := os.MkdirAll(filepath.Join(p, "upper", "d"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	env.crash()
	env.open()
	for _, p := range leftovers {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("trash %s after the engine opened again: %v", p, err)
		}
	}
}

// TestUserDBFollowsTheContainersFiles: a container's user lookups read its
// own /etc/passwd once it has written files, not its image's that a start
// of an untouched container cached. Here root's HOME changes with the
// container's passwd between two starts; with the image's cached, the
// second start saw /root again.
func TestUserDBFollowsTheContainersFiles(t *testing.T) {
	env := newEnv(t)
	// An untouched container of the image first: its start caches the
	// image's files.
	first := env.run(Config{Cmd: []string{"sh", "-c", "echo $HOME"}})
	env.wait(first.ID, 10*time.Second)
	c := env.run(Config{Cmd: []string{"sh", "-c", `echo "home=$HOME"; sed -i "s#:/root:#:/home/r:#" /etc/passwd`}})
	env.wait(c.ID, 10*time.Second)
	if err := env.e.Start(context.Background(), c.ID); err != nil {
		t.Fatal(err)
	}
	env.wait(c.ID, 10*time.Second)
	if got := env.logs(c.ID); !strings.Contains(got, "home=/root\n") || !strings.Contains(got, "home=/home/r\n") {
		t.Fatalf("HOME of the two starts: %q", got)
	}
	// A new container of the image still gets the image's.
	other := env.run(Config{Cmd: []string{"sh", "-c", "echo home=$HOME"}})
	env.wait(other.ID, 10*time.Second)
	if got := env.logs(other.ID); !strings.Contains(got, "home=/root\n") {
		t.Fatalf("HOME of a new container: %q", got)
	}
}
