package cgroups

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// v2Controllers are the controllers a container's parent delegates on v2.
var v2Controllers = []string{"cpuset", "cpu", "memory", "pids"}

// v2 manages one directory of the unified hierarchy.
type v2 struct {
	root, path, dir string
}

func (m *v2) Path() string { return m.path }

// Dir is the cgroup's directory. Only v2 managers have one: a runtime can
// open it and clone a process straight into it (CLONE_INTO_CGROUP).
func (m *v2) Dir() string { return m.dir }

// Create makes the directory and, walking down from the root, enables the
// wanted controllers in each ancestor's cgroup.subtree_control (only those
// the ancestor has in cgroup.controllers).
func (m *v2) Create() error {
	parent := m.root
	parts := strings.Split(strings.TrimPrefix(m.path, "/"), "/")
	for _, part := range parts {
		if err := enableControllers(parent); err != nil {
			return err
		}
		parent = filepath.Join(parent, part)
		if err := os.Mkdir(parent, 0o755); err != nil && !os.IsExist(err) {
			return fmt.Errorf("cgroups: %w", err)
		}
	}
	return nil
}

func enableControllers(dir string) error {
	avail, err := readFile(dir, "cgroup.controllers")
	if err != nil {
		return err
	}
	enabled, _ := readFile(dir, "cgroup.subtree_control")
	have := map[string]bool{}
	for _, c := range strings.Fields(enabled) {
		have[c] = true
	}
	var want []string
	for _, c := range strings.Fields(avail) {
		for _, w := range v2Controllers {
			if c == w && !have[c] {
				want = append(want, "+"+c)
			}
		}
	}
	if len(want) == 0 {
		return nil
	}
	return writeFile(dir, "cgroup.subtree_control", strings.Join(want, " "))
}

func (m *v2) Apply(pid int) error {
	return writeFile(m.dir, "cgroup.procs", strconv.Itoa(pid))
}

func (m *v2) Set(r *specs.LinuxResources) error {
	if r == nil {
		return nil
	}
	if mem := r.Memory; mem != nil {
		limit, swap := int64(0), int64(0)
		if mem.Limit != nil {
			limit = *mem.Limit
		}
		if mem.Swap != nil {
			swap = *mem.Swap
		}
		swapMax, err := ConvertSwapToV2(swap, limit)
		if err != nil {
			return err
		}
		if limit != 0 {
			if err := writeFile(m.dir, "memory.max", formatLimit(limit)); err != nil {
				return err
			}
		}
		if swapMax != "" {
			if err := writeFile(m.dir, "memory.swap.max", swapMax); err != nil {
				return err
			}
		}
		if mem.Reservation != nil && *mem.Reservation != 0 {
			if err := writeFile(m.dir, "memory.low", formatLimit(*mem.Reservation)); err != nil {
				return err
			}
		}
		if mem.DisableOOMKiller != nil && *mem.DisableOOMKiller {
			return fmt.Errorf("%w: disabling the OOM killer is not supported on cgroup v2", ErrInvalid)
		}
	}
	if c := r.CPU; c != nil {
		if c.Shares != nil && *c.Shares != 0 {
			w := ConvertSharesToWeight(*c.Shares)
			if err := writeFile(m.dir, "cpu.weight", strconv.FormatUint(w, 10)); err != nil {
				return err
			}
		}
		if (c.Quota != nil && *c.Quota != 0) || (c.Period != nil && *c.Period != 0) {
			quota := "max"
			if c.Quota != nil && *c.Quota > 0 {
				quota = strconv.FormatInt(*c.Quota, 10)
			}
			period := uint64(100000)
			if c.Period != nil && *c.Period != 0 {
				period = *c.Period
			}
			if err := writeFile(m.dir, "cpu.max", quota+" "+strconv.FormatUint(period, 10)); err != nil {
				return err
			}
		}
		if c.Cpus != "" {
			if err := writeFile(m.dir, "cpuset.cpus", c.Cpus); err != nil {
				return err
			}
		}
		if c.Mems != "" {
			if err := writeFile(m.dir, "cpuset.mems", c.Mems); err != nil {
				return err
			}
		}
	}
	if r.Pids != nil && r.Pids.Limit != nil {
		if err := writeFile(m.dir, "pids.max", formatLimit(*r.Pids.Limit)); err != nil {
			return err
		}
	}
	if len(r.Devices) > 0 {
		// No v2 device controller file: a BPF program (devices_v2.go).
		// Without it the rules cannot be enforced and the error stands.
		return attachDeviceFilter(m.dir, r.Devices)
	}
	return nil
}

func (m *v2) OOMKillCount() (uint64, error) {
	return readKey(m.dir, "memory.events", "oom_kill")
}

func (m *v2) Stats() (Stats, error) {
	var s Stats
	var err error
	if s.MemoryUsage, err = readUint(m.dir, "memory.current"); err != nil {
		return s, err
	}
	if s.MemoryLimit, err = readUint(m.dir, "memory.max"); err != nil {
		return s, err
	}
	if s.PidsCurrent, err = readUint(m.dir, "pids.current"); err != nil {
		return s, err
	}
	// The detail below is for `stats`; a tree without it still reports usage.
	s.PidsLimit, _ = readUint(m.dir, "pids.max")
	s.MemoryStat, _ = readFlat(m.dir, "memory.stat")
	cpu, err := readFlat(m.dir, "cpu.stat")
	if err != nil {
		return s, err
	}
	s.CPUUsage, s.CPUUser, s.CPUSystem = cpu["usage_usec"]*1000, cpu["user_usec"]*1000, cpu["system_usec"]*1000
	s.OOMKills, err = m.OOMKillCount()
	return s, err
}

func (m *v2) Pids() ([]int, error) { return readPids(m.dir) }

// Kill uses cgroup.kill (Linux >= 5.14) for SIGKILL; other signals, or an
// older kernel, go to each listed process.
func (m *v2) Kill(sig unix.Signal) error {
	if sig == unix.SIGKILL {
		if _, err := os.Stat(filepath.Join(m.dir, "cgroup.kill")); err == nil {
			return writeFile(m.dir, "cgroup.kill", "1")
		}
	}
	pids, err := m.Pids()
	if err != nil {
		return err
	}
	return killPids(pids, sig)
}

func (m *v2) Destroy() error { return destroyDirs([]string{m.dir}) }
