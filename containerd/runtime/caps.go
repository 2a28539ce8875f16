package runtime

import (
	"errors"
	"fmt"
	"io"
	"os"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

var capByName = map[string]uint{
	"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3,
	"CAP_FSETID": 4, "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8,
	"CAP_LINUX_IMMUTABLE": 9, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11,
	"CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15,
	"CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19,
	"CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21, "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23,
	"CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25, "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27,
	"CAP_LEASE": 28, "CAP_AUDIT_WRITE": 29, "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31,
	"CAP_MAC_OVERRIDE": 32, "CAP_MAC_ADMIN": 33, "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35,
	"CAP_BLOCK_SUSPEND": 36, "CAP_AUDIT_READ": 37, "CAP_PERFMON": 38, "CAP_BPF": 39,
	"CAP_CHECKPOINT_RESTORE": 40,
}

// capSet turns names into a bit mask; unknown names are reported on stderr
// and skipped (the spec says ungrantable capabilities only warn).
func capSet(names []string) uint64 {
	var m uint64
	for _, n := range names {
		c, ok := capByName[n]
		if !ok {
			fmt.Fprintf(os.Stderr, "shoal-init: warning: unknown capability %q ignored\n", n)
			continue
		}
		m |= 1 << c
	}
	return m
}

// dropBounding removes from the bounding set every capability not in keep.
// Per thread: the locked init thread, which later calls execve.
func dropBounding(keep uint64) error {
	for c := uint(0); c < 64; c++ {
		if keep&(1<<c) != 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			if errors.Is(err, unix.EINVAL) {
				break // past the kernel's last capability
			}
			return fmt.Errorf("drop capability %d from bounding set: %w", c, err)
		}
	}
	return nil
}

// capSets are a process's capability sets as masks.
type capSets struct{ bounding, eff, perm, inh, amb uint64 }

// grantableCaps returns p's capabilities less those this process does not
// hold itself: those cannot be granted, which is a warning on w and not a
// failure, as the spec asks.
func grantableCaps(p *specs.Process, w io.Writer) capSets {
	var c capSets
	if pc := p.Capabilities; pc != nil {
		c = capSets{capSet(pc.Bounding), capSet(pc.Effective), capSet(pc.Permitted), capSet(pc.Inheritable), capSet(pc.Ambient)}
	}
	var cur [2]unix.CapUserData
	if err := unix.Capget(&unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}, &cur[0]); err == nil {
		have := uint64(cur[0].Permitted) | uint64(cur[1].Permitted)<<32
		if missing := (c.eff | c.perm | c.inh | c.amb) &^ have; missing != 0 {
			fmt.Fprintf(w, "shoal-init: warning: capabilities %#x cannot be granted (not held by the runtime)\n", missing)
		}
		c.eff, c.perm, c.inh, c.amb = c.eff&have, c.perm&have, c.inh&have, c.amb&have
	}
	return c
}

// capsetData is capset(2)'s data for c's effective, permitted and
// inheritable sets.
func capsetData(c capSets) [2]unix.CapUserData {
	return [2]unix.CapUserData{
		{Effective: uint32(c.eff), Permitted: uint32(c.perm), Inheritable: uint32(c.inh)},
		{Effective: uint32(c.eff >> 32), Permitted: uint32(c.perm >> 32), Inheritable: uint32(c.inh >> 32)},
	}
}

// setUserAndCaps switches to the process user and sets the exact
// capability sets, in the order that keeps the capabilities needed for
// each step: bounding drop, keepcaps, groups/gid/uid, capset, ambient.
func setUserAndCaps(p *specs.Process) error {
	caps := grantableCaps(p, os.Stderr)
	bounding, amb := caps.bounding, caps.amb
	if err := dropBounding(bounding); err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("keepcaps: %w", err)
	}
	u := p.User
	groups := make([]int, len(u.AdditionalGids))
	for i, g := range u.AdditionalGids {
		groups[i] = int(g)
	}
	// Raw per-thread calls: only this thread's credentials survive execve.
	if err := setgroups(groups); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(u.GID), uintptr(u.GID), uintptr(u.GID)); e != 0 {
		return fmt.Errorf("setresgid %d: %w", u.GID, e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(u.UID), uintptr(u.UID), uintptr(u.UID)); e != 0 {
		return fmt.Errorf("setresuid %d: %w", u.UID, e)
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("keepcaps: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := capsetData(caps)
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	for c := uint(0); c < 64; c++ {
		if amb&(1<<c) == 0 {
			continue
		}
		// Raising needs the capability in permitted and inheritable; one
		// that cannot be raised is a warning, not a failure.
		if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, uintptr(c), 0, 0); err != nil {
			fmt.Fprintf(os.Stderr, "shoal-init: warning: ambient capability %d: %v\n", c, err)
		}
	}
	return nil
}

func setgroups(gids []int) error {
	g := make([]uint32, len(gids)+1) // never empty, so &g[0] is valid
	for i, v := range gids {
		g[i] = uint32(v)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(gids)), uintptr(unsafe.Pointer(&g[0])), 0); e != 0 {
		return e
	}
	return nil
}

// Capabilities are the names of every capability this runtime can grant,
// for callers that check --cap-add/--cap-drop before a start.
func Capabilities() []string {
	out := make([]string, 0, len(capByName))
	for n := range capByName {
		out = append(out, n)
	}
	return out
}
