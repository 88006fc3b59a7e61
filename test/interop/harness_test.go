//go:build linux

package interop

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/timed-project/timed/internal/testenv"
)

// TestMain removes the binaries built for the run when it ends.
func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds cmd/timed and cmd/timectl once per test run and returns
// their paths.
func binaries(t *testing.T) (timed, timectl string) {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "timed-interop-bin-")
		if buildErr != nil {
			return
		}
		goCmd := "go"
		if _, err := exec.LookPath(goCmd); err != nil {
			goCmd = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		cmd := exec.Command(goCmd, "build", "-o", binDir+string(os.PathSeparator), "./cmd/timed", "./cmd/timectl")
		cmd.Dir = repoRoot(t)
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/timed ./cmd/timectl: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "timed"), filepath.Join(binDir, "timectl")
}

// repoRoot is the directory of go.mod.
func repoRoot(t testing.TB) string {
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

// peersDir is where scripts/install-peers.sh extracts the peers that are not
// installed system-wide (ntpsec, gpsd-clients).
func peersDir(t testing.TB) string {
	if d := os.Getenv("TIMED_PEERS_DIR"); d != "" {
		return d
	}
	return filepath.Join(repoRoot(t), ".peers")
}

// freeUDPPort returns a loopback UDP port that was free a moment ago.
func freeUDPPort(t testing.TB) int {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// shellQuote quotes s for sh -c.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// proc is a program started by a test: its output goes to a file, and it is
// stopped (SIGTERM, then SIGKILL) when the test ends. Only this process is
// ever signalled, by its own pid.
type proc struct {
	name    string
	cmd     *exec.Cmd
	outPath string
	started time.Time
	done    chan struct{}
	waitErr error
}

// startProc starts argv with its stdout and stderr in a file in dir. With
// netns set it runs inside that network namespace (ip netns exec). With
// dropTime it runs under capsh --drop=cap_sys_time, and the test checks
// that the program really lacks CAP_SYS_TIME. The exec chain (ip, capsh,
// sh) ends in argv[0] with the same pid, so p.cmd.Process.Pid is the
// program itself.
func startProc(t *testing.T, name, dir, netns string, dropTime bool, argv ...string) *proc {
	t.Helper()
	full := argv
	if dropTime {
		capsh := testenv.LookPath(t, "capsh", "/usr/sbin/capsh", "/sbin/capsh")
		quoted := make([]string, len(argv))
		for i, a := range argv {
			quoted[i] = shellQuote(a)
		}
		full = []string{capsh, "--drop=cap_sys_time", "--", "-c", "exec " + strings.Join(quoted, " ")}
	}
	if netns != "" {
		ip := testenv.LookPath(t, "ip", "/usr/sbin/ip", "/sbin/ip")
		full = append([]string{ip, "netns", "exec", netns}, full...)
	}
	outPath := filepath.Join(dir, name+".log")
	out, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(full[0], full[1:]...)
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		out.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	out.Close()
	p := &proc{name: name, cmd: cmd, outPath: outPath, started: time.Now(), done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("last output of %s (%s):\n%s", name, outPath, p.tail(40))
		}
	})
	if err := p.waitExec(filepath.Base(argv[0])); err != nil {
		t.Fatalf("%s: %v\n%s", name, err, p.tail(20))
	}
	if dropTime {
		if err := checkNoSysTime(p.pid()); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	return p
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitExec waits until the exec chain has reached the program itself.
func (p *proc) waitExec(prog string) error {
	if len(prog) > 15 {
		prog = prog[:15] // /proc/PID/comm is truncated to 15 bytes
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("exited at once: %v", p.waitErr)
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p.pid()))
		if err == nil && strings.TrimSpace(string(comm)) == prog {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("did not become %s within 5 s", prog)
}

// stop ends the process: SIGTERM, and SIGKILL after 5 s.
func (p *proc) stop() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// output is everything the process wrote so far.
func (p *proc) output() string {
	b, _ := os.ReadFile(p.outPath)
	return string(b)
}

// tail is the last n lines of the process's output.
func (p *proc) tail(n int) string {
	lines := strings.Split(strings.TrimRight(p.output(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// capSysTime is CAP_SYS_TIME's bit in the capability sets.
const capSysTime = 25

// checkNoSysTime fails unless the process's effective, permitted and
// bounding capability sets lack CAP_SYS_TIME.
func checkNoSysTime(pid int) error {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return fmt.Errorf("reading capabilities: %w", err)
	}
	if err := noSysTime(string(status)); err != nil {
		return fmt.Errorf("pid %d: %w", pid, err)
	}
	return nil
}

// noSysTime checks the capability sets in the text of a /proc/PID/status.
func noSysTime(status string) error {
	found := 0
	for _, line := range strings.Split(status, "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok || (key != "CapEff" && key != "CapPrm" && key != "CapBnd") {
			continue
		}
		found++
		caps, err := strconv.ParseUint(strings.TrimSpace(val), 16, 64)
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		if caps&(1<<capSysTime) != 0 {
			return fmt.Errorf("still has CAP_SYS_TIME in %s (%s): refusing to run a program that can change the clock", key, strings.TrimSpace(val))
		}
	}
	if found != 3 {
		return errors.New("capability sets not found in /proc status")
	}
	return nil
}

var netnsCounter atomic.Int32

// newNetns creates a network namespace with its loopback up and removes it
// when the test ends.
func newNetns(t *testing.T) string {
	t.Helper()
	testenv.RequireRoot(t)
	ip := testenv.LookPath(t, "ip", "/usr/sbin/ip", "/sbin/ip")
	name := fmt.Sprintf("timed-it-%d-%d", os.Getpid(), netnsCounter.Add(1))
	if out, err := exec.Command(ip, "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	// Registered before the processes in it, so it runs after they stop.
	t.Cleanup(func() {
		if out, err := exec.Command(ip, "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	if out, err := exec.Command(ip, "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("ip -n %s link set lo up: %v: %s", name, err, out)
	}
	return name
}

// ntpRequest is a client-mode NTPv4 packet whose transmit timestamp is
// random-looking, as a client's should be.
func ntpRequest() []byte {
	b := make([]byte, 48)
	b[0] = 0<<6 | 4<<3 | 3 // LI 0, VN 4, mode 3
	now := time.Now().UnixNano()
	for i := 0; i < 8; i++ {
		b[40+i] = byte(now >> (8 * i))
	}
	return b
}

// ntpAnswers sends one NTP request to addr and reports whether a server
// reply came back within timeout.
func ntpAnswers(addr string, timeout time.Duration) bool {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return false
	}
	defer c.Close()
	req := ntpRequest()
	if _, err := c.Write(req); err != nil {
		return false
	}
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 1024)
	n, err := c.Read(buf)
	return err == nil && n >= 48 && buf[0]&7 == 4 && bytes.Equal(buf[24:32], req[40:48])
}

// waitNTP waits until addr answers NTP requests.
func waitNTP(t *testing.T, addr string, p *proc) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if p.exited() {
			t.Fatalf("%s exited: %v\n%s", p.name, p.waitErr, p.tail(20))
		}
		if ntpAnswers(addr, 200*time.Millisecond) {
			return
		}
	}
	t.Fatalf("%s does not answer NTP on %s\n%s", p.name, addr, p.tail(20))
}

// startChronyServer runs chronyd as an NTP server (local stratum 1) on
// 127.0.0.1:port without CAP_SYS_TIME, and waits until it answers.
func startChronyServer(t *testing.T, port int) *proc {
	t.Helper()
	chronyd := testenv.LookPath(t, "chronyd", "/usr/sbin/chronyd")
	dir := t.TempDir()
	conf := fmt.Sprintf(`port %d
bindaddress 127.0.0.1
allow 127.0.0.1
local stratum 1
cmdport 0
bindcmdaddress /
pidfile %s
`, port, filepath.Join(dir, "server.pid"))
	path := filepath.Join(dir, "server.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, "chronyd-server", dir, "", true, chronyd, "-x", "-d", "-f", path)
	waitNTP(t, fmt.Sprintf("127.0.0.1:%d", port), p)
	return p
}

// startChronyClient runs chronyd as a client of one server (for comparing
// footprints): -x, no CAP_SYS_TIME, no server port, no command port.
func startChronyClient(t *testing.T, serverLine string) *proc {
	t.Helper()
	chronyd := testenv.LookPath(t, "chronyd", "/usr/sbin/chronyd")
	dir := t.TempDir()
	conf := fmt.Sprintf(`%s
port 0
cmdport 0
bindcmdaddress /
pidfile %s
`, serverLine, filepath.Join(dir, "client.pid"))
	path := filepath.Join(dir, "client.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return startProc(t, "chronyd-client", dir, "", true, chronyd, "-x", "-d", "-f", path)
}

// ntpsecPaths finds ntpsec's ntpd and ntpdig as install-peers.sh extracts
// them.
func ntpsecPaths(t *testing.T) (ntpd, ntpdig string) {
	t.Helper()
	base := filepath.Join(peersDir(t), "ntpsec")
	ntpd = testenv.LookPath(t, "ntpsec-ntpd-not-on-path", filepath.Join(base, "usr/sbin/ntpd"))
	ntpdig = testenv.LookPath(t, "ntpsec-ntpdig-not-on-path", filepath.Join(base, "usr/bin/ntpdig"))
	return ntpd, ntpdig
}

// startNtpsecServer runs ntpsec's ntpd as a server on 127.0.0.1:123 inside
// netns (orphan mode, no clock discipline, no CAP_SYS_TIME) and waits until
// ntpdig gets an answer from it.
func startNtpsecServer(t *testing.T, netns string) *proc {
	t.Helper()
	ntpd, ntpdig := ntpsecPaths(t)
	dir := t.TempDir()
	conf := `tos orphan 3 orphanwait 0
disable ntp
disable kernel
restrict default kod limited nomodify noquery
restrict 127.0.0.1
interface ignore wildcard
interface listen 127.0.0.1
`
	path := filepath.Join(dir, "ntp.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, "ntpsec-ntpd", dir, netns, true, ntpd, "-n", "-c", path, "-p", filepath.Join(dir, "ntpd.pid"))
	ip := testenv.LookPath(t, "ip", "/usr/sbin/ip", "/sbin/ip")
	deadline := time.Now().Add(15 * time.Second)
	for {
		if p.exited() {
			t.Fatalf("ntpd exited: %v\n%s", p.waitErr, p.tail(20))
		}
		out, err := exec.Command(ip, "netns", "exec", netns, ntpdig, "-t", "1", "-j", "127.0.0.1").CombinedOutput()
		if err == nil && bytes.Contains(out, []byte(`"offset"`)) {
			t.Logf("ntpdig in %s: %s", netns, bytes.TrimSpace(out))
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("ntpsec's ntpd does not answer ntpdig in %s: %v: %s\n%s", netns, err, out, p.tail(20))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// timedConfig is the part of timed.yaml the tests vary.
type timedConfig struct {
	SimOffset  string // e.g. "200ms"
	SimFreqPPM float64
	Port       int
	MinPoll    int
	MaxPoll    int
	LogLevel   string
}

// yaml renders a complete timed.yaml: virtual clock, no drift file, one
// NTP server on 127.0.0.1, the control socket in dir, JSON logs.
func (c timedConfig) yaml(dir string) string {
	level := c.LogLevel
	if level == "" {
		level = "info"
	}
	return fmt.Sprintf(`clock:
  driver: virtual
  simulate:
    offset: %s
    frequency_ppm: %g
drift_file: ""
ntp:
  servers:
    - address: 127.0.0.1
      port: %d
      iburst: true
      minpoll: %d
      maxpoll: %d
control:
  socket: %s
log:
  level: %s
  format: json
`, c.SimOffset, c.SimFreqPPM, c.Port, c.MinPoll, c.MaxPoll, filepath.Join(dir, "timed.sock"), level)
}

// timedProc is a running timed and the timectl that talks to it.
type timedProc struct {
	*proc
	timectl string
	socket  string
}

// startTimed writes cfg and runs timed on it (in netns when set), without
// CAP_SYS_TIME, and waits until its control socket answers.
func startTimed(t *testing.T, cfg timedConfig, netns string) *timedProc {
	t.Helper()
	timed, timectl := binaries(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "timed.yaml")
	if err := os.WriteFile(path, []byte(cfg.yaml(dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, "timed", dir, netns, true, timed, "-c", path)
	tp := &timedProc{proc: p, timectl: timectl, socket: filepath.Join(dir, "timed.sock")}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if p.exited() {
			t.Fatalf("timed exited: %v\n%s", p.waitErr, p.tail(30))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := tp.status(ctx)
		cancel()
		if err == nil {
			return tp
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed's control socket does not answer: %v\n%s", err, p.tail(30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// statusReply is the part of `timectl status -o json` the tests read (the
// control package's StatusReply).
type statusReply struct {
	Engine struct {
		Synchronized bool           `json:"synchronized"`
		Offset       float64        `json:"offset_s"`
		Frequency    float64        `json:"frequency_ppm"`
		Updates      int            `json:"updates"`
		Steps        int            `json:"steps"`
		Message      string         `json:"message"`
		Sources      []sourceStatus `json:"sources"`
	} `json:"engine"`
	Clock struct {
		Driver           string  `json:"driver"`
		OffsetFromSystem float64 `json:"offset_from_system_s"`
		Frequency        float64 `json:"frequency_ppm"`
	} `json:"clock"`
}

// sourceStatus is one source in statusReply.
type sourceStatus struct {
	Name          string  `json:"name"`
	Address       string  `json:"address"`
	State         string  `json:"state"`
	Reason        string  `json:"reason"`
	Reach         uint8   `json:"reach"`
	Samples       int     `json:"samples"`
	LastSampleAgo float64 `json:"last_sample_ago_s"`
	Offset        float64 `json:"offset_s"`
	LastOffset    float64 `json:"last_offset_s"`
	Delay         float64 `json:"delay_s"`
}

// status runs `timectl -s SOCKET status -o json`. The control socket is a
// path in the file system, so it is reachable from outside timed's network
// namespace.
func (tp *timedProc) status(ctx context.Context) (statusReply, error) {
	var r statusReply
	cmd := exec.CommandContext(ctx, tp.timectl, "-s", tp.socket, "status", "-o", "json")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return r, fmt.Errorf("timectl status: %v: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	if err := decodeJSON(out, &r); err != nil {
		return r, fmt.Errorf("timectl status -o json: %w: %.200s", err, out)
	}
	return r, nil
}

// sample is one reading of timed's status.
type sample struct {
	At     time.Duration // since timed started
	Err    error
	Status statusReply
}

// sampler reads timed's status every interval until stopped.
type sampler struct {
	mu      sync.Mutex
	samples []sample
	stop    chan struct{}
	done    chan struct{}
}

func (tp *timedProc) sample(interval time.Duration) *sampler {
	s := &sampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), interval)
			st, err := tp.status(ctx)
			cancel()
			s.mu.Lock()
			s.samples = append(s.samples, sample{At: time.Since(tp.started), Err: err, Status: st})
			s.mu.Unlock()
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// Stop ends the sampling and returns every sample taken.
func (s *sampler) Stop() []sample {
	close(s.stop)
	<-s.done
	return s.snapshot()
}

func (s *sampler) snapshot() []sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sample(nil), s.samples...)
}

// logLines reads JSON log lines (one object per line) from output, skipping
// anything that is not JSON.
func logLines(output string) []map[string]any {
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(output))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if decodeJSON(sc.Bytes(), &m) == nil {
			lines = append(lines, m)
		}
	}
	return lines
}
