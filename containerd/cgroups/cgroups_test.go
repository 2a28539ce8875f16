package cgroups

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func i64(v int64) *int64   { return &v }
func u64(v uint64) *uint64 { return &v }

// fakeV2 lays out what the kernel would show for a v2 cgroup at path: the
// root's controller files and, in every directory down to the leaf, the
// interface files the tests write.
func fakeV2(t *testing.T, path string) string {
	t.Helper()
	root := t.TempDir()
	write := func(dir, name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dir := root
	parts := append([]string{""}, strings.Split(strings.Trim(path, "/"), "/")...)
	for i, p := range parts {
		dir = filepath.Join(dir, p)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		write(dir, "cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc")
		write(dir, "cgroup.subtree_control", "")
		if i == len(parts)-1 {
			for _, f := range []string{"cgroup.procs", "memory.max", "memory.swap.max", "memory.low",
				"cpu.weight", "cpu.max", "cpuset.cpus", "cpuset.mems", "pids.max", "cgroup.kill"} {
				write(dir, f, "")
			}
			write(dir, "memory.events", "low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\noom_group_kill 0\n")
			write(dir, "memory.current", "12345\n")
			write(dir, "pids.current", "3\n")
			write(dir, "cpu.stat", "usage_usec 1500\nuser_usec 1000\n")
		}
	}
	write(root, "cgroup.procs", "")
	return root
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDetectFakeTrees(t *testing.T) {
	v2 := fakeV2(t, "/x")
	if m := DetectAt(v2); m != Unified {
		t.Errorf("fake v2 detected as %v", m)
	}
	v1 := t.TempDir()
	for _, d := range []string{"memory", "cpu", "unified"} {
		os.MkdirAll(filepath.Join(v1, d), 0o755)
	}
	if m := DetectAt(v1); m != Legacy {
		t.Errorf("fake v1 detected as %v", m)
	}
	os.WriteFile(filepath.Join(v1, "unified", "cgroup.procs"), nil, 0o644)
	if m := DetectAt(v1); m != Hybrid {
		t.Errorf("fake hybrid detected as %v", m)
	}
	if m := DetectAt(filepath.Join(v1, "missing")); m != Unavailable {
		t.Errorf("missing root detected as %v", m)
	}
}

func TestV2OverFakeTree(t *testing.T) {
	root := fakeV2(t, "/shoal/c1")
	m, err := New(Unified, root, "shoal/c1")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Create(); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{root, filepath.Join(root, "shoal")} {
		if got := read(t, filepath.Join(dir, "cgroup.subtree_control")); got != "+cpuset +cpu +memory +pids" {
			t.Errorf("%s subtree_control = %q", dir, got)
		}
	}
	err = m.Set(&specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: i64(64 << 20), Swap: i64(96 << 20), Reservation: i64(32 << 20)},
		CPU:    &specs.LinuxCPU{Shares: u64(1024), Quota: i64(50000), Period: u64(100000), Cpus: "0-1", Mems: "0"},
		Pids:   &specs.LinuxPids{Limit: i64(0)},
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "shoal/c1")
	want := map[string]string{
		"memory.max": "67108864", "memory.swap.max": "33554432", "memory.low": "33554432",
		"cpu.weight": "39", "cpu.max": "50000 100000", "cpuset.cpus": "0-1", "cpuset.mems": "0",
		"pids.max": "0",
	}
	for f, v := range want {
		if got := read(t, filepath.Join(dir, f)); got != v {
			t.Errorf("%s = %q, want %q", f, got, v)
		}
	}
	// Unlimited values.
	if err := m.Set(&specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: i64(-1), Swap: i64(-1)},
		CPU:    &specs.LinuxCPU{Quota: i64(-1)},
		Pids:   &specs.LinuxPids{Limit: i64(-1)},
	}); err != nil {
		t.Fatal(err)
	}
	for f, v := range map[string]string{"memory.max": "max", "memory.swap.max": "max", "cpu.max": "max 100000", "pids.max": "max"} {
		if got := read(t, filepath.Join(dir, f)); got != v {
			t.Errorf("%s = %q, want %q", f, got, v)
		}
	}
	if err := m.Apply(4242); err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(dir, "cgroup.procs")); got != "4242" {
		t.Errorf("cgroup.procs = %q", got)
	}
	if n, err := m.OOMKillCount(); err != nil || n != 2 {
		t.Errorf("OOMKillCount = %d, %v; want 2", n, err)
	}
	st, err := m.Stats()
	if err != nil || st.MemoryUsage != 12345 || st.PidsCurrent != 3 || st.CPUUsage != 1500000 || st.OOMKills != 2 {
		t.Errorf("Stats = %+v, %v", st, err)
	}
	if err := m.Kill(unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(dir, "cgroup.kill")); got != "1" {
		t.Errorf("cgroup.kill = %q", got)
	}
	if err := m.Destroy(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cgroup dir left: %v", err)
	}
	if err := m.Destroy(); err != nil {
		t.Errorf("second Destroy: %v", err)
	}
}

