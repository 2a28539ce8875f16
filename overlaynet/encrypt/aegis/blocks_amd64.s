#include "textflag.h"

// The state S0..S7 lives in X0..X7 for a whole call. One update with
// message blocks M0, M1 (every new word from the old ones):
//   S'0 = AESRound(S7, S0^M0)  S'i = AESRound(S(i-1), Si)  S'4 = AESRound(S3, S4^M1)
// VAESENC key, state, dst: dst = AESRound(state, key).
#define UPDATE(M0, M1) \
	VMOVDQA X7, X12 \
	VAESENC X7, X6, X7 \
	VAESENC X6, X5, X6 \
	VAESENC X5, X4, X5 \
	VPXOR M1, X4, X4 \
	VAESENC X4, X3, X4 \
	VAESENC X3, X2, X3 \
	VAESENC X2, X1, X2 \
	VAESENC X1, X0, X1 \
	VPXOR M0, X0, X0 \
	VAESENC X0, X12, X0

// z0 = S1^S6^(S2&S3) in X8, z1 = S2^S5^(S6&S7) in X9.
#define KEYSTREAM \
	VPAND X3, X2, X8 \
	VPXOR X6, X8, X8 \
	VPXOR X1, X8, X8 \
	VPAND X7, X6, X9 \
	VPXOR X2, X9, X9 \
	VPXOR X5, X9, X9

// One 32-byte block from SI, XORed with the keystream, to DI: the input
// in X10, X11 and the output in X8, X9.
#define CRYPT \
	KEYSTREAM \
	VMOVDQU 0(SI), X10 \
	VMOVDQU 16(SI), X11 \
	VPXOR   X10, X8, X8 \
	VPXOR   X11, X9, X9 \
	VMOVDQU X8, 0(DI) \
	VMOVDQU X9, 16(DI) \
	ADDQ    $32, SI \
	ADDQ    $32, DI

#define LOAD(s) \
	VMOVDQU 0(s), X0 \
	VMOVDQU 16(s), X1 \
	VMOVDQU 32(s), X2 \
	VMOVDQU 48(s), X3 \
	VMOVDQU 64(s), X4 \
	VMOVDQU 80(s), X5 \
	VMOVDQU 96(s), X6 \
	VMOVDQU 112(s), X7

#define STORE(s) \
	VMOVDQU X0, 0(s) \
	VMOVDQU X1, 16(s) \
	VMOVDQU X2, 32(s) \
	VMOVDQU X3, 48(s) \
	VMOVDQU X4, 64(s) \
	VMOVDQU X5, 80(s) \
	VMOVDQU X6, 96(s) \
	VMOVDQU X7, 112(s)

// func absorbAsm(s *state, src []byte)
TEXT ·absorbAsm(SB), NOSPLIT, $0-32
	MOVQ s+0(FP), AX
	MOVQ src_base+8(FP), SI
	MOVQ src_len+16(FP), CX
	SHRQ $5, CX
	JZ   absorbDone
	LOAD(AX)
absorbLoop:
	VMOVDQU 0(SI), X10
	VMOVDQU 16(SI), X11
	UPDATE(X10, X11)
	ADDQ $32, SI
	DECQ CX
	JNZ  absorbLoop
	STORE(AX)
absorbDone:
	RET

// func encryptAsm(s *state, dst, src []byte)
TEXT ·encryptAsm(SB), NOSPLIT, $0-56
	MOVQ s+0(FP), AX
	MOVQ dst_base+8(FP), DI
	MOVQ src_base+32(FP), SI
	MOVQ src_len+40(FP), CX
	SHRQ $5, CX
	JZ   encryptDone
	LOAD(AX)
encryptLoop:
	CRYPT
	UPDATE(X10, X11) // with the plaintext
	DECQ CX
	JNZ  encryptLoop
	STORE(AX)
encryptDone:
	RET

// func decryptAsm(s *state, dst, src []byte)
TEXT ·decryptAsm(SB), NOSPLIT, $0-56
	MOVQ s+0(FP), AX
	MOVQ dst_base+8(FP), DI
	MOVQ src_base+32(FP), SI
	MOVQ src_len+40(FP), CX
	SHRQ $5, CX
	JZ   decryptDone
	LOAD(AX)
decryptLoop:
	CRYPT
	UPDATE(X8, X9) // with the plaintext
	DECQ CX
	JNZ  decryptLoop
	STORE(AX)
decryptDone:
	RET
