package ptp

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/facebook/time/ptp/protocol"

	"github.com/timed-project/timed/internal/netstamp"
	"github.com/timed-project/timed/sources"
)

// decode encodes msg as it goes on the wire and decodes it again.
func decode(t *testing.T, msg protocol.Packet) protocol.Packet {
	t.Helper()
	b, err := protocol.Bytes(msg)
	if err != nil {
		t.Fatal(err)
	}
	pkt, err := protocol.DecodePacket(b)
	if err != nil {
		t.Fatalf("%T does not decode: %v", msg, err)
	}
	return pkt
}

func testMaster() *masterMessages {
	return &masterMessages{self: masterPort, domain: 4, logAnnounce: 1, logSync: -2, logDelay: 3}
}

func TestMasterMessages(t *testing.T) {
	m := testMaster()
	parent := parentFromDefault(DefaultDataset{ClockIdentity: masterPort.ClockIdentity, Priority1: 10, Priority2: 20,
		ClockQuality: protocol.ClockQuality{ClockClass: 6, ClockAccuracy: protocol.ClockAccuracyMicrosecond1, OffsetScaledLogVariance: 0xffff}})
	tp := TimeProperties{CurrentUTCOffset: 37, CurrentUTCOffsetValid: true, PTPTimescale: true, Leap61: true,
		TimeTraceable: true, FrequencyTraceable: true, TimeSource: protocol.TimeSourceNTP}
	origin := masterT0.Add(123456789)

	var anns []*protocol.Announce
	for range 3 {
		anns = append(anns, decode(t, m.announce(parent, tp, origin)).(*protocol.Announce))
	}
	a := anns[0]
	wantFlags := protocol.FlagCurrentUtcOffsetValid | protocol.FlagPTPTimescale | protocol.FlagLeap61 |
		protocol.FlagTimeTraceable | protocol.FlagFrequencyTraceable
	switch {
	case a.MessageType() != protocol.MessageAnnounce || a.DomainNumber != 4 || a.SourcePortIdentity != masterPort ||
		a.ControlField != 5 || a.LogMessageInterval != 1 || a.MessageLength != 64:
		t.Errorf("announce header %+v", a.Header)
	case a.FlagField != wantFlags:
		t.Errorf("announce flags %#04x, want %#04x", a.FlagField, wantFlags)
	case a.GrandmasterIdentity != masterPort.ClockIdentity || a.GrandmasterPriority1 != 10 || a.GrandmasterPriority2 != 20 ||
		a.GrandmasterClockQuality != parent.GrandmasterClockQuality || a.StepsRemoved != 0 ||
		a.CurrentUTCOffset != 37 || a.TimeSource != protocol.TimeSourceNTP || !a.OriginTimestamp.Time().Equal(origin):
		t.Errorf("announce body %+v", a.AnnounceBody)
	}
	// What the announce says reads back as the same time properties.
	if got := timePropertiesFromAnnounce(a); got != tp {
		t.Errorf("time properties read back %+v, want %+v", got, tp)
	}

	s0 := decode(t, m.sync(origin)).(*protocol.SyncDelayReq)
	s1 := decode(t, m.sync(origin)).(*protocol.SyncDelayReq)
	fu := decode(t, m.followUp(s1.SequenceID, origin.Add(5))).(*protocol.FollowUp)
	switch {
	case s0.MessageType() != protocol.MessageSync || s0.FlagField != protocol.FlagTwoStep || s0.ControlField != 0 ||
		s0.LogMessageInterval != -2 || s0.DomainNumber != 4:
		t.Errorf("sync %+v", s0.Header)
	case fu.MessageType() != protocol.MessageFollowUp || fu.ControlField != 2 || fu.LogMessageInterval != -2 ||
		!fu.PreciseOriginTimestamp.Time().Equal(origin.Add(5)) || fu.SourcePortIdentity != masterPort:
		t.Errorf("follow-up %+v", fu)
	}

	// Each message type counts its own sequence ids; a Follow_Up carries
	// its Sync's.
	got := [...]uint16{anns[0].SequenceID, anns[1].SequenceID, anns[2].SequenceID, s0.SequenceID, s1.SequenceID, fu.SequenceID}
	if want := [...]uint16{0, 1, 2, 0, 1, 1}; got != want {
		t.Errorf("sequence ids (announce ×3, sync ×2, follow-up) %v, want %v", got, want)
	}
}

