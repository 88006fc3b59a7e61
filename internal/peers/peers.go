// Package peers runs real peer programs (chronyd, ntpsec's ntpd, ...) for
// tests: it is the one harness that the packages' interoperability tests and
// the end-to-end tests in test/interop share.
//
// Every program it starts runs under capsh --drop=cap_sys_time, and the
// harness checks in /proc that CAP_SYS_TIME is really gone (effective,
// permitted and bounding sets) before the test goes on, so no peer can
// change the machine's clock. Peers listen on loopback, or inside a network
// namespace the test creates and removes, each with its own temporary
// directory, and are stopped when the test ends.
//
// When a peer program, capsh, ip or root is missing, the functions call
// internal/testenv: the test skips on a developer's machine and fails under
// TIMED_REQUIRE_PEERS=1. The process and namespace parts need Linux; on other
// systems they report Linux as missing the same way.
package peers

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/timed-project/timed/internal/testenv"
)

// Command returns a command that runs argv without CAP_SYS_TIME
// (capsh --drop=cap_sys_time -- -c 'exec ARGV...'), for one-shot runs whose
// output the caller reads, such as `chronyd -Q`. The exec chain ends in
// argv[0] with the command's pid.
func Command(t testing.TB, argv ...string) *exec.Cmd {
	t.Helper()
	full := noSysTimeArgv(t, argv)
	cmd := exec.Command(full[0], full[1:]...)
	killWithParent(cmd)
	return cmd
}

// noSysTimeArgv wraps argv in capsh --drop=cap_sys_time.
func noSysTimeArgv(t testing.TB, argv []string) []string {
	t.Helper()
	if len(argv) == 0 {
		t.Fatal("peers: no program to run")
	}
	capsh := testenv.LookPath(t, "capsh", "/usr/sbin/capsh", "/sbin/capsh")
	quoted := make([]string, len(argv))
	for i, a := range argv {
		quoted[i] = shellQuote(a)
	}
	return []string{capsh, "--drop=cap_sys_time", "--", "-c", "exec " + strings.Join(quoted, " ")}
}

// shellQuote quotes s for sh -c.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// RepoRoot is the directory of the module's go.mod, found from the test's
// working directory upwards.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test's directory")
		}
		dir = parent
	}
}

// PeersDir is where scripts/install-peers.sh extracts the peers that are not
// installed system-wide (ntpsec, gpsd-clients): $TIMED_PEERS_DIR, or .peers
// in the repository.
func PeersDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("TIMED_PEERS_DIR"); d != "" {
		return d
	}
	return filepath.Join(RepoRoot(t), ".peers")
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

// FreeTCPPort returns a TCP port that was free on 127.0.0.1 and ::1 a
// moment ago.
func FreeTCPPort(t testing.TB) int {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if ln6, err := net.Listen("tcp6", fmt.Sprintf("[::1]:%d", port)); err == nil {
			ln6.Close()
			return port
		}
	}
	t.Fatal("no free TCP port")
	return 0
}

// writeConf writes lines as the file name in dir and returns its path.
func writeConf(t testing.TB, dir, name string, lines ...string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
