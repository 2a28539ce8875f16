package containers

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/shoal-project/shoal/containerd/cgroups"
	"github.com/shoal-project/shoal/containerd/oci"
)

// The HostConfig options beyond the basics (sysctls, ulimits, pid and ipc
// modes, /dev/shm size, supplementary groups, cpuset): each is checked as
// dockerd checks it and put in the spec, or refused. None is accepted and
// ignored.

// defaultShmSize is dockerd's /dev/shm size.
const defaultShmSize = 64 << 20

// ipcSysctls are the kernel.* sysctls that belong to the IPC namespace
// (dockerd's and runc's list); net.* belong to the network namespace and
// fs.mqueue.* to the IPC namespace. Nothing else is namespaced.
var ipcSysctls = map[string]bool{
	"kernel.msgmax": true, "kernel.msgmnb": true, "kernel.msgmni": true, "kernel.sem": true,
	"kernel.shmall": true, "kernel.shmmax": true, "kernel.shmmni": true, "kernel.shm_rmid_forced": true,
}

// checkSysctl refuses a sysctl that is not namespaced, or whose namespace is
// the host's in this container.
func checkSysctl(cfg Config, k string) error {
	if k == "" || strings.ContainsAny(k, "/ ") || strings.Contains(k, "..") || strings.HasPrefix(k, ".") || strings.HasSuffix(k, ".") {
		return fmt.Errorf("%w: sysctl '%s' is not allowed", ErrInvalidArgument, k)
	}
	switch {
	case ipcSysctls[k] || strings.HasPrefix(k, "fs.mqueue."):
		if cfg.IpcMode == "host" {
			return fmt.Errorf("%w: sysctl '%s' is not allowed in the host's IPC namespace (--ipc host)", ErrInvalidArgument, k)
		}
	case strings.HasPrefix(k, "net."):
		if cfg.NetworkMode == "host" {
			return fmt.Errorf("%w: sysctl '%s' is not allowed in the host's network namespace (--network host)", ErrInvalidArgument, k)
		}
	default:
		return fmt.Errorf("%w: sysctl '%s' is not allowed: only namespaced sysctls (kernel.msg*, kernel.sem, kernel.shm*, fs.mqueue.*, net.*) can be set", ErrInvalidArgument, k)
	}
	return nil
}

// rlimitNames maps Docker's ulimit names to the OCI spec's.
var rlimitNames = map[string]string{
	"core": "RLIMIT_CORE", "cpu": "RLIMIT_CPU", "data": "RLIMIT_DATA", "fsize": "RLIMIT_FSIZE",
	"locks": "RLIMIT_LOCKS", "memlock": "RLIMIT_MEMLOCK", "msgqueue": "RLIMIT_MSGQUEUE",
	"nice": "RLIMIT_NICE", "nofile": "RLIMIT_NOFILE", "nproc": "RLIMIT_NPROC", "rss": "RLIMIT_RSS",
	"rtprio": "RLIMIT_RTPRIO", "rttime": "RLIMIT_RTTIME", "sigpending": "RLIMIT_SIGPENDING",
	"stack": "RLIMIT_STACK",
}

// rlimitValue is a ulimit value for setrlimit: -1 is RLIM_INFINITY.
func rlimitValue(v int64) uint64 {
	if v == -1 {
		return ^uint64(0)
	}
	return uint64(v)
}

// withUlimits replaces the spec's rlimits of the same type by the given ones.
func withUlimits(s *specs.Spec, ulimits []Ulimit) error {
	seen := map[string]bool{}
	for _, u := range ulimits {
		typ, ok := rlimitNames[u.Name]
		if !ok {
			return fmt.Errorf("%w: invalid ulimit type: %s", ErrInvalidArgument, u.Name)
		}
		if seen[u.Name] {
			return fmt.Errorf("%w: ulimit %s given twice", ErrInvalidArgument, u.Name)
		}
		seen[u.Name] = true
		if u.Soft < -1 || u.Hard < -1 {
			return fmt.Errorf("%w: invalid ulimit %s: a limit cannot be below -1 (unlimited)", ErrInvalidArgument, u.Name)
		}
		if rlimitValue(u.Soft) > rlimitValue(u.Hard) {
			return fmt.Errorf("%w: ulimit soft limit must be less than or equal to hard limit: %d > %d", ErrInvalidArgument, u.Soft, u.Hard)
		}
		rl := specs.POSIXRlimit{Type: typ, Soft: rlimitValue(u.Soft), Hard: rlimitValue(u.Hard)}
		replaced := false
		for i := range s.Process.Rlimits {
			if s.Process.Rlimits[i].Type == typ {
				s.Process.Rlimits[i], replaced = rl, true
			}
		}
		if !replaced {
			s.Process.Rlimits = append(s.Process.Rlimits, rl)
		}
	}
	return nil
}

