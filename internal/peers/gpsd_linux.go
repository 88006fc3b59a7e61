package peers

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/timed-project/timed/internal/testenv"
)

// GpsfakePath finds gpsd-clients' gpsfake where scripts/install-peers.sh
// extracts it (under PeersDir), and checks that gpsd, which gpsfake runs,
// is installed.
func GpsfakePath(t testing.TB) string {
	t.Helper()
	testenv.LookPath(t, "gpsd", "/usr/sbin/gpsd")
	if _, err := os.Stat("/usr/lib/python3/dist-packages/gps/fake.py"); err != nil {
		testenv.Missing(t, "python3-gps (make test installs it)")
	}
	return testenv.LookPath(t, "gpsfake-not-on-path", filepath.Join(PeersDir(t), "gpsd-clients", "usr/bin/gpsfake"))
}

// StartGpsfake runs gpsfake replaying nmeaFile in a loop to a gpsd it
// starts on 127.0.0.1 and ::1 at port (without CAP_SYS_TIME), one sentence
// every third of a second, so that GenerateNMEA's three sentences an epoch
// take about a second. It waits up to 15 s until gpsd accepts connections.
// When the test ends gpsfake is stopped and its socket
// /tmp/gpsfake-PID.sock and the SHM segments it left are removed.
func StartGpsfake(t testing.TB, nmeaFile string, port int) *Proc {
	t.Helper()
	gpsfake := GpsfakePath(t)
	cleanGpsfakeLeftovers(t, port)
	p := Start(t, ProcOptions{Name: fmt.Sprintf("gpsfake-%d", port)},
		gpsfake, "-P", strconv.Itoa(port), "-c", "0.333", "-q", nmeaFile)
	cleanGpsfakeSocket(t, p)
	waitGpsd(t, p, port)
	return p
}

// SteppedGpsfake is a gpsfake that writes its log's sentences one at a time,
// when the test says so (gpsfake -i): the test knows when each sentence
// was sent.
type SteppedGpsfake struct {
	*Proc
	step *os.File
}

// StartGpsfakeStepped runs gpsfake like StartGpsfake, but single-stepping:
// it writes no sentence of nmeaFile until Feed is called.
func StartGpsfakeStepped(t testing.TB, nmeaFile string, port int) *SteppedGpsfake {
	t.Helper()
	gpsfake := GpsfakePath(t)
	cleanGpsfakeLeftovers(t, port)
	dir := t.TempDir()
	fifo := filepath.Join(dir, "step")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatalf("gpsfake: mkfifo %s: %v", fifo, err)
	}
	// Opened for reading and writing, the FIFO neither blocks this open
	// nor gpsfake's.
	step, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("gpsfake: %v", err)
	}
	// A wrapper named gpsfake gives gpsfake the FIFO as its input; its
	// process name is gpsfake from the start, as Start waits for.
	wrapper := filepath.Join(dir, "gpsfake")
	script := "#!/bin/sh\nexec " + shellQuote(gpsfake) + " -i -c 0 -q -P " + strconv.Itoa(port) + " " +
		shellQuote(nmeaFile) + " <" + shellQuote(fifo) + "\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatalf("gpsfake: %v", err)
	}
	p := Start(t, ProcOptions{Name: fmt.Sprintf("gpsfake-%d", port), Dir: dir}, wrapper)
	cleanGpsfakeSocket(t, p)
	waitGpsd(t, p, port)
	holdDeviceOpen(t, p, port)
	g := &SteppedGpsfake{Proc: p, step: step}
	t.Cleanup(g.Stop)
	return g
}

// Stop ends gpsfake: its input ends, which makes it stop its gpsd and
// exit, and then Proc.Stop makes sure it has.
func (g *SteppedGpsfake) Stop() {
	g.step.Close()
	select {
	case <-g.Done():
	case <-time.After(2 * time.Second):
	}
	g.Proc.Stop()
}

// holdDeviceOpen makes gpsd open gpsfake's pty and keep it open until the
// process ends: gpsd opens a device only for a watching client, and it
// flushes the input when it does, which would lose the sentences fed
// before. A watching connection, read and discarded, is kept open.
func holdDeviceOpen(t testing.TB, p *Proc, port int) {
	t.Helper()
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 5*time.Second)
	if err != nil {
		t.Fatalf("gpsfake: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write([]byte(`?WATCH={"enable":true,"json":true}` + "\n")); err != nil {
		t.Fatalf("gpsfake: %v", err)
	}
	// gpsfake adds its pty to gpsd after gpsd listens; under a loaded CI
	// run that took more than 10 s once.
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	var got []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("gpsfake: gpsd did not open the device: %v; gpsd said:\n%s\ngpsfake:\n%s", err, strings.Join(got, ""), p.Tail(20))
		}
		got = append(got, line)
		if strings.Contains(line, `"class":"DEVICE"`) && strings.Contains(line, `"activated"`) {
			break
		}
		if strings.Contains(line, `"class":"DEVICES"`) && strings.Contains(line, `"activated"`) {
			break
		}
	}
	c.SetReadDeadline(time.Time{})
	go io.Copy(io.Discard, br)
}

