// Package seccomp compiles OCI seccomp policies (specs.LinuxSeccomp) to
// classic BPF and loads them, without libseccomp or cgo.
//
// The compiler is written here rather than taken from a library because the
// OCI semantics (per-rule errno, several architectures, 64-bit argument
// comparisons, masked equality) are not all covered by the Go libraries.
// Program layout:
//
//	load arch; jump to that architecture's section; unknown arch -> KILL_PROCESS
//	section: load nr;
//	  syscalls with argument rules: one block each, rules tried in spec order
//	  syscalls with an unconditional rule: sorted ranges of equal action
//	  default action
//
// For one syscall the first matching rule wins (spec order); rules after an
// unconditional rule for the same syscall are unreachable. Syscall names the
// architecture does not have are skipped, like runc does. The native
// architecture is always included. Supported: amd64 hosts, with the
// x86_64, i386 and x32 ABIs (tables generated from the kernel headers by
// mksyscalls.sh). SCMP_ACT_NOTIFY is not supported.
//
// Compiling Docker's profile takes well under a millisecond, and Compile
// memoizes by policy content, so a daemon compiles each distinct policy once.
package seccomp

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"sync"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// ErrInvalid reports a policy that cannot be compiled.
var ErrInvalid = errors.New("seccomp: invalid policy")

// Program is a compiled filter plus the flags it must be loaded with.
type Program struct {
	Filter []unix.SockFilter
	Flags  uint // SECCOMP_FILTER_FLAG_*
}

// Return values of a filter (linux/seccomp.h).
const (
	retKillThread  = 0x00000000
	retKillProcess = 0x80000000
	retTrap        = 0x00030000
	retErrno       = 0x00050000
	retTrace       = 0x7ff00000
	retLog         = 0x7ffc0000
	retAllow       = 0x7fff0000

	x32SyscallBit = 0x40000000

	offNr   = 0
	offArch = 4
	offArgs = 16
)

var cache sync.Map // sha256 of the policy JSON -> *Program

// Compile turns a policy into a BPF program, memoized by content.
func Compile(s *specs.LinuxSeccomp) (*Program, error) {
	if s == nil {
		return nil, fmt.Errorf("%w: nil policy", ErrInvalid)
	}
	raw, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("seccomp: %w", err)
	}
	key := sha256.Sum256(raw)
	if p, ok := cache.Load(key); ok {
		return p.(*Program), nil
	}
	p, err := compile(s)
	if err != nil {
		return nil, err
	}
	cache.Store(key, p)
	return p, nil
}

func action(a specs.LinuxSeccompAction, errnoRet *uint, defErrno uint) (uint32, error) {
	errno := defErrno
	if errnoRet != nil {
		errno = *errnoRet
	}
	switch a {
	case specs.ActKill, specs.ActKillThread:
		return retKillThread, nil
	case specs.ActKillProcess:
		return retKillProcess, nil
	case specs.ActTrap:
		return retTrap, nil
	case specs.ActErrno:
		return retErrno | uint32(errno&0xffff), nil
	case specs.ActTrace:
		return retTrace | uint32(errno&0xffff), nil
	case specs.ActAllow:
		return retAllow, nil
	case specs.ActLog:
		return retLog, nil
	}
	return 0, fmt.Errorf("%w: action %q not supported", ErrInvalid, a)
}

// archInfo is one system call ABI. The tables are static data (no work at
// package init, which matters: the container init is a re-execution of the
// binary that imports this package); the name index is built on first use.
type archInfo struct {
	id    uint32 // AUDIT_ARCH_*
	table []syscallEntry
	once  sync.Once
	names map[string]uint32
}

type syscallEntry struct {
	name string
	nr   uint32
}

func (a *archInfo) lookup(name string) (uint32, bool) {
	a.once.Do(func() {
		a.names = make(map[string]uint32, len(a.table))
		for _, e := range a.table {
			a.names[e.name] = e.nr
		}
	})
	nr, ok := a.names[name]
	return nr, ok
}

//go:generate ./mksyscalls.sh

