package cgroups

import (
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Device rules on cgroup v2 have no control file: before every mknod and
// every open of a device node the kernel runs the BPF_PROG_TYPE_CGROUP_DEVICE
// programs attached to the process's cgroup and to each of its ancestors, and
// refuses the access (EPERM) unless all of them return 1. Such a program
// needs no controller, so it works on a hybrid host's controller-less unified
// tree too.
//
// The program is attached with BPF_PROG_ATTACH, not a BPF link: the cgroup
// then holds the only reference, the program outlives the daemon that loaded
// it (a daemon restart must not lift a running container's rules), and it is
// released with the cgroup when the cgroup is removed.
//
// The program is assembled and loaded with the bpf(2) system call directly
// (bpf.go), not with a BPF library: this package is imported by the
// container init, whose start must not initialize such a library's
// dependencies (see package runtime/initmain).

// Access bits of struct bpf_cgroup_dev_ctx.access_type (upper 16 bits).
const (
	devAccRead  = unix.BPF_DEVCG_ACC_READ
	devAccWrite = unix.BPF_DEVCG_ACC_WRITE
	devAccMknod = unix.BPF_DEVCG_ACC_MKNOD
	devAccAll   = devAccRead | devAccWrite | devAccMknod
)

// deviceFilter translates OCI device rules into a cgroup device program.
//
// The rules are read in order and the last rule that matches a device and an
// access bit decides for that bit. The v1 controller keeps a list of
// exceptions instead, from which a rule removes only an exact match: there a
// later rule does not override an earlier, opposite one of another
// granularity (a wildcard and one device; after "deny a", v1 keeps "allow c
// 1:5" under a later "deny c *:*", and "allow c *:* m" under a later "deny c
// 10:229"). Docker's defaults followed by the runtime's always-allowed rules
// come out the same on both.
//
// The program walks the rules from the last to the first, keeping in R3 the
// requested access bits no rule has decided yet: a matching deny rule that
// covers an undecided bit refuses, a matching allow rule decides the bits it
// covers and the program allows once none is left. Bits no rule covers are
// allowed, as in a v1 cgroup that was not first reset with "deny a" (an empty
// rule list changes nothing). A type "a" rule (or no type) matches every
// device and access, as writing "a" to devices.allow or devices.deny does.
func deviceFilter(rules []specs.LinuxDeviceCgroup) ([]bpfInsn, error) {
	var p bpfProgram
	// struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }
	p.emit(
		ldxW(bpfR2, bpfR1, 0), // R2: device type
		alu32Imm(bpfAnd, bpfR2, 0xFFFF),
		ldxW(bpfR3, bpfR1, 0), // R3: undecided access bits
		alu32Imm(bpfRsh, bpfR3, 16),
		ldxW(bpfR4, bpfR1, 4), // R4: major
		ldxW(bpfR5, bpfR1, 8), // R5: minor
	)
	verdict := func(allow bool) {
		v := int32(0)
		if allow {
			v = 1
		}
		p.emit(alu32Imm(bpfMov, bpfR0, v), bpfInsn{code: bpfJmp | bpfExit})
	}
	for i := len(rules) - 1; i >= 0; i-- {
		r := rules[i]
		next := fmt.Sprintf("rule%d", i-1)
		if i == 0 {
			next = "default"
		}
		typ, mask, err := deviceMatch(r)
		if err != nil {
			return nil, err
		}
		p.label(fmt.Sprintf("rule%d", i))
		if typ == 0 {
			// Matches everything: it decides every undecided bit, and the
			// rules before it are never reached (the verifier refuses
			// unreachable instructions, so none are emitted).
			verdict(r.Allow)
			return p.assemble()
		}
		p.jump(bpfJne, bpfR2, typ, next)
		if n := r.Major; n != nil && *n != -1 {
			p.jump(bpfJne, bpfR4, int32(*n), next)
		}
		if n := r.Minor; n != nil && *n != -1 {
			p.jump(bpfJne, bpfR5, int32(*n), next)
		}
		if r.Allow {
			p.emit(alu32Imm(bpfAnd, bpfR3, ^mask&devAccAll))
			p.jump(bpfJne, bpfR3, 0, next)
		} else {
			p.emit(bpfInsn{code: bpfAlu | bpfMov | bpfX, regs: bpfR1 | bpfR3<<4})
			p.emit(alu32Imm(bpfAnd, bpfR1, mask))
			p.jump(bpfJeq, bpfR1, 0, next)
		}
		verdict(r.Allow)
	}
	p.label("default")
	verdict(true)
	return p.assemble()
}

// deviceMatch checks one rule and returns its BPF device type (0 for all
// devices) and access mask.
func deviceMatch(r specs.LinuxDeviceCgroup) (int32, int32, error) {
	// deviceRule is the v1 syntax check; both versions accept the same rules.
	if _, err := deviceRule(r); err != nil {
		return 0, 0, err
	}
	for _, n := range []*int64{r.Major, r.Minor} {
		if n != nil && (*n < -1 || *n > math.MaxInt32) {
			return 0, 0, fmt.Errorf("%w: device number %d", ErrInvalid, *n)
		}
	}
	var typ int32
	switch r.Type {
	case "b":
		typ = unix.BPF_DEVCG_DEV_BLOCK
	case "c":
		typ = unix.BPF_DEVCG_DEV_CHAR
	default: // "a" or none
		return 0, devAccAll, nil
	}
	access := r.Access
	if access == "" {
		access = "rwm"
	}
	var mask int32
	for _, c := range access {
		switch c {
		case 'r':
			mask |= devAccRead
		case 'w':
			mask |= devAccWrite
		case 'm':
			mask |= devAccMknod
		}
	}
	return typ, mask, nil
}

// attachDeviceFilter loads the program for rules and attaches it to the
// cgroup directory dir (a cgroup v2 directory), replacing a program this
// package attached there before. BPF_F_ALLOW_MULTI keeps the ancestors'
// programs in force (a device must pass all of them) and lets an ancestor
// managed by systemd keep its own.
func attachDeviceFilter(dir string, rules []specs.LinuxDeviceCgroup) error {
	insns, err := deviceFilter(rules)
	if err != nil {
		return err
	}
	prog, err := devicePrograms.get(insns)
	if err != nil {
		return fmt.Errorf("%w: device rules cannot be enforced: load BPF program: %w", ErrUnavailable, err)
	}
	defer unix.Close(prog.fd)
	cg, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("cgroups: device rules: %w", err)
	}
	defer cg.Close()
	fd := int(cg.Fd())
	old, err := queryDevicePrograms(fd)
	if err != nil {
		return fmt.Errorf("%w: device rules cannot be enforced: query BPF programs of %s: %w", ErrUnavailable, dir, err)
	}
	if slices.Contains(old, prog.id) {
		// These rules are in force already (the kernel refuses the same
		// program twice on one cgroup); only others go.
		old = slices.DeleteFunc(old, func(id ProgramID) bool { return id == prog.id })
	} else if err := bpfAttach(unix.BPF_PROG_ATTACH, fd, prog.fd, unix.BPF_F_ALLOW_MULTI); err != nil {
		return fmt.Errorf("%w: device rules cannot be enforced: attach BPF program to %s: %w", ErrUnavailable, dir, err)
	}
	// The new rules are in force; the old program only narrows them.
	for _, id := range old {
		if err := detachProgram(fd, id); err != nil {
			return fmt.Errorf("cgroups: detach old device program from %s: %w", dir, err)
		}
	}
	return nil
}

