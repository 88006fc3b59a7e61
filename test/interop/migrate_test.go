//go:build linux

package interop

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/timed-project/timed/internal/peers"
	"github.com/timed-project/timed/internal/testenv"
)

// TestMigratedChronyConf: a chrony.conf (a server with iburst and minpoll =
// maxpoll = -2, and chronyd's server settings: allow, deny, bindaddress,
// port, local stratum) goes through `timectl migrate --from chrony`, and
// timed runs on the result with the virtual clock added (the only lines
// the test appends: clock, drift_file, control and log). Before the
// chronyd server it names is up, timed serves its local stratum 8; once it
// is, timed synchronizes to it and serves stratum 2 to an allowed address,
// nothing to the denied one, and chronyd -Q reads its time.
func TestMigratedChronyConf(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	chronyd := testenv.LookPath(t, "chronyd", "/usr/sbin/chronyd")
	timed, timectl := binaries(t)
	lo := netip.MustParseAddr("127.0.0.1")
	srvPort := peers.FreeUDPPort(t, lo)
	timedPort := peers.FreeUDPPort(t, lo)
	dir := t.TempDir()
	conf := filepath.Join(dir, "chrony.conf")
	chronyConf := fmt.Sprintf(`server 127.0.0.1 port %d iburst minpoll -2 maxpoll -2
allow 127.0.0.0/8
deny 127.0.0.2
bindaddress 127.0.0.1
port %d
local stratum 8
makestep 0.1 3
rtcsync
`, srvPort, timedPort)
	if err := os.WriteFile(conf, []byte(chronyConf), 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(timectl, "migrate", "--from", "chrony", conf)
	cmd.Stderr = &stderr
	migrated, err := cmd.Output()
	if err != nil {
		t.Fatalf("timectl migrate: %v\n%s", err, stderr.Bytes())
	}
	t.Logf("timectl migrate --from chrony:\n%s", migrated)
	override := fmt.Sprintf(`clock:
  driver: virtual
  simulate: {offset: 200ms, frequency_ppm: 50}
drift_file: ""
control:
  socket: %s
log:
  format: json
`, filepath.Join(dir, "timed.sock"))
	path := filepath.Join(dir, "timed.yaml")
	if err := os.WriteFile(path, append(migrated, override...), 0o644); err != nil {
		t.Fatal(err)
	}
	p := peers.Start(t, peers.ProcOptions{Name: "timed-migrated", Dir: dir}, timed, "-c", path)
	tp := &timedProc{Proc: p, timectl: timectl, socket: filepath.Join(dir, "timed.sock")}
	timedAddr := netip.AddrPortFrom(lo, uint16(timedPort))

	// No source yet: the local stratum.
	if got, ok := waitFor(p, 10*time.Second, func() (string, bool) {
		s, err := ntpStratum(lo, timedAddr)
		return fmt.Sprintf("stratum %d, %v", s, err), err == nil && s == 8
	}); !ok {
		t.Fatalf("timed does not serve local stratum 8 before it has a source: %s\n%s", got, p.Tail(20))
	}

	serverStart := time.Now()
	peers.StartChronyServer(t, peers.ChronyOptions{Port: srvPort})
	var st statusReply
	if got, ok := waitFor(p, 30*time.Second, func() (string, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		var err error
		st, err = tp.status(ctx)
		if err != nil {
			return err.Error(), false
		}
		return fmt.Sprintf("synchronized %v, offset from the system clock %+.3f ms", st.Engine.Synchronized, st.Clock.OffsetFromSystem*1e3),
			st.Engine.Synchronized && math.Abs(st.Clock.OffsetFromSystem) < 1e-3
	}); !ok {
		t.Fatalf("timed did not synchronize to chronyd within 30 s: %s\n%s", got, p.Tail(20))
	}
	t.Logf("synchronized %.1f s after the chronyd server started; offset from the system clock %+.1f µs", time.Since(serverStart).Seconds(), st.Clock.OffsetFromSystem*1e6)
	if len(st.Engine.Sources) != 1 || st.Engine.Sources[0].State != "selected" {
		t.Errorf("sources %+v, want the one chronyd server, selected", st.Engine.Sources)
	}

	if s, err := ntpStratum(lo, timedAddr); err != nil || s != 2 {
		t.Errorf("from 127.0.0.1 (allowed): stratum %d, %v; want an answer with stratum 2", s, err)
	}
	if s, err := ntpStratum(netip.MustParseAddr("127.0.0.2"), timedAddr); err == nil {
		t.Errorf("from 127.0.0.2 (denied): an answer with stratum %d, want none", s)
	}
	out, err := peers.Command(t, chronyd, "-Q", "-t", "10", fmt.Sprintf("server 127.0.0.1 port %d iburst", timedPort)).CombinedOutput()
	if err != nil {
		t.Fatalf("chronyd -Q against timed: %v\n%s", err, out)
	}
	off, err := parseChronydQ(string(out))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("chronyd -Q: timed's time is %+.1f µs from the system clock", off*1e6)
	if math.Abs(off) > 1e-3 {
		t.Errorf("chronyd -Q measured timed %+.1f µs from the system clock, want within 1 ms", off*1e6)
	}
}

// waitFor calls check until it reports true, for at most d or until p
// exits, and returns its last description and result.
func waitFor(p *peers.Proc, d time.Duration, check func() (string, bool)) (string, bool) {
	deadline := time.Now().Add(d)
	for {
		got, ok := check()
		if ok || p.Exited() || time.Now().After(deadline) {
			return got, ok
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ntpStratum sends one client request from the address from to server and
// returns the stratum of the answer.
func ntpStratum(from netip.Addr, server netip.AddrPort) (int, error) {
	c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(from, 0)), net.UDPAddrFromAddrPort(server))
	if err != nil {
		return 0, err
	}
	defer c.Close()
	req := make([]byte, 48)
	req[0] = 0x23 // version 4, client
	rand.Read(req[40:])
	if _, err := c.Write(req); err != nil {
		return 0, err
	}
	c.SetReadDeadline(time.Now().Add(time.Second))
	resp := make([]byte, 512)
	n, err := c.Read(resp)
	if err != nil {
		return 0, err
	}
	if n < 48 || resp[0]&7 != 4 || !bytes.Equal(resp[24:32], req[40:48]) {
		return 0, fmt.Errorf("not an answer to the request: % x", resp[:n])
	}
	return int(resp[1]), nil
}

// TestMigratedPtp4lConf: a slave's ptp4l.conf — linuxptp's own
// automotive-slave.cfg (802.1AS automotive profile) and a default.cfg slave
// over Ethernet, each with software timestamps as the other PTP tests use
// them — goes through `timectl migrate --from ptp4l -i IFACE`, and timed runs
// on the result (plus the virtual clock and its control socket) against a
// ptp4l master with the matching master configuration across a veth pair:
// the port has the profile and role of the file, becomes SLAVE, and its
// source is selected within 100 µs of the master.
func TestMigratedPtp4lConf(t *testing.T) {
	testenv.RequireRoot(t)
	_, timectl := binaries(t)
	for _, tc := range []struct {
		name           string
		slave, master  []string
		transport      string // ptp4l's -2 or -4 of the master
		section, state string
		profile        string // gptp ports only
	}{
		{name: "automotive slave",
			slave:     linuxptpConfig(t, "automotive-slave.cfg", withOverrides(gptpSoftware, "time_stamping", "software")),
			master:    linuxptpConfig(t, "automotive-master.cfg", withOverrides(gptpSoftware, "free_running", "1")),
			transport: "-2", section: "gptp", profile: "automotive"},
		{name: "default slave over Ethernet",
			slave:     linuxptpConfig(t, "default.cfg", map[string]string{"slaveOnly": "1", "time_stamping": "software", "network_transport": "L2"}),
			master:    linuxptpConfig(t, "default.cfg", map[string]string{"priority1": "10", "free_running": "1", "logSyncInterval": "-3"}),
			transport: "-2", section: "ptp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a, b := peers.NewVethPair(t)
			dir := t.TempDir()
			conf := filepath.Join(dir, "ptp4l.conf")
			if err := os.WriteFile(conf, []byte("[global]\n"+strings.Join(tc.slave, "\n")+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			var stderr bytes.Buffer
			cmd := exec.Command(timectl, "migrate", "--from", "ptp4l", "-i", b.Iface, conf)
			cmd.Stderr = &stderr
			migrated, err := cmd.Output()
			if err != nil {
				t.Fatalf("timectl migrate: %v\n%s", err, stderr.Bytes())
			}
			t.Logf("timectl migrate --from ptp4l -i %s:\n%s", b.Iface, migrated)
			peers.StartPtp4l(t, "ptp4l-master", a.Netns, a.Iface, tc.transport, tc.master...)
			cfg := timedConfig{SimOffset: "0ms", NoSources: true, Name: "migrated-" + tc.section, Extra: string(migrated)}
			tp := startTimed(t, cfg, b.Netns)

			var st struct {
				Ports []struct {
					Interface    string `json:"interface"`
					State        string `json:"state"`
					Measurements uint64 `json:"measurements"`
					GPTP         *struct {
						Profile string `json:"profile"`
					} `json:"gptp"`
				} `json:"ports"`
			}
			var status statusReply
			got, ok := waitFor(tp.Proc, 40*time.Second, func() (string, bool) {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				if err := tp.query(ctx, &st, "ptp"); err != nil {
					return err.Error(), false
				}
				var err error
				if status, err = tp.status(ctx); err != nil {
					return err.Error(), false
				}
				if len(st.Ports) != 1 || len(status.Engine.Sources) != 1 {
					return fmt.Sprintf("ports %+v, sources %+v", st.Ports, status.Engine.Sources), false
				}
				p, s := st.Ports[0], status.Engine.Sources[0]
				return fmt.Sprintf("port %s %s, %d measurements; source %s, offset %+.1f µs", p.Interface, p.State, p.Measurements, s.State, s.Offset*1e6),
					p.State == "SLAVE" && p.Measurements >= 10 && s.State == "selected" && math.Abs(s.Offset) < 100e-6
			})
			if !ok {
				t.Fatalf("timed on the migrated file: %s\n%s", got, tp.Tail(20))
			}
			t.Logf("timed on the migrated file: %s", got)
			p := st.Ports[0]
			switch {
			case p.Interface != b.Iface:
				t.Errorf("port on %s, want %s", p.Interface, b.Iface)
			case tc.section == "gptp" && (p.GPTP == nil || p.GPTP.Profile != tc.profile):
				t.Errorf("gPTP block %+v, want profile %s", p.GPTP, tc.profile)
			case tc.section == "ptp" && p.GPTP != nil:
				t.Errorf("a gPTP port, want a plain PTP port")
			}
		})
	}
}
