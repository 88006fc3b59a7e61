//go:build amd64 || arm64

package daemon

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/timed-project/timed/internal/testenv"
)

// The filter's verdicts, run in a BPF interpreter on made-up seccomp_data
// (big-endian here, since the interpreter loads words in network order).
func TestSeccompProgramVerdicts(t *testing.T) {
	raw, err := seccompProgram(seccompAuditArch, allowedSyscalls())
	if err != nil {
		t.Fatal(err)
	}
	prog := make([]bpf.Instruction, len(raw))
	for i, r := range raw {
		prog[i] = r.Disassemble()
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatal(err)
	}
	eperm := uint32(unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM))
	tests := []struct {
		name string
		nr   uintptr
		arch uint32
		want uint32
	}{
		{"read", unix.SYS_READ, seccompAuditArch, unix.SECCOMP_RET_ALLOW},
		{"recvmmsg", unix.SYS_RECVMMSG, seccompAuditArch, unix.SECCOMP_RET_ALLOW},
		{"clock_adjtime", unix.SYS_CLOCK_ADJTIME, seccompAuditArch, unix.SECCOMP_RET_ALLOW},
		{"shmat", unix.SYS_SHMAT, seccompAuditArch, unix.SECCOMP_RET_ALLOW},
		{"capset", unix.SYS_CAPSET, seccompAuditArch, unix.SECCOMP_RET_ALLOW}, // the last of the list
		{"execve", unix.SYS_EXECVE, seccompAuditArch, eperm},
		{"mount", unix.SYS_MOUNT, seccompAuditArch, eperm},
		{"ptrace", unix.SYS_PTRACE, seccompAuditArch, eperm},
		{"clone3", unix.SYS_CLONE3, seccompAuditArch, unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)},
		{"x32 read", unix.SYS_READ | 0x40000000, seccompAuditArch, eperm},
		{"unknown number", 4095, seccompAuditArch, eperm},
		{"read of another architecture", unix.SYS_READ, unix.AUDIT_ARCH_I386, unix.SECCOMP_RET_KILL_PROCESS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := make([]byte, 64) // struct seccomp_data
			binary.BigEndian.PutUint32(data[0:], uint32(tt.nr))
			binary.BigEndian.PutUint32(data[4:], tt.arch)
			got, err := vm.Run(data)
			if err != nil {
				t.Fatal(err)
			}
			if uint32(got) != tt.want {
				t.Errorf("verdict %#x, want %#x", got, tt.want)
			}
		})
	}
}

// The allow-list has none of the forbidden calls and no duplicates.
func TestSeccompAllowList(t *testing.T) {
	allowed := allowedSyscalls()
	for _, nr := range forbiddenSyscalls {
		if slices.Contains(allowed, nr) {
			t.Errorf("forbidden system call %d is allowed", nr)
		}
	}
	if len(allowed) < 100 || len(allowed) > 200 {
		t.Errorf("%d system calls allowed; the Go runtime and timed need about 140", len(allowed))
	}
}

// seccompChildEnv makes the test binary, run again, install the filter
// and try system calls (TestSeccompInChild).
const seccompChildEnv = "TIMED_SECCOMP_CHILD"

// seccompResult is what the child reports of one system call.
type seccompResult struct {
	Call  string
	Errno int // 0: it worked
	Note  string
}

