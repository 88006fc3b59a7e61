package peers

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/timed-project/timed/internal/testenv"
)

// NtpsecPaths finds ntpsec's ntpd and ntpdig where
// scripts/install-peers.sh extracts them (under PeersDir).
func NtpsecPaths(t testing.TB) (ntpd, ntpdig string) {
	t.Helper()
	base := filepath.Join(PeersDir(t), "ntpsec")
	ntpd = testenv.LookPath(t, "ntpsec-ntpd-not-on-path", filepath.Join(base, "usr/sbin/ntpd"))
	ntpdig = testenv.LookPath(t, "ntpsec-ntpdig-not-on-path", filepath.Join(base, "usr/bin/ntpdig"))
	return ntpd, ntpdig
}

// StartNtpsecServer runs ntpsec's ntpd as a server on 127.0.0.1:123 inside
// netns (see NewNetns; orphan mode, no clock discipline, without
// CAP_SYS_TIME), with extra configuration lines (NTS, for example), and
// waits up to 15 s until ntpdig, in the same namespace, gets an answer from
// it. It is stopped when the test ends.
func StartNtpsecServer(t testing.TB, netns string, extra ...string) *Proc {
	t.Helper()
	_, ntpdig := NtpsecPaths(t)
	p := startNtpd(t, "ntpsec-ntpd", netns, append([]string{"tos orphan 3 orphanwait 0"}, extra...))
	ip := testenv.LookPath(t, "ip", "/usr/sbin/ip", "/sbin/ip")
	deadline := time.Now().Add(15 * time.Second)
	for {
		if p.Exited() {
			t.Fatalf("ntpd exited: %v\n%s", p.Err(), p.Tail(20))
		}
		out, err := exec.Command(ip, "netns", "exec", netns, ntpdig, "-t", "1", "-j", "127.0.0.1").CombinedOutput()
		if err == nil && bytes.Contains(out, []byte(`"offset"`)) {
			t.Logf("ntpdig in %s: %s", netns, bytes.TrimSpace(out))
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("ntpsec's ntpd does not answer ntpdig in %s: %v: %s\n%s", netns, err, out, p.Tail(20))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// StartNtpsecClient runs ntpsec's ntpd as a client inside netns (see
// NewNetns): its own socket on 127.0.0.1:123, no clock discipline, without
// CAP_SYS_TIME, with the given server lines (NTS, for example). It is
// stopped when the test ends.
func StartNtpsecClient(t testing.TB, netns string, lines ...string) *Proc {
	t.Helper()
	return startNtpd(t, "ntpsec-client", netns, lines)
}

// Ntpq runs ntpsec's ntpq against the ntpd on 127.0.0.1 in netns with the
// given arguments and returns its output.
func Ntpq(t testing.TB, netns string, args ...string) (string, error) {
	t.Helper()
	ntpq := testenv.LookPath(t, "ntpsec-ntpq-not-on-path", filepath.Join(PeersDir(t), "ntpsec", "usr/bin/ntpq"))
	ip := testenv.LookPath(t, "ip", "/usr/sbin/ip", "/sbin/ip")
	out, err := exec.Command(ip, append([]string{"netns", "exec", netns, ntpq}, append(args, "127.0.0.1")...)...).CombinedOutput()
	return string(out), err
}

// startNtpd runs ntpsec's ntpd inside netns on 127.0.0.1 only, without
// clock discipline or CAP_SYS_TIME, with these configuration lines after
// the common ones.
func startNtpd(t testing.TB, name, netns string, lines []string) *Proc {
	t.Helper()
	ntpd, _ := NtpsecPaths(t)
	dir := t.TempDir()
	path := writeConf(t, dir, "ntp.conf", append([]string{
		"disable ntp",
		"disable kernel",
		"restrict default kod limited nomodify noquery",
		"restrict 127.0.0.1",
		"interface ignore wildcard",
		"interface listen 127.0.0.1",
	}, lines...)...)
	return Start(t, ProcOptions{Name: name, Dir: dir, Netns: netns}, ntpd, "-n", "-c", path, "-p", filepath.Join(dir, "ntpd.pid"))
}