// devicePrograms keeps the device programs this process has loaded, by
// their instructions: every container of a default configuration gets the
// same program, and a shim that starts many containers loads it once (the
// verifier's load took 0.8 ms of each start; a cgroup holds its own
// reference to what is attached to it). A handful of rule sets at most are
// in use at a time; beyond maxDevicePrograms the cache starts again.
var devicePrograms = progCache{progs: map[string]loadedProg{}}

const maxDevicePrograms = 32

type progCache struct {
	mu    sync.Mutex
	progs map[string]loadedProg
}

// loadedProg is a loaded program's descriptor (close-on-exec, as bpf(2)
// makes them) and the kernel's id of it.
type loadedProg struct {
	fd int
	id ProgramID
}

// get returns the program for insns, loading it if this process has not,
// with a descriptor of the caller's own, which the caller closes: the
// cache's descriptor may be closed by an eviction while the caller attaches.
func (c *progCache) get(insns []bpfInsn) (loadedProg, error) {
	key := unsafe.String((*byte)(unsafe.Pointer(&insns[0])), len(insns)*int(unsafe.Sizeof(insns[0])))
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.progs[key]
	if !ok {
		var err error
		if p, err = c.loadLocked(key, insns); err != nil {
			return loadedProg{}, err
		}
	}
	fd, err := unix.FcntlInt(uintptr(p.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return loadedProg{}, fmt.Errorf("duplicate BPF program descriptor: %w", err)
	}
	return loadedProg{fd: fd, id: p.id}, nil
}

func (c *progCache) loadLocked(key string, insns []bpfInsn) (loadedProg, error) {
	fd, err := loadDeviceProgram(insns)
	if err != nil {
		return loadedProg{}, err
	}
	id, err := programID(fd)
	if err != nil {
		unix.Close(fd)
		return loadedProg{}, err
	}
	if len(c.progs) >= maxDevicePrograms {
		c.closeAllLocked()
	}
	p := loadedProg{fd: fd, id: id}
	c.progs[strings.Clone(key)] = p
	return p, nil
}

// closeAll drops the loaded programs: the cgroups they are attached to keep
// their own references.
func (c *progCache) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closeAllLocked()
}

func (c *progCache) closeAllLocked() {
	for k, p := range c.progs {
		unix.Close(p.fd)
		delete(c.progs, k)
	}
}

// programID asks the kernel for the id of the program behind fd
// (BPF_OBJ_GET_INFO_BY_FD; the id is the second word of bpf_prog_info).
func programID(fd int) (ProgramID, error) {
	var info [2]uint32 // type, id
	attr := struct {
		fd, infoLen uint32
		info        uint64
	}{fd: uint32(fd), infoLen: uint32(unsafe.Sizeof(info)), info: uint64(uintptr(unsafe.Pointer(&info[0])))}
	_, err := bpf(unix.BPF_OBJ_GET_INFO_BY_FD, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	runtime.KeepAlive(&info)
	if err != nil {
		return 0, fmt.Errorf("id of BPF program: %w", err)
	}
	return ProgramID(info[1]), nil
}

func detachProgram(cgroupFD int, id ProgramID) error {
	attr := struct{ id, nextID, openFlags uint32 }{id: uint32(id)}
	p, err := bpf(unix.BPF_PROG_GET_FD_BY_ID, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(p)
	return bpfAttach(unix.BPF_PROG_DETACH, cgroupFD, p, 0)
}

// ProgramID is the kernel's id of a BPF program.
type ProgramID uint32

// DeviceProgramIDs lists the device programs attached to the cgroup v2
// directory dir itself (not those inherited from its ancestors), for
// diagnostics and tests.
func DeviceProgramIDs(dir string) ([]ProgramID, error) {
	cg, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("cgroups: %w", err)
	}
	defer cg.Close()
	ids, err := queryDevicePrograms(int(cg.Fd()))
	if err != nil {
		return nil, fmt.Errorf("cgroups: device programs of %s: %w", dir, err)
	}
	return ids, nil
}