// checkPidMode accepts "", "host" and "container:<name or ID>"; the last
// is resolved by the caller.
func checkPidMode(mode string) error {
	if mode == "" || mode == "host" {
		return nil
	}
	if ref, ok := strings.CutPrefix(mode, "container:"); ok && ref != "" {
		return nil
	}
	return fmt.Errorf("%w: invalid PID mode: %s", ErrInvalidArgument, mode)
}

// withIpcMode applies --ipc and --shm-size to the spec's namespaces and its
// /dev/shm mount.
func withIpcMode(s *specs.Spec, mode string, shmSize int64) error {
	if shmSize < 0 {
		return fmt.Errorf("%w: SHM size can not be less than 0", ErrInvalidArgument)
	}
	switch mode {
	case "", "private", "shareable":
		// Own namespace and /dev/shm. "shareable" only allows others to
		// join, and joining (container:) is refused below, so it is private.
		if shmSize == 0 {
			shmSize = defaultShmSize
		}
		return setShmSize(s, shmSize)
	case "none", "host":
		if shmSize != 0 {
			return fmt.Errorf("%w: --shm-size cannot be used with --ipc %s: the container has no /dev/shm of its own", ErrInvalidArgument, mode)
		}
	default:
		if strings.HasPrefix(mode, "container:") {
			return fmt.Errorf("%w: --ipc %s is not supported (private, shareable, none and host are)", ErrInvalidArgument, mode)
		}
		return fmt.Errorf("%w: invalid IPC mode: %s", ErrInvalidArgument, mode)
	}
	var mounts []specs.Mount
	for _, m := range s.Mounts {
		if m.Destination != "/dev/shm" {
			mounts = append(mounts, m)
		}
	}
	if mode == "host" {
		// The host's IPC objects and its /dev/shm, as dockerd does.
		oci.WithoutNamespace(s, specs.IPCNamespace)
		mounts = append(mounts, specs.Mount{Destination: "/dev/shm", Type: "bind", Source: "/dev/shm", Options: []string{"rbind", "rprivate"}})
	}
	s.Mounts = mounts
	return nil
}

func setShmSize(s *specs.Spec, size int64) error {
	for i, m := range s.Mounts {
		if m.Destination != "/dev/shm" {
			continue
		}
		opts := []string{}
		for _, o := range m.Options {
			if !strings.HasPrefix(o, "size=") {
				opts = append(opts, o)
			}
		}
		s.Mounts[i].Options = append(opts, "size="+strconv.FormatInt(size, 10))
		return nil
	}
	return fmt.Errorf("%w: the spec has no /dev/shm mount", ErrInvalidArgument)
}

// groupIDs resolves --group-add entries: numbers as they are, names in the
// container's /etc/group. With no files (db nil: the check at create)
// names are left for the start.
func groupIDs(db *userDB, groups []string) ([]uint32, error) {
	var out []uint32
	for _, g := range groups {
		if n, err := strconv.ParseUint(g, 10, 32); err == nil {
			out = append(out, uint32(n))
			continue
		}
		if g == "" || strings.ContainsAny(g, ":\n") {
			return nil, fmt.Errorf("%w: invalid group %q", ErrInvalidArgument, g)
		}
		if db == nil {
			continue
		}
		e, ok := lookupDB(db.group, g, -1)
		if !ok {
			return nil, fmt.Errorf("%w: Unable to find group %s: no matching entries in group file", ErrInvalidArgument, g)
		}
		out = append(out, uint32(e.id))
	}
	return out, nil
}

