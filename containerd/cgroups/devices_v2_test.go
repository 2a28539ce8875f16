package cgroups

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// probeEnv makes the test binary a device probe (see probeMain).
const probeEnv = "SHOAL_CGROUPS_DEVICE_PROBE"

func TestMain(m *testing.M) {
	if os.Getenv(probeEnv) != "" {
		probeMain(os.Args[1:])
	}
	os.Exit(m.Run())
}

// probeMain runs in a process cloned into the cgroup under test. args are a
// directory followed by operations "ACCESS:TYPE:MAJOR:MINOR": access "m"
// makes a new node, "r", "w" or "rw" opens the node that the test made
// beforehand (outside the cgroup) in the directory. It prints one result per
// operation: "ok" or the errno's name.
func probeMain(args []string) {
	dir := args[0]
	for i, op := range args[1:] {
		access, node, _ := strings.Cut(op, ":")
		var err error
		switch access {
		case "m":
			typ, dev := parseNode(node)
			err = unix.Mknod(filepath.Join(dir, fmt.Sprintf("new%d", i)), typ|0o600, int(dev))
		default:
			flags := map[string]int{"r": unix.O_RDONLY, "w": unix.O_WRONLY, "rw": unix.O_RDWR}[access]
			var fd int
			// O_NONBLOCK: a tty or a FIFO-like driver must not hang the probe.
			fd, err = unix.Open(filepath.Join(dir, nodeName(node)), flags|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
			if err == nil {
				unix.Close(fd)
			}
		}
		if err == nil {
			fmt.Println("ok")
		} else {
			fmt.Println(unix.ErrnoName(err.(syscall.Errno)))
		}
	}
	os.Exit(0)
}

// parseNode reads "TYPE:MAJOR:MINOR" into a mode type and a device number.
func parseNode(node string) (uint32, uint64) {
	f := strings.Split(node, ":")
	major, _ := strconv.ParseUint(f[1], 10, 32)
	minor, _ := strconv.ParseUint(f[2], 10, 32)
	typ := uint32(unix.S_IFCHR)
	if f[0] == "b" {
		typ = unix.S_IFBLK
	}
	return typ, unix.Mkdev(uint32(major), uint32(minor))
}

func nodeName(node string) string { return strings.ReplaceAll(node, ":", "_") }

// unifiedRoot is a real cgroup v2 tree on this host (the whole tree on a v2
// host, the controller-less one of a hybrid host), or the test is skipped.
func unifiedRoot(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	switch Detect() {
	case Unified:
		return DefaultRoot
	case Hybrid:
		return filepath.Join(DefaultRoot, "unified")
	}
	t.Skip("no cgroup v2 tree on this host")
	return ""
}

// testCgroup makes an empty cgroup under a parent of this test process's
// own, removed with the parent when the test ends.
func testCgroup(t *testing.T, root, name string) string {
	t.Helper()
	parent := filepath.Join(root, fmt.Sprintf("shoal-devtest-%d", os.Getpid()))
	dir := filepath.Join(parent, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		subs, _ := filepath.Glob(filepath.Join(dir, "*"))
		for _, s := range subs {
			if fi, err := os.Stat(s); err == nil && fi.IsDir() {
				unix.Rmdir(s)
			}
		}
		unix.Rmdir(dir)
		unix.Rmdir(parent) // fails while another test's cgroup is there
	})
	return dir
}

// probe runs the test binary as a device probe cloned into the cgroup dir,
// after making the device nodes the operations open, and returns one
// result per operation ("ok" or an errno name).
func probe(t *testing.T, dir string, ops ...string) []string {
	t.Helper()
	nodes := t.TempDir()
	for _, op := range ops {
		access, node, _ := strings.Cut(op, ":")
		if access == "m" {
			continue
		}
		typ, dev := parseNode(node)
		err := unix.Mknod(filepath.Join(nodes, nodeName(node)), typ|0o600, int(dev))
		if err != nil && !errors.Is(err, unix.EEXIST) {
			t.Fatal(err)
		}
	}
	cg, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(cg)
	cmd := exec.Command("/proc/self/exe", append([]string{nodes}, ops...)...)
	cmd.Env = append(os.Environ(), probeEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cg}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("probe: %v: %s", err, out)
	}
	res := strings.Fields(string(out))
	if len(res) != len(ops) {
		t.Fatalf("probe printed %q for %d operations", out, len(ops))
	}
	return res
}

