// Package cgroups creates, configures and removes the control group of one
// container, on cgroup v1 (legacy and hybrid hosts) and cgroup v2.
//
// A Manager owns one cgroup path. On v1 that path exists once per controller
// hierarchy (memory, cpu, cpuacct, pids, cpuset, devices, freezer) and, on a
// hybrid host, once more in the unified hierarchy, which gives process tracking
// and cgroup.kill but no limits. On v2 it is a single directory whose parent
// delegates the memory, pids, cpu and cpuset controllers.
//
// The mount root is a parameter (normally /sys/fs/cgroup) so that the v2 code
// can be exercised over a plain directory tree where no v2 controllers exist.
// Files are written directly (no systemd, no D-Bus): container start latency
// depends on it.
//
// Device rules are written to the v1 devices controller and, on v2 and on a
// hybrid host's unified cgroup, compiled into an eBPF device program
// attached to the cgroup (devices_v2.go); rules that neither can enforce
// are refused.
//
// Not done: hugetlb, blkio/io and rdma limits are ignored on both versions.
package cgroups

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Mode is the cgroup layout of a host.
type Mode int

const (
	// Unavailable means no cgroup filesystem was found.
	Unavailable Mode = iota
	// Legacy is cgroup v1 only.
	Legacy
	// Hybrid is cgroup v1 for controllers plus a controller-less v2 tree at
	// <root>/unified. It is managed like Legacy, joining the unified tree too.
	Hybrid
	// Unified is cgroup v2.
	Unified
)

func (m Mode) String() string {
	switch m {
	case Legacy:
		return "v1"
	case Hybrid:
		return "hybrid"
	case Unified:
		return "v2"
	}
	return "unavailable"
}

// DefaultRoot is where the cgroup filesystems are mounted.
const DefaultRoot = "/sys/fs/cgroup"

// Errors returned by this package, wrapped with context.
var (
	ErrInvalid     = errors.New("cgroups: invalid argument")
	ErrUnavailable = errors.New("cgroups: controller unavailable")
)

// Stats is a snapshot of a cgroup's usage.
type Stats struct {
	MemoryUsage uint64 // bytes, current
	// MemoryMaxUsage is the peak usage (v1's max_usage_in_bytes; 0 on v2,
	// whose memory.peak older kernels lack and dockerd does not show).
	MemoryMaxUsage uint64
	MemoryLimit    uint64 // bytes; 0 when unlimited or unknown
	PidsCurrent    uint64
	CPUUsage       uint64 // nanoseconds of CPU time
	OOMKills       uint64
	// CPUUser and CPUSystem split CPUUsage (nanoseconds; v1 counts in
	// clock ticks, so they are coarser there).
	CPUUser, CPUSystem uint64
	// PidsLimit is pids.max; 0 when unlimited.
	PidsLimit uint64
	// MemoryStat is memory.stat as the kernel writes it (v1 and v2 keys
	// differ: total_inactive_file on v1, inactive_file on v2).
	MemoryStat map[string]uint64
}

// readFlat parses a flat-keyed file ("key value" lines) such as memory.stat.
func readFlat(dir, name string) (map[string]uint64, error) {
	s, err := readFile(dir, name)
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		if v, err := strconv.ParseUint(f[1], 10, 64); err == nil {
			out[f[0]] = v
		}
	}
	return out, nil
}

// Manager drives one container's cgroup.
type Manager interface {
	// Create makes the cgroup directories (idempotent).
	Create() error
	// Apply moves the process pid (all its threads) into the cgroup.
	Apply(pid int) error
	// Set writes the limits of r; nil fields are left alone.
	Set(r *specs.LinuxResources) error
	// OOMKillCount is how many processes the kernel OOM killer killed in
	// this cgroup since it was created.
	OOMKillCount() (uint64, error)
	// Stats reports usage counters.
	Stats() (Stats, error)
	// Kill sends sig to every process in the cgroup.
	Kill(sig unix.Signal) error
	// Pids lists the processes in the cgroup.
	Pids() ([]int, error)
	// Destroy removes the cgroup, retrying while processes drain out of
	// it. A missing cgroup is not an error.
	Destroy() error
	// Path is the cgroup path, relative to the hierarchy root.
	Path() string
}

// Detect reports the layout of the host's cgroup mount at DefaultRoot.
func Detect() Mode { return DetectAt(DefaultRoot) }

