// Package peers starts real time daemons (chronyd, ...) for interoperability
// tests. Every peer runs without CAP_SYS_TIME (under capsh), on loopback,
// with its own temporary directory, and is stopped when the test ends.
package peers

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/timed-project/timed/internal/testenv"
)

// capSysTime is CAP_SYS_TIME's bit in the capability sets.
const capSysTime = 25

// ChronyOptions configures a chronyd server.
type ChronyOptions struct {
	// Addr is the loopback address to serve on; zero means 127.0.0.1.
	Addr netip.Addr
	// Port to serve on; 0 picks a free one.
	Port int
	// Stratum is the local reference's stratum ("local stratum N"); 0 means 1.
	Stratum int
	// Extra lines appended to the configuration.
	Extra []string
}

// Chrony is a running chronyd.
type Chrony struct {
	// Addr is where it serves NTP.
	Addr netip.AddrPort
	// Dir is its temporary directory (config, pidfile).
	Dir string
	// Pid is chronyd's process ID.
	Pid int
}

// StartChronyServer starts chronyd serving NTP on loopback from its local
// reference and waits until it answers. It checks that chronyd runs without
// CAP_SYS_TIME and stops it when the test ends. When chronyd or capsh is
// missing it skips the test (or fails it under TIMED_REQUIRE_PEERS=1).
func StartChronyServer(t testing.TB, opts ChronyOptions) *Chrony {
	t.Helper()
	chronyd := testenv.LookPath(t, "chronyd", "/usr/sbin/chronyd")
	capsh := testenv.LookPath(t, "capsh", "/usr/sbin/capsh", "/sbin/capsh")
	if !opts.Addr.IsValid() {
		opts.Addr = netip.MustParseAddr("127.0.0.1")
	}
	if opts.Stratum == 0 {
		opts.Stratum = 1
	}
	if opts.Port == 0 {
		opts.Port = FreeUDPPort(t, opts.Addr)
	}
	dir := t.TempDir()
	conf := []string{
		"port " + strconv.Itoa(opts.Port),
		"bindaddress " + opts.Addr.String(),
		"allow " + opts.Addr.String(),
		"local stratum " + strconv.Itoa(opts.Stratum),
		"cmdport 0",
		"bindcmdaddress /",
		"pidfile " + filepath.Join(dir, "chronyd.pid"),
		"driftfile " + filepath.Join(dir, "drift"),
	}
	conf = append(conf, opts.Extra...)
	confPath := filepath.Join(dir, "server.conf")
	if err := os.WriteFile(confPath, []byte(strings.Join(conf, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	cmd := exec.Command(capsh, "--drop=cap_sys_time", "--", "-c",
		"exec "+shellQuote(chronyd)+" -x -d -f "+shellQuote(confPath))
	cmd.Stdout, cmd.Stderr = &out, &out
	killWithParent(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting chronyd: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	c := &Chrony{Addr: netip.AddrPortFrom(opts.Addr, uint16(opts.Port)), Dir: dir, Pid: cmd.Process.Pid}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("chronyd output:\n%s", out.String())
		}
	})
	if err := waitNTP(c.Addr, 10*time.Second, exited); err != nil {
		t.Fatalf("chronyd on %s: %v\n%s", c.Addr, err, out.String())
	}
	if err := CheckNoSysTime(c.Pid); err != nil {
		t.Fatalf("chronyd: %v", err)
	}
	return c
}

// CheckNoSysTime returns an error unless process pid runs without
// CAP_SYS_TIME in its effective set.
func CheckNoSysTime(pid int) error {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return fmt.Errorf("CapEff %q: %w", v, err)
			}
			if caps&(1<<capSysTime) != 0 {
				return fmt.Errorf("process %d has CAP_SYS_TIME (CapEff %s)", pid, strings.TrimSpace(v))
			}
			return nil
		}
	}
	return fmt.Errorf("no CapEff in /proc/%d/status", pid)
}

// FreeUDPPort returns a UDP port that was free on addr a moment ago.
func FreeUDPPort(t testing.TB, addr netip.Addr) int {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, 0)))
	if err != nil {
		t.Fatalf("finding a free port on %s: %v", addr, err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// waitNTP sends minimal NTP client requests until one is answered.
func waitNTP(addr netip.AddrPort, timeout time.Duration, exited <-chan struct{}) error {
	deadline := time.Now().Add(timeout)
	req := make([]byte, 48)
	req[0] = 0x23 // version 4, client
	req[40] = 1   // a non-zero transmit timestamp
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("exited before answering")
		default:
		}
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
		if err != nil {
			return err
		}
		_, _ = c.Write(req)
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		buf := make([]byte, 512)
		n, err := c.Read(buf)
		c.Close()
		if err == nil && n >= 48 && buf[0]&7 == 4 {
			return nil
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("no NTP answer within %v (last error: %v)", timeout, last)
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
