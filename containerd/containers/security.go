package containers

import (
	"fmt"
	"slices"
	"strings"

	mobyseccomp "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/shoal-project/shoal/containerd/oci"
	"github.com/shoal-project/shoal/containerd/runtime"
	"github.com/shoal-project/shoal/containerd/seccomp"
)

// --cap-add, --cap-drop and --security-opt seccomp=: the container's
// capability sets and seccomp filter, as dockerd makes them.

// SeccompUnconfined is Config.Seccomp for --security-opt seccomp=unconfined.
const SeccompUnconfined = "unconfined"

// normalizeCap turns a --cap-add/--cap-drop name (any case, with or without
// CAP_) into the kernel's name, or "ALL".
func normalizeCap(name string) (string, error) {
	n := strings.ToUpper(strings.TrimSpace(name))
	if n == "ALL" {
		return n, nil
	}
	if !strings.HasPrefix(n, "CAP_") {
		n = "CAP_" + n
	}
	if !slices.Contains(runtime.Capabilities(), n) {
		return "", fmt.Errorf("%w: unknown capability: %q", ErrInvalidArgument, n)
	}
	return n, nil
}

// CheckCapability reports whether name is a capability --cap-add and
// --cap-drop take (any case, with or without CAP_, or ALL), so that a
// service naming another is refused before its tasks reach a node.
func CheckCapability(name string) error {
	_, err := normalizeCap(name)
	return err
}

// capabilities is dockerd's TweakCapabilities: ALL in add grants every
// capability but the dropped ones; ALL in drop keeps only the added ones;
// else the defaults, less the dropped, plus the added (an added one wins).
func capabilities(add, drop []string) ([]string, error) {
	norm := func(in []string) ([]string, error) {
		var out []string
		for _, c := range in {
			n, err := normalizeCap(c)
			if err != nil {
				return nil, err
			}
			out = append(out, n)
		}
		return out, nil
	}
	add, err := norm(add)
	if err != nil {
		return nil, err
	}
	if drop, err = norm(drop); err != nil {
		return nil, err
	}
	var base []string
	switch {
	case slices.Contains(add, "ALL"):
		base, add = runtime.Capabilities(), nil
	case slices.Contains(drop, "ALL"):
	default:
		base = oci.DefaultCapabilities
	}
	var out []string
	for _, c := range base {
		if !slices.Contains(drop, c) {
			out = append(out, c)
		}
	}
	out = append(out, add...)
	slices.Sort(out)
	return slices.Compact(out), nil
}

// withSecurity sets the capability sets and the seccomp profile of s.
func withSecurity(s *specs.Spec, cfg Config) error {
	if len(cfg.CapAdd) > 0 || len(cfg.CapDrop) > 0 {
		caps, err := capabilities(cfg.CapAdd, cfg.CapDrop)
		if err != nil {
			return err
		}
		s.Process.Capabilities.Bounding = caps
		s.Process.Capabilities.Effective = slices.Clone(caps)
		s.Process.Capabilities.Permitted = slices.Clone(caps)
		if len(cfg.CapAdd) > 0 {
			// The system calls an added capability is for.
			s.Linux.Seccomp = seccomp.ProfileFor(caps)
		}
	}
	if cfg.Privileged {
		return withPrivileged(s)
	}
	switch cfg.Seccomp {
	case "":
	case SeccompUnconfined:
		s.Linux.Seccomp = nil
	default:
		// A profile in Docker's format (the docker CLI sends the file's
		// content), its capability conditions read from s.
		p, err := mobyseccomp.LoadProfile(cfg.Seccomp, s)
		if err != nil {
			return fmt.Errorf("%w: seccomp profile: %v", ErrInvalidArgument, err)
		}
		if _, err := seccomp.Compile(p); err != nil {
			return fmt.Errorf("%w: seccomp profile: %v", ErrInvalidArgument, err)
		}
		s.Linux.Seccomp = p
	}
	return nil
}

// withPrivileged is dockerd's --privileged: every capability, no seccomp
// filter, no masked or read-only paths, /sys and the cgroup mount
// writable, every device of the host's /dev and access to all devices.
func withPrivileged(s *specs.Spec) error {
	caps := runtime.Capabilities()
	slices.Sort(caps)
	s.Process.Capabilities.Bounding = caps
	s.Process.Capabilities.Effective = slices.Clone(caps)
	s.Process.Capabilities.Permitted = slices.Clone(caps)
	s.Linux.Seccomp = nil
	s.Linux.MaskedPaths, s.Linux.ReadonlyPaths = nil, nil
	for i, m := range s.Mounts {
		if m.Destination == "/sys" || m.Destination == "/sys/fs/cgroup" {
			s.Mounts[i].Options = slices.DeleteFunc(slices.Clone(m.Options), func(o string) bool { return o == "ro" })
		}
	}
	devs, err := hostDevices()
	if err != nil {
		return err
	}
	s.Linux.Devices = append(s.Linux.Devices, devs...)
	s.Linux.Resources.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
	return nil
}
