//go:build amd64 && !purego

package siv

import "golang.org/x/sys/cpu"

// useAsm is whether the AES-NI assembly runs (a variable so that tests run
// both paths).
var useAsm = cpu.X86.HasAES

// expandKey128 writes the 11 round keys of an AES-128 key to rk.
//
//go:noescape
func expandKey128(rk *[11 * blockSize]byte, key *[16]byte)

// macBlocks runs CBC-MAC over n blocks at src, from and into state.
//
//go:noescape
func macBlocks(rk *[11 * blockSize]byte, state *[blockSize]byte, src *byte, n int)

// encryptBlocks encrypts n independent blocks from src to dst, four at a
// time.
//
//go:noescape
func encryptBlocks(rk *[11 * blockSize]byte, dst, src *byte, n int)