func dev(allow bool, typ string, major, minor int64, access string) specs.LinuxDeviceCgroup {
	r := specs.LinuxDeviceCgroup{Allow: allow, Type: typ, Access: access}
	if major != -1 {
		r.Major = i64(major)
	}
	if minor != -1 {
		r.Minor = i64(minor)
	}
	return r
}

var denyAll = specs.LinuxDeviceCgroup{Allow: false, Access: "rwm"}

// TestDeviceFilterEnforced loads the program of each rule list into a real
// cgroup v2 and checks, from a process in that cgroup, which mknod and open
// calls the kernel lets through. Only EPERM is the device cgroup's refusal:
// a block device 8:0 that the program lets through fails with ENXIO here
// (no such disk) — that still is "passed".
func TestDeviceFilterEnforced(t *testing.T) {
	root := unifiedRoot(t)
	const (
		nullR  = "r:c:1:3"
		nullW  = "w:c:1:3"
		zeroR  = "r:c:1:5"
		zeroW  = "w:c:1:5"
		zeroRW = "rw:c:1:5"
		memR   = "r:c:1:1"
		kmsgW  = "w:c:1:11"
		sdaR   = "r:b:8:0"
		mkSda  = "m:b:8:0"
		mkNull = "m:c:1:3"
		mkMem  = "m:c:1:1"
	)
	cases := []struct {
		name  string
		rules []specs.LinuxDeviceCgroup
		want  map[string]bool // operation -> let through
	}{
		{"deny all, allow null", []specs.LinuxDeviceCgroup{denyAll, dev(true, "c", 1, 3, "rwm")},
			map[string]bool{nullR: true, nullW: true, mkNull: true, zeroR: false, memR: false, kmsgW: false, sdaR: false, mkSda: false, mkMem: false}},
		{"docker's defaults: mknod anything, open the listed", []specs.LinuxDeviceCgroup{denyAll,
			dev(true, "c", -1, -1, "m"), dev(true, "b", -1, -1, "m"), dev(true, "c", 1, 3, "rwm"), dev(true, "c", 1, 5, "rwm")},
			map[string]bool{mkSda: true, mkMem: true, sdaR: false, memR: false, kmsgW: false, nullR: true, zeroRW: true}},
		{"a later wildcard deny wins", []specs.LinuxDeviceCgroup{dev(true, "c", 1, 5, "rwm"), dev(false, "c", -1, -1, "rwm")},
			map[string]bool{zeroR: false, nullR: false, sdaR: true, mkSda: true}},
		{"a later allow wins", []specs.LinuxDeviceCgroup{dev(false, "c", -1, -1, "rwm"), dev(true, "c", 1, 5, "r")},
			map[string]bool{zeroR: true, zeroW: false, zeroRW: false, nullR: false}},
		{"access bits from two rules", []specs.LinuxDeviceCgroup{denyAll, dev(true, "c", 1, 5, "r"), dev(true, "c", 1, -1, "w")},
			map[string]bool{zeroRW: true, nullW: true, nullR: false, mkNull: false}},
		{"one bit denied, no reset", []specs.LinuxDeviceCgroup{dev(false, "c", 1, 5, "w")},
			map[string]bool{zeroR: true, zeroW: false, zeroRW: false, nullW: true, sdaR: true, mkSda: true}},
		{"a partial deny after an allow", []specs.LinuxDeviceCgroup{denyAll, dev(true, "c", 1, 5, "rwm"), dev(false, "c", 1, 5, "w")},
			map[string]bool{zeroR: true, zeroW: false}},
		{"allow a after deny a", []specs.LinuxDeviceCgroup{denyAll, dev(true, "c", 1, 3, "r"), {Allow: true, Type: "a"}},
			map[string]bool{memR: true, kmsgW: true, sdaR: true, mkSda: true}},
		{"deny a last", []specs.LinuxDeviceCgroup{dev(true, "c", 1, 3, "rwm"), {Allow: false, Type: "a", Access: "r"}},
			map[string]bool{nullR: false, nullW: false, mkNull: false}},
		{"block major only", []specs.LinuxDeviceCgroup{denyAll, dev(true, "b", 8, -1, "r")},
			map[string]bool{sdaR: true, mkSda: false, nullR: false}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := testCgroup(t, root, fmt.Sprintf("c%d", i))
			if err := attachDeviceFilter(dir, c.rules); err != nil {
				t.Fatal(err)
			}
			var ops []string
			for op := range c.want {
				ops = append(ops, op)
			}
			got := probe(t, dir, ops...)
			for j, op := range ops {
				if passed := got[j] != "EPERM"; passed != c.want[op] {
					t.Errorf("%s: got %s, want let through = %v", op, got[j], c.want[op])
				}
			}
		})
	}
}

