package peers

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/timed-project/timed/internal/testenv"
)

// Start runs argv under capsh --drop=cap_sys_time (inside opts.Netns when
// set, via ip netns exec) with its stdout and stderr in a file in opts.Dir.
// It waits until the exec chain (ip, capsh, sh) has become argv[0] itself,
// with the same pid, and fails the test unless that process lacks
// CAP_SYS_TIME (CheckNoSysTime). The process is stopped when the test ends;
// if the test failed, the end of its output is logged.
func Start(t testing.TB, opts ProcOptions, argv ...string) *Proc {
	t.Helper()
	full := noSysTimeArgv(t, argv)
	if opts.Netns != "" {
		ip := testenv.LookPath(t, "ip", "/usr/sbin/ip", "/sbin/ip")
		full = append([]string{ip, "netns", "exec", opts.Netns}, full...)
	}
	name := opts.Name
	if name == "" {
		name = filepath.Base(argv[0])
	}
	dir := opts.Dir
	if dir == "" {
		dir = t.TempDir()
	}
	logPath := filepath.Join(dir, name+".log")
	out, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(full[0], full[1:]...)
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.Dir = dir
	killWithParent(cmd)
	if err := cmd.Start(); err != nil {
		out.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	out.Close()
	p := &Proc{name: name, pid: cmd.Process.Pid, signal: cmd.Process.Signal, logPath: logPath, started: time.Now(), done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("last output of %s (%s):\n%s", name, logPath, p.Tail(40))
		}
	})
	prog := opts.Exec
	if prog == "" {
		prog = argv[0]
	}
	if err := p.waitExec(filepath.Base(prog)); err != nil {
		t.Fatalf("%s: %v\n%s", name, err, p.Tail(20))
	}
	if err := CheckNoSysTime(p.pid); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return p
}

// waitExec waits until the exec chain has reached the program itself.
func (p *Proc) waitExec(prog string) error {
	if len(prog) > 15 {
		prog = prog[:15] // /proc/PID/comm is truncated to 15 bytes
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if p.Exited() {
			return fmt.Errorf("exited at once: %v", p.err)
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p.pid))
		if err == nil && strings.TrimSpace(string(comm)) == prog {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("did not become %s within 5 s", prog)
}

// killWithParent makes the kernel kill the peer if the test binary dies.
func killWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