var (
	archX86_64 = &archInfo{id: 0xc000003e, table: syscallsX86_64[:]}
	archI386   = &archInfo{id: 0x40000003, table: syscallsI386[:]}
	// x32 shares x86_64's audit arch; its numbers carry the x32 bit.
	archX32 = &archInfo{id: 0xc000003e, table: syscallsX32[:]}
)

var archByName = map[specs.Arch]*archInfo{
	specs.ArchX86_64: archX86_64,
	specs.ArchX86:    archI386,
	specs.ArchX32:    archX32,
}

func nativeArch() (*archInfo, error) {
	if runtime.GOARCH == "amd64" {
		return archX86_64, nil
	}
	return nil, fmt.Errorf("%w: architecture %s not supported (amd64 only)", ErrInvalid, runtime.GOARCH)
}

var flagByName = map[specs.LinuxSeccompFlag]uint{
	specs.LinuxSeccompFlagLog:              unix.SECCOMP_FILTER_FLAG_LOG,
	specs.LinuxSeccompFlagSpecAllow:        unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW,
	specs.LinuxSeccompFlagWaitKillableRecv: 0, // only meaningful with notify
}

func compile(s *specs.LinuxSeccomp) (*Program, error) {
	if s.ListenerPath != "" {
		return nil, fmt.Errorf("%w: seccomp notify (listenerPath) not supported", ErrInvalid)
	}
	const eperm = uint(unix.EPERM)
	def, err := action(s.DefaultAction, s.DefaultErrnoRet, eperm)
	if err != nil {
		return nil, err
	}
	p := &Program{}
	for _, f := range s.Flags {
		v, ok := flagByName[f]
		if !ok {
			return nil, fmt.Errorf("%w: flag %q", ErrInvalid, f)
		}
		p.Flags |= v
	}
	native, err := nativeArch()
	if err != nil {
		return nil, err
	}
	// Architectures sharing an audit ID (x86_64 and x32) share a section.
	var x32 bool
	infos := []*archInfo{native}
	for _, a := range s.Architectures {
		info, ok := archByName[a]
		if !ok {
			continue // cannot run on this host anyway
		}
		if info == archX32 {
			x32 = native == archX86_64
			continue
		}
		dup := false
		for _, have := range infos {
			dup = dup || have.id == info.id
		}
		if !dup {
			infos = append(infos, info)
		}
	}
	for _, r := range s.Syscalls {
		for _, a := range r.Args {
			if a.Index > 5 {
				return nil, fmt.Errorf("%w: argument index %d", ErrInvalid, a.Index)
			}
		}
		if _, err := action(r.Action, r.ErrnoRet, eperm); err != nil {
			return nil, err
		}
	}

	a := &asm{labels: map[int]int{}}
	kill := a.newLabel()
	sections := make([]int, len(infos))
	a.stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, offArch)
	for i, info := range infos {
		sections[i] = a.newLabel()
		a.jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, info.id, next, skip1)
		a.ja(sections[i])
	}
	a.ja(kill)
	for i, info := range infos {
		a.bind(sections[i])
		a.stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, offNr)
		if info == archX86_64 {
			x32Label := kill
			if x32 {
				x32Label = a.newLabel()
			}
			a.jump(unix.BPF_JMP|unix.BPF_JGE|unix.BPF_K, x32SyscallBit, next, skip1)
			a.ja(x32Label)
			if err := emitRules(a, s, info, 0, def); err != nil {
				return nil, err
			}
			if x32 {
				a.bind(x32Label)
				if err := emitRules(a, s, archX32, x32SyscallBit, def); err != nil {
					return nil, err
				}
			}
			continue
		}
		if err := emitRules(a, s, info, 0, def); err != nil {
			return nil, err
		}
	}
	a.bind(kill)
	a.stmt(unix.BPF_RET|unix.BPF_K, retKillProcess)
	prog, err := a.assemble()
	if err != nil {
		return nil, err
	}
	if len(prog) > unix.BPF_MAXINSNS {
		return nil, fmt.Errorf("%w: %d instructions exceed the kernel limit", ErrInvalid, len(prog))
	}
	p.Filter = prog
	return p, nil
}

type rule struct {
	args []specs.LinuxSeccompArg
	ret  uint32
}

