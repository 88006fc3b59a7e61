//go:build amd64 && !purego

#include "textflag.h"

// AES-128 with AES-NI for package siv. While blocks are processed the
// round keys sit in X1..X11; X0 and X12..X14 hold data.

// EXPAND makes round key i from round key i-1 in X0 and stores it at
// off(AX): word j of the new key is the XOR of words 0..j of the old one
// (the three shifted copies) and of RotWord(SubWord(its last word)) ^ rcon
// (dword 3 of AESKEYGENASSIST, broadcast by PSHUFD).
#define EXPAND(rcon, off) \
	AESKEYGENASSIST $rcon, X0, X1 \
	PSHUFD $0xff, X1, X1 \
	MOVO X0, X2 \
	PSLLO $4, X2 \
	PXOR X2, X0 \
	PSLLO $4, X2 \
	PXOR X2, X0 \
	PSLLO $4, X2 \
	PXOR X2, X0 \
	PXOR X1, X0 \
	MOVUPS X0, off(AX)

// func expandKey128(rk *[176]byte, key *[16]byte)
TEXT ·expandKey128(SB), NOSPLIT, $0-16
	MOVQ rk+0(FP), AX
	MOVQ key+8(FP), BX
	MOVUPS (BX), X0
	MOVUPS X0, (AX)
	EXPAND(0x01, 16)
	EXPAND(0x02, 32)
	EXPAND(0x04, 48)
	EXPAND(0x08, 64)
	EXPAND(0x10, 80)
	EXPAND(0x20, 96)
	EXPAND(0x40, 112)
	EXPAND(0x80, 128)
	EXPAND(0x1b, 144)
	EXPAND(0x36, 160)
	RET

// LOADKEYS loads the 11 round keys at AX into X1..X11.
#define LOADKEYS \
	MOVUPS 0(AX), X1 \
	MOVUPS 16(AX), X2 \
	MOVUPS 32(AX), X3 \
	MOVUPS 48(AX), X4 \
	MOVUPS 64(AX), X5 \
	MOVUPS 80(AX), X6 \
	MOVUPS 96(AX), X7 \
	MOVUPS 112(AX), X8 \
	MOVUPS 128(AX), X9 \
	MOVUPS 144(AX), X10 \
	MOVUPS 160(AX), X11

// ENCRYPT encrypts the block in register x.
#define ENCRYPT(x) \
	PXOR X1, x \
	AESENC X2, x \
	AESENC X3, x \
	AESENC X4, x \
	AESENC X5, x \
	AESENC X6, x \
	AESENC X7, x \
	AESENC X8, x \
	AESENC X9, x \
	AESENC X10, x \
	AESENCLAST X11, x

// ROUND4 applies one AESENC round with key k to the four blocks in
// X0, X12, X13 and X14.
#define ROUND4(k) \
	AESENC k, X0 \
	AESENC k, X12 \
	AESENC k, X13 \
	AESENC k, X14

// func macBlocks(rk *[176]byte, state *[16]byte, src *byte, n int)
TEXT ·macBlocks(SB), NOSPLIT, $0-32
	MOVQ rk+0(FP), AX
	MOVQ state+8(FP), BX
	MOVQ src+16(FP), SI
	MOVQ n+24(FP), CX
	LOADKEYS
	MOVUPS (BX), X0
	TESTQ CX, CX
	JZ macdone

macloop:
	MOVUPS (SI), X12
	PXOR X12, X0
	ENCRYPT(X0)
	ADDQ $16, SI
	DECQ CX
	JNZ macloop

macdone:
	MOVUPS X0, (BX)
	RET

// func encryptBlocks(rk *[176]byte, dst, src *byte, n int)
TEXT ·encryptBlocks(SB), NOSPLIT, $0-32
	MOVQ rk+0(FP), AX
	MOVQ dst+8(FP), DI
	MOVQ src+16(FP), SI
	MOVQ n+24(FP), CX
	LOADKEYS

enc4:
	CMPQ CX, $4
	JB enc1
	MOVUPS 0(SI), X0
	MOVUPS 16(SI), X12
	MOVUPS 32(SI), X13
	MOVUPS 48(SI), X14
	PXOR X1, X0
	PXOR X1, X12
	PXOR X1, X13
	PXOR X1, X14
	ROUND4(X2)
	ROUND4(X3)
	ROUND4(X4)
	ROUND4(X5)
	ROUND4(X6)
	ROUND4(X7)
	ROUND4(X8)
	ROUND4(X9)
	ROUND4(X10)
	AESENCLAST X11, X0
	AESENCLAST X11, X12
	AESENCLAST X11, X13
	AESENCLAST X11, X14
	MOVUPS X0, 0(DI)
	MOVUPS X12, 16(DI)
	MOVUPS X13, 32(DI)
	MOVUPS X14, 48(DI)
	ADDQ $64, SI
	ADDQ $64, DI
	SUBQ $4, CX
	JMP enc4

enc1:
	TESTQ CX, CX
	JZ encdone
	MOVUPS (SI), X0
	ENCRYPT(X0)
	MOVUPS X0, (DI)
	ADDQ $16, SI
	ADDQ $16, DI
	DECQ CX
	JMP enc1

encdone:
	RET
