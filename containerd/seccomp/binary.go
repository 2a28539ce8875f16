package seccomp

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// The binary form of a Program: an 8-byte magic, the flags and the number
// of instructions (little endian uint32 each), then every instruction as
// the kernel reads it (code uint16, jt, jf uint8, k uint32, little endian:
// the only architectures supported are little endian).
const (
	binaryMagic  = "shoalbpf"
	binaryHeader = len(binaryMagic) + 8
	// maxInsns is the kernel's BPF_MAXINSNS for classic filters.
	maxInsns = 4096
	// knownFlags are the SECCOMP_FILTER_FLAG_* a compiled program may carry.
	knownFlags = unix.SECCOMP_FILTER_FLAG_LOG | unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW
)

// MarshalBinary encodes the program (see UnmarshalBinary).
func (p *Program) MarshalBinary() ([]byte, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	b := make([]byte, binaryHeader+8*len(p.Filter))
	copy(b, binaryMagic)
	binary.LittleEndian.PutUint32(b[8:], uint32(p.Flags))
	binary.LittleEndian.PutUint32(b[12:], uint32(len(p.Filter)))
	for i, ins := range p.Filter {
		o := binaryHeader + 8*i
		binary.LittleEndian.PutUint16(b[o:], ins.Code)
		b[o+2], b[o+3] = ins.Jt, ins.Jf
		binary.LittleEndian.PutUint32(b[o+4:], ins.K)
	}
	return b, nil
}

// UnmarshalBinary decodes a program written by MarshalBinary and refuses
// one that is malformed: wrong magic or length, unknown flags, more
// instructions than the kernel takes, a jump out of the program, or a
// last instruction that does not return. (The kernel checks the program
// again when it is loaded; this catches a damaged file with a clear error
// before a container is set up.)
func (p *Program) UnmarshalBinary(b []byte) error {
	if len(b) < binaryHeader || string(b[:len(binaryMagic)]) != binaryMagic {
		return fmt.Errorf("%w: compiled program: bad header", ErrInvalid)
	}
	flags := binary.LittleEndian.Uint32(b[8:])
	n := int(binary.LittleEndian.Uint32(b[12:]))
	if n > maxInsns || len(b) != binaryHeader+8*n {
		return fmt.Errorf("%w: compiled program: %d instructions in %d bytes", ErrInvalid, n, len(b))
	}
	q := Program{Flags: uint(flags), Filter: make([]unix.SockFilter, n)}
	for i := range q.Filter {
		o := binaryHeader + 8*i
		q.Filter[i] = unix.SockFilter{
			Code: binary.LittleEndian.Uint16(b[o:]),
			Jt:   b[o+2],
			Jf:   b[o+3],
			K:    binary.LittleEndian.Uint32(b[o+4:]),
		}
	}
	if err := q.validate(); err != nil {
		return err
	}
	*p = q
	return nil
}

// validate checks what UnmarshalBinary promises.
func (p *Program) validate() error {
	n := len(p.Filter)
	switch {
	case n == 0 || n > maxInsns:
		return fmt.Errorf("%w: compiled program: %d instructions", ErrInvalid, n)
	case p.Flags&^uint(knownFlags) != 0:
		return fmt.Errorf("%w: compiled program: unknown flags %#x", ErrInvalid, p.Flags)
	case p.Filter[n-1].Code&0x07 != unix.BPF_RET:
		return fmt.Errorf("%w: compiled program: does not end with a return", ErrInvalid)
	}
	for i, ins := range p.Filter {
		if ins.Code&0x07 != unix.BPF_JMP {
			continue
		}
		far := i + 1 + int(ins.Jt)
		if f := i + 1 + int(ins.Jf); f > far {
			far = f
		}
		if ins.Code&0xf0 == unix.BPF_JA {
			far = i + 1 + int(ins.K)
			if ins.K >= maxInsns {
				far = n
			}
		}
		if far >= n {
			return fmt.Errorf("%w: compiled program: instruction %d jumps out of the program", ErrInvalid, i)
		}
	}
	return nil
}