// TestDeviceFilterAncestorsAndReplace checks that a container's program does
// not lift its ancestors' rules (BPF_F_ALLOW_MULTI), that setting rules
// again replaces the program instead of stacking a second one, and that a
// cgroup with no program lets everything through (the control: the probe
// can open what the programs refuse).
func TestDeviceFilterAncestorsAndReplace(t *testing.T) {
	root := unifiedRoot(t)
	parent := testCgroup(t, root, "ancestor")
	child := filepath.Join(parent, "child")
	if err := os.Mkdir(child, 0o755); err != nil {
		t.Fatal(err)
	}
	if got := probe(t, child, "r:c:1:5", "r:c:1:3"); got[0] != "ok" || got[1] != "ok" {
		t.Fatalf("no program: %v", got)
	}
	if err := attachDeviceFilter(parent, []specs.LinuxDeviceCgroup{dev(false, "c", 1, 5, "rwm")}); err != nil {
		t.Fatal(err)
	}
	if err := attachDeviceFilter(child, []specs.LinuxDeviceCgroup{{Allow: true, Type: "a"}}); err != nil {
		t.Fatal(err)
	}
	if got := probe(t, child, "r:c:1:5", "r:c:1:3"); got[0] != "EPERM" || got[1] != "ok" {
		t.Errorf("child allows all under a parent denying 1:5: %v", got)
	}
	// Replace the child's rules twice: one program, the last rules.
	for _, rules := range [][]specs.LinuxDeviceCgroup{
		{dev(false, "c", 1, 3, "r")},
		{dev(false, "c", 1, 3, "w")},
	} {
		if err := attachDeviceFilter(child, rules); err != nil {
			t.Fatal(err)
		}
	}
	if ids, err := DeviceProgramIDs(child); err != nil || len(ids) != 1 {
		t.Errorf("child's programs after three Sets: %v, %v", ids, err)
	}
	if got := probe(t, child, "r:c:1:3", "w:c:1:3"); got[0] != "ok" || got[1] != "EPERM" {
		t.Errorf("after replacing the rules: %v, want ok EPERM", got)
	}
}

