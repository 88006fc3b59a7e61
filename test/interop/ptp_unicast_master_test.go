//go:build linux

package interop

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/timed-project/timed/internal/peers"
	"github.com/timed-project/timed/internal/testenv"
)

// ptpUnicastClients is what TestPTPUnicastMaster reads of `timectl ptp -o
// json`.
type ptpUnicastClients struct {
	Ports []struct {
		State          string
		Dropped        map[string]uint64
		UnicastClients []struct {
			Address, Identity string
			Grants            []struct {
				Message, State string
				LogInterval    int8    `json:"log_interval"`
				Left           float64 `json:"left_s"`
			}
		} `json:"unicast_clients"`
	}
}

// TestPTPUnicastMaster: timed as grandmaster (virtual clock, no source:
// clockClass 248) with a master_only udp4 port and unicast_listen, a ptp4l
// slave (slaveOnly, without CAP_SYS_TIME) whose unicast master table names
// timed's address. The two sit on a bridge that does not pass multicast to
// the slave's port (mcast_flood off, no snooping), so the slave hears
// timed's unicast messages alone: it is granted Announce, Sync and
// Delay_Resp, reaches SLAVE, and its locked offsets stay small (the two
// clocks are the same system clock): RMS < 30 µs. The path through the
// bridge is noisier than a veth pair: 10-14 µs RMS measured, and ptp4l
// serving ptp4l there 8 µs, path delay 15 µs. pmc shows timed as its
// grandmaster, and `timectl ptp` lists the slave as a unicast client with
// the three grants.
func TestPTPUnicastMaster(t *testing.T) {
	// Not parallel with the other tests: the PTP tests measure µs, and
	// so do the NTP tests they would load.
	testenv.RequireRoot(t)
	binaries(t)
	gmEnd, slaveEnd := unicastOnlyLink(t)
	cfg := timedConfig{SimOffset: "0s", NoSources: true, Name: "unicast-gm",
		Extra: fmt.Sprintf("ptp:\n  priority1: 10\n  ports:\n    - {interface: %s, role: master_only, transport: udp4, "+
			"announce_interval: 0, sync_interval: 0, unicast_listen: true}\n", gmEnd.Iface)}
	gm := startTimed(t, cfg, gmEnd.Netns)
	conf := append(slices.Clone(ptp4lSlave), "[unicast_master_table]", "table_id 1", "logQueryInterval 0",
		"UDPv4 "+gmEnd.Addr.Addr().String(), "["+slaveEnd.Iface+"]", "unicast_master_table 1")
	slave := peers.StartPtp4l(t, "ptp4l-unicast-slave", slaveEnd.Netns, slaveEnd.Iface, "-4", conf...)

	samples := waitLocked(t, slave, gm.Proc, 20, 90*time.Second)
	rms, n := peers.LockedRMS(samples)
	t.Logf("ptp4l unicast slave of timed: %d locked samples, offset RMS %.2f µs; path delay %.1f µs",
		n, rms*1e6, samples[len(samples)-1].Delay*1e6)
	if rms > 30e-6 {
		t.Errorf("ptp4l slave's offset RMS %.1f µs, want < 30 µs; its servo:\n%s", rms*1e6, servoLines(slave.Output()))
	}
	if st := slave.PortState(t); st != "SLAVE" {
		t.Errorf("pmc: slave's portState %q, want SLAVE", st)
	}
	checkGrandmaster(t, slave, gmEnd, "248")

	var ports ptpUnicastClients
	if err := gm.query(t.Context(), &ports, "ptp"); err != nil {
		t.Fatal(err)
	}
	if len(ports.Ports) != 1 || ports.Ports[0].State != "MASTER" || len(ports.Ports[0].UnicastClients) != 1 {
		t.Fatalf("timectl ptp: %+v, want one MASTER port with one unicast client", ports)
	}
	c := ports.Ports[0].UnicastClients[0]
	t.Logf("timectl ptp: unicast client %+v", c)
	mac := slaveEnd.MAC
	wantID := fmt.Sprintf("%02x%02x%02x.fffe.%02x%02x%02x-1", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5])
	if c.Address != slaveEnd.Addr.Addr().String() || c.Identity != wantID {
		t.Errorf("unicast client %s %s, want %s %s", c.Address, c.Identity, slaveEnd.Addr.Addr(), wantID)
	}
	// ptp4l asks for Announce at its logAnnounceInterval (1), Sync and
	// Delay_Resp at 0, each for 3600 s: granted for 300 s.
	want := map[string]int8{"announce": 1, "sync": 0, "delay_resp": 0}
	for _, g := range c.Grants {
		if iv, ok := want[g.Message]; ok && g.State == "granted" && g.LogInterval == iv && g.Left > 0 && g.Left <= 300 {
			delete(want, g.Message)
		}
	}
	if len(want) > 0 {
		t.Errorf("grants %+v lack %v", c.Grants, want)
	}
	out := runTimectl(t, gm, "ptp")
	for _, w := range []string{"Unicast clients:  1", slaveEnd.Addr.Addr().String() + ", identity " + wantID,
		"announce     every 2^1 s: granted", "sync         every 2^0 s: granted", "delay_resp   every 2^0 s: granted"} {
		if !strings.Contains(out, w) {
			t.Errorf("timectl ptp lacks %q:\n%s", w, out)
		}
	}
	if !hasLog(gm.Output(), "port state", "to", "MASTER") {
		t.Errorf("timed never logged its port going MASTER:\n%s", gm.Tail(20))
	}
}

// unicastOnlyLink is a bridged LAN of two namespaces (lan0 10.99.1.1/24
// and lan1 10.99.1.2/24) that passes unicast and broadcast (ARP) both ways
// but multicast only from the second to the first: the second end's bridge
// port has mcast_flood off and the bridge does no snooping, so no multicast
// frame is ever forwarded to it.
func unicastOnlyLink(t *testing.T) (first, second peers.VethEnd) {
	t.Helper()
	lan := bridgedLAN(t, 2, "link set port1 type bridge_slave mcast_flood off")
	return lan[0], lan[1]
}
