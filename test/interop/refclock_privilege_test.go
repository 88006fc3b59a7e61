//go:build linux

package interop

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/timed-project/timed/gpsd"
	"github.com/timed-project/timed/internal/testenv"
)

// shmTime is ntpd's struct shmTime with Go's types, which have C's sizes
// and alignments on Linux (time_t is a C long, Go's int).
type shmTime struct {
	mode, count                      int32
	clockSec                         int
	clockUSec                        int32
	receiveSec                       int
	receiveUSec                      int32
	leap, precision, nsamples, valid int32
	clockNSec, receiveNSec           uint32
	dummy                            [8]int32
}

// TestRefclockPackagedUser runs timed as timed.service does: as an
// unprivileged user (nobody) with CAP_IPC_OWNER alone, its SOCK socket
// bound by the service manager (systemd-socket-activate, as
// timed-sock@.socket does) in a directory timed may not write, and NTP
// SHM unit 0 made by root with mode 0600 before timed starts, as gpsd
// running as root makes it. Both reference clocks deliver samples; once
// started, timed holds no capability at all; and the same timed without
// CAP_IPC_OWNER says why it cannot read unit 0.
func TestRefclockPackagedUser(t *testing.T) {
	testenv.RequireRoot(t)
	activate := testenv.LookPath(t, "systemd-socket-activate", "/usr/bin/systemd-socket-activate")
	setpriv := testenv.LookPath(t, "setpriv", "/usr/bin/setpriv")
	refclockCleanSHM(t)
	const nobody = 65534

	// Unit 0 as gpsd (root) makes it; a writer in the test, as gpsd.
	shmID, err := unix.SysvShmGet(gpsd.SHMKeyBase, int(unsafe.Sizeof(shmTime{})), unix.IPC_CREAT|0o600)
	if err != nil {
		t.Fatal(err)
	}
	mem, err := unix.SysvShmAttach(shmID, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unix.SysvShmDetach(mem)
		unix.SysvShmCtl(shmID, unix.IPC_RMID, nil)
	})
	seg := (*shmTime)(unsafe.Pointer(&mem[0]))

	// The socket's directory is root's: timed cannot make the socket.
	run, err := os.MkdirTemp("", "timed-run-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(run) })
	if err := os.Chmod(run, 0o755); err != nil {
		t.Fatal(err)
	}
	sockPath := filepath.Join(run, "chrony.ttyPK.sock")

	// Every 200 ms: an SHM sample (mode 1 handshake) and a SOCK sample,
	// each the system time with offset 0.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			now := time.Now()
			seg.count++
			seg.mode, seg.leap, seg.precision = 1, 0, -20
			seg.clockSec, seg.clockUSec, seg.clockNSec = int(now.Unix()), int32(now.Nanosecond()/1000), uint32(now.Nanosecond())
			seg.receiveSec, seg.receiveUSec, seg.receiveNSec = seg.clockSec, seg.clockUSec, seg.clockNSec
			seg.count++
			seg.valid = 1
			if c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: sockPath, Net: "unixgram"}); err == nil {
				c.Write(refclockSockSample(now, 0, false))
				c.Close()
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })

	refclocks := "refclocks:\n  - {kind: sock, path: " + sockPath + ", delay: 1us}\n  - {kind: shm, unit: 0, delay: 1us}\n"
	asNobody := func(caps string) []string {
		return []string{setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
			"--inh-caps=-all" + caps, "--ambient-caps=-all" + caps, "--bounding-set=-all" + caps, "--"}
	}

	t.Run("with CAP_IPC_OWNER", func(t *testing.T) {
		cfg := simulatedStart
		cfg.NoSources = true
		cfg.Owner = nobody
		cfg.Extra = refclocks
		cfg.Name = "nobody"
		// systemd-socket-activate binds the socket as root and runs timed
		// on the first sample, with LISTEN_FDS.
		cfg.Wrap = append([]string{activate, "--datagram", "--listen=" + sockPath}, asNobody(",+ipc_owner")...)
		tp := startTimed(t, cfg, "")
		// Locked down: no capability left to use (the bounding set is
		// the service manager's: only CAP_SETPCAP could shrink it).
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(tp.Output(), "seccomp filter installed: ") && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		st := procStatus(t, tp.Pid())
		if uid := strings.Fields(st["Uid"]); len(uid) == 0 || uid[0] != "65534" {
			t.Errorf("timed runs as uid %q, want 65534", st["Uid"])
		}
		for _, set := range []string{"CapEff", "CapPrm", "CapInh", "CapAmb"} {
			if st[set] != "0000000000000000" {
				t.Errorf("%s: %s, want none", set, st[set])
			}
		}
		if st["Seccomp"] != "2" {
			t.Errorf("Seccomp: %q, want 2", st["Seccomp"])
		}
		deadline = time.Now().Add(10 * time.Second)
		var rcs []refclockInfo
		for time.Now().Before(deadline) {
			s, err := tp.status(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			rcs = s.Refclocks
			if len(rcs) == 2 && rcs[0].Samples >= 3 && rcs[1].Samples >= 3 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if len(rcs) != 2 || rcs[0].Samples < 3 || rcs[1].Samples < 3 || !rcs[0].Connected || !rcs[1].Connected {
			t.Fatalf("reference clocks %+v, want both connected with samples\n%s", rcs, tp.Tail(30))
		}
		t.Logf("as uid 65534 with no capability left: sock %d samples, shm unit 0 %d samples", rcs[0].Samples, rcs[1].Samples)
		out := tp.Output()
		for _, want := range []string{`"socket from the service manager"`, `"from_service_manager":true`, `"attached_at_start":true`} {
			if !strings.Contains(out, want) {
				t.Errorf("the log does not say %s", want)
			}
		}
	})

	t.Run("without CAP_IPC_OWNER", func(t *testing.T) {
		cfg := simulatedStart
		cfg.NoSources = true
		cfg.Owner = nobody
		cfg.Extra = "refclocks:\n  - {kind: shm, unit: 0, delay: 1us}\n"
		cfg.Name = "nobody-nocap"
		cfg.Wrap = asNobody("")
		tp := startTimed(t, cfg, "")
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(tp.Output(), "CAP_IPC_OWNER") && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		s, err := tp.status(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Refclocks) != 1 || s.Refclocks[0].Connected || !strings.Contains(s.Refclocks[0].Reason, "CAP_IPC_OWNER") {
			t.Errorf("reference clock %+v, want unit 0 not attached, the reason naming CAP_IPC_OWNER", s.Refclocks)
		}
	})
}