// emitRules emits one architecture's rules, ending with the default action.
// The accumulator holds the syscall number on entry.
func emitRules(a *asm, s *specs.LinuxSeccomp, info *archInfo, bit uint32, def uint32) error {
	const eperm = uint(unix.EPERM)
	byNr := map[uint32][]rule{}
	for _, r := range s.Syscalls {
		ret, _ := action(r.Action, r.ErrnoRet, eperm)
		for _, name := range r.Names {
			n, ok := info.lookup(name)
			if !ok {
				continue
			}
			nr := n | bit
			rs := byNr[nr]
			if len(rs) > 0 && len(rs[len(rs)-1].args) == 0 {
				continue // an unconditional rule already decided this syscall
			}
			byNr[nr] = append(rs, rule{args: r.Args, ret: ret})
		}
	}
	var simple, complex []uint32
	for nr, rs := range byNr {
		if len(rs[0].args) == 0 {
			if rs[0].ret != def {
				simple = append(simple, nr)
			}
			continue
		}
		complex = append(complex, nr)
	}
	sort.Slice(simple, func(i, j int) bool { return simple[i] < simple[j] })
	sort.Slice(complex, func(i, j int) bool { return complex[i] < complex[j] })

	for _, nr := range complex {
		end := a.newLabel()
		a.jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, nr, next, end)
		loaded := false
		for _, r := range byNr[nr] {
			if len(r.args) == 0 {
				a.stmt(unix.BPF_RET|unix.BPF_K, r.ret)
				break
			}
			fail := a.newLabel()
			for _, arg := range r.args {
				if err := emitArg(a, arg, fail); err != nil {
					return err
				}
			}
			loaded = true
			a.stmt(unix.BPF_RET|unix.BPF_K, r.ret)
			a.bind(fail)
		}
		a.bind(end)
		if loaded {
			a.stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, offNr)
		}
	}
	// Contiguous syscall numbers with the same action form one range check.
	for i := 0; i < len(simple); {
		lo, ret := simple[i], byNr[simple[i]][0].ret
		j := i
		for j+1 < len(simple) && simple[j+1] == simple[j]+1 && byNr[simple[j+1]][0].ret == ret {
			j++
		}
		hi := simple[j]
		after := a.newLabel()
		if lo == hi {
			a.jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, lo, next, after)
		} else {
			a.jump(unix.BPF_JMP|unix.BPF_JGE|unix.BPF_K, lo, next, after)
			a.jump(unix.BPF_JMP|unix.BPF_JGT|unix.BPF_K, hi, after, next)
		}
		a.stmt(unix.BPF_RET|unix.BPF_K, ret)
		a.bind(after)
		i = j + 1
	}
	a.stmt(unix.BPF_RET|unix.BPF_K, def)
	return nil
}

// emitArg checks one 64-bit argument condition, jumping to fail when it
// does not hold and falling through when it does. The argument is read as
// two 32-bit words (little-endian layout of seccomp_data).
func emitArg(a *asm, arg specs.LinuxSeccompArg, fail int) error {
	lo := uint32(offArgs + 8*arg.Index)
	hi := lo + 4
	v := arg.Value
	vhi, vlo := uint32(v>>32), uint32(v)
	ld := func(off uint32) { a.stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, off) }
	const (
		jeq = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		jgt = unix.BPF_JMP | unix.BPF_JGT | unix.BPF_K
		jge = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
	)
	pass := a.newLabel()
	switch arg.Op {
	case specs.OpEqualTo:
		ld(hi)
		a.jump(jeq, vhi, next, fail)
		ld(lo)
		a.jump(jeq, vlo, next, fail)
	case specs.OpNotEqual:
		ld(hi)
		a.jump(jeq, vhi, next, pass)
		ld(lo)
		a.jump(jeq, vlo, fail, next)
	case specs.OpMaskedEqual:
		w := arg.ValueTwo
		ld(hi)
		a.stmt(unix.BPF_ALU|unix.BPF_AND|unix.BPF_K, vhi)
		a.jump(jeq, uint32(w>>32), next, fail)
		ld(lo)
		a.stmt(unix.BPF_ALU|unix.BPF_AND|unix.BPF_K, vlo)
		a.jump(jeq, uint32(w), next, fail)
	case specs.OpGreaterThan, specs.OpGreaterEqual:
		ld(hi)
		a.jump(jgt, vhi, pass, next)
		a.jump(jeq, vhi, next, fail)
		ld(lo)
		op := uint16(jgt)
		if arg.Op == specs.OpGreaterEqual {
			op = jge
		}
		a.jump(op, vlo, next, fail)
	case specs.OpLessThan, specs.OpLessEqual:
		ld(hi)
		a.jump(jgt, vhi, fail, next)
		a.jump(jeq, vhi, next, pass)
		ld(lo)
		// x < v  <=> !(x >= v);  x <= v <=> !(x > v)
		op := uint16(jge)
		if arg.Op == specs.OpLessEqual {
			op = jgt
		}
		a.jump(op, vlo, fail, next)
	default:
		return fmt.Errorf("%w: operator %q", ErrInvalid, arg.Op)
	}
	a.bind(pass)
	return nil
}

