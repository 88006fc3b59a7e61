//go:build linux

package interop

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"

	"github.com/timed-project/timed/gpsd"
	"github.com/timed-project/timed/internal/peers"
	"github.com/timed-project/timed/internal/testenv"
	"github.com/timed-project/timed/sources"
)

// refclockRun runs src until the test ends.
func refclockRun(t *testing.T, src sources.Source) *gpsdRecorder {
	r := &gpsdRecorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, r) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s: Run = %v", src.Name(), err)
		}
	})
	return r
}

// refclockGpsdExportKey is the key of the segment gpsd exports its own
// data in ("GPSD") when GPSD_SHM_KEY does not say otherwise.
const refclockGpsdExportKey = 0x47505344

// refclockCleanSHM removes NTP's SHM segments (units 0-7) and gpsd's
// export segment that no process has attached, when the test ends: gpsd
// leaves them behind.
func refclockCleanSHM(t *testing.T) {
	t.Cleanup(func() {
		keys := []int{refclockGpsdExportKey}
		for unit := range 8 {
			keys = append(keys, gpsd.SHMKeyBase+unit)
		}
		for _, key := range keys {
			id, err := unix.SysvShmGet(key, 0, 0)
			if err != nil {
				continue
			}
			var ds unix.SysvShmDesc
			if _, err := unix.SysvShmCtl(id, unix.IPC_STAT, &ds); err != nil || ds.Nattch != 0 {
				continue
			}
			if _, err := unix.SysvShmCtl(id, unix.IPC_RMID, nil); err != nil {
				t.Logf("removing SHM key %#x: %v", key, err)
			}
		}
	})
}

