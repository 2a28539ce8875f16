package oci

import (
	"errors"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// capBits is the kernel numbering of the default capabilities.
var capBits = map[string]uint{
	"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_FOWNER": 3, "CAP_FSETID": 4, "CAP_KILL": 5,
	"CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8, "CAP_NET_BIND_SERVICE": 10,
	"CAP_NET_RAW": 13, "CAP_SYS_CHROOT": 18, "CAP_MKNOD": 27, "CAP_AUDIT_WRITE": 29, "CAP_SETFCAP": 31,
}

func TestDefaultSpecCapabilities(t *testing.T) {
	s := DefaultSpec()
	for name, set := range map[string][]string{"bounding": s.Process.Capabilities.Bounding,
		"effective": s.Process.Capabilities.Effective, "permitted": s.Process.Capabilities.Permitted} {
		var mask uint64
		for _, c := range set {
			b, ok := capBits[c]
			if !ok {
				t.Fatalf("%s: unexpected capability %s", name, c)
			}
			mask |= 1 << b
		}
		if mask != 0xa80425fb {
			t.Errorf("%s mask %#x, want 0xa80425fb (Docker's CapEff)", name, mask)
		}
	}
	if len(s.Process.Capabilities.Ambient) != 0 || len(s.Process.Capabilities.Inheritable) != 0 {
		t.Error("Docker gives no ambient or inheritable capabilities")
	}
}

func TestDefaultSpecContents(t *testing.T) {
	s := DefaultSpec()
	dests := map[string]specs.Mount{}
	for _, m := range s.Mounts {
		dests[m.Destination] = m
	}
	for _, d := range []string{"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"} {
		if _, ok := dests[d]; !ok {
			t.Errorf("mount %s missing", d)
		}
	}
	if o := strings.Join(dests["/dev/pts"].Options, ","); !strings.Contains(o, "newinstance") || !strings.Contains(o, "ptmxmode=0666") {
		t.Errorf("devpts options %s", o)
	}
	if !strings.Contains(strings.Join(dests["/sys"].Options, ","), "ro") {
		t.Error("/sys is not read-only")
	}
	if len(s.Linux.MaskedPaths) != 12 || len(s.Linux.ReadonlyPaths) != 5 {
		t.Errorf("masked %d, readonly %d", len(s.Linux.MaskedPaths), len(s.Linux.ReadonlyPaths))
	}
	if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != specs.ActErrno {
		t.Error("default seccomp profile missing")
	}
	d := s.Linux.Resources.Devices
	if len(d) == 0 || d[0].Allow || d[0].Access != "rwm" {
		t.Error("device rules must start with deny-all")
	}
	if len(s.Process.Rlimits) != 1 || s.Process.Rlimits[0].Type != "RLIMIT_NOFILE" || s.Process.Rlimits[0].Soft > s.Process.Rlimits[0].Hard {
		t.Errorf("rlimits %+v", s.Process.Rlimits)
	}
	types := map[specs.LinuxNamespaceType]bool{}
	for _, n := range s.Linux.Namespaces {
		types[n.Type] = true
	}
	for _, n := range []specs.LinuxNamespaceType{"pid", "mount", "uts", "ipc", "network", "cgroup"} {
		if !types[n] {
			t.Errorf("namespace %s missing", n)
		}
	}
	// Each call is independent.
	s.Process.Capabilities.Bounding[0] = "CAP_SYS_ADMIN"
	s.Linux.MaskedPaths[0] = "/x"
	if t2 := DefaultSpec(); t2.Process.Capabilities.Bounding[0] == "CAP_SYS_ADMIN" || t2.Linux.MaskedPaths[0] == "/x" {
		t.Error("DefaultSpec shares slices between calls")
	}
}

func TestHelpers(t *testing.T) {
	s := DefaultSpec()
	if err := WithEnv(s, "A=1", "PATH=/bin"); err != nil {
		t.Fatal(err)
	}
	if err := WithEnv(s, "novalue"); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad env: %v", err)
	}
	if got := strings.Join(s.Process.Env, " "); got != "PATH=/bin A=1" {
		t.Errorf("env %q", got)
	}
	if err := WithCwd(s, "rel"); !errors.Is(err, ErrInvalid) {
		t.Errorf("relative cwd: %v", err)
	}
	WithUser(s, 1000, 1000, 10)
	if s.Process.User.UID != 1000 || s.Process.User.AdditionalGids[0] != 10 {
		t.Errorf("user %+v", s.Process.User)
	}
	if err := WithMemory(s, 1<<20, 0); err != nil || *s.Linux.Resources.Memory.Swap != 2<<20 {
		t.Errorf("memory: %v", err)
	}
	if err := WithMemory(s, 2<<20, 1<<20); !errors.Is(err, ErrInvalid) {
		t.Errorf("swap below limit: %v", err)
	}
	if err := WithCPUs(s, 1.5); err != nil || *s.Linux.Resources.CPU.Quota != 150000 || *s.Linux.Resources.CPU.Period != 100000 {
		t.Errorf("cpus: %v", err)
	}
	WithPidsLimit(s, 0)
	if l := s.Linux.Resources.Pids.Limit; l == nil || *l != 0 {
		t.Error("pids limit 0 must be kept")
	}
	if err := WithNetNSPath(s, "/run/netns/x"); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			n++
			if ns.Path != "/run/netns/x" {
				t.Errorf("netns path %q", ns.Path)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d network namespaces", n)
	}
	WithHostNetwork(s)
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			t.Error("host network kept a netns")
		}
	}
	if err := WithBind(s, "/nonexistent-src", "/x", true); !errors.Is(err, ErrInvalid) {
		t.Errorf("missing bind source: %v", err)
	}
	if err := WithBind(s, "/etc", "/host-etc", true); err != nil {
		t.Fatal(err)
	}
	WithNoNewPrivileges(s)
	if !s.Process.NoNewPrivileges {
		t.Error("nnp")
	}
}
