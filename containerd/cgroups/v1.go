package cgroups

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// v1Controllers are the hierarchies a container joins on cgroup v1.
var v1Controllers = []string{"memory", "cpu", "cpuacct", "pids", "cpuset", "devices", "freezer"}

// v1 manages one cgroup path in every v1 controller hierarchy (and in the
// unified hierarchy of a hybrid host).
type v1 struct {
	root, path string
	// dirs maps a controller name to its directory for this cgroup. Two
	// controllers co-mounted (cpu,cpuacct) share one directory.
	dirs map[string]string
	// unified is the cgroup's directory in the v2 tree of a hybrid host, or "".
	unified string
}

func newV1(root, path string, hybrid bool) *v1 {
	m := &v1{root: root, path: path, dirs: map[string]string{}}
	for _, c := range v1Controllers {
		mnt := filepath.Join(root, c)
		if _, err := os.Stat(mnt); err != nil {
			continue
		}
		m.dirs[c] = filepath.Join(mnt, path)
	}
	if hybrid {
		m.unified = filepath.Join(root, "unified", path)
	}
	return m
}

func (m *v1) Path() string { return m.path }

// uniqueDirs lists each directory once (co-mounted controllers resolve to
// the same place through the cpu -> cpu,cpuacct symlink).
func (m *v1) uniqueDirs() []string {
	seen := map[string]bool{}
	var out []string
	for _, c := range v1Controllers {
		d, ok := m.dirs[c]
		if !ok {
			continue
		}
		real := d
		// Only a symlink (cpu -> cpu,cpuacct) needs resolving: one lstat
		// instead of a walk of the whole path per controller.
		mnt := filepath.Join(m.root, c)
		if fi, err := os.Lstat(mnt); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			if r, err := filepath.EvalSymlinks(mnt); err == nil {
				real = filepath.Join(r, m.path)
			}
		}
		if seen[real] {
			continue
		}
		seen[real] = true
		out = append(out, d)
	}
	if m.unified != "" {
		out = append(out, m.unified)
	}
	return out
}

func (m *v1) Create() error {
	leafOnly := true // every parent existed: only the leaves were made
	for _, d := range m.uniqueDirs() {
		// The parent (<parent> of every container) exists but for the
		// first container: one mkdir of the leaf, and the walk from the
		// root only when the parent is missing. An existing leaf (left by
		// a crashed run) is reused, as MkdirAll would.
		err := os.Mkdir(d, 0o755)
		if errors.Is(err, os.ErrNotExist) {
			leafOnly = false
			err = os.MkdirAll(d, 0o755)
		}
		if err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("cgroups: %w", err)
		}
	}
	if d, ok := m.dirs["cpuset"]; ok {
		// A new v1 cpuset starts with empty cpus/mems and refuses tasks
		// until they are filled: copy them down from the nearest ancestor.
		// The parent of every container asks the kernel to do that at
		// mkdir (cgroup.clone_children), because a write to a leaf's
		// cpuset.cpus rebuilds the scheduler's domains, which walks every
		// cpuset of the machine: a cost per start that grows with the
		// containers running (1% of a 1,000-container convergence's CPU).
		// A leaf made without it (the parent's first, or a parent made by
		// someone else) is filled by hand: from its parent when that has
		// both, else every level from the root.
		if leafOnly {
			if inheritedCpuset(d) {
				return nil
			}
			if done, err := initCpusetLeaf(filepath.Join(m.root, "cpuset"), d); err != nil || done {
				return err
			}
		}
		if err := initCpuset(filepath.Join(m.root, "cpuset"), d); err != nil {
			return err
		}
	}
	return nil
}

// inheritedCpuset tells whether dir got both cpus and mems at its mkdir.
func inheritedCpuset(dir string) bool {
	for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
		if v, err := readFile(dir, f); err != nil || v == "" {
			return false
		}
	}
	return true
}

// initCpusetLeaf sets cpuset.cpus/mems of dir to its parent's,
// if the parent has both; done is false when it has not (the caller then
// walks from the root).
func initCpusetLeaf(mnt, dir string) (done bool, err error) {
	parent := filepath.Dir(dir)
	for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
		pv, err := readFile(parent, f)
		if err != nil || pv == "" {
			return false, nil
		}
		// Written without looking: a new leaf is empty, and a leftover
		// one gets its parent's set, as a new one would.
		if err := writeFile(dir, f, pv); err != nil {
			return false, err
		}
	}
	cloneChildren(mnt, parent)
	return true, nil
}

// cloneChildren asks the kernel to give dir's new children its cpus and
// mems. Best effort: without it each leaf is filled by hand. Never on the
// hierarchy's root (mnt), whose setting is the host's.
func cloneChildren(mnt, dir string) {
	if filepath.Clean(dir) == filepath.Clean(mnt) {
		return
	}
	_ = writeFile(dir, "cgroup.clone_children", "1")
}

