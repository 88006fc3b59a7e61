//go:build amd64 || arm64

package daemon

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// seccompSupported tells whether this build can install the filter.
const seccompSupported = true

// commonSyscalls are the system calls timed and the Go runtime make once
// started, on every supported architecture; seccompArchSyscalls adds each
// architecture's own. The hot ones (packets, futexes, the poller) come
// first, since the filter compares them in order. Found with strace -f over
// the end-to-end tests (NTP client and server, NTS client and server, PTP
// over UDP and Ethernet, gPTP, CSPTP, gpsd, SHM and SOCK reference clocks,
// reloads) and by reading the code of what they cover.
var commonSyscalls = []uintptr{
	// Packets and the network poller.
	unix.SYS_RECVMSG, unix.SYS_SENDMSG, unix.SYS_RECVMMSG, unix.SYS_SENDMMSG,
	unix.SYS_RECVFROM, unix.SYS_SENDTO, unix.SYS_READ, unix.SYS_WRITE,
	unix.SYS_EPOLL_PWAIT, unix.SYS_EPOLL_PWAIT2, unix.SYS_EPOLL_CTL, unix.SYS_EPOLL_CREATE1,
	unix.SYS_FUTEX, unix.SYS_NANOSLEEP, unix.SYS_CLOCK_NANOSLEEP, unix.SYS_SCHED_YIELD,
	unix.SYS_CLOCK_GETTIME, unix.SYS_GETTIMEOFDAY, unix.SYS_CLOCK_GETRES,
	unix.SYS_PPOLL, unix.SYS_PSELECT6, unix.SYS_READV, unix.SYS_WRITEV,
	unix.SYS_PREAD64, unix.SYS_PWRITE64,
	// The clocks: adjtimex for the system clock, clock_adjtime for PTP
	// hardware clocks, clock_settime to step either.
	unix.SYS_ADJTIMEX, unix.SYS_CLOCK_ADJTIME, unix.SYS_CLOCK_SETTIME, unix.SYS_SETTIMEOFDAY,
	// Sockets: NTP and PTP over UDP, NTS-KE over TCP, AF_PACKET for PTP
	// on Ethernet and gPTP, netlink for interfaces, the control socket
	// and SOCK reference clocks (Unix). Interface and PHC ioctls.
	unix.SYS_SOCKET, unix.SYS_SOCKETPAIR, unix.SYS_BIND, unix.SYS_LISTEN, unix.SYS_ACCEPT4,
	unix.SYS_ACCEPT, unix.SYS_CONNECT, unix.SYS_GETSOCKNAME, unix.SYS_GETPEERNAME,
	unix.SYS_SETSOCKOPT, unix.SYS_GETSOCKOPT, unix.SYS_SHUTDOWN, unix.SYS_IOCTL,
	// Files: configuration, certificates, drift and key files (written
	// atomically: a temporary file renamed), /proc and /sys, devices.
	unix.SYS_OPENAT, unix.SYS_CLOSE, unix.SYS_FSTAT, unix.SYS_NEWFSTATAT, unix.SYS_STATX,
	unix.SYS_LSEEK, unix.SYS_GETDENTS64, unix.SYS_READLINKAT, unix.SYS_FACCESSAT, unix.SYS_FACCESSAT2,
	unix.SYS_FCNTL, unix.SYS_FSYNC, unix.SYS_FDATASYNC, unix.SYS_FTRUNCATE,
	unix.SYS_RENAMEAT, unix.SYS_RENAMEAT2, unix.SYS_UNLINKAT, unix.SYS_MKDIRAT,
	unix.SYS_FCHMOD, unix.SYS_FCHMODAT, unix.SYS_FCHOWN, unix.SYS_FCHOWNAT, unix.SYS_UMASK,
	unix.SYS_GETCWD, unix.SYS_DUP, unix.SYS_DUP3, unix.SYS_PIPE2, unix.SYS_EVENTFD2,
	unix.SYS_FLOCK, unix.SYS_STATFS, unix.SYS_FSTATFS, unix.SYS_UTIMENSAT, unix.SYS_FADVISE64,
	// NTP shared memory segments (SHM reference clocks).
	unix.SYS_SHMGET, unix.SYS_SHMAT, unix.SYS_SHMDT, unix.SYS_SHMCTL,
	// The Go runtime: memory, threads, signals, scheduling.
	unix.SYS_MMAP, unix.SYS_MUNMAP, unix.SYS_MADVISE, unix.SYS_MPROTECT, unix.SYS_BRK,
	unix.SYS_CLONE, unix.SYS_EXIT, unix.SYS_EXIT_GROUP, unix.SYS_GETTID, unix.SYS_GETPID,
	unix.SYS_GETPPID, unix.SYS_TGKILL, unix.SYS_TKILL, unix.SYS_RT_SIGACTION,
	unix.SYS_RT_SIGPROCMASK, unix.SYS_RT_SIGRETURN, unix.SYS_SIGALTSTACK,
	unix.SYS_SCHED_GETAFFINITY, unix.SYS_GETRLIMIT, unix.SYS_PRLIMIT64, unix.SYS_GETRANDOM,
	unix.SYS_SETITIMER, unix.SYS_TIMER_CREATE, unix.SYS_TIMER_SETTIME, unix.SYS_TIMER_DELETE,
	unix.SYS_RSEQ, unix.SYS_SET_ROBUST_LIST, unix.SYS_RESTART_SYSCALL,
	unix.SYS_UNAME, unix.SYS_GETUID, unix.SYS_GETEUID, unix.SYS_GETGID, unix.SYS_GETEGID,
	unix.SYS_GETGROUPS, unix.SYS_SYSINFO, unix.SYS_GETRUSAGE, unix.SYS_PRCTL,
	// Capabilities may still be dropped, never raised (no_new_privs).
	unix.SYS_CAPGET, unix.SYS_CAPSET,
}

