package seccomp

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// run interprets a compiled filter for one seccomp_data (eval), so the
// program's decisions are tested without loading it into the kernel.
func run(t *testing.T, prog []unix.SockFilter, archID uint32, nr int32, args [6]uint64) uint32 {
	t.Helper()
	ret, ok := eval(prog, archID, nr, args)
	if !ok {
		t.Fatal("the program has an instruction eval does not know, or falls off its end")
	}
	return ret
}

const (
	auditX86_64 = 0xc000003e
	auditI386   = 0x40000003
)

func TestDefaultProfileDecisions(t *testing.T) {
	p, err := Compile(DefaultProfile())
	if err != nil {
		t.Fatal(err)
	}
	eperm := uint32(retErrno | uint32(unix.EPERM))
	cases := []struct {
		name string
		arch uint32
		nr   int32
		args [6]uint64
		want uint32
	}{
		{"read", auditX86_64, unix.SYS_READ, [6]uint64{}, retAllow},
		{"execve", auditX86_64, unix.SYS_EXECVE, [6]uint64{}, retAllow},
		{"mount denied", auditX86_64, unix.SYS_MOUNT, [6]uint64{}, eperm},
		{"keyctl denied", auditX86_64, unix.SYS_KEYCTL, [6]uint64{}, eperm},
		{"pivot_root denied", auditX86_64, unix.SYS_PIVOT_ROOT, [6]uint64{}, eperm},
		{"clone plain", auditX86_64, unix.SYS_CLONE, [6]uint64{17 | unix.CLONE_VM}, retAllow},
		{"clone newns", auditX86_64, unix.SYS_CLONE, [6]uint64{unix.CLONE_NEWNS | 17}, eperm},
		{"clone newuser", auditX86_64, unix.SYS_CLONE, [6]uint64{unix.CLONE_NEWUSER}, eperm},
		{"clone3 enosys", auditX86_64, unix.SYS_CLONE3, [6]uint64{}, retErrno | uint32(unix.ENOSYS)},
		{"socket inet", auditX86_64, unix.SYS_SOCKET, [6]uint64{unix.AF_INET}, retAllow},
		{"socket vsock", auditX86_64, unix.SYS_SOCKET, [6]uint64{unix.AF_VSOCK}, eperm},
		{"socket high bits", auditX86_64, unix.SYS_SOCKET, [6]uint64{1<<32 | unix.AF_VSOCK}, retAllow},
		{"personality 0", auditX86_64, unix.SYS_PERSONALITY, [6]uint64{0}, retAllow},
		{"personality other", auditX86_64, unix.SYS_PERSONALITY, [6]uint64{0x400000}, eperm},
		{"x32 read", auditX86_64, x32SyscallBit | 0, [6]uint64{}, retAllow},
		{"x32 mount", auditX86_64, x32SyscallBit | 165, [6]uint64{}, eperm},
		{"i386 read", auditI386, 3, [6]uint64{}, retAllow},
		{"i386 mount", auditI386, 21, [6]uint64{}, eperm},
		{"unknown arch", 0x1234, 0, [6]uint64{}, retKillProcess},
		{"unknown nr", auditX86_64, 999, [6]uint64{}, eperm},
	}
	for _, c := range cases {
		if got := run(t, p.Filter, c.arch, c.nr, c.args); got != c.want {
			t.Errorf("%s: got %#x, want %#x", c.name, got, c.want)
		}
	}
}

func TestOperators(t *testing.T) {
	pol := func(op specs.LinuxSeccompOperator, v uint64) *specs.LinuxSeccomp {
		return &specs.LinuxSeccomp{
			DefaultAction: specs.ActAllow,
			Syscalls: []specs.LinuxSyscall{{
				Names: []string{"write"}, Action: specs.ActErrno,
				Args: []specs.LinuxSeccompArg{{Index: 2, Value: v, Op: op}},
			}},
		}
	}
	big := uint64(5)<<32 | 7
	cases := []struct {
		op   specs.LinuxSeccompOperator
		arg  uint64
		deny bool
	}{
		{specs.OpEqualTo, big, true}, {specs.OpEqualTo, big + 1, false}, {specs.OpEqualTo, 7, false},
		{specs.OpNotEqual, big, false}, {specs.OpNotEqual, 7, true},
		{specs.OpGreaterThan, big + 1, true}, {specs.OpGreaterThan, big, false}, {specs.OpGreaterThan, 1 << 40, true}, {specs.OpGreaterThan, 8, false},
		{specs.OpGreaterEqual, big, true}, {specs.OpGreaterEqual, big - 1, false},
		{specs.OpLessThan, big - 1, true}, {specs.OpLessThan, big, false}, {specs.OpLessThan, 9, true},
		{specs.OpLessEqual, big, true}, {specs.OpLessEqual, big + 1, false},
	}
	for _, c := range cases {
		p, err := Compile(pol(c.op, big))
		if err != nil {
			t.Fatal(err)
		}
		got := run(t, p.Filter, auditX86_64, unix.SYS_WRITE, [6]uint64{0, 0, c.arg})
		if deny := got != retAllow; deny != c.deny {
			t.Errorf("%s %#x vs %#x: denied=%v want %v", c.op, c.arg, big, deny, c.deny)
		}
	}
}

func TestInvalid(t *testing.T) {
	bad := []*specs.LinuxSeccomp{
		nil,
		{DefaultAction: "SCMP_ACT_NONSENSE"},
		{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 7, Op: specs.OpEqualTo}}}}},
		{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 0, Op: "SCMP_CMP_WHAT"}}}}},
		{DefaultAction: specs.ActAllow, ListenerPath: "/run/x.sock"},
	}
	for i, s := range bad {
		if _, err := Compile(s); err == nil {
			t.Errorf("case %d: compiled an invalid policy", i)
		}
	}
}

func BenchmarkCompileDefault(b *testing.B) {
	s := DefaultProfile()
	for i := 0; i < b.N; i++ {
		if _, err := compile(s); err != nil {
			b.Fatal(err)
		}
	}
}

// Allows is the runtime's question before it relies on a call after the
// filter is loaded: allow and log let it through, anything else does not.
func TestAllows(t *testing.T) {
	def, err := Compile(DefaultProfile())
	if err != nil {
		t.Fatal(err)
	}
	logged, err := Compile(&specs.LinuxSeccomp{DefaultAction: specs.ActLog,
		Syscalls: []specs.LinuxSyscall{{Names: []string{"execveat"}, Action: specs.ActKillProcess}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		p    *Program
		nr   int
		want bool
	}{
		{"default execveat", def, unix.SYS_EXECVEAT, true},
		{"default mount", def, unix.SYS_MOUNT, false},
		{"log default", logged, unix.SYS_READ, true},
		{"killed", logged, unix.SYS_EXECVEAT, false},
	} {
		if got := c.p.Allows(c.nr, [6]uint64{5, 0, 0, 0, unix.AT_EMPTY_PATH}); got != c.want {
			t.Errorf("%s: allows %v, want %v", c.name, got, c.want)
		}
	}
	if (&Program{Filter: []unix.SockFilter{{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_IND}}}).Allows(unix.SYS_READ, [6]uint64{}) {
		t.Error("a program with an instruction eval does not know: allowed")
	}
}