// The master side answers our own slave side: the Sync, Follow_Up and
// Delay_Resp it builds, through the codec, give the Slave the offset and
// path delay they encode.
func TestMasterSlaveExchange(t *testing.T) {
	tests := []struct {
		name               string
		reqCorr            float64 // a transparent clock's residence time in the Delay_Req
		t21, t43           time.Duration
		wantDelay, wantOff float64
	}{
		{"symmetric", 0, 1500, 500, 1000, 500},
		{"slave behind", 0, -500, 2500, 1000, -1500},
		{"transparent clock on the way back", 250.5, 1500, 750, 999.75, 500.25},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &masterMessages{self: masterPort, logSync: 0, logDelay: 2}
			s := newSlave(t, EndToEnd, 0)
			s.SetMaster(masterPort)
			t1 := masterT0.Add(700 * time.Millisecond)
			sync := decode(t, m.sync(t1)).(*protocol.SyncDelayReq)
			if _, ok, err := s.HandleSync(sync, t1.Add(tt.t21)); err != nil || ok {
				t.Fatalf("sync: %v %t", err, ok)
			}
			if _, _, err := s.HandleFollowUp(decode(t, m.followUp(sync.SequenceID, t1)).(*protocol.FollowUp)); err != nil {
				t.Fatal(err)
			}
			req := s.NewDelayReq()
			req.CorrectionField = corr(tt.reqCorr)
			t3 := t1.Add(100 * time.Millisecond)
			if err := s.DelayReqSent(req.SequenceID, t3); err != nil {
				t.Fatal(err)
			}
			// The slave's stored request had correction 0: what a transparent
			// clock adds on the way comes back in the Delay_Resp.
			wire := decode(t, req).(*protocol.SyncDelayReq)
			resp := decode(t, m.delayResp(wire, t3.Add(tt.t43))).(*protocol.DelayResp)
			switch {
			case resp.MessageType() != protocol.MessageDelayResp || resp.SequenceID != req.SequenceID ||
				resp.RequestingPortIdentity != slavePort || resp.CorrectionField != req.CorrectionField ||
				resp.LogMessageInterval != 2 || resp.ControlField != 3 || resp.SourcePortIdentity != masterPort:
				t.Fatalf("delay response %+v", resp)
			case !resp.ReceiveTimestamp.Time().Equal(t3.Add(tt.t43)):
				t.Fatalf("receive timestamp %v, want %v", resp.ReceiveTimestamp.Time(), t3.Add(tt.t43))
			}
			dm, err := s.HandleDelayResp(resp)
			if err != nil {
				t.Fatal(err)
			}
			if d := dm.Delay; d.Nanoseconds() != tt.wantDelay {
				t.Errorf("meanPathDelay %v, want %v ns", dm.Delay, tt.wantDelay)
			}
			sync2 := decode(t, m.sync(t1)).(*protocol.SyncDelayReq)
			t1b := t1.Add(time.Second)
			if _, _, err := s.HandleSync(sync2, t1b.Add(tt.t21)); err != nil {
				t.Fatal(err)
			}
			ms, ok, err := s.HandleFollowUp(decode(t, m.followUp(sync2.SequenceID, t1b)).(*protocol.FollowUp))
			if err != nil || !ok {
				t.Fatalf("second exchange: %v %t", err, ok)
			}
			if ms.Offset.Nanoseconds() != tt.wantOff {
				t.Errorf("offset %v, want %v ns", ms.Offset, tt.wantOff)
			}
		})
	}
}

func TestQualityOf(t *testing.T) {
	srcs := []sources.SourceStatus{{Name: "192.0.2.1:123", Kind: "ntp"}, {Name: "ptp eth1", Kind: "ptp"}, {Name: "gps0", Kind: "gpsd"}}
	st := func(synced, holdover bool, ref string, unc float64) sources.Status {
		return sources.Status{Synchronized: synced, Holdover: holdover, Reference: ref, Uncertainty: unc, Sources: srcs}
	}
	tests := []struct {
		name       string
		st         sources.Status
		ever       bool
		class      protocol.ClockClass
		accuracy   protocol.ClockAccuracy
		traceable  bool
		timeSource protocol.TimeSource
	}{
		{"never synchronized", st(false, false, "", 0), false, 248, protocol.ClockAccuracyUnknown, false, protocol.TimeSourceInternalOscillator},
		{"NTP, 3 µs", st(true, false, "192.0.2.1:123", 3e-6), true, 6, protocol.ClockAccuracyMicrosecond10, true, protocol.TimeSourceNTP},
		{"NTP, 800 ns", st(true, false, "192.0.2.1:123", 800e-9), true, 6, protocol.ClockAccuracyMicrosecond1, true, protocol.TimeSourceNTP},
		{"gpsd, 20 ns", st(true, false, "gps0", 20e-9), true, 6, protocol.ClockAccuracyNanosecond25, true, protocol.TimeSourceGNSS},
		{"NTP, 2 s", st(true, false, "192.0.2.1:123", 2), true, 6, protocol.ClockAccuracySecond10, true, protocol.TimeSourceNTP},
		{"holdover", st(false, true, "192.0.2.1:123", 1e-3), true, 7, protocol.ClockAccuracyUnknown, false, protocol.TimeSourceNTP},
		{"lost its sources", st(false, false, "", 0), true, 7, protocol.ClockAccuracyUnknown, false, protocol.TimeSourceInternalOscillator},
		{"synchronized by PTP", st(true, false, "ptp eth1", 1e-6), true, 248, protocol.ClockAccuracyUnknown, false, protocol.TimeSourcePTP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := QualityOf(tt.st, tt.ever)
			if q.ClockQuality.ClockClass != tt.class || q.ClockQuality.ClockAccuracy != tt.accuracy ||
				q.ClockQuality.OffsetScaledLogVariance != 0xffff || q.TimeTraceable != tt.traceable ||
				q.FrequencyTraceable != tt.traceable || q.TimeSource != tt.timeSource {
				t.Errorf("%+v, want class %d accuracy %#x traceable %t source %v", q, tt.class, tt.accuracy, tt.traceable, tt.timeSource)
			}
		})
	}
}