func TestV2Invalid(t *testing.T) {
	root := fakeV2(t, "/c")
	m, _ := New(Unified, root, "/c")
	if err := m.Set(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(100), Swap: i64(50)}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("swap < limit: %v", err)
	}
	if _, err := New(Unified, root, "/"); !errors.Is(err, ErrInvalid) {
		t.Errorf("root path: %v", err)
	}
	if _, err := New(Unavailable, root, "/x"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("unavailable: %v", err)
	}
}

func TestConversions(t *testing.T) {
	for shares, w := range map[uint64]uint64{2: 1, 1024: 39, 262144: 10000, 0: 0, 1: 1, 1 << 20: 10000} {
		if got := ConvertSharesToWeight(shares); got != w {
			t.Errorf("weight(%d) = %d, want %d", shares, got, w)
		}
	}
	for _, c := range []struct {
		swap, limit int64
		want        string
		ok          bool
	}{{-1, 100, "max", true}, {0, 100, "", true}, {300, 100, "200", true}, {50, 100, "", false}, {300, -1, "", false}} {
		got, err := ConvertSwapToV2(c.swap, c.limit)
		if got != c.want || (err == nil) != c.ok {
			t.Errorf("swap(%d,%d) = %q, %v", c.swap, c.limit, got, err)
		}
	}
	r, err := deviceRule(specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: i64(1), Access: "rw"})
	if err != nil || r != "c 1:* rw" {
		t.Errorf("deviceRule = %q, %v", r, err)
	}
	if _, err := deviceRule(specs.LinuxDeviceCgroup{Type: "x"}); err == nil {
		t.Error("bad device type accepted")
	}
}

