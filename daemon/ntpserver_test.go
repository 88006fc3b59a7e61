package daemon

import (
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/timed-project/timed/clock"
	"github.com/timed-project/timed/config"
	"github.com/timed-project/timed/ntp"
	ntpserver "github.com/timed-project/timed/ntp/server"
	"github.com/timed-project/timed/sources"
)

func freeUDPPort(t *testing.T) uint16 {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return uint16(c.LocalAddr().(*net.UDPAddr).Port)
}

func ask(t *testing.T, to netip.AddrPort) (ntp.Packet, time.Time, time.Time) {
	t.Helper()
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(to))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h := ntp.Header{Version: 4, Mode: ntp.ModeClient, Transmit: 0x1234}
	req, _ := h.AppendBinary(nil)
	t1 := time.Now()
	c.Write(req)
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	t4 := time.Now()
	if err != nil {
		t.Fatal(err)
	}
	p, err := ntp.ParsePacket(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	return p, t1, t4
}

// The daemon serves the time of its clock once synchronized, with the
// reference's stratum + 1 and its address as reference ID, counts what it
// serves, and applies new server settings on reload.
func TestDaemonServesTime(t *testing.T) {
	cfg := virtualConfig(200 * time.Millisecond)
	cfg.Engine = config.EngineConfig{MinAgreeingSources: 1, StepThreshold: time.Second, StepLimit: 3,
		PanicThreshold: 1000 * time.Second, MaxSlewRatePPM: 83333.333, MaxFrequencyPPM: 500}
	cfg.NTP.Servers = []config.NTPServer{server("192.0.2.1", 123)}
	addr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), freeUDPPort(t))
	cfg.Server = config.Default().Server
	cfg.Server.Listen = []netip.AddrPort{addr}
	w := newWorld()
	d, _ := testDaemon(t, cfg, "", w, nil, func(c sources.Config) engine { return sources.NewEngine(c, zap.NewNop()) })
	v := d.clk.(*clock.Virtual)
	d.f.newServer = func(sc config.NTPServer, _ sources.Timebase, _ *zap.Logger) (sources.Source, error) {
		return truthSource{name: "192.0.2.1:123", v: v}, nil
	}
	start(t, d)

	p, _, _ := ask(t, addr)
	if p.Stratum != 16 || p.Leap != sources.LeapUnknown {
		t.Errorf("before sync: stratum %d leap %d, want 16 and 3", p.Stratum, p.Leap)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !d.Status().Engine.Synchronized || v.OffsetFromSystem().Abs() > time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatalf("not synchronized after 20 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(1100 * time.Millisecond) // one update feeds the server
	p, t1, t4 := ask(t, addr)
	if p.Stratum != 2 || p.Leap != sources.LeapNone || p.RefID != 0xc0000201 {
		t.Errorf("after sync: stratum %d leap %d refid %#x, want 2, 0 and 192.0.2.1", p.Stratum, p.Leap, p.RefID)
	}
	// The server's time is the virtual clock's, now within a millisecond
	// of the system clock.
	off := (p.Receive.Time(t1).Sub(t1) + p.Transmit.Time(t1).Sub(t4)) / 2
	if off.Abs() > 2*time.Millisecond {
		t.Errorf("served time %v from the system clock", off)
	}
	st := d.ServerStats()
	if !st.Enabled || st.Received != 2 || st.Answered != 2 || st.Stratum != 2 || len(st.Listen) != 1 || st.Listen[0] != addr.String() {
		t.Errorf("serverstats %+v", st)
	}
	if cl := d.Clients(5); !cl.Enabled || len(cl.Clients) != 1 || cl.Clients[0].Address != "127.0.0.1" || cl.Clients[0].Requests != 2 {
		t.Errorf("clients %+v", cl)
	}

	// Reload: a second address is served, and the table starts afresh.
	addr2 := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), freeUDPPort(t))
	next := *d.cfg
	next.Server.Listen = append([]netip.AddrPort{addr}, addr2)
	if err := d.apply(&next); err != nil {
		t.Fatal(err)
	}
	if p, _, _ := ask(t, addr2); p.Stratum != 2 {
		t.Errorf("after reload: stratum %d from the new address", p.Stratum)
	}
	if st := d.ServerStats(); len(st.Listen) != 2 || st.Received != 1 {
		t.Errorf("after reload: %+v", st)
	}
	// And off again.
	next.Server.Listen = nil
	if err := d.apply(&next); err != nil {
		t.Fatal(err)
	}
	if st := d.ServerStats(); st.Enabled {
		t.Errorf("server still on: %+v", st)
	}
}

type addrSource struct {
	truthSource
	addr netip.AddrPort
}

func (s addrSource) RemoteAddr() netip.AddrPort { return s.addr }

// The reference ID served is the selected source's IP address: as the
// source resolved it, or as its name says; for a reference clock, its
// configured refid in ASCII.
func TestRefID(t *testing.T) {
	d := &Daemon{running: map[string]*reporter{
		"time.example.com:123": {src: addrSource{addr: netip.MustParseAddrPort("192.0.2.9:123")}},
		"unresolved:123":       {src: addrSource{}},
	}, cfg: &config.Config{Refclocks: []config.Refclock{{Name: "gpsd:/dev/ttyS0", RefID: "GPS"}, {Name: "pps:/dev/pps0", RefID: "PPS"}}}}
	for _, tt := range []struct {
		name string
		want uint32
	}{
		{"time.example.com:123", 0xc0000209},
		{"198.51.100.1:123", 0xc6336401},
		{"[2001:db8::1]:123", ntpserver.RefIDOf(netip.MustParseAddr("2001:db8::1"))},
		{"unresolved:123", 0},
		{"", 0},
		{"gpsd:/dev/ttyS0", 0x47505300},
		{"pps:/dev/pps0", 0x50505300},
	} {
		if got := d.refIDLocked(tt.name); got != tt.want {
			t.Errorf("refIDLocked(%q) = %#x, want %#x", tt.name, got, tt.want)
		}
	}
}

// An NTS source configured with certificate_dates:
// ignore_until_synchronized skips the dates until the clock is synchronized
// once, then checks them; others always check them.
func TestNTSIgnoreDatesUntilSynced(t *testing.T) {
	var ever atomic.Bool
	ignoring := ntsClientConfig(config.NTSClient{Enabled: true, IgnoreDatesUntilSynced: true}, &ever)
	checking := ntsClientConfig(config.NTSClient{Enabled: true}, &ever)
	if ignoring.IgnoreDates == nil || !ignoring.IgnoreDates() {
		t.Error("dates checked before the first synchronization")
	}
	if checking.IgnoreDates != nil {
		t.Error("dates ignored without certificate_dates: ignore_until_synchronized")
	}
	ever.Store(true)
	if ignoring.IgnoreDates() {
		t.Error("dates still ignored after the first synchronization")
	}
	if ntsClientConfig(config.NTSClient{}, &ever) != nil {
		t.Error("NTS on without nts:")
	}
}
