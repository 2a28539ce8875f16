// Package oci builds OCI runtime specs (config.json) with Docker's defaults.
//
// DefaultSpec gives what `docker run` gives a container with no options: the
// 14 default capabilities, the standard mounts, masked and read-only /proc
// and /sys paths, the default device nodes and device cgroup rules,
// RLIMIT_NOFILE 1024/524288 and the default seccomp profile. The With* helpers
// fill in what differs per container; each changes one field and can be
// used on any spec, not only on DefaultSpec's.
package oci

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/containerd/seccomp"
)

// ErrInvalid reports an option that cannot be applied to a spec.
var ErrInvalid = errors.New("oci: invalid argument")

// DefaultCapabilities are Docker's default capabilities.
var DefaultCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// DefaultMaskedPaths are hidden from containers (bind of /dev/null or an
// empty read-only tmpfs).
var DefaultMaskedPaths = []string{
	"/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys",
	"/proc/latency_stats", "/proc/sched_debug", "/proc/scsi", "/proc/timer_list",
	"/proc/timer_stats", "/sys/devices/virtual/powercap", "/sys/firmware",
}

// DefaultReadonlyPaths are remounted read-only inside containers.
var DefaultReadonlyPaths = []string{
	"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
}

// DefaultPath is the PATH of a container whose image sets none.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

func i64(v int64) *int64 { return &v }

// DefaultMounts are the filesystems every container gets.
func DefaultMounts() []specs.Mount {
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"ro", "nosuid", "noexec", "nodev"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
	}
}

// DefaultDeviceRules is Docker's device cgroup allow list followed by the
// nodes runc always allows (pty, tun, full, ptmx) and mknod of any device.
func DefaultDeviceRules() []specs.LinuxDeviceCgroup {
	c := func(major, minor int64, access string) specs.LinuxDeviceCgroup {
		r := specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: i64(major), Minor: i64(minor), Access: access}
		if minor == -1 {
			r.Minor = nil
		}
		if major == -1 {
			r.Major = nil
		}
		return r
	}
	return []specs.LinuxDeviceCgroup{
		{Allow: false, Access: "rwm"},
		c(-1, -1, "m"),
		{Allow: true, Type: "b", Access: "m"},
		c(1, 3, "rwm"),    // null
		c(1, 5, "rwm"),    // zero
		c(1, 7, "rwm"),    // full
		c(1, 8, "rwm"),    // random
		c(1, 9, "rwm"),    // urandom
		c(5, 0, "rwm"),    // tty
		c(5, 1, "rwm"),    // console
		c(5, 2, "rwm"),    // ptmx
		c(136, -1, "rwm"), // pts/*
		c(10, 200, "rwm"), // net/tun
		{Allow: false, Type: "c", Major: i64(10), Minor: i64(229), Access: "rwm"}, // fuse
	}
}

// defaultNofile is Docker 25's RLIMIT_NOFILE (soft 1024, hard 524288), with
// the hard limit lowered to the caller's own: a daemon without
// CAP_SYS_RESOURCE cannot raise it, and the runtime applies rlimits exactly.
func defaultNofile() specs.POSIXRlimit {
	hard := uint64(524288)
	var cur unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &cur) == nil && cur.Max < hard {
		hard = cur.Max
	}
	return specs.POSIXRlimit{Type: "RLIMIT_NOFILE", Soft: min(1024, hard), Hard: hard}
}

// DefaultSpec returns a new spec with Docker's defaults, running /bin/sh as
// root in / with rootfs "rootfs", new pid, mount, uts, ipc, network and
// cgroup namespaces. Every call returns a fresh value.
func DefaultSpec() *specs.Spec {
	caps := func() []string { return append([]string(nil), DefaultCapabilities...) }
	return &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: "rootfs"},
		Process: &specs.Process{
			Args: []string{"/bin/sh"},
			Env:  []string{"PATH=" + DefaultPath},
			Cwd:  "/",
			Capabilities: &specs.LinuxCapabilities{
				Bounding:  caps(),
				Effective: caps(),
				Permitted: caps(),
			},
			Rlimits: []specs.POSIXRlimit{defaultNofile()},
		},
		Hostname: "",
		Mounts:   DefaultMounts(),
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}, {Type: specs.UTSNamespace},
				{Type: specs.IPCNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.CgroupNamespace},
			},
			Resources:     &specs.LinuxResources{Devices: DefaultDeviceRules()},
			MaskedPaths:   append([]string(nil), DefaultMaskedPaths...),
			ReadonlyPaths: append([]string(nil), DefaultReadonlyPaths...),
			Seccomp:       seccomp.DefaultProfile(),
		},
	}
}

// WithEnv sets (or replaces) environment variables given as KEY=VALUE.
func WithEnv(s *specs.Spec, env ...string) error {
	for _, kv := range env {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("%w: environment entry %q is not KEY=VALUE", ErrInvalid, kv)
		}
		replaced := false
		for i, old := range s.Process.Env {
			if strings.HasPrefix(old, k+"=") {
				s.Process.Env[i], replaced = kv, true
			}
		}
		if !replaced {
			s.Process.Env = append(s.Process.Env, kv)
		}
	}
	return nil
}

