package cgroups

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	goruntime "runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A minimal eBPF assembler and the bpf(2) calls the cgroup v2 device filter
// needs (devices_v2.go): loading a BPF_PROG_TYPE_CGROUP_DEVICE program and
// attaching, querying and detaching it on a cgroup.

// bpfInsn is struct bpf_insn: opcode, dst (low nibble) and src registers,
// jump offset, immediate.
type bpfInsn struct {
	code uint8
	regs uint8
	off  int16
	imm  int32
}

// Registers and opcode parts (include/uapi/linux/bpf.h, bpf_common.h).
const (
	bpfR0 = 0
	bpfR1 = 1
	bpfR2 = 2
	bpfR3 = 3
	bpfR4 = 4
	bpfR5 = 5

	bpfLdx  = 0x01 // instruction classes
	bpfAlu  = 0x04 // 32-bit arithmetic
	bpfJmp  = 0x05 // 64-bit comparisons
	bpfMemW = 0x60 // BPF_MEM | BPF_W: a 32-bit load
	bpfK    = 0x00 // operand: the immediate
	bpfX    = 0x08 // operand: the src register
	bpfAnd  = 0x50 // ALU operations
	bpfRsh  = 0x70
	bpfMov  = 0xb0
	bpfJeq  = 0x10 // jumps
	bpfJne  = 0x50
	bpfExit = 0x90
)

// ldxW loads the 32-bit word at src+off into dst.
func ldxW(dst, src uint8, off int16) bpfInsn {
	return bpfInsn{code: bpfLdx | bpfMemW, regs: dst | src<<4, off: off}
}

// alu32Imm is dst = dst OP imm on 32 bits (OP bpfMov: dst = imm).
func alu32Imm(op, dst uint8, imm int32) bpfInsn {
	return bpfInsn{code: bpfAlu | op | bpfK, regs: dst, imm: imm}
}

// bpfProgram collects instructions whose jumps name labels.
type bpfProgram struct {
	insns  []bpfInsn
	labels map[string]int // label -> index of the instruction it names
	jumps  map[int]string // index of a jump -> its target label
}

func (p *bpfProgram) emit(insns ...bpfInsn) { p.insns = append(p.insns, insns...) }

// label names the next instruction.
func (p *bpfProgram) label(name string) {
	if p.labels == nil {
		p.labels = map[string]int{}
	}
	p.labels[name] = len(p.insns)
}

// jump emits "if reg OP imm goto target".
func (p *bpfProgram) jump(op, reg uint8, imm int32, target string) {
	if p.jumps == nil {
		p.jumps = map[int]string{}
	}
	p.jumps[len(p.insns)] = target
	p.emit(bpfInsn{code: bpfJmp | op | bpfK, regs: reg, imm: imm})
}

// assemble resolves the jumps' labels into offsets.
func (p *bpfProgram) assemble() ([]bpfInsn, error) {
	for i, target := range p.jumps {
		at, ok := p.labels[target]
		if !ok {
			return nil, fmt.Errorf("cgroups: device program: no label %s", target)
		}
		off := at - (i + 1)
		if off < 0 || off > math.MaxInt16 {
			return nil, fmt.Errorf("cgroups: device program: jump to %s out of range", target)
		}
		p.insns[i].off = int16(off)
	}
	return p.insns, nil
}

// bpf is the bpf(2) system call.
func bpf(cmd int, attr unsafe.Pointer, size uintptr) (int, error) {
	for {
		r, _, e := unix.Syscall(unix.SYS_BPF, uintptr(cmd), uintptr(attr), size)
		switch e {
		case 0:
			return int(r), nil
		case unix.EINTR, unix.EAGAIN: // the verifier was interrupted
			continue
		}
		return -1, e
	}
}

// progLoadAttr is the BPF_PROG_LOAD part of union bpf_attr, up to
// expected_attach_type.
type progLoadAttr struct {
	progType           uint32
	insnCnt            uint32
	insns              uint64
	license            uint64
	logLevel           uint32
	logSize            uint32
	logBuf             uint64
	kernVersion        uint32
	progFlags          uint32
	progName           [16]byte
	progIfindex        uint32
	expectedAttachType uint32
}

// loadDeviceProgram loads a cgroup device program and returns its
// descriptor. A program the verifier refuses is loaded again with the
// verifier's log, which the error then carries.
func loadDeviceProgram(insns []bpfInsn) (int, error) {
	if len(insns) == 0 {
		return -1, errors.New("empty program")
	}
	license := []byte("Apache-2.0\x00")
	attr := progLoadAttr{
		progType: unix.BPF_PROG_TYPE_CGROUP_DEVICE,
		insnCnt:  uint32(len(insns)),
		insns:    uint64(uintptr(unsafe.Pointer(&insns[0]))),
		license:  uint64(uintptr(unsafe.Pointer(&license[0]))),
	}
	copy(attr.progName[:], "shoal_devices")
	fd, err := bpf(unix.BPF_PROG_LOAD, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	if err != nil && (errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EACCES)) {
		log := make([]byte, 64<<10)
		attr.logLevel, attr.logSize, attr.logBuf = 1, uint32(len(log)), uint64(uintptr(unsafe.Pointer(&log[0])))
		fd2, err2 := bpf(unix.BPF_PROG_LOAD, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
		switch n := bytes.IndexByte(log, 0); {
		case err2 == nil: // loaded after all
			fd, err = fd2, nil
		case n > 0:
			err = fmt.Errorf("%w: verifier: %s", err, bytes.TrimSpace(log[:n]))
		}
		goruntime.KeepAlive(log)
	}
	goruntime.KeepAlive(insns)
	goruntime.KeepAlive(license)
	return fd, err
}

// bpfAttach is BPF_PROG_ATTACH or BPF_PROG_DETACH of a device program on a
// cgroup.
func bpfAttach(cmd, cgroupFD, progFD int, flags uint32) error {
	attr := struct{ targetFD, attachBpfFD, attachType, attachFlags, replaceBpfFD uint32 }{
		targetFD: uint32(cgroupFD), attachBpfFD: uint32(progFD), attachType: unix.BPF_CGROUP_DEVICE, attachFlags: flags}
	_, err := bpf(cmd, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	return err
}

// queryAttr is the BPF_PROG_QUERY part of union bpf_attr, up to revision,
// which newer kernels write back.
type queryAttr struct {
	targetFD        uint32
	attachType      uint32
	queryFlags      uint32
	attachFlags     uint32
	progIDs         uint64
	progCnt         uint32
	_               uint32
	progAttachFlags uint64
	linkIDs         uint64
	linkAttachFlags uint64
	revision        uint64
}

// queryDevicePrograms lists the device programs attached to the cgroup
// itself.
func queryDevicePrograms(cgroupFD int) ([]ProgramID, error) {
	ids := make([]uint32, 16)
	for {
		attr := queryAttr{targetFD: uint32(cgroupFD), attachType: unix.BPF_CGROUP_DEVICE,
			progIDs: uint64(uintptr(unsafe.Pointer(&ids[0]))), progCnt: uint32(len(ids))}
		_, err := bpf(unix.BPF_PROG_QUERY, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
		goruntime.KeepAlive(ids)
		if errors.Is(err, unix.ENOSPC) && int(attr.progCnt) > len(ids) {
			ids = make([]uint32, attr.progCnt)
			continue
		}
		if err != nil {
			return nil, err
		}
		out := make([]ProgramID, attr.progCnt)
		for i := range out {
			out[i] = ProgramID(ids[i])
		}
		return out, nil
	}
}