// TestV1CpusetInheritedAtMkdir: the first leaf under a new parent fills the
// cpuset levels by hand and asks the kernel to fill the next leaves at their
// mkdir (cgroup.clone_children), so that no start writes cpuset.cpus, whose
// every write rebuilds the scheduler's domains over all cpusets.
func TestV1CpusetInheritedAtMkdir(t *testing.T) {
	mode := Detect()
	if mode != Legacy && mode != Hybrid {
		t.Skipf("host cgroups are %v, not v1", mode)
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	parent := fmt.Sprintf("/shoal-cgset-%d", os.Getpid())
	t.Cleanup(func() {
		for _, pat := range []string{"*/" + parent + "/*", "*/" + parent, "*/" + parent + "-top"} {
			dirs, _ := filepath.Glob(filepath.Join(DefaultRoot, pat))
			for _, d := range dirs {
				unix.Rmdir(d)
			}
		}
	})
	// The hierarchy's root keeps the host's setting, also when a leaf is
	// made right under it.
	rootSetting := filepath.Join(DefaultRoot, "cpuset", "cgroup.clone_children")
	before := read(t, rootSetting)
	var ms []Manager
	for _, path := range []string{parent + "/c1", parent + "/c2", parent + "-top"} {
		m, err := New(mode, DefaultRoot, path)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Create(); err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	dir := filepath.Join(DefaultRoot, "cpuset", parent)
	if got := strings.TrimSpace(read(t, filepath.Join(dir, "cgroup.clone_children"))); got != "1" {
		t.Errorf("%s/cgroup.clone_children = %q, want 1", dir, got)
	}
	for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
		want := strings.TrimSpace(read(t, filepath.Join(dir, f)))
		for _, leaf := range []string{"c1", "c2"} {
			if got := strings.TrimSpace(read(t, filepath.Join(dir, leaf, f))); got == "" || got != want {
				t.Errorf("%s/%s = %q, want the parent's %q", leaf, f, got, want)
			}
		}
	}
	if after := read(t, rootSetting); after != before {
		t.Errorf("%s changed from %q to %q", rootSetting, before, after)
	}
	for _, m := range ms {
		if err := m.Destroy(); err != nil {
			t.Error(err)
		}
	}
}

// TestV1Real runs against the host's cgroup v1 hierarchies.
func TestV1Real(t *testing.T) {
	mode := Detect()
	if mode != Legacy && mode != Hybrid {
		t.Skipf("host cgroups are %v, not v1", mode)
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	parent := fmt.Sprintf("/shoal-cgtest-%d", os.Getpid())
	t.Cleanup(func() {
		dirs, _ := filepath.Glob(filepath.Join(DefaultRoot, "*", parent, "*"))
		for _, d := range dirs {
			if fi, err := os.Stat(d); err == nil && fi.IsDir() {
				unix.Rmdir(d)
			}
		}
		dirs, _ = filepath.Glob(filepath.Join(DefaultRoot, "*", parent))
		for _, d := range dirs {
			unix.Rmdir(d)
		}
	})
	m, err := New(mode, DefaultRoot, parent+"/c1")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Create(); err != nil {
		t.Fatal(err)
	}
	res := &specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: i64(32 << 20), Swap: i64(64 << 20), Reservation: i64(16 << 20)},
		CPU:    &specs.LinuxCPU{Shares: u64(512), Quota: i64(20000), Period: u64(100000), Cpus: "0", Mems: "0"},
		Pids:   &specs.LinuxPids{Limit: i64(10)},
		Devices: []specs.LinuxDeviceCgroup{
			{Allow: false, Access: "rwm"},
			{Allow: true, Type: "c", Major: i64(1), Minor: i64(3), Access: "rwm"},
		},
	}
	if err := m.Set(res); err != nil {
		t.Fatal(err)
	}
	check := func(ctrl, file, want string) {
		t.Helper()
		got := strings.TrimSpace(read(t, filepath.Join(DefaultRoot, ctrl, parent, "c1", file)))
		if got != want {
			t.Errorf("%s/%s = %q, want %q", ctrl, file, got, want)
		}
	}
	check("memory", "memory.limit_in_bytes", "33554432")
	if _, err := os.Stat(filepath.Join(DefaultRoot, "memory", parent, "c1", "memory.memsw.limit_in_bytes")); err == nil {
		check("memory", "memory.memsw.limit_in_bytes", "67108864")
	}
	check("memory", "memory.soft_limit_in_bytes", "16777216")
	check("cpu", "cpu.shares", "512")
	check("cpu", "cpu.cfs_quota_us", "20000")
	check("cpuset", "cpuset.cpus", "0")
	check("pids", "pids.max", "10")
	check("devices", "devices.list", "c 1:3 rwm")
	var progs []ProgramID
	if mode == Hybrid {
		// The unified cgroup gets the rules as a device program too.
		if progs, err = DeviceProgramIDs(filepath.Join(DefaultRoot, "unified", parent, "c1")); err != nil || len(progs) != 1 {
			t.Errorf("device programs on the unified cgroup: %v, %v", progs, err)
		}
	}

	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	if err := m.Apply(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	pids, err := m.Pids()
	if err != nil || len(pids) != 1 || pids[0] != cmd.Process.Pid {
		t.Errorf("Pids = %v, %v", pids, err)
	}
	if n, err := m.OOMKillCount(); err != nil || n != 0 {
		t.Errorf("OOMKillCount = %d, %v", n, err)
	}
	st, err := m.Stats()
	if err != nil || st.PidsCurrent != 1 || st.MemoryLimit != 32<<20 {
		t.Errorf("Stats = %+v, %v", st, err)
	}
	if err := m.Destroy(); err == nil {
		t.Error("Destroy succeeded with a process inside")
	}
	if err := m.Kill(unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if err := m.Destroy(); err != nil {
		t.Fatal(err)
	}
	if dirs, _ := filepath.Glob(filepath.Join(DefaultRoot, "*", parent, "c1")); len(dirs) != 0 {
		t.Errorf("left: %v", dirs)
	}
	// The cgroup released its reference; the process's cache of loaded
	// programs (devicePrograms) holds the other.
	devicePrograms.closeAll()
	for _, id := range progs {
		waitProgramGone(t, id)
	}
}

// A write the kernel refuses is an error naming the file and the value,
// not a crash (/dev/full refuses every write with ENOSPC, as a cpuset or a
// memory limit can refuse a value).
func TestWriteFileRefused(t *testing.T) {
	err := writeFile("/dev", "full", "1")
	if err == nil || !strings.Contains(err.Error(), `"1" to /dev/full`) || !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("write to /dev/full: %v", err)
	}
	if _, err := readFile(t.TempDir(), "missing"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("read of a missing file: %v", err)
	}
}
