//go:build !amd64 || purego

package siv

var useAsm = false

func expandKey128(*[11 * blockSize]byte, *[16]byte)                 { panic("siv: no assembly") }
func macBlocks(*[11 * blockSize]byte, *[blockSize]byte, *byte, int) { panic("siv: no assembly") }
func encryptBlocks(*[11 * blockSize]byte, *byte, *byte, int)        { panic("siv: no assembly") }