// addGroups adds gids to a user's supplementary groups, once each.
func addGroups(u *specs.User, gids []uint32) {
	have := map[uint32]bool{}
	for _, g := range u.AdditionalGids {
		have[g] = true
	}
	for _, g := range gids {
		if !have[g] {
			have[g] = true
			u.AdditionalGids = append(u.AdditionalGids, g)
		}
	}
}

// withHostOptions applies the options of this file to s (but swap, which
// goes with the memory limit).
// db is nil for the checks of a create.
func withHostOptions(s *specs.Spec, cfg Config, db *userDB) error {
	keys := make([]string, 0, len(cfg.Sysctls))
	for k := range cfg.Sysctls {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := checkSysctl(cfg, k); err != nil {
			return err
		}
		if s.Linux.Sysctl == nil {
			s.Linux.Sysctl = map[string]string{}
		}
		s.Linux.Sysctl[k] = cfg.Sysctls[k]
	}
	if err := checkEtcOptions(cfg); err != nil {
		return err
	}
	if err := withSecurity(s, cfg); err != nil {
		return err
	}
	if err := withDevices(s, cfg.Devices, db == nil); err != nil {
		return err
	}
	if err := withUlimits(s, cfg.Ulimits); err != nil {
		return err
	}
	if err := checkPidMode(cfg.PidMode); err != nil {
		return err
	}
	if cfg.PidMode == "host" {
		oci.WithoutNamespace(s, specs.PIDNamespace)
	}
	if err := withIpcMode(s, cfg.IpcMode, cfg.ShmSize); err != nil {
		return err
	}
	gids, err := groupIDs(db, cfg.GroupAdd)
	if err != nil {
		return err
	}
	addGroups(&s.Process.User, gids)
	if cfg.CpusetCpus != "" || cfg.CpusetMems != "" {
		if err := cgroups.CheckCpuset(cfg.CpusetCpus, cfg.CpusetMems); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalidArgument, strings.TrimPrefix(err.Error(), cgroups.ErrInvalid.Error()+": "))
		}
		r := s.Linux.Resources
		if r.CPU == nil {
			r.CPU = &specs.LinuxCPU{}
		}
		r.CPU.Cpus, r.CPU.Mems = cfg.CpusetCpus, cfg.CpusetMems
	}
	return nil
}

// checkSwap checks --memory-swap as dockerd does, and refuses a swap limit
// the host cannot enforce (dockerd only warns and drops it).
func checkSwap(cfg Config, cgroupRoot string) error {
	switch {
	case cfg.MemorySwap == 0 || cfg.MemorySwap == -1:
		return nil
	case cfg.Memory == 0:
		return fmt.Errorf("%w: You should always set the Memory limit when using Memoryswap limit, see usage", ErrInvalidArgument)
	case cfg.MemorySwap < -1:
		return fmt.Errorf("%w: invalid memory swap %d: -1 (unlimited) or a size", ErrInvalidArgument, cfg.MemorySwap)
	case cfg.MemorySwap < cfg.Memory:
		return fmt.Errorf("%w: Minimum memoryswap limit should be larger than memory limit, see usage", ErrInvalidArgument)
	}
	if !swapLimitSupported(cgroupRoot) {
		return fmt.Errorf("%w: --memory-swap cannot be enforced: this host's kernel has no swap accounting (swapaccount=1)", ErrInvalidArgument)
	}
	return nil
}

func swapLimitSupported(cgroupRoot string) bool {
	return cgroups.SwapLimitSupported(cgroups.DetectAt(cgroupRoot), cgroupRoot)
}

// pidNamespaceOf is the pid namespace of a running container, for
// --pid container:<id>.
func (e *Engine) pidNamespaceOf(id string) (string, error) {
	c, err := e.Get(id)
	if err != nil {
		return "", err
	}
	if !c.State.Running || c.State.Pid == 0 {
		return "", fmt.Errorf("%w: cannot join PID of a non running container: %s", ErrConflict, id)
	}
	path := fmt.Sprintf("/proc/%d/ns/pid", c.State.Pid)
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("%w: cannot join PID of container %s: %v", ErrConflict, id, err)
	}
	return path, nil
}