// WithCwd sets the working directory, which must be absolute.
func WithCwd(s *specs.Spec, dir string) error {
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("%w: working directory %q is not absolute", ErrInvalid, dir)
	}
	s.Process.Cwd = dir
	return nil
}

// WithUser sets the numeric uid and gid (names must be resolved by the
// caller against the image's /etc/passwd) and supplementary groups.
// The capabilities stay as set: a non-root user keeps none effective unless
// they are ambient, as with Docker.
func WithUser(s *specs.Spec, uid, gid uint32, groups ...uint32) {
	s.Process.User = specs.User{UID: uid, GID: gid, AdditionalGids: groups}
}

// WithHostname sets the hostname (needs a UTS namespace, which the default
// spec has).
func WithHostname(s *specs.Spec, name string) { s.Hostname = name }

func resources(s *specs.Spec) *specs.LinuxResources {
	if s.Linux == nil {
		s.Linux = &specs.Linux{}
	}
	if s.Linux.Resources == nil {
		s.Linux.Resources = &specs.LinuxResources{}
	}
	return s.Linux.Resources
}

// WithMemory sets the memory limit in bytes; swap is the memory+swap total
// (Docker's --memory-swap; 0 = twice the limit as Docker does, -1 =
// unlimited swap).
func WithMemory(s *specs.Spec, limit, swap int64) error {
	if limit <= 0 {
		return fmt.Errorf("%w: memory limit %d", ErrInvalid, limit)
	}
	if swap == 0 {
		swap = 2 * limit
	}
	if swap != -1 && swap < limit {
		return fmt.Errorf("%w: memory+swap %d is below the memory limit %d", ErrInvalid, swap, limit)
	}
	r := resources(s)
	r.Memory = &specs.LinuxMemory{Limit: i64(limit), Swap: i64(swap)}
	return nil
}

// WithCPUs limits CPU time to n CPUs (Docker's --cpus) as a CFS quota over a
// 100 ms period.
func WithCPUs(s *specs.Spec, n float64) error {
	if n <= 0 {
		return fmt.Errorf("%w: cpus %v", ErrInvalid, n)
	}
	period := uint64(100000)
	quota := int64(n * float64(period))
	r := resources(s)
	if r.CPU == nil {
		r.CPU = &specs.LinuxCPU{}
	}
	r.CPU.Period, r.CPU.Quota = &period, &quota
	return nil
}

// WithPidsLimit caps the number of processes; -1 means unlimited, 0 is a
// valid (and strict) limit.
func WithPidsLimit(s *specs.Spec, n int64) {
	resources(s).Pids = &specs.LinuxPids{Limit: &n}
}

// WithNetNSPath joins an existing network namespace (a bind-mounted netns
// file) instead of creating one.
func WithNetNSPath(s *specs.Spec, path string) error {
	return WithNamespacePath(s, specs.NetworkNamespace, path)
}

// WithHostNetwork removes the network namespace: the container shares the
// host's (Docker's --network host).
func WithHostNetwork(s *specs.Spec) { WithoutNamespace(s, specs.NetworkNamespace) }

// WithoutNamespace removes the namespace of type t: the container shares
// the host's (--network host, --pid host, --ipc host).
func WithoutNamespace(s *specs.Spec, t specs.LinuxNamespaceType) {
	ns := s.Linux.Namespaces[:0]
	for _, n := range s.Linux.Namespaces {
		if n.Type != t {
			ns = append(ns, n)
		}
	}
	s.Linux.Namespaces = ns
}

// WithNamespacePath makes the container join the namespace of type t at
// path (/proc/PID/ns/TYPE or a bind-mounted namespace file) instead of
// creating one.
func WithNamespacePath(s *specs.Spec, t specs.LinuxNamespaceType, path string) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("%w: %s namespace path %q is not absolute", ErrInvalid, t, path)
	}
	setNamespace(s, t, path)
	return nil
}

func setNamespace(s *specs.Spec, t specs.LinuxNamespaceType, path string) {
	for i, n := range s.Linux.Namespaces {
		if n.Type == t {
			s.Linux.Namespaces[i].Path = path
			return
		}
	}
	s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: t, Path: path})
}

// WithNoNewPrivileges sets no_new_privs (Docker's --security-opt
// no-new-privileges).
func WithNoNewPrivileges(s *specs.Spec) { s.Process.NoNewPrivileges = true }

// WithBind adds a bind mount of host path src at dst; readonly adds "ro".
// The source must exist.
func WithBind(s *specs.Spec, src, dst string, readonly bool) error {
	if !filepath.IsAbs(src) || !filepath.IsAbs(dst) {
		return fmt.Errorf("%w: bind %s:%s needs absolute paths", ErrInvalid, src, dst)
	}
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("%w: bind source: %v", ErrInvalid, err)
	}
	opts := []string{"rbind", "rprivate"}
	if readonly {
		opts = append(opts, "ro")
	}
	s.Mounts = append(s.Mounts, specs.Mount{Destination: dst, Type: "bind", Source: src, Options: opts})
	return nil
}