// DetectAt reports the cgroup layout of the tree mounted (or faked) at root.
// A real mount is recognised by its filesystem magic; a plain directory (used
// by tests) by the presence of cgroup.controllers (v2) or of per-controller
// subdirectories (v1).
func DetectAt(root string) Mode {
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil {
		return Unavailable
	}
	switch st.Type {
	case unix.CGROUP2_SUPER_MAGIC:
		return Unified
	case unix.TMPFS_MAGIC:
		var ust unix.Statfs_t
		if unix.Statfs(filepath.Join(root, "unified"), &ust) == nil && ust.Type == unix.CGROUP2_SUPER_MAGIC {
			return Hybrid
		}
		return Legacy
	}
	if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); err == nil {
		return Unified
	}
	if _, err := os.Stat(filepath.Join(root, "memory")); err == nil {
		if _, err := os.Stat(filepath.Join(root, "unified", "cgroup.procs")); err == nil {
			return Hybrid
		}
		return Legacy
	}
	return Unavailable
}

// New returns a Manager for the cgroup at path (relative to the hierarchy
// root, with or without a leading slash) under the tree mounted at root.
// Nothing is created until Create.
func New(mode Mode, root, path string) (Manager, error) {
	clean := filepath.Clean("/" + path)
	if clean == "/" {
		return nil, fmt.Errorf("%w: cgroup path %q is the root", ErrInvalid, path)
	}
	switch mode {
	case Legacy, Hybrid:
		return newV1(root, clean, mode == Hybrid), nil
	case Unified:
		return &v2{root: root, path: clean, dir: filepath.Join(root, clean)}, nil
	}
	return nil, fmt.Errorf("%w: no cgroup filesystem at %s", ErrUnavailable, root)
}

// writeFile writes one value to a cgroup control file. Control files exist
// already, so no O_CREAT: a missing file is reported, not silently created.
//
// The file is opened, written and closed with plain system calls: an
// *os.File registers a control file with the netpoller (kernfs files accept
// epoll), switching it to non-blocking and back, seven calls instead of
// three, and a container start writes some thirty control files. A system
// call costs about 10 µs on the paravirtualised VMs we test on.
func writeFile(dir, name, value string) error {
	p := filepath.Join(dir, name)
	fd, err := unix.Open(p, unix.O_WRONLY|unix.O_TRUNC|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("cgroups: write %s: %w", p, err)
	}
	// A control file takes a value whole or refuses it: one write.
	n, err := unix.Write(fd, []byte(value))
	if err == nil && n < len(value) {
		err = io.ErrShortWrite
	}
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("cgroups: write %q to %s: %w", value, p, err)
	}
	return nil
}

// controlFiles writes values to the control files of one directory, each
// value in a write(2) of its own, opening each file once: a file such as
// devices.allow takes one rule per write, and a container's default rules
// are fifteen of them (an open and a close each, before).
type controlFiles struct {
	dir string
	fds map[string]int
}

func (c *controlFiles) write(name, value string) error {
	p := filepath.Join(c.dir, name)
	fd, ok := c.fds[name]
	if !ok {
		var err error
		if fd, err = unix.Open(p, unix.O_WRONLY|unix.O_TRUNC|unix.O_CLOEXEC, 0); err != nil {
			return fmt.Errorf("cgroups: write %s: %w", p, err)
		}
		if c.fds == nil {
			c.fds = map[string]int{}
		}
		c.fds[name] = fd
	}
	n, err := unix.Write(fd, []byte(value))
	if err == nil && n < len(value) {
		err = io.ErrShortWrite
	}
	if err != nil {
		return fmt.Errorf("cgroups: write %q to %s: %w", value, p, err)
	}
	return nil
}

func (c *controlFiles) close() {
	for _, fd := range c.fds {
		unix.Close(fd)
	}
}

// readFile reads a control file whole, trimmed, with plain system calls
// (see writeFile).
func readFile(dir, name string) (string, error) {
	p := filepath.Join(dir, name)
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("cgroups: open %s: %w", p, err)
	}
	defer unix.Close(fd)
	// Control files are rarely over a page; cgroup.procs of a busy
	// cgroup can be, hence the loop to end of file.
	var b []byte
	for {
		b = slices.Grow(b, 512)
		n, err := unix.Read(fd, b[len(b):cap(b)])
		if err != nil {
			return "", fmt.Errorf("cgroups: read %s: %w", p, err)
		}
		if n == 0 {
			return strings.TrimSpace(string(b)), nil
		}
		b = b[:len(b)+n]
	}
}