// A process that installed the filter gets EPERM for execve and mount (and
// the other forbidden calls tried), while reading, writing and the clock
// still work; /proc says Seccomp: 2 (filter mode).
func TestSeccompRefusesForbiddenCalls(t *testing.T) {
	testenv.RequireRoot(t) // so that mount would succeed without the filter
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSeccompInChild$", "-test.v")
	cmd.Env = append(os.Environ(), seccompChildEnv+"="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	got := map[string]seccompResult{}
	for _, line := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(line, "RESULT "); ok {
			var r seccompResult
			if err := json.Unmarshal([]byte(rest), &r); err != nil {
				t.Fatalf("child line %q: %v", line, err)
			}
			got[r.Call] = r
		}
	}
	eperm := int(syscall.EPERM)
	tests := []struct {
		call  string
		errno int
	}{
		{"install", 0},
		{"status", 0},
		{"execve", eperm},
		{"mount", eperm},
		{"ptrace", eperm},
		{"unshare", eperm},
		{"setuid", eperm},
		{"write", 0},
		{"read", 0},
		{"clock_gettime", 0},
		{"socket", 0},
		{"new threads", 0},
		{"clone3", int(syscall.ENOSYS)},
	}
	for _, tt := range tests {
		r, ok := got[tt.call]
		switch {
		case !ok:
			t.Errorf("%s: the child did not report it\n%s", tt.call, out)
		case r.Errno != tt.errno:
			t.Errorf("%s: errno %d (%s), want %d", tt.call, r.Errno, r.Note, tt.errno)
		}
	}
	if r := got["status"]; r.Note != "2" {
		t.Errorf("/proc/self/status says Seccomp: %q, want 2", r.Note)
	}
}

// TestSeccompInChild is the child of TestSeccompRefusesForbiddenCalls;
// run directly it does nothing.
func TestSeccompInChild(t *testing.T) {
	dir := os.Getenv(seccompChildEnv)
	if dir == "" {
		return // only as a child
	}
	report := func(call string, err error, note string) {
		r := seccompResult{Call: call, Note: note}
		var errno syscall.Errno
		if errors.As(err, &errno) {
			r.Errno = int(errno)
		} else if err != nil {
			r.Errno = -1
			r.Note = err.Error()
		}
		b, _ := json.Marshal(r)
		os.Stdout.Write(append([]byte("RESULT "), append(b, '\n')...))
	}
	n, err := installSeccomp()
	report("install", err, "")
	if err != nil {
		return
	}
	t.Logf("%d system calls allowed", n)
	status, err := os.ReadFile("/proc/self/status")
	seccompMode := ""
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "Seccomp:"); ok {
			seccompMode = strings.TrimSpace(v)
		}
	}
	report("status", err, seccompMode)
	report("execve", unix.Exec("/bin/true", []string{"true"}, nil), "")
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	err = unix.Mount("tmpfs", mnt, "tmpfs", 0, "")
	if err == nil {
		unix.Unmount(mnt, 0)
	}
	report("mount", err, "")
	report("ptrace", unix.PtraceAttach(os.Getppid()), "")
	report("unshare", unix.Unshare(unix.CLONE_NEWNS), "")
	_, _, errno := unix.RawSyscall(unix.SYS_SETUID, 0, 0, 0)
	report("setuid", errnoErr(errno), "")
	path := filepath.Join(dir, "f")
	report("write", os.WriteFile(path, []byte("timed"), 0o600), "")
	b, err := os.ReadFile(path)
	report("read", err, string(b))
	var ts unix.Timespec
	report("clock_gettime", unix.ClockGettime(unix.CLOCK_REALTIME, &ts), "")
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err == nil {
		unix.Close(fd)
	}
	report("socket", err, "")
	// New threads after the filter: in a cgo build (this test binary
	// links the C library through net) the runtime makes them with
	// pthread_create, whose clone3 must fail with ENOSYS (glibc then uses
	// clone), not EPERM (glibc aborts the process).
	threads := func() string {
		st, _ := os.ReadFile("/proc/self/status")
		for _, line := range strings.Split(string(st), "\n") {
			if v, ok := strings.CutPrefix(line, "Threads:"); ok {
				return strings.TrimSpace(v)
			}
		}
		return ""
	}
	before := threads()
	var wg sync.WaitGroup
	release := make(chan struct{})
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread() // each holds a thread of its own
			<-release
		}()
	}
	time.Sleep(100 * time.Millisecond)
	after := threads()
	close(release)
	wg.Wait()
	var newThreads error
	if b, a := atoiOr(before), atoiOr(after); a <= b {
		newThreads = fmt.Errorf("threads %s before, %s after 8 locked goroutines", before, after)
	}
	report("new threads", newThreads, before+" → "+after)
	_, _, errno = unix.RawSyscall(unix.SYS_CLONE3, 0, 0, 0)
	report("clone3", errnoErr(errno), "")
}

func atoiOr(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// errnoErr is nil for 0, else the errno.
func errnoErr(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}