// Special jump targets: fall through, or skip one instruction.
const (
	next  = -1
	skip1 = -2
)

// asm is a tiny assembler with labels. Conditional jumps must land within
// 255 instructions (the rule layout keeps them local); far jumps use ja.
type asm struct {
	ins    []unix.SockFilter
	fix    []fixup
	labels map[int]int
	n      int
}

type fixup struct {
	idx, jt, jf int
	ja          bool
}

func (a *asm) newLabel() int { a.n++; return a.n }
func (a *asm) bind(l int)    { a.labels[l] = len(a.ins) }

func (a *asm) stmt(code uint16, k uint32) {
	a.ins = append(a.ins, unix.SockFilter{Code: code, K: k})
}

func (a *asm) jump(code uint16, k uint32, jt, jf int) {
	a.fix = append(a.fix, fixup{idx: len(a.ins), jt: jt, jf: jf})
	a.ins = append(a.ins, unix.SockFilter{Code: code, K: k})
}

func (a *asm) ja(l int) {
	a.fix = append(a.fix, fixup{idx: len(a.ins), jt: l, ja: true})
	a.ins = append(a.ins, unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JA})
}

func (a *asm) offset(idx, target int) (int, error) {
	switch target {
	case next:
		return 0, nil
	case skip1:
		return 1, nil
	}
	pos, ok := a.labels[target]
	if !ok {
		return 0, fmt.Errorf("seccomp: internal error: unbound label %d", target)
	}
	off := pos - idx - 1
	if off < 0 {
		return 0, fmt.Errorf("seccomp: internal error: backward jump")
	}
	return off, nil
}

func (a *asm) assemble() ([]unix.SockFilter, error) {
	for _, f := range a.fix {
		if f.ja {
			off, err := a.offset(f.idx, f.jt)
			if err != nil {
				return nil, err
			}
			a.ins[f.idx].K = uint32(off)
			continue
		}
		jt, err := a.offset(f.idx, f.jt)
		if err != nil {
			return nil, err
		}
		jf, err := a.offset(f.idx, f.jf)
		if err != nil {
			return nil, err
		}
		if jt > 255 || jf > 255 {
			return nil, fmt.Errorf("%w: a rule is too long for a BPF jump", ErrInvalid)
		}
		a.ins[f.idx].Jt, a.ins[f.idx].Jf = uint8(jt), uint8(jf)
	}
	return a.ins, nil
}

// Load installs the program on the calling thread (not the whole process:
// the runtime's init loads it on the locked thread that then calls execve).
// Without no_new_privs the caller needs CAP_SYS_ADMIN.
func Load(p *Program) error {
	if p == nil || len(p.Filter) == 0 {
		return fmt.Errorf("%w: empty program", ErrInvalid)
	}
	prog := unix.SockFprog{Len: uint16(len(p.Filter)), Filter: &p.Filter[0]}
	_, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, uintptr(p.Flags), uintptr(unsafe.Pointer(&prog)))
	if errno != 0 {
		return fmt.Errorf("seccomp: load filter: %w", errno)
	}
	return nil
}