// fakeTransport records what a port sends and hands it what a test feeds.
type fakeTransport struct {
	in   chan Received
	data chan []byte
	tx   time.Time // the transmit timestamp of every event message

	mu   sync.Mutex
	sent []sentMessage
}

type sentMessage struct {
	pkt   protocol.Packet
	to    Address
	event bool
}

func newFakeTransport(tx time.Time) *fakeTransport {
	return &fakeTransport{in: make(chan Received, 1), data: make(chan []byte, 1), tx: tx}
}

func (f *fakeTransport) Network() Network { return NetworkUDPv4 }

func (f *fakeTransport) record(msg []byte, to Address, event bool) error {
	pkt, err := protocol.DecodePacket(msg)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.sent = append(f.sent, sentMessage{pkt, to, event})
	f.mu.Unlock()
	return nil
}

func (f *fakeTransport) SendEvent(msg []byte, to Address) (time.Time, netstamp.Stamping, error) {
	return f.tx, netstamp.StampKernel, f.record(msg, to, true)
}

func (f *fakeTransport) SendGeneral(msg []byte, to Address) error { return f.record(msg, to, false) }

func (f *fakeTransport) Receive(ctx context.Context, buf []byte) (Received, error) {
	select {
	case <-ctx.Done():
		return Received{}, ctx.Err()
	case rec := <-f.in:
		rec.N = copy(buf, <-f.data)
		return rec, nil
	}
}

func (f *fakeTransport) Close() error { return nil }

// find returns the sent messages that match.
func (f *fakeTransport) find(match func(sentMessage) bool) []sentMessage {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []sentMessage
	for _, m := range f.sent {
		if match(m) {
			out = append(out, m)
		}
	}
	return out
}

func ofType(t protocol.MessageType) func(sentMessage) bool {
	return func(m sentMessage) bool { return m.pkt.MessageType() == t }
}

// offsetTimebase is a disciplined clock a fixed offset from the system clock.
type offsetTimebase struct{ off time.Duration }

func (o offsetTimebase) Now() time.Time                     { return time.Now().Add(o.off) }
func (o offsetTimebase) FromSystem(sys time.Time) time.Time { return sys.Add(o.off) }

type nopReporter struct{}

func (nopReporter) Polled()                      {}
func (nopReporter) Measured(sources.Measurement) {}
func (nopReporter) Fault(string)                 {}
func (nopReporter) PollInterval() time.Duration  { return time.Second }

