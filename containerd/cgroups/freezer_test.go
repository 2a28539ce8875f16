package cgroups

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fakeKernel stands in for the v2 kernel side over a plain directory: it
// reports in cgroup.events what cgroup.freeze asks for, until stop.
func fakeKernel(t *testing.T, dir string, stop <-chan struct{}) {
	t.Helper()
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			b, _ := os.ReadFile(filepath.Join(dir, "cgroup.freeze"))
			v := strings.TrimSpace(string(b))
			if v == "" {
				v = "0"
			}
			// Replaced whole, as the kernel's file never reads half written.
			tmp := filepath.Join(dir, ".events")
			os.WriteFile(tmp, []byte("populated 1\nfrozen "+v+"\n"), 0o644)
			os.Rename(tmp, filepath.Join(dir, "cgroup.events"))
		}
	}()
}

func TestV2FreezeOverFakeTree(t *testing.T) {
	root := fakeV2(t, "/shoal/c1")
	dir := filepath.Join(root, "shoal/c1")
	os.WriteFile(filepath.Join(dir, "cgroup.freeze"), []byte("0\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "cgroup.events"), []byte("populated 1\nfrozen 0\n"), 0o644)
	m, err := New(Unified, root, "/shoal/c1")
	if err != nil {
		t.Fatal(err)
	}
	fz := m.(*v2)

	// Without a kernel to answer, Freeze gives up with its context and
	// leaves the cgroup thawed, not half frozen.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	err = fz.Freeze(ctx)
	cancel()
	if err == nil || !strings.Contains(err.Error(), "not frozen yet") {
		t.Fatalf("Freeze with no answer: %v", err)
	}
	if got := strings.TrimSpace(read(t, filepath.Join(dir, "cgroup.freeze"))); got != "0" {
		t.Fatalf("cgroup.freeze left at %q after a failed freeze", got)
	}

	stop := make(chan struct{})
	defer close(stop)
	fakeKernel(t, dir, stop)
	if err := fz.Freeze(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(read(t, filepath.Join(dir, "cgroup.freeze"))); got != "1" {
		t.Fatalf("cgroup.freeze = %q while frozen", got)
	}
	if f, err := v2Frozen(dir); err != nil || !f {
		t.Fatalf("Freeze returned before cgroup.events said frozen: %v %v", f, err)
	}
	if err := fz.Thaw(); err != nil {
		t.Fatal(err)
	}
	if f, _ := v2Frozen(dir); f {
		t.Fatal("Thaw returned while still frozen")
	}

	os.WriteFile(filepath.Join(dir, "cgroup.events"), []byte("populated 1\n"), 0o644)
	os.Remove(filepath.Join(dir, "cgroup.freeze"))
	if err := fz.Freeze(context.Background()); err == nil {
		t.Fatal("Freeze without cgroup.freeze succeeded")
	}
}

// cpuTicks is a process's user+system time in clock ticks.
func cpuTicks(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b)[strings.LastIndexByte(string(b), ')')+1:])
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

// TestV1FreezeReal freezes a busy process in a real v1 freezer cgroup: it
// gets no CPU while frozen and runs again once thawed.
func TestV1FreezeReal(t *testing.T) {
	mode := Detect()
	if mode != Legacy && mode != Hybrid {
		t.Skipf("host cgroups are %v, not v1", mode)
	}
	m, err := New(mode, DefaultRoot, fmt.Sprintf("/shoal-freezetest-%d", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	fz := m.(*v1)
	freezeBusy(t, m, fz, func() string {
		return strings.TrimSpace(read(t, filepath.Join(fz.dirs["freezer"], "freezer.state")))
	}, "FROZEN")
}

// TestV2FreezeReal does the same in a real cgroup v2 tree: the host's, or
// the controller-less unified tree of a hybrid host (cgroup.freeze is a core
// file, there without controllers).
func TestV2FreezeReal(t *testing.T) {
	root := DefaultRoot
	switch Detect() {
	case Hybrid:
		root = filepath.Join(DefaultRoot, "unified")
	case Unified:
	default:
		t.Skip("no cgroup v2 tree on this host")
	}
	m, err := New(Unified, root, fmt.Sprintf("/shoal-freezetest2-%d", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	fz := m.(*v2)
	freezeBusy(t, m, fz, func() string {
		f, err := v2Frozen(fz.dir)
		if err != nil {
			t.Fatal(err)
		}
		return strconv.FormatBool(f)
	}, "true")
}

// freezeBusy puts a busy shell loop into m and checks that it gets no CPU
// while frozen (state() reporting frozenState) and runs again once thawed.
func freezeBusy(t *testing.T, m Manager, fz interface {
	Freeze(context.Context) error
	Thaw() error
}, state func() string, frozenState string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if err := m.Create(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", "while :; do :; done")
	if err := cmd.Start(); err != nil {
		m.Destroy()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		fz.Thaw()
		cmd.Wait()
		if err := m.Destroy(); err != nil {
			t.Errorf("destroy: %v", err)
		}
	})
	if err := m.Apply(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if err := fz.Freeze(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := state(); s != frozenState {
		t.Fatalf("state %q after Freeze", s)
	}
	before := cpuTicks(t, cmd.Process.Pid)
	time.Sleep(300 * time.Millisecond)
	if after := cpuTicks(t, cmd.Process.Pid); after != before {
		t.Fatalf("a frozen process ran: %d -> %d ticks", before, after)
	}
	if err := fz.Thaw(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for cpuTicks(t, cmd.Process.Pid) == before {
		if time.Now().After(deadline) {
			t.Fatal("the process did not run again after Thaw")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
