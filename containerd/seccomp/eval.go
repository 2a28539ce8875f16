package seccomp

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// Allows tells whether the program lets the native architecture's system
// call nr with args through (its verdict is allow or log). The runtime asks
// before it relies on a call that runs after the filter is loaded and that
// the container's own program would not need.
func (p *Program) Allows(nr int, args [6]uint64) bool {
	arch, err := nativeArch()
	if err != nil {
		return false
	}
	ret, ok := eval(p.Filter, arch.id, int32(nr), args)
	return ok && (ret == retAllow || ret == retLog)
}

// eval runs a filter as the kernel would for one seccomp_data and returns
// its verdict. It knows the instructions Compile emits; a program with
// others, or one that falls off its end, is not ok.
func eval(prog []unix.SockFilter, archID uint32, nr int32, args [6]uint64) (uint32, bool) {
	var data [64]byte
	binary.LittleEndian.PutUint32(data[offNr:], uint32(nr))
	binary.LittleEndian.PutUint32(data[offArch:], archID)
	for i, a := range args {
		binary.LittleEndian.PutUint64(data[offArgs+8*i:], a)
	}
	var acc uint32
	for pc := 0; pc < len(prog); pc++ {
		in := prog[pc]
		switch in.Code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			if in.K > uint32(len(data)-4) {
				return 0, false
			}
			acc = binary.LittleEndian.Uint32(data[in.K:])
		case unix.BPF_ALU | unix.BPF_AND | unix.BPF_K:
			acc &= in.K
		case unix.BPF_JMP | unix.BPF_JA:
			pc += int(in.K)
		case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, unix.BPF_JMP | unix.BPF_JGT | unix.BPF_K,
			unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K, unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K:
			var ok bool
			switch in.Code &^ (unix.BPF_JMP | unix.BPF_K) {
			case unix.BPF_JEQ:
				ok = acc == in.K
			case unix.BPF_JGT:
				ok = acc > in.K
			case unix.BPF_JGE:
				ok = acc >= in.K
			case unix.BPF_JSET:
				ok = acc&in.K != 0
			}
			if ok {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		case unix.BPF_RET | unix.BPF_K:
			return in.K, true
		default:
			return 0, false
		}
	}
	return 0, false
}
