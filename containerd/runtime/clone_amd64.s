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