// Feed makes gpsfake write the next n sentences at once.
func (g *SteppedGpsfake) Feed(n int) error {
	if g.Exited() {
		return fmt.Errorf("gpsfake: exited: %v", g.Err())
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = '\n'
	}
	if _, err := g.step.Write(b); err != nil {
		return fmt.Errorf("gpsfake: stepping: %w", err)
	}
	return nil
}

// waitGpsd waits until gpsd accepts TCP connections on 127.0.0.1:port.
func waitGpsd(t testing.TB, p *Proc, port int) {
	t.Helper()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(15 * time.Second)
	for {
		if p.Exited() {
			t.Fatalf("gpsfake exited: %v\n%s", p.Err(), p.Tail(20))
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gpsd of gpsfake does not accept connections at %s: %v\n%s", addr, err, p.Tail(20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// cleanGpsfakeSocket removes the control socket gpsfake leaves behind when
// the test ends. It is registered after Start's cleanup and so runs before
// it: it stops the process first.
func cleanGpsfakeSocket(t testing.TB, p *Proc) {
	t.Helper()
	t.Cleanup(func() {
		p.Stop()
		os.Remove(fmt.Sprintf("/tmp/gpsfake-%d.sock", p.Pid()))
	})
}

// gpsdSHMKeys are the SHM segments gpsd creates for NTP: units 0 to 7
// ("NTP0".."NTP7").
var gpsdSHMKeys = []int{0x4e545030, 0x4e545031, 0x4e545032, 0x4e545033,
	0x4e545034, 0x4e545035, 0x4e545036, 0x4e545037}

// gpsfakeExportKeyBase plus the port is the key of the segment gpsd
// exports its data in under gpsfake (GPSD_SHM_KEY, as gpsfake sets it).
const gpsfakeExportKeyBase = 0x47700000

// cleanGpsfakeLeftovers removes, when the test ends, the SHM segments
// gpsd leaves behind, those that no process has attached: a segment still
// attached belongs to a gpsd or reader that still runs.
func cleanGpsfakeLeftovers(t testing.TB, port int) {
	t.Helper()
	t.Cleanup(func() {
		// Runs after the gpsfake's own cleanup (registered later, run
		// earlier) has stopped it, and gpsd with it.
		for _, key := range append(gpsdSHMKeys, gpsfakeExportKeyBase+port) {
			if err := removeUnattachedSHM(key); err != nil {
				t.Logf("gpsfake cleanup: %v", err)
			}
		}
	})
}

// removeUnattachedSHM removes the System V shared memory segment of key
// unless a process has it attached.
func removeUnattachedSHM(key int) error {
	id, err := unix.SysvShmGet(key, 0, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("shmget %#x: %w", key, err)
	}
	var ds unix.SysvShmDesc
	if _, err := unix.SysvShmCtl(id, unix.IPC_STAT, &ds); err != nil {
		return fmt.Errorf("shmctl IPC_STAT %#x: %w", key, err)
	}
	if ds.Nattch != 0 {
		return nil
	}
	if _, err := unix.SysvShmCtl(id, unix.IPC_RMID, nil); err != nil {
		return fmt.Errorf("shmctl IPC_RMID %#x: %w", key, err)
	}
	return nil
}

// GenerateNMEA writes n epochs of NMEA 0183 at 1 Hz, the first at start
// (truncated to the second, UTC): for each a GGA (a 3D-capable fix with 8
// satellites), an RMC (valid) and a ZDA sentence, with correct checksums
// and CR LF endings. Each sentence carries the epoch's time, so a test
// that knows when an epoch was sent knows the truth.
func GenerateNMEA(start time.Time, n int) []byte {
	start = start.UTC().Truncate(time.Second)
	var out []byte
	for i := range n {
		t := start.Add(time.Duration(i) * time.Second)
		hms := t.Format("150405") + ".00"
		out = append(out, nmeaSentence(fmt.Sprintf("GPGGA,%s,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,", hms))...)
		out = append(out, nmeaSentence(fmt.Sprintf("GPRMC,%s,A,4807.038,N,01131.000,E,000.0,000.0,%s,003.1,W", hms, t.Format("020106")))...)
		out = append(out, nmeaSentence(fmt.Sprintf("GPZDA,%s,%s,00,00", hms, t.Format("02,01,2006")))...)
	}
	return out
}

// NMEASentencesPerEpoch is how many sentences GenerateNMEA writes for
// each second.
const NMEASentencesPerEpoch = 3

// nmeaSentence frames body as $BODY*CS\r\n, CS the XOR of body's bytes.
func nmeaSentence(body string) string {
	var cs byte
	for i := 0; i < len(body); i++ {
		cs ^= body[i]
	}
	return fmt.Sprintf("$%s*%02X\r\n", body, cs)
}
