#include "textflag.h"

// func clone3VM(args *cloneArgs, size uintptr, p *childProg) (pid uintptr, errno uintptr)
//
// clone3 for a child that shares our memory (CLONE_VM) but not our stack:
// the kernel starts it on args.stack, where it calls childEntry(p), which
// never returns. The parent returns at once, like a plain clone.
TEXT ·clone3VM(SB),NOSPLIT|NOFRAME,$0-40
	MOVQ	args+0(FP), DI
	MOVQ	size+8(FP), SI
	MOVQ	p+16(FP), R12	// survives SYSCALL (only CX and R11 do not)
	MOVQ	$435, AX	// SYS_clone3
	SYSCALL
	CMPQ	AX, $0
	JEQ	child
	CMPQ	AX, $0xfffffffffffff001
	JLS	ok
	NEGQ	AX
	MOVQ	$-1, pid+24(FP)
	MOVQ	AX, errno+32(FP)
	RET
ok:
	MOVQ	AX, pid+24(FP)
	MOVQ	$0, errno+32(FP)
	RET
child:
	// On the child's own stack: childEntry(p), ABI0 (argument at 0(SP)).
	ANDQ	$~15, SP
	SUBQ	$16, SP
	MOVQ	R12, 0(SP)
	CALL	·childEntry(SB)
	MOVL	$255, DI
	MOVL	$231, AX	// exit_group
	SYSCALL
	INT	$3

// func childSyscall(trap, a1, a2, a3, a4, a5 uintptr) (r1 uintptr, errno syscall.Errno)
//
// A system call for the cloned process: assembly only, so that nothing on
// its way is instrumented (syscall.RawSyscall6 is, in a -race build, and
// the race detector's hooks need a goroutine the process does not have).
TEXT ·childSyscall(SB),NOSPLIT|NOFRAME,$0-64
	MOVQ	a1+8(FP), DI
	MOVQ	a2+16(FP), SI
	MOVQ	a3+24(FP), DX
	MOVQ	a4+32(FP), R10
	MOVQ	a5+40(FP), R8
	MOVQ	$0, R9
	MOVQ	trap+0(FP), AX
	SYSCALL
	CMPQ	AX, $0xfffffffffffff001
	JLS	ok
	NEGQ	AX
	MOVQ	$-1, r1+48(FP)
	MOVQ	AX, errno+56(FP)
	RET
ok:
	MOVQ	AX, r1+48(FP)
	MOVQ	$0, errno+56(FP)
	RET