// initCpuset fills empty cpuset.cpus/mems on every level from mnt to dir.
func initCpuset(mnt, dir string) error {
	rel, err := filepath.Rel(mnt, dir)
	if err != nil {
		return fmt.Errorf("cgroups: %w", err)
	}
	parent := mnt
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		cur := filepath.Join(parent, part)
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			v, err := readFile(cur, f)
			if err != nil {
				return err
			}
			if v != "" {
				continue
			}
			pv, err := readFile(parent, f)
			if err != nil {
				return err
			}
			if err := writeFile(cur, f, pv); err != nil {
				return err
			}
		}
		parent = cur
	}
	cloneChildren(mnt, filepath.Dir(dir))
	return nil
}

func (m *v1) Apply(pid int) error {
	p := strconv.Itoa(pid)
	for _, d := range m.uniqueDirs() {
		if err := writeFile(d, "cgroup.procs", p); err != nil {
			return err
		}
	}
	return nil
}

func (m *v1) dir(c string) (string, error) {
	d, ok := m.dirs[c]
	if !ok {
		return "", fmt.Errorf("%w: %s (no %s hierarchy under %s)", ErrUnavailable, c, c, m.root)
	}
	return d, nil
}

func (m *v1) Set(r *specs.LinuxResources) error {
	if r == nil {
		return nil
	}
	if r.Memory != nil {
		if err := m.setMemory(r.Memory); err != nil {
			return err
		}
	}
	if r.CPU != nil {
		if err := m.setCPU(r.CPU); err != nil {
			return err
		}
	}
	if r.Pids != nil && r.Pids.Limit != nil {
		d, err := m.dir("pids")
		if err != nil {
			return err
		}
		if err := writeFile(d, "pids.max", formatLimit(*r.Pids.Limit)); err != nil {
			return err
		}
	}
	if len(r.Devices) > 0 {
		return m.setDevices(r.Devices)
	}
	return nil
}

// setDevices writes the rules to the devices controller and, on a hybrid
// host, also attaches them as a BPF program to the cgroup in the unified tree
// (defence in depth: either one enforces them). With neither, the rules
// cannot be enforced and the container is refused.
func (m *v1) setDevices(rules []specs.LinuxDeviceCgroup) error {
	if d, ok := m.dirs["devices"]; ok {
		files := controlFiles{dir: d}
		defer files.close()
		for _, dev := range rules {
			rule, err := deviceRule(dev)
			if err != nil {
				return err
			}
			file := "devices.deny"
			if dev.Allow {
				file = "devices.allow"
			}
			if err := files.write(file, rule); err != nil {
				return err
			}
		}
		if m.unified != "" {
			// The v1 rules hold whatever the kernel thinks of the program.
			_ = attachDeviceFilter(m.unified, rules)
		}
		return nil
	}
	if m.unified == "" {
		return fmt.Errorf("%w: device rules cannot be enforced: no devices hierarchy under %s", ErrUnavailable, m.root)
	}
	if err := attachDeviceFilter(m.unified, rules); err != nil {
		return fmt.Errorf("no devices hierarchy under %s: %w", m.root, err)
	}
	return nil
}

func (m *v1) setMemory(mem *specs.LinuxMemory) error {
	d, err := m.dir("memory")
	if err != nil {
		return err
	}
	limit, swap := int64(0), int64(0)
	if mem.Limit != nil {
		limit = *mem.Limit
	}
	if mem.Swap != nil {
		swap = *mem.Swap
	}
	if swap > 0 && limit > 0 && swap < limit {
		return fmt.Errorf("%w: memory.swap %d is less than memory.limit %d", ErrInvalid, swap, limit)
	}
	setLimit := func() error {
		if limit == 0 {
			return nil
		}
		return writeFile(d, "memory.limit_in_bytes", strconv.FormatInt(limit, 10))
	}
	setSwap := func() error {
		if swap == 0 {
			return nil
		}
		if _, err := os.Stat(filepath.Join(d, "memory.memsw.limit_in_bytes")); err != nil {
			if swap == -1 {
				return nil // no swap accounting: unlimited is what we have
			}
			return fmt.Errorf("%w: memory.swap (swap accounting is off)", ErrUnavailable)
		}
		return writeFile(d, "memory.memsw.limit_in_bytes", strconv.FormatInt(swap, 10))
	}
	// memsw must stay >= limit at every step: raise memsw first when the
	// new limit exceeds the current memsw, else lower the limit first.
	first, second := setLimit, setSwap
	if cur, err := readUint(d, "memory.memsw.limit_in_bytes"); err == nil && limit > 0 && uint64(limit) > cur || swap == -1 {
		first, second = setSwap, setLimit
	}
	if err := first(); err != nil {
		return err
	}
	if err := second(); err != nil {
		return err
	}
	if mem.Reservation != nil && *mem.Reservation != 0 {
		if err := writeFile(d, "memory.soft_limit_in_bytes", strconv.FormatInt(*mem.Reservation, 10)); err != nil {
			return err
		}
	}
	if mem.Swappiness != nil && *mem.Swappiness <= 100 {
		if err := writeFile(d, "memory.swappiness", strconv.FormatUint(*mem.Swappiness, 10)); err != nil {
			return err
		}
	}
	if mem.DisableOOMKiller != nil && *mem.DisableOOMKiller {
		if err := writeFile(d, "memory.oom_control", "1"); err != nil {
			return err
		}
	}
	return nil
}