// forbiddenSyscalls must never be allowed: they run other programs, change
// identity, the kernel or the mounts, reach other processes or the kernel's
// keyring. The tests check that the allow-list has none of them.
var forbiddenSyscalls = []uintptr{
	unix.SYS_EXECVE, unix.SYS_EXECVEAT, unix.SYS_PTRACE, unix.SYS_MOUNT, unix.SYS_UMOUNT2,
	unix.SYS_KEXEC_LOAD, unix.SYS_KEXEC_FILE_LOAD, unix.SYS_INIT_MODULE, unix.SYS_FINIT_MODULE,
	unix.SYS_DELETE_MODULE, unix.SYS_BPF, unix.SYS_REBOOT, unix.SYS_SWAPON, unix.SYS_SWAPOFF,
	unix.SYS_SETUID, unix.SYS_SETGID, unix.SYS_SETREUID, unix.SYS_SETREGID, unix.SYS_SETRESUID,
	unix.SYS_SETRESGID, unix.SYS_SETGROUPS, unix.SYS_SETFSUID, unix.SYS_SETFSGID,
	unix.SYS_KEYCTL, unix.SYS_ADD_KEY, unix.SYS_REQUEST_KEY, unix.SYS_PROCESS_VM_READV,
	unix.SYS_PROCESS_VM_WRITEV, unix.SYS_PIVOT_ROOT, unix.SYS_CHROOT, unix.SYS_UNSHARE,
	unix.SYS_SETNS, unix.SYS_PERF_EVENT_OPEN, unix.SYS_USERFAULTFD, unix.SYS_OPEN_BY_HANDLE_AT,
	unix.SYS_NAME_TO_HANDLE_AT, unix.SYS_CLONE3, unix.SYS_PIDFD_GETFD, unix.SYS_PROCESS_MADVISE,
	unix.SYS_MOVE_MOUNT, unix.SYS_FSOPEN, unix.SYS_FSMOUNT, unix.SYS_OPEN_TREE,
	unix.SYS_IO_URING_SETUP, unix.SYS_SETHOSTNAME, unix.SYS_SETDOMAINNAME, unix.SYS_ACCT,
	unix.SYS_QUOTACTL, unix.SYS_SYSLOG, unix.SYS_VHANGUP, unix.SYS_LOOKUP_DCOOKIE,
}

// allowedSyscalls is the allow-list of this architecture, without
// duplicates.
func allowedSyscalls() []uintptr {
	seen := map[uintptr]bool{}
	var out []uintptr
	for _, nr := range append(append([]uintptr(nil), commonSyscalls...), seccompArchSyscalls...) {
		if !seen[nr] {
			seen[nr] = true
			out = append(out, nr)
		}
	}
	return out
}

// seccompProgram is the BPF filter: a system call of another architecture
// (a 32-bit call on a 64-bit kernel, whose numbers mean other calls) kills
// the process, since Go never makes one and the allow-list cannot judge
// it; an allowed call runs; anything else fails with EPERM, so that a call
// the list missed shows as a wrapped error in the log instead of a dead
// daemon.
func seccompProgram(arch uint32, allowed []uintptr) ([]bpf.RawInstruction, error) {
	const (
		offNr   = 0 // struct seccomp_data: int nr; __u32 arch; ...
		offArch = 4
	)
	prog := []bpf.Instruction{
		bpf.LoadAbsolute{Off: offArch, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: arch, SkipTrue: 1},
		bpf.RetConstant{Val: unix.SECCOMP_RET_KILL_PROCESS},
		bpf.LoadAbsolute{Off: offNr, Size: 4},
	}
	for _, nr := range allowed {
		prog = append(prog,
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(nr), SkipFalse: 1},
			bpf.RetConstant{Val: unix.SECCOMP_RET_ALLOW})
	}
	// clone3 passes its flags in memory, where the filter cannot see
	// them: it fails with ENOSYS, on which the C library of a cgo build
	// (pthread_create) falls back to clone. EPERM would abort that
	// program at its next new thread.
	prog = append(prog,
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(unix.SYS_CLONE3), SkipFalse: 1},
		bpf.RetConstant{Val: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)&unix.SECCOMP_RET_DATA},
		bpf.RetConstant{Val: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)&unix.SECCOMP_RET_DATA})
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("seccomp: assemble the filter: %w", err)
	}
	return raw, nil
}

// installSeccomp sets no_new_privs and installs the filter on every thread
// of the process (SECCOMP_FILTER_FLAG_TSYNC); threads made later inherit
// it. It returns how many system calls the filter allows.
func installSeccomp() (int, error) {
	allowed := allowedSyscalls()
	raw, err := seccompProgram(seccompAuditArch, allowed)
	if err != nil {
		return 0, err
	}
	filter := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		filter[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	// no_new_privs on this thread; TSYNC passes it on to the others.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return 0, fmt.Errorf("seccomp: prctl(PR_SET_NO_NEW_PRIVS): %w", err)
	}
	r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&prog)))
	runtime.KeepAlive(filter)
	if errno != 0 {
		return 0, fmt.Errorf("seccomp: seccomp(SECCOMP_SET_MODE_FILTER, TSYNC): %w", errno)
	}
	if r != 0 {
		return 0, fmt.Errorf("seccomp: thread %d could not be synchronized with the filter", r)
	}
	return len(allowed), nil
}
