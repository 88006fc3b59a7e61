//go:build linux

package daemon

import "golang.org/x/sys/unix"

// seccompAuditArch is the architecture the filter accepts system calls of.
const seccompAuditArch = unix.AUDIT_ARCH_AARCH64

// seccompArchSyscalls: arm64 has only the generic calls, all in
// commonSyscalls.
var seccompArchSyscalls []uintptr
