package containers

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/containerd/images"
)

// testDaemonMain is a stand-in daemon in its own process: it opens the
// engine over the given roots, starts `sleep 1000`, prints the container's
// ID and waits to be killed.
func testDaemonMain(args []string) {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "test-daemon:", err)
		os.Exit(1)
	}
	if len(args) != 4 {
		fail(fmt.Errorf("want ROOT EXECROOT CGROUP-PARENT BINARY"))
	}
	imgs, err := images.Open(args[0])
	if err != nil {
		fail(err)
	}
	e, err := Open(context.Background(), Options{Root: args[0], ExecRoot: args[1], CgroupParent: args[2], Images: imgs, Binary: args[3]})
	if err != nil {
		fail(err)
	}
	c, err := e.Create(context.Background(), "survivor", Config{Image: "busybox", Cmd: []string{"sleep", "1000"}, NetworkMode: "none"})
	if err != nil {
		fail(err)
	}
	if err := e.Start(context.Background(), c.ID); err != nil {
		fail(err)
	}
	// The shim leaves the daemon's cgroup just after the start; a daemon
	// killed before that would take it along, so this one waits for it.
	c, _ = e.Get(c.ID)
	for i := 0; i < 200 && !inShimsCgroup(c.State.ShimPid, args[2]); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Println(c.ID)
	select {}
}

// TestDaemonKilledContainersSurvive kills a daemon process and its whole
// process group with SIGKILL: the container and its shim live on, and the
// next engine re-adopts them and can stop and remove them without leaks.
func TestDaemonKilledContainersSurvive(t *testing.T) {
	env := newEnv(t)
	env.crash() // the stand-in daemon owns the roots now
	cmd := exec.Command(env.opts.Binary, "test-daemon", env.opts.Root, env.opts.ExecRoot, env.opts.CgroupParent, env.opts.Binary)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	kill := func() {
		if !killed {
			killed = true
			_ = unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
			_ = cmd.Wait()
		}
	}
	defer kill()
	idc := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		idc <- strings.TrimSpace(line)
	}()
	var id string
	select {
	case id = <-idc:
	case <-time.After(20 * time.Second):
		t.Fatal("the stand-in daemon did not start its container")
	}
	if len(id) != 64 {
		t.Fatalf("stand-in daemon said %q", id)
	}
	kill()

	env.open()
	c, err := env.e.Get("survivor")
	if err != nil || c.ID != id || !c.State.Running {
		t.Fatalf("after the daemon's SIGKILL: %+v %v", c.State, err)
	}
	if unix.Kill(c.State.Pid, 0) != nil || unix.Kill(c.State.ShimPid, 0) != nil {
		t.Fatalf("container pid %d or shim pid %d died with the daemon", c.State.Pid, c.State.ShimPid)
	}
	// Nor was the shim in the daemon's cgroup: it lives in <parent>/shims.
	if !inShimsCgroup(c.State.ShimPid, env.opts.CgroupParent) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", c.State.ShimPid))
		t.Errorf("shim cgroups:\n%s", b)
	}
	if err := env.e.Stop(context.Background(), id, new(int)); err != nil {
		t.Fatal(err)
	}
	if st := env.wait(id, 10*time.Second); st.ExitCode != 137 || st.Running {
		t.Fatalf("stop after re-adoption: %+v", st)
	}
	if err := env.e.Remove(context.Background(), id, false); err != nil {
		t.Fatal(err)
	}
	if left := env.traces(id); len(left) > 0 {
		t.Fatalf("left after remove: %v", left)
	}
}