// refclockPty opens a pseudo-terminal pair.
func refclockPty(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("ptsname: %v", err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open pty slave: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// refclockStartGpsd runs gpsd (as root, without CAP_SYS_TIME) on the
// device /dev/tty, its controlling terminal being the slave of a new pty,
// and returns the pty's master end, where the test writes NMEA.
//
// Why not gpsfake: gpsd 3.22 writes no SHM and no chrony SOCK samples for
// a device it classifies as a pty (ntpshm_link_activate returns at once
// for SOURCE_PTY: "don't talk to NTP when we're running inside the test
// harness"), and it classifies by the device's major number (136-143 for
// /dev/pts/N). /dev/tty has major 5, which gpsd takes for a serial port
// (SOURCE_RS232), and opening it opens the caller's controlling terminal:
// the same pty, so gpsd reads the test's NMEA and feeds NTP as it would
// from a real receiver.
func refclockStartGpsd(t *testing.T) (master *os.File, logPath string) {
	t.Helper()
	testenv.RequireRoot(t)
	gpsdPath := testenv.LookPath(t, "gpsd", "/usr/sbin/gpsd")
	master, slave := refclockPty(t)
	dir := t.TempDir()
	port := peers.FreeTCPPort(t)
	logPath = filepath.Join(dir, "gpsd.log")
	out, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := peers.Command(t, gpsdPath, "-N", "-n", "-b", "-D", "4", "-S", strconv.Itoa(port),
		"-F", filepath.Join(dir, "gpsd.sock"), "/dev/tty")
	cmd.Stdin = slave
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr.Setsid = true
	cmd.SysProcAttr.Setctty = true
	cmd.SysProcAttr.Ctty = 0 // stdin, in the child
	if err := cmd.Start(); err != nil {
		t.Fatalf("start gpsd: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(unix.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("gpsd log:\n%s", refclockTail(string(b), 40))
		}
	})
	// Wait until the exec chain has become gpsd, then check it cannot set
	// the clock.
	for i := 0; ; i++ {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", cmd.Process.Pid))
		if strings.TrimSpace(string(comm)) == "gpsd" {
			break
		}
		if i > 500 {
			t.Fatalf("gpsd did not start: %q", comm)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := peers.CheckNoSysTime(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	return master, logPath
}

func refclockTail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// refclockFeed writes one epoch of NMEA at writeAfter past each full
// second until ctx is done, and records when each epoch was written.
type refclockFeed struct {
	mu      sync.Mutex
	written map[int64]time.Time // epoch second → system time of the write
}

func (f *refclockFeed) run(ctx context.Context, t *testing.T, w *os.File, writeAfter time.Duration) {
	for {
		next := time.Now().Truncate(time.Second).Add(time.Second)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(next.Add(writeAfter))):
		}
		b := peers.GenerateNMEA(next, 1)
		at := time.Now()
		if _, err := w.Write(b); err != nil {
			t.Errorf("writing NMEA: %v", err)
			return
		}
		f.mu.Lock()
		f.written[next.Unix()] = at
		f.mu.Unlock()
	}
}

func (f *refclockFeed) at(sec int64) (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w, ok := f.written[sec]
	return w, ok
}

// TestRefclockSHM: gpsd 3.22 (root, no CAP_SYS_TIME) reads NMEA that the
// test writes into a pty at 100 ms past each second, and writes its time
// to NTP's shared memory. As root it takes unit 0 for the receiver's time
// (the first unit ntpshm_alloc hands out; unit 1 goes to the PPS that a
// pty cannot deliver). timed's SHM reader on unit 0 must agree with the
// truth: the epoch's second minus the system time the test wrote it at,
// within the reader's configured uncertainty (20 ms: gpsd stamps the
// arrival of the first sentence of the epoch, a few ms after the write).
//
// gpsd is not started by gpsfake here, because gpsd writes nothing to SHM
// for a pty device: see refclockStartGpsd.
func TestRefclockSHM(t *testing.T) {
	refclockCleanSHM(t)
	master, logPath := refclockStartGpsd(t)
	feed := &refclockFeed{written: map[int64]time.Time{}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go feed.run(ctx, t, master, 100*time.Millisecond)

	const uncertainty = 20 * time.Millisecond
	var readers [2]*gpsdRecorder
	for unit := range readers {
		src, err := gpsd.NewSHM(gpsd.SHMConfig{Unit: unit, Interval: 200 * time.Millisecond, Delay: uncertainty},
			gpsdSystemTimebase{}, zaptest.NewLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		readers[unit] = refclockRun(t, src)
	}

	const want = 8
	deadline := time.Now().Add(40 * time.Second)
	for len(readers[0].measurements()) < want && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	got := readers[0].measurements()
	if len(got) < want {
		b, _ := os.ReadFile(logPath)
		t.Fatalf("%d SHM samples on unit 0 in 40 s (unit 1: %d), want %d; gpsd says:\n%s",
			len(got), len(readers[1].measurements()), want, refclockTail(string(b), 30))
	}
	var errs []float64
	for _, m := range got {
		ref := m.Local.Add(m.Offset)
		sec := ref.Round(time.Second)
		if d := ref.Sub(sec); d.Abs() > time.Millisecond {
			t.Errorf("reference time %v is not an epoch's second", ref)
			continue
		}
		w, ok := feed.at(sec.Unix())
		if !ok {
			t.Errorf("sample for %v, an epoch never written", sec)
			continue
		}
		truth := sec.Sub(w)
		e := m.Offset - truth
		errs = append(errs, e.Seconds())
		if e.Abs() > uncertainty || m.RootDispersion != uncertainty || m.Stratum != 0 || m.Delay != 0 {
			t.Errorf("epoch %v: offset %v, truth %v (error %v, allowed %v), dispersion %v",
				sec.Format("15:04:05"), m.Offset, truth, e, uncertainty, m.RootDispersion)
		}
	}
	t.Logf("%d samples on unit 0, %d on unit 1; offset minus truth: RMS %.3f ms, max %.3f ms, precision %v",
		len(got), len(readers[1].measurements()), rms(errs)*1e3, maxAbs(errs)*1e3, got[0].Precision)
}

// refclockSockSample encodes a chrony SOCK sample with this
// architecture's layout.
func refclockSockSample(sys time.Time, offset float64, pulse bool) []byte {
	type sample struct {
		sec, usec               int
		offset                  float64
		pulse, leap, pad, magic int32
	}
	b := make([]byte, unsafe.Sizeof(sample{}))
	ne := binary.NativeEndian
	ts := int(unsafe.Sizeof(int(0)))
	put := func(off int, v int64) {
		if ts == 8 {
			ne.PutUint64(b[off:], uint64(v))
		} else {
			ne.PutUint32(b[off:], uint32(v))
		}
	}
	put(0, sys.Unix())
	put(ts, int64(sys.Nanosecond()/1000))
	ne.PutUint64(b[2*ts:], math.Float64bits(offset))
	if pulse {
		ne.PutUint32(b[2*ts+8:], 1)
	}
	ne.PutUint32(b[2*ts+20:], 0x534f434b)
	return b
}

// TestRefclockSOCK: timed's SOCK reader at /run/chrony.tty.sock, the path
// gpsd 3.22 (as root) sends chrony samples to for the device /dev/tty.
//
// gpsd cannot be the writer here: it sends SOCK samples only from its PPS
// thread (one per pulse, the PPS edge against the system clock), and it
// never sends the NMEA time there. A pty has no modem-control lines
// (TIOCMIWAIT fails) and this machine has no /dev/pps*, so no pulse ever
// comes: the test runs gpsd on the pty for 5 s, checks that the socket got
// nothing from it, and then writes samples itself, as gpsd's chrony_send
// does: a datagram from an unbound socket per sample, time and pulse.
func TestRefclockSOCK(t *testing.T) {
	testenv.RequireRoot(t)
	refclockCleanSHM(t)
	path := "/run/chrony.tty.sock"
	if _, err := os.Lstat(path); err == nil {
		t.Fatalf("%s exists: another reader is using it", path)
	}
	t.Cleanup(func() {
		if st, err := os.Lstat(path); err == nil && st.Mode()&os.ModeSocket != 0 {
			os.Remove(path)
		}
	})
	const uncertainty = 5 * time.Millisecond
	src, err := gpsd.NewSock(gpsd.SockConfig{Path: path, Delay: uncertainty, Timeout: time.Second}, gpsdSystemTimebase{}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	r := refclockRun(t, src)
	for i := 0; !src.Status().Connected; i++ {
		if i > 200 {
			t.Fatalf("socket not up: %+v", src.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}

	// gpsd on a pty: nothing arrives.
	ss := testenv.LookPath(t, "ss", "/usr/bin/ss", "/bin/ss")
	master, _ := refclockStartGpsd(t)
	feed := &refclockFeed{written: map[int64]time.Time{}}
	ctx, cancel := context.WithCancel(context.Background())
	go feed.run(ctx, t, master, 100*time.Millisecond)
	time.Sleep(5 * time.Second)
	out, err := exec.Command(ss, "-xp").CombinedOutput()
	if err != nil {
		t.Fatalf("ss -xp: %v\n%s", err, out)
	}
	ssOut := string(out)
	cancel()
	// gpsd did find the socket and connect to it (chrony_init at device
	// activation): ss shows a datagram socket of gpsd's whose peer is ours.
	if n := len(r.measurements()); n != 0 {
		t.Errorf("%d SOCK samples from gpsd on a pty, expected none (no PPS)", n)
	}
	if !refclockGpsdConnected(t, ssOut, path) {
		t.Errorf("gpsd did not connect to %s; ss -xp says:\n%s", path, refclockGrep(ssOut, "gpsd", path))
	}

	// The test as the writer.
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	type sent struct {
		sys    time.Time
		offset float64
		pulse  bool
		want   time.Duration
	}
	now := time.Now()
	samples := []sent{
		{now, 0.0123456, false, 12345600 * time.Nanosecond},
		{now.Add(time.Second), -0.25, false, -250 * time.Millisecond},
		{now.Add(2 * time.Second), 2.000042, true, 42 * time.Microsecond}, // a pulse: modulo 1 s
	}
	for _, s := range samples {
		if _, err := conn.Write(refclockSockSample(s.sys, s.offset, s.pulse)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.Write([]byte("not a sample")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(r.measurements()) < len(samples) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	got := r.measurements()
	if len(got) != len(samples) {
		t.Fatalf("%d measurements, want %d", len(got), len(samples))
	}
	for i, s := range samples {
		m := got[i]
		if !m.Local.Equal(s.sys.Truncate(time.Microsecond)) || (m.Offset-s.want).Abs() > time.Nanosecond || m.RootDispersion != uncertainty {
			t.Errorf("sample %d: Local %v Offset %v RootDispersion %v, want %v %v %v", i, m.Local, m.Offset, m.RootDispersion, s.sys, s.want, uncertainty)
		}
	}
	if st := src.Status(); st.Dropped[gpsd.DropWrongSize] != 1 || st.Samples != uint64(len(samples)) {
		t.Errorf("status %+v", st)
	}
}

// refclockGpsdConnected reports whether ss -xp output shows a socket of
// gpsd's connected to the socket bound at path: the bound socket's line
// has the path and its inode; gpsd's has that inode as its peer.
func refclockGpsdConnected(t *testing.T, ssOut, path string) bool {
	inode := ""
	for _, l := range strings.Split(ssOut, "\n") {
		f := strings.Fields(l)
		if len(f) >= 6 && f[4] == path {
			inode = f[5]
		}
	}
	if inode == "" {
		t.Logf("%s not in ss -xp", path)
		return false
	}
	for _, l := range strings.Split(ssOut, "\n") {
		f := strings.Fields(l)
		if len(f) >= 8 && strings.Contains(l, `"gpsd"`) && f[7] == inode {
			return true
		}
	}
	return false
}

// refclockGrep returns the lines of s that contain any of words.
func refclockGrep(s string, words ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, w := range words {
			if strings.Contains(l, w) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// TestRefclockSHMGpsfake shows why TestRefclockSHM does not use gpsfake:
// gpsd started by gpsfake (peers.StartGpsfake, NMEA at the current time)
// reads the fake receiver through a pty, and gpsd 3.22 feeds NTP nothing
// for a pty device. While a client watches (so that gpsd has the device
// open and decodes TPVs from it), timed's SHM reader on units 0 and 1 sees
// no sample in 8 s and reports a fault.
func TestRefclockSHMGpsfake(t *testing.T) {
	testenv.RequireRoot(t)
	refclockCleanSHM(t)
	start := time.Now()
	nmea := filepath.Join(t.TempDir(), "now.nmea")
	if err := os.WriteFile(nmea, peers.GenerateNMEA(start, 120), 0o600); err != nil {
		t.Fatal(err)
	}
	port := peers.FreeTCPPort(t)
	peers.StartGpsfake(t, nmea, port)
	// gpsd opens the device only for a watching client: watch, and wait
	// for a TPV with a time, so that gpsd is known to decode the replay.
	conn, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(`?WATCH={"enable":true,"json":true}` + "\n")); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	sc := bufio.NewScanner(conn)
	for {
		if !sc.Scan() {
			t.Fatalf("no TPV with a time from gpsd: %v", sc.Err())
		}
		if l := sc.Text(); strings.Contains(l, `"class":"TPV"`) && strings.Contains(l, `"time":`) {
			break
		}
	}
	conn.SetReadDeadline(time.Time{})
	go func() {
		for sc.Scan() {
		}
	}()
	var readers [2]*gpsdRecorder
	var srcs [2]*gpsd.SHM
	for unit := range readers {
		src, err := gpsd.NewSHM(gpsd.SHMConfig{Unit: unit, Interval: 200 * time.Millisecond, FaultAfter: 10},
			gpsdSystemTimebase{}, zaptest.NewLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		srcs[unit], readers[unit] = src, refclockRun(t, src)
	}
	time.Sleep(8 * time.Second)
	for unit, r := range readers {
		for _, m := range r.measurements() {
			if m.Local.After(start) {
				t.Errorf("unit %d: a sample from gpsd under gpsfake: %+v", unit, m)
			}
		}
		if st := srcs[unit].Status(); !strings.Contains(st.Reason, "no valid sample") {
			t.Errorf("unit %d: status reason %q, want a no-sample fault", unit, st.Reason)
		}
	}
}
