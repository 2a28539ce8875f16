package cgroups

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Host files listing the online CPUs and memory nodes ("0-3,6").
const (
	onlineCPUs = "/sys/devices/system/cpu/online"
	onlineMems = "/sys/devices/system/node/online"
)

// ParseCPUList parses a kernel CPU list ("0-2,5") into its members.
func ParseCPUList(s string) (map[int]bool, error) {
	out := map[int]bool{}
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("%w: empty CPU list", ErrInvalid)
	}
	for _, part := range strings.Split(strings.TrimSpace(s), ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseUint(lo, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("%w: CPU list %q", ErrInvalid, s)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 16); err != nil || b < a {
				return nil, fmt.Errorf("%w: CPU list %q", ErrInvalid, s)
			}
		}
		for i := a; i <= b; i++ {
			out[int(i)] = true
		}
	}
	return out, nil
}

// CheckCpuset checks cpus and mems (either may be empty) as dockerd does:
// the syntax, then that every CPU and memory node is online on this host.
// Errors use dockerd's words.
func CheckCpuset(cpus, mems string) error {
	check := func(val, online, what, kind string) error {
		if val == "" {
			return nil
		}
		want, err := ParseCPUList(val)
		if err != nil {
			return fmt.Errorf("%w: Invalid value %s for cpuset %s", ErrInvalid, val, what)
		}
		b, err := os.ReadFile(online)
		if err != nil {
			if what == "mems" && os.IsNotExist(err) {
				b = []byte("0") // no NUMA information: one node
			} else {
				return fmt.Errorf("cgroups: online %s: %w", kind, err)
			}
		}
		have, err := ParseCPUList(string(b))
		if err != nil {
			return fmt.Errorf("cgroups: %s: %w", online, err)
		}
		for n := range want {
			if !have[n] {
				return fmt.Errorf("%w: Requested %s are not available - requested %s, available: %s", ErrInvalid, kind, val, strings.TrimSpace(string(b)))
			}
		}
		return nil
	}
	if err := check(cpus, onlineCPUs, "cpus", "CPUs"); err != nil {
		return err
	}
	return check(mems, onlineMems, "mems", "memory nodes")
}

// SwapLimitSupported reports whether the host can limit a cgroup's swap:
// on v1 only with swap accounting (memory.memsw.* files), on v2 when the
// memory controller offers memory.swap.max.
func SwapLimitSupported(mode Mode, root string) bool {
	switch mode {
	case Legacy, Hybrid:
		_, err := os.Stat(filepath.Join(root, "memory", "memory.memsw.limit_in_bytes"))
		return err == nil
	case Unified:
		// The root cgroup has no memory.* files: look at its children.
		m, _ := filepath.Glob(filepath.Join(root, "*", "memory.swap.max"))
		return len(m) > 0
	}
	return false
}