// A shim killed with SIGKILL takes its containers with it (every container
// it supervised, and only those): the engine records each loss (137) and
// ends the unsupervised processes; remove leaves nothing.
func TestShimKilled(t *testing.T) {
	env := newEnv(t)
	var cs []Container
	for i := 0; i < 2; i++ {
		c := env.run(Config{Cmd: []string{"sleep", "1000"}})
		c, _ = env.e.Get(c.ID)
		cs = append(cs, c)
	}
	if cs[0].State.ShimPid != cs[1].State.ShimPid {
		t.Fatalf("two containers on shims %d and %d, want one", cs[0].State.ShimPid, cs[1].State.ShimPid)
	}
	env.e.shimPool.mu.Lock()
	env.e.shimPool.cur.ctl.Close() // retire it: the next container gets a shim of its own
	env.e.shimPool.cur = nil
	env.e.shimPool.mu.Unlock()
	other := env.run(Config{Cmd: []string{"sleep", "1000"}})
	other, _ = env.e.Get(other.ID)
	if err := unix.Kill(cs[0].State.ShimPid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		st := env.wait(c.ID, 10*time.Second)
		if st.ExitCode != 137 || st.Error == "" {
			t.Fatalf("after the shim's death: %+v", st)
		}
		deadline := time.Now().Add(5 * time.Second)
		for unix.Kill(c.State.Pid, 0) == nil {
			if time.Now().After(deadline) {
				t.Fatalf("container pid %d outlived its shim", c.State.Pid)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err := env.e.Remove(context.Background(), c.ID, false); err != nil {
			t.Fatal(err)
		}
		if left := env.traces(c.ID); len(left) > 0 {
			t.Fatalf("left after remove: %v", left)
		}
	}
	if o, _ := env.e.Get(other.ID); !o.State.Running || unix.Kill(other.State.Pid, 0) != nil {
		t.Fatalf("the container of another shim: %+v", o.State)
	}
	if err := env.e.Remove(context.Background(), other.ID, true); err != nil {
		t.Fatal(err)
	}
}

// TestShimRetired: the engine hands a shim a bounded number of containers
// and then starts another; a retired shim lives while one of its containers
// does and exits after the last, while the current one waits for more.
func TestShimRetired(t *testing.T) {
	env := newEnv(t)
	env.e.shimPool.limit = 2
	var cs []Container
	for i := 0; i < 3; i++ {
		c := env.run(Config{Cmd: []string{"sleep", "1000"}})
		c, _ = env.e.Get(c.ID)
		cs = append(cs, c)
	}
	// Nothing of the shim's (its control socket, another container's
	// pipes) reaches a container: stdin, stdout and stderr only, once the
	// init has become sleep (a Go init's runtime has descriptors of its own
	// until its execve).
	for _, c := range cs {
		for i := 0; i < 500; i++ {
			if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", c.State.Pid)); strings.HasPrefix(string(b), "sleep\x00") {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", c.State.Pid))
		if err != nil || len(ents) != 3 {
			var names []string
			for _, e := range ents {
				l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", c.State.Pid, e.Name()))
				names = append(names, e.Name()+"->"+l)
			}
			t.Errorf("container %s has descriptors %v (%v), want 0, 1, 2", c.ID[:12], names, err)
		}
	}
	retired, current := cs[0].State.ShimPid, cs[2].State.ShimPid
	if cs[1].State.ShimPid != retired || current == retired {
		t.Fatalf("shims %d, %d, %d: want the first two on one, the third on another", retired, cs[1].State.ShimPid, current)
	}
	stop := func(c Container) {
		t.Helper()
		if err := env.e.Stop(context.Background(), c.ID, new(int)); err != nil {
			t.Fatal(err)
		}
		if err := env.e.Remove(context.Background(), c.ID, false); err != nil {
			t.Fatal(err)
		}
	}
	stop(cs[0])
	time.Sleep(200 * time.Millisecond)
	if unix.Kill(retired, 0) != nil {
		t.Fatal("the retired shim exited while one of its containers ran")
	}
	if c, _ := env.e.Get(cs[1].ID); !c.State.Running {
		t.Fatalf("its other container: %+v", c.State)
	}
	stop(cs[1])
	deadline := time.Now().Add(5 * time.Second)
	for unix.Kill(retired, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("retired shim %d still runs after its last container", retired)
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop(cs[2])
	time.Sleep(200 * time.Millisecond)
	if unix.Kill(current, 0) != nil {
		t.Fatal("the current shim exited with its containers: the next start would pay for a new one")
	}
	// The current one serves the next containers, and keeps nothing of
	// them once they are gone: a plain one, one with stdin, one with a
	// terminal, one whose start fails.
	env.e.shimPool.limit = 100
	fds := func() int {
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", current))
		if err != nil {
			t.Fatalf("shim %d: %v", current, err)
		}
		return len(ents)
	}
	before := fds()
	for _, cfg := range []Config{
		{Cmd: []string{"sleep", "1000"}},
		{Cmd: []string{"sleep", "1000"}, OpenStdin: true, StdinOnce: true},
		{Cmd: []string{"sleep", "1000"}, Tty: true, OpenStdin: true},
	} {
		c := env.run(cfg)
		c, _ = env.e.Get(c.ID)
		if c.State.ShimPid != current {
			t.Fatalf("next container on shim %d, want %d", c.State.ShimPid, current)
		}
		stop(c)
	}
	bad := env.create(Config{Cmd: []string{"/no/such/program"}})
	if err := env.e.Start(context.Background(), bad.ID); err == nil {
		t.Fatal("a start of a missing program succeeded")
	}
	if err := env.e.Remove(context.Background(), bad.ID, true); err != nil {
		t.Fatal(err)
	}
	// The shim closes a container's descriptors just after its answer.
	after := fds()
	for i := 0; i < 100 && after != before; i++ {
		time.Sleep(20 * time.Millisecond)
		after = fds()
	}
	if after != before {
		t.Errorf("shim %d held %d descriptors before four containers came and went, %d after", current, before, after)
	}
}

// inShimsCgroup reports whether pid is in <parent>/shims in the memory, pids
// and unified hierarchies.
func inShimsCgroup(pid int, parent string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return false
	}
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) == 3 && (strings.Contains(f[1], "memory") || strings.Contains(f[1], "pids") || f[1] == "") {
			if f[2] != "/"+strings.TrimPrefix(parent, "/")+"/shims" {
				return false
			}
			n++
		}
	}
	return n > 0
}

// TestStartAfterEngineEnded: a start that reaches the engine after its end
// (a daemon stopping) fails at once and starts no shim, whose control
// socket would be closed before it could take the container.
func TestStartAfterEngineEnded(t *testing.T) {
	env := newEnv(t)
	c := env.create(Config{Cmd: []string{"true"}})
	env.cancel()
	err := env.e.Start(context.Background(), c.ID)
	if err == nil || !strings.Contains(err.Error(), "engine has stopped") {
		t.Fatalf("start after the engine's end: %v", err)
	}
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		b, _ := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if bytes.Contains(b, []byte("\x00shim\x00")) && bytes.Contains(b, []byte(env.opts.ExecRoot)) {
			t.Fatalf("a shim was started: pid %s", ent.Name())
		}
	}
}
