package runtime

import "encoding/binary"

// trampolineCode is the whole program of the trampoline (firstproc.go says
// why it exists). Started as
//
//	argv = [path, message, argv0, argv1, ...], envp
//
// it makes execve(path, &argv[2], envp). Should that fail, it writes
// message to stderr and exits as childFail does: 127 for ENOENT, 126 for
// EACCES or EPERM, 1 for anything else; with fewer than three arguments
// (say, run again as a script's interpreter, "#!/proc/self/exe") it exits
// 126 at once. Assembled with GNU as from this listing (Intel syntax):
//
//	_start:  mov rbx, [rsp]            ; argc
//	         cmp rbx, 3
//	         jb refuse
//	         mov rdi, [rsp+8]          ; path
//	         lea rsi, [rsp+24]         ; &argv[2]
//	         lea rdx, [rsp+rbx*8+16]   ; envp: past argv and its NULL
//	         mov eax, 59               ; execve
//	         syscall
//	         neg eax                   ; it returned: -errno
//	         mov ebx, eax
//	         mov rsi, [rsp+16]         ; message
//	         mov rdx, rsi
//	len:     cmp byte ptr [rdx], 0
//	         je write
//	         inc rdx
//	         jmp len
//	write:   sub rdx, rsi
//	         mov edi, 2
//	         mov eax, 1                ; write(2, message, len)
//	         syscall
//	         mov edi, 127
//	         cmp ebx, 2                ; ENOENT
//	         je exit
//	         mov edi, 126
//	         cmp ebx, 13               ; EACCES
//	         je exit
//	         cmp ebx, 1                ; EPERM
//	         je exit
//	         mov edi, 1
//	         jmp exit
//	refuse:  mov edi, 126
//	exit:    mov eax, 231              ; exit_group
//	         syscall
//	         jmp exit
var trampolineCode = []byte{
	0x48, 0x8b, 0x1c, 0x24, // mov rbx, [rsp]
	0x48, 0x83, 0xfb, 0x03, // cmp rbx, 3
	0x72, 0x5b, // jb refuse
	0x48, 0x8b, 0x7c, 0x24, 0x08, // mov rdi, [rsp+8]
	0x48, 0x8d, 0x74, 0x24, 0x18, // lea rsi, [rsp+24]
	0x48, 0x8d, 0x54, 0xdc, 0x10, // lea rdx, [rsp+rbx*8+16]
	0xb8, 0x3b, 0x00, 0x00, 0x00, // mov eax, 59
	0x0f, 0x05, // syscall
	0xf7, 0xd8, // neg eax
	0x89, 0xc3, // mov ebx, eax
	0x48, 0x8b, 0x74, 0x24, 0x10, // mov rsi, [rsp+16]
	0x48, 0x89, 0xf2, // mov rdx, rsi
	0x80, 0x3a, 0x00, // len: cmp byte ptr [rdx], 0
	0x74, 0x05, // je write
	0x48, 0xff, 0xc2, // inc rdx
	0xeb, 0xf6, // jmp len
	0x48, 0x29, 0xf2, // write: sub rdx, rsi
	0xbf, 0x02, 0x00, 0x00, 0x00, // mov edi, 2
	0xb8, 0x01, 0x00, 0x00, 0x00, // mov eax, 1
	0x0f, 0x05, // syscall
	0xbf, 0x7f, 0x00, 0x00, 0x00, // mov edi, 127
	0x83, 0xfb, 0x02, // cmp ebx, 2
	0x74, 0x1b, // je exit
	0xbf, 0x7e, 0x00, 0x00, 0x00, // mov edi, 126
	0x83, 0xfb, 0x0d, // cmp ebx, 13
	0x74, 0x11, // je exit
	0x83, 0xfb, 0x01, // cmp ebx, 1
	0x74, 0x0c, // je exit
	0xbf, 0x01, 0x00, 0x00, 0x00, // mov edi, 1
	0xeb, 0x05, // jmp exit
	0xbf, 0x7e, 0x00, 0x00, 0x00, // refuse: mov edi, 126
	0xb8, 0xe7, 0x00, 0x00, 0x00, // exit: mov eax, 231
	0x0f, 0x05, // syscall
	0xeb, 0xf7, // jmp exit
}

// trampolineELF is trampolineCode as a static x86-64 executable: the ELF
// header, two program headers (the code, loaded read+execute at
// 0x400000, and a non-executable stack) and the code, which is the entry
// point. No interpreter, no sections, nothing to relocate.
func trampolineELF() []byte {
	const (
		base   = 0x400000
		ehSize = 64
		phSize = 56
		nPh    = 2
		code   = ehSize + nPh*phSize
	)
	le := binary.LittleEndian
	b := make([]byte, code, code+len(trampolineCode))
	copy(b, []byte{0x7f, 'E', 'L', 'F', 2 /* 64-bit */, 1 /* little endian */, 1 /* version */})
	le.PutUint16(b[16:], 2)  // ET_EXEC
	le.PutUint16(b[18:], 62) // EM_X86_64
	le.PutUint32(b[20:], 1)  // EV_CURRENT
	le.PutUint64(b[24:], base+code)
	le.PutUint64(b[32:], ehSize) // program headers follow the header
	le.PutUint16(b[52:], ehSize)
	le.PutUint16(b[54:], phSize)
	le.PutUint16(b[56:], nPh)
	ph := b[ehSize:]
	le.PutUint32(ph[0:], 1)   // PT_LOAD
	le.PutUint32(ph[4:], 4|1) // PF_R|PF_X
	le.PutUint64(ph[16:], base)
	le.PutUint64(ph[24:], base)
	le.PutUint64(ph[32:], uint64(code+len(trampolineCode)))
	le.PutUint64(ph[40:], uint64(code+len(trampolineCode)))
	le.PutUint64(ph[48:], 0x1000)
	ph = b[ehSize+phSize:]
	le.PutUint32(ph[0:], 0x6474e551) // PT_GNU_STACK
	le.PutUint32(ph[4:], 4|2)        // PF_R|PF_W
	le.PutUint64(ph[48:], 16)
	return append(b, trampolineCode...)
}