// readKey finds "key value" in a flat-keyed file such as memory.events.
func readKey(dir, name, key string) (uint64, error) {
	s, err := readFile(dir, name)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == key {
			return strconv.ParseUint(f[1], 10, 64)
		}
	}
	return 0, nil
}

func readUint(dir, name string) (uint64, error) {
	s, err := readFile(dir, name)
	if err != nil {
		return 0, err
	}
	if s == "max" {
		return 0, nil
	}
	return strconv.ParseUint(s, 10, 64)
}

// readPids parses a cgroup.procs file.
func readPids(dir string) ([]int, error) {
	s, err := readFile(dir, "cgroup.procs")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(s) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// killPids signals each listed process; ones already gone are ignored.
func killPids(pids []int, sig unix.Signal) error {
	for _, pid := range pids {
		if err := unix.Kill(pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("cgroups: kill %d: %w", pid, err)
		}
	}
	return nil
}

// removeDir removes one cgroup directory; cgroup directories are removed with
// rmdir even though they list files. EBUSY (processes still exiting) is
// retried by the caller.
func removeDir(dir string) error {
	err := unix.Rmdir(dir)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if errors.Is(err, unix.ENOTEMPTY) {
		// A fake (test) tree holds regular files; a real cgroup with child
		// cgroups must not be removed behind their back.
		if isCgroupFS(dir) {
			return fmt.Errorf("cgroups: rmdir %s: %w", dir, err)
		}
		return os.RemoveAll(dir)
	}
	return fmt.Errorf("cgroups: rmdir %s: %w", dir, err)
}

func isCgroupFS(dir string) bool {
	var st unix.Statfs_t
	if unix.Statfs(dir, &st) != nil {
		return false
	}
	return st.Type == unix.CGROUP2_SUPER_MAGIC || st.Type == unix.CGROUP_SUPER_MAGIC
}

// ConvertSharesToWeight maps v1 cpu.shares [2, 262144] onto v2 cpu.weight
// [1, 10000] linearly (the formula runc used until 1.3; 1024 shares -> 39).
// 0 means unset.
func ConvertSharesToWeight(shares uint64) uint64 {
	if shares == 0 {
		return 0
	}
	if shares < 2 {
		shares = 2
	}
	if shares > 262144 {
		shares = 262144
	}
	return 1 + ((shares-2)*9999)/262142
}

// ConvertSwapToV2 turns the OCI memory.swap value (memory+swap, v1 style)
// into v2's memory.swap.max (swap only). -1 means unlimited.
func ConvertSwapToV2(swap, limit int64) (string, error) {
	switch {
	case swap == -1:
		return "max", nil
	case swap == 0:
		return "", nil // unset
	case limit == -1 || limit == 0:
		return "", fmt.Errorf("%w: memory.swap %d set without a memory limit", ErrInvalid, swap)
	case swap < limit:
		return "", fmt.Errorf("%w: memory.swap %d is less than memory.limit %d", ErrInvalid, swap, limit)
	}
	return strconv.FormatInt(swap-limit, 10), nil
}

func formatLimit(v int64) string {
	if v < 0 {
		return "max"
	}
	return strconv.FormatInt(v, 10)
}

// deviceRule renders one OCI device rule in the v1 devices.allow syntax.
func deviceRule(d specs.LinuxDeviceCgroup) (string, error) {
	typ := d.Type
	if typ == "" {
		typ = "a"
	}
	if typ != "a" && typ != "b" && typ != "c" {
		return "", fmt.Errorf("%w: device type %q", ErrInvalid, d.Type)
	}
	if typ == "a" {
		// "a" ignores major:minor and access.
		return "a", nil
	}
	num := func(p *int64) string {
		if p == nil || *p == -1 {
			return "*"
		}
		return strconv.FormatInt(*p, 10)
	}
	access := d.Access
	if access == "" {
		access = "rwm"
	}
	for _, c := range access {
		if c != 'r' && c != 'w' && c != 'm' {
			return "", fmt.Errorf("%w: device access %q", ErrInvalid, d.Access)
		}
	}
	return fmt.Sprintf("%s %s:%s %s", typ, num(d.Major), num(d.Minor), access), nil
}
