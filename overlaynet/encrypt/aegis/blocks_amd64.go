package aegis

import "golang.org/x/sys/cpu"

// useAsm: the assembly needs AES-NI and the VEX encoding (AVX).
var useAsm = cpu.X86.HasAES && cpu.X86.HasAVX

// The assembly processes whole 32-byte blocks of src; dst is at least as
// long and may be src itself.

//go:noescape
func absorbAsm(s *state, src []byte)

//go:noescape
func encryptAsm(s *state, dst, src []byte)

//go:noescape
func decryptAsm(s *state, dst, src []byte)

func absorbBlocks(s *state, src []byte) {
	if useAsm {
		absorbAsm(s, src)
		return
	}
	absorbBlocksGeneric(s, src)
}

func encryptBlocks(s *state, dst, src []byte) {
	if useAsm {
		encryptAsm(s, dst, src)
		return
	}
	encryptBlocksGeneric(s, dst, src)
}

func decryptBlocks(s *state, dst, src []byte) {
	if useAsm {
		decryptAsm(s, dst, src)
		return
	}
	decryptBlocksGeneric(s, dst, src)
}