// A master-only port, run on a fake transport: it becomes MASTER after the
// announce receipt timeout and then announces the quality it is given, the
// UTC offset of the leap table at the disciplined clock's time, two-step
// Syncs whose Follow_Up carries the transmit timestamp converted to the
// disciplined clock and to TAI, and answers a Delay_Req with the receive
// timestamp converted the same way — everything to the primary group.
func TestPortRunMaster(t *testing.T) {
	tab, err := ParseLeapSecondsList([]byte(leapList))
	if err != nil {
		t.Fatal(err)
	}
	// The disciplined clock reads 2020 (the table is valid then) and runs
	// 1.5 s plus whole years from the system clock.
	off := time.Until(time.Date(2020, 5, 1, 0, 0, 0, 0, time.UTC)) + 1500*time.Millisecond
	tb := offsetTimebase{off: off}
	txSys := time.Unix(1_700_000_000, 123456789)
	tr := newFakeTransport(txSys)
	quality := Quality{ClockQuality: protocol.ClockQuality{ClockClass: 6, ClockAccuracy: protocol.ClockAccuracyMicrosecond10,
		OffsetScaledLogVariance: 0xffff}, TimeTraceable: true, FrequencyTraceable: true, TimeSource: protocol.TimeSourceNTP}
	src, err := NewSource(SourceConfig{Interface: "fake0", Role: RoleMasterOnly, Network: NetworkUDPv4, Domain: 3,
		Priority1: 20, Priority2: 30, LogAnnounceInterval: -3, LogSyncInterval: -4, LogMinDelayReqInterval: 2,
		Quality: func() Quality { return quality }}, tb, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := newPortRun(src, masterPort.ClockIdentity, tr, nopReporter{})
	if err != nil {
		t.Fatal(err)
	}
	p.leaps = tab
	runPort(t, p)

	waitFor := func(what string, match func(sentMessage) bool, n int) []sentMessage {
		t.Helper()
		return waitSent(t, tr, what, match, n)
	}
	group := Address{IP: IPv4Primary}
	anns := waitFor("announces", ofType(protocol.MessageAnnounce), 2)
	a := anns[0].pkt.(*protocol.Announce)
	wantFlags := protocol.FlagCurrentUtcOffsetValid | protocol.FlagPTPTimescale | protocol.FlagTimeTraceable | protocol.FlagFrequencyTraceable
	if a.GrandmasterClockQuality != quality.ClockQuality || a.GrandmasterPriority1 != 20 || a.GrandmasterPriority2 != 30 ||
		a.GrandmasterIdentity != masterPort.ClockIdentity || a.CurrentUTCOffset != 37 || a.FlagField != wantFlags ||
		a.TimeSource != protocol.TimeSourceNTP || a.DomainNumber != 3 || anns[0].to.IP != group.IP || anns[0].event {
		t.Errorf("announce %+v to %v", a, anns[0].to)
	}
	if anns[1].pkt.(*protocol.Announce).SequenceID != a.SequenceID+1 {
		t.Errorf("announce sequence ids %d, %d", a.SequenceID, anns[1].pkt.(*protocol.Announce).SequenceID)
	}

	fus := waitFor("follow-ups", ofType(protocol.MessageFollowUp), 2)
	syncs := tr.find(ofType(protocol.MessageSync))
	wantT1 := txSys.Add(off + 37*time.Second)
	for i, m := range fus {
		fu := m.pkt.(*protocol.FollowUp)
		s := syncs[i].pkt.(*protocol.SyncDelayReq)
		if fu.SequenceID != s.SequenceID || s.SequenceID != uint16(i) || !syncs[i].event || m.event || m.to.IP != group.IP ||
			s.FlagField&protocol.FlagTwoStep == 0 {
			t.Errorf("sync %d: %+v, follow-up %+v", i, s.Header, fu.Header)
		}
		if got := fu.PreciseOriginTimestamp.Time(); !got.Equal(wantT1) {
			t.Errorf("follow-up %d: precise origin %v, want %v (tx + clock offset + 37 s)", i, got, wantT1)
		}
	}

	req := &protocol.SyncDelayReq{Header: protocol.Header{
		SdoIDAndMsgType: protocol.NewSdoIDAndMsgType(protocol.MessageDelayReq, 0), Version: protocol.Version,
		MessageLength: 44, DomainNumber: 3, SourcePortIdentity: slavePort, SequenceID: 77, ControlField: 1,
		CorrectionField: corr(42.5), LogMessageInterval: 0x7f}}
	b, err := protocol.Bytes(req)
	if err != nil {
		t.Fatal(err)
	}
	rx := time.Unix(1_700_000_001, 5)
	tr.data <- b
	tr.in <- Received{From: Address{IP: IPv4Primary}, RX: rx, Stamping: netstamp.StampKernel}
	resp := waitFor("delay responses", ofType(protocol.MessageDelayResp), 1)[0]
	r := resp.pkt.(*protocol.DelayResp)
	if r.SequenceID != 77 || r.RequestingPortIdentity != slavePort || r.CorrectionField != corr(42.5) ||
		r.LogMessageInterval != 2 || r.DomainNumber != 3 || resp.to.IP != group.IP || resp.event ||
		!r.ReceiveTimestamp.Time().Equal(rx.Add(off+37*time.Second)) {
		t.Errorf("delay response %+v to %v", r, resp.to)
	}
}

// runPort runs p until the test ends, and checks that it stops cleanly.
func runPort(t *testing.T, p *portRun) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
}

// waitSent waits up to 5 s until tr has sent at least n messages that
// match, and returns them.
func waitSent(t *testing.T, tr *fakeTransport, what string, match func(sentMessage) bool, n int) []sentMessage {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if got := tr.find(match); len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d %s sent in 5 s", n, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
