package peers

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/timed-project/timed/internal/testenv"
)

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
	// RunAsRoot keeps chronyd root (-u root) instead of dropping to its own
	// user, so that it can read files in a root-owned temporary directory
	// (NTS certificate and key).
	RunAsRoot bool
}

// Chrony is a running chronyd server.
type Chrony struct {
	*Proc
	// Addr is where it serves NTP.
	Addr netip.AddrPort
	// Dir is its temporary directory (config, pidfile, drift file, log).
	Dir string
}

// StartChronyServer starts chronyd (-x: it never touches the clock) serving
// NTP from its local reference, without CAP_SYS_TIME, and waits until it
// answers. It is stopped when the test ends.
func StartChronyServer(t testing.TB, opts ChronyOptions) *Chrony {
	t.Helper()
	chronyd := testenv.LookPath(t, "chronyd", "/usr/sbin/chronyd")
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
	conf := append([]string{
		"port " + strconv.Itoa(opts.Port),
		"bindaddress " + opts.Addr.String(),
		"allow " + opts.Addr.String(),
		"local stratum " + strconv.Itoa(opts.Stratum),
		"cmdport 0",
		"bindcmdaddress /",
		"pidfile " + filepath.Join(dir, "server.pid"),
		"driftfile " + filepath.Join(dir, "drift"),
	}, opts.Extra...)
	path := writeConf(t, dir, "server.conf", conf...)
	args := []string{chronyd, "-x", "-d", "-f", path}
	if opts.RunAsRoot {
		args = append(args, "-u", "root")
	}
	p := Start(t, ProcOptions{Name: "chronyd-server", Dir: dir}, args...)
	c := &Chrony{Proc: p, Addr: netip.AddrPortFrom(opts.Addr, uint16(opts.Port)), Dir: dir}
	WaitNTP(t, c.Addr, p)
	return c
}

// ChronyClient is a running chronyd client with a command socket.
type ChronyClient struct {
	*Proc
	// Socket is its command socket, for chronyc -h.
	Socket string
}

// StartChronyClient starts chronyd as a client (-x, without CAP_SYS_TIME,
// no NTP server port) with the given configuration lines, e.g. "server
// 127.0.0.1 port 11123 iburst". Its command socket lies in a mode-0700
// directory (chronyd insists). It is stopped when the test ends.
func StartChronyClient(t testing.TB, lines ...string) *ChronyClient {
	t.Helper()
	chronyd := testenv.LookPath(t, "chronyd", "/usr/sbin/chronyd")
	dir := t.TempDir()
	sockDir := filepath.Join(dir, "run")
	if err := os.Mkdir(sockDir, 0o700); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(sockDir, "chronyd.sock")
	path := writeConf(t, dir, "client.conf", append(lines,
		"port 0",
		"cmdport 0",
		"bindcmdaddress "+sock,
		"pidfile "+filepath.Join(dir, "client.pid"),
	)...)
	// -u root: chronyd would otherwise drop to its own user, which may not
	// use a socket directory owned by root.
	p := Start(t, ProcOptions{Name: "chronyd-client", Dir: dir}, chronyd, "-x", "-d", "-u", "root", "-f", path)
	return &ChronyClient{Proc: p, Socket: sock}
}

// Chronyc runs `chronyc -h SOCKET -n ARGS...` against the client and returns
// its output; a failure is returned as an error with the output.
func (c *ChronyClient) Chronyc(t testing.TB, args ...string) (string, error) {
	t.Helper()
	chronyc := testenv.LookPath(t, "chronyc", "/usr/bin/chronyc")
	out, err := exec.Command(chronyc, append([]string{"-h", c.Socket, "-n"}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("chronyc %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}