// TestV2ManagerDevices drives the v2 Manager on the real unified tree:
// Set attaches the program, invalid rules are refused with nothing
// attached, and Destroy (rmdir) releases the program: no leak.
func TestV2ManagerDevices(t *testing.T) {
	root := unifiedRoot(t)
	path := fmt.Sprintf("shoal-devtest-%d/mgr", os.Getpid())
	testCgroup(t, root, "mgr") // cleanup only; Create is idempotent
	m, err := New(Unified, root, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Create(); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, path)
	for _, bad := range []specs.LinuxDeviceCgroup{
		{Type: "x"}, {Type: "c", Access: "rwx"}, {Type: "b", Major: i64(-2)}, {Type: "c", Minor: i64(1 << 40)},
	} {
		if err := m.Set(&specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{denyAll, bad}}); !errors.Is(err, ErrInvalid) {
			t.Errorf("rule %+v: %v, want ErrInvalid", bad, err)
		}
	}
	if ids, err := DeviceProgramIDs(dir); err != nil || len(ids) != 0 {
		t.Fatalf("programs after invalid rules: %v, %v", ids, err)
	}
	if err := m.Set(&specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{denyAll, dev(true, "c", 1, 3, "rwm")}}); err != nil {
		t.Fatal(err)
	}
	ids, err := DeviceProgramIDs(dir)
	if err != nil || len(ids) != 1 {
		t.Fatalf("programs after Set: %v, %v", ids, err)
	}
	if got := probe(t, dir, "r:c:1:3", "r:c:1:5"); got[0] != "ok" || got[1] != "EPERM" {
		t.Errorf("through the Manager: %v", got)
	}
	// The control for the leak check: the program is there by its ID.
	p, err := ebpf.NewProgramFromID(ebpf.ProgramID(ids[0]))
	if err != nil {
		t.Fatalf("attached program %d not found by ID: %v", ids[0], err)
	}
	p.Close()
	// A second cgroup with the same rules gets the same program, loaded
	// once; a Set of the same rules again keeps it, alone and in force.
	other := testCgroup(t, root, "mgr-other")
	if err := attachDeviceFilter(other, []specs.LinuxDeviceCgroup{denyAll, dev(true, "c", 1, 3, "rwm")}); err != nil {
		t.Fatal(err)
	}
	if got, err := DeviceProgramIDs(other); err != nil || len(got) != 1 || got[0] != ids[0] {
		t.Errorf("the same rules on another cgroup: programs %v, %v; want %v", got, err, ids[0])
	}
	if err := m.Set(&specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{denyAll, dev(true, "c", 1, 3, "rwm")}}); err != nil {
		t.Fatalf("the same rules again: %v", err)
	}
	if got, err := DeviceProgramIDs(dir); err != nil || len(got) != 1 || got[0] != ids[0] {
		t.Errorf("programs after the same Set again: %v, %v; want %v", got, err, ids[0])
	}
	if got := probe(t, dir, "r:c:1:3", "r:c:1:5"); got[0] != "ok" || got[1] != "EPERM" {
		t.Errorf("after the same Set again: %v", got)
	}
	if err := m.Destroy(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(other); err != nil {
		t.Fatal(err)
	}
	// Without the cache's reference nothing holds the program: the removed
	// cgroups released theirs.
	devicePrograms.closeAll()
	waitProgramGone(t, ids[0])
}

// waitProgramGone waits for the kernel to free a program once its cgroup is
// gone (the release runs from a workqueue after rmdir).
func waitProgramGone(t *testing.T, id ProgramID) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
		if errors.Is(err, os.ErrNotExist) {
			return
		}
		if err == nil {
			p.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("device program %d still loaded 10s after its cgroup was removed: %v", id, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDevicesRefusedWhenUnenforceable: a v2 host whose cgroup takes no
// program, a v1 host without a devices hierarchy, and a hybrid one with
// neither refuse device rules (fake trees: the kernel here takes programs,
// and a plain directory does not).
func TestDevicesRefusedWhenUnenforceable(t *testing.T) {
	v2m, err := New(Unified, fakeV2(t, "/c"), "/c")
	if err != nil {
		t.Fatal(err)
	}
	managers := map[string]Manager{"v2": v2m}
	for _, hybrid := range []bool{false, true} {
		root := t.TempDir()
		for _, d := range []string{"memory", "pids", "unified/c"} {
			if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		managers[fmt.Sprintf("v1 hybrid=%v", hybrid)] = newV1(root, "/c", hybrid)
	}
	for name, m := range managers {
		err := m.Set(&specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{denyAll}})
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "device rules cannot be enforced") {
			t.Errorf("%s: %v, want ErrUnavailable: device rules cannot be enforced", name, err)
		}
		// Without rules there is nothing to enforce.
		if err := m.Set(&specs.LinuxResources{}); err != nil {
			t.Errorf("%s, no rules: %v", name, err)
		}
	}
}

// TestDeviceProgramOutlivesEviction: a program handed out by the cache stays
// usable after the cache drops its own descriptors (an eviction by another
// container's start between get and attach), and is released once the
// holder closes it.
func TestDeviceProgramOutlivesEviction(t *testing.T) {
	unifiedRoot(t)
	insns, err := deviceFilter([]specs.LinuxDeviceCgroup{denyAll, dev(true, "c", 1, 7, "r")})
	if err != nil {
		t.Fatal(err)
	}
	p, err := devicePrograms.get(insns)
	if err != nil {
		t.Fatal(err)
	}
	devicePrograms.closeAll()
	// A descriptor opened now would take the number the cache's one had.
	f, err := os.Open("/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	id, err := programID(p.fd)
	if err != nil || id != p.id {
		unix.Close(p.fd)
		t.Fatalf("handed-out program after the cache's eviction: id %d, %v; want %d", id, err, p.id)
	}
	unix.Close(p.fd)
	waitProgramGone(t, p.id)
}
