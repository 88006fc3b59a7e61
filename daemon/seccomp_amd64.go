//go:build linux

package daemon

import "golang.org/x/sys/unix"

// seccompAuditArch is the architecture the filter accepts system calls of.
const seccompAuditArch = unix.AUDIT_ARCH_X86_64

// seccompArchSyscalls are the older calls amd64 still has and the Go
// runtime or the standard library may use.
var seccompArchSyscalls = []uintptr{
	unix.SYS_EPOLL_WAIT, unix.SYS_EPOLL_CREATE, unix.SYS_OPEN, unix.SYS_STAT, unix.SYS_LSTAT,
	unix.SYS_POLL, unix.SYS_SELECT, unix.SYS_PIPE, unix.SYS_DUP2, unix.SYS_ACCESS,
	unix.SYS_READLINK, unix.SYS_RENAME, unix.SYS_UNLINK, unix.SYS_MKDIR, unix.SYS_CHMOD,
	unix.SYS_GETDENTS, unix.SYS_ARCH_PRCTL, unix.SYS_TIME,
}