func (m *v1) setCPU(c *specs.LinuxCPU) error {
	if c.Shares != nil || c.Quota != nil || c.Period != nil {
		d, err := m.dir("cpu")
		if err != nil {
			return err
		}
		if c.Shares != nil && *c.Shares != 0 {
			if err := writeFile(d, "cpu.shares", strconv.FormatUint(*c.Shares, 10)); err != nil {
				return err
			}
		}
		if c.Period != nil && *c.Period != 0 {
			if err := writeFile(d, "cpu.cfs_period_us", strconv.FormatUint(*c.Period, 10)); err != nil {
				return err
			}
		}
		if c.Quota != nil && *c.Quota != 0 {
			if err := writeFile(d, "cpu.cfs_quota_us", strconv.FormatInt(*c.Quota, 10)); err != nil {
				return err
			}
		}
	}
	if c.Cpus != "" || c.Mems != "" {
		d, err := m.dir("cpuset")
		if err != nil {
			return err
		}
		if c.Cpus != "" {
			if err := writeFile(d, "cpuset.cpus", c.Cpus); err != nil {
				return err
			}
		}
		if c.Mems != "" {
			if err := writeFile(d, "cpuset.mems", c.Mems); err != nil {
				return err
			}
		}
	}
	return nil
}

func (m *v1) OOMKillCount() (uint64, error) {
	d, err := m.dir("memory")
	if err != nil {
		return 0, err
	}
	return readKey(d, "memory.oom_control", "oom_kill")
}

func (m *v1) Stats() (Stats, error) {
	var s Stats
	var err error
	if d, ok := m.dirs["memory"]; ok {
		if s.MemoryUsage, err = readUint(d, "memory.usage_in_bytes"); err != nil {
			return s, err
		}
		s.MemoryMaxUsage, _ = readUint(d, "memory.max_usage_in_bytes")
		if lim, err := readUint(d, "memory.limit_in_bytes"); err == nil && lim < 1<<62 {
			s.MemoryLimit = lim
		}
		if s.OOMKills, err = readKey(d, "memory.oom_control", "oom_kill"); err != nil {
			return s, err
		}
		// The detail below is for `stats`; a tree without it still reports usage.
		s.MemoryStat, _ = readFlat(d, "memory.stat")
	}
	if d, ok := m.dirs["pids"]; ok {
		if s.PidsCurrent, err = readUint(d, "pids.current"); err != nil {
			return s, err
		}
		s.PidsLimit, _ = readUint(d, "pids.max")
	}
	if d, ok := m.dirs["cpuacct"]; ok {
		if s.CPUUsage, err = readUint(d, "cpuacct.usage"); err != nil {
			return s, err
		}
		// cpuacct.stat counts USER_HZ ticks, 100 a second on Linux.
		if st, err := readFlat(d, "cpuacct.stat"); err == nil {
			s.CPUUser, s.CPUSystem = st["user"]*1e7, st["system"]*1e7
		}
	}
	return s, nil
}

func (m *v1) Pids() ([]int, error) {
	for _, d := range m.uniqueDirs() {
		pids, err := readPids(d)
		if err == nil {
			return pids, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	return nil, nil
}

// Kill signals every process. On a hybrid host SIGKILL goes through the
// unified tree's cgroup.kill (atomic, races no fork); otherwise the freezer
// stops the cgroup so that no process forks between listing and signalling.
func (m *v1) Kill(sig unix.Signal) error {
	if sig == unix.SIGKILL && m.unified != "" {
		if err := writeFile(m.unified, "cgroup.kill", "1"); err == nil {
			return nil
		}
	}
	fz := m.dirs["freezer"]
	if fz != "" && writeFile(fz, "freezer.state", "FROZEN") == nil {
		defer writeFile(fz, "freezer.state", "THAWED")
		waitFrozen(fz)
	}
	pids, err := m.Pids()
	if err != nil {
		return err
	}
	// A frozen task acts on the signal once the deferred thaw runs.
	return killPids(pids, sig)
}

func waitFrozen(dir string) {
	for i := 0; i < 100; i++ {
		if s, err := readFile(dir, "freezer.state"); err != nil || s == "FROZEN" {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

func (m *v1) Destroy() error {
	return destroyDirs(m.uniqueDirs())
}

// destroyDirs removes each directory, retrying for up to two seconds while
// the kernel finishes moving exiting processes out.
func destroyDirs(dirs []string) error {
	var last error
	for attempt := 0; attempt < 200; attempt++ {
		last = nil
		for _, d := range dirs {
			if err := removeDir(d); err != nil {
				last = err
			}
		}
		if last == nil {
			return nil
		}
		if !errors.Is(last, unix.EBUSY) {
			return last
		}
		time.Sleep(time.Duration(1+attempt/20) * time.Millisecond)
	}
	return last
}
