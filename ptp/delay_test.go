package ptp

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/facebook/time/ptp/protocol"

	"github.com/timed-project/timed/internal/netstamp"
)

var (
	slavePort  = pid(0x50, 1)
	masterPort = pid(0x70, 1)
	// masterT0 is a time on the master's (PTP) timescale; localT0 one on
	// the local clock. They share an origin, so that t2 − t1 means what it says.
	masterT0 = time.Unix(1_800_000_000, 0)
)

func ns(v float64) time.Duration { return time.Duration(v) }

func corr(v float64) protocol.Correction { return protocol.NewCorrection(v) }

func syncMsg(seq uint16, twoStep bool, t1 time.Time, c protocol.Correction) *protocol.SyncDelayReq {
	m := &protocol.SyncDelayReq{Header: protocol.Header{
		SdoIDAndMsgType:    protocol.NewSdoIDAndMsgType(protocol.MessageSync, 0),
		Version:            protocol.Version,
		MessageLength:      44,
		CorrectionField:    c,
		SourcePortIdentity: masterPort,
		SequenceID:         seq,
	}}
	if twoStep {
		m.FlagField = protocol.FlagTwoStep
	} else {
		m.OriginTimestamp = protocol.NewTimestamp(t1)
	}
	return m
}

func followUpMsg(seq uint16, t1 time.Time, c protocol.Correction) *protocol.FollowUp {
	return &protocol.FollowUp{
		Header: protocol.Header{
			SdoIDAndMsgType:    protocol.NewSdoIDAndMsgType(protocol.MessageFollowUp, 0),
			Version:            protocol.Version,
			MessageLength:      44,
			CorrectionField:    c,
			SourcePortIdentity: masterPort,
			SequenceID:         seq,
		},
		FollowUpBody: protocol.FollowUpBody{PreciseOriginTimestamp: protocol.NewTimestamp(t1)},
	}
}

func delayRespMsg(seq uint16, t4 time.Time, c protocol.Correction) *protocol.DelayResp {
	return &protocol.DelayResp{
		Header: protocol.Header{
			SdoIDAndMsgType:    protocol.NewSdoIDAndMsgType(protocol.MessageDelayResp, 0),
			Version:            protocol.Version,
			MessageLength:      54,
			CorrectionField:    c,
			SourcePortIdentity: masterPort,
			SequenceID:         seq,
		},
		DelayRespBody: protocol.DelayRespBody{ReceiveTimestamp: protocol.NewTimestamp(t4), RequestingPortIdentity: slavePort},
	}
}

func newSlave(t *testing.T, mech DelayMechanism, asym time.Duration) *Slave {
	t.Helper()
	s, err := NewSlave(SlaveConfig{Identity: slavePort, Mechanism: mech, DelayAsymmetry: asym, Timestamps: netstamp.StampHardware})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestIntervalArithmetic(t *testing.T) {
	iv := func(c float64) Interval {
		v, err := IntervalFromCorrection(corr(c))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		name     string
		got      Interval
		wantNs   float64
		wantDur  time.Duration
		wantText string
	}{
		{"correction 2.5 ns", iv(2.5), 2.5, 3, "2.500ns"},
		{"negative correction −1.5 ns", iv(-1.5), -1.5, -1, "-1.500ns"},
		{"sub-nanosecond 2^-16", iv(1.0 / 65536), 1.0 / 65536, 0, "0.000ns"},
		{"add with carry", iv(0.75).Add(iv(0.75)), 1.5, 2, "1.500ns"},
		{"sub across zero", iv(1.25).Sub(iv(3.5)), -2.25, -2, "-2.250ns"},
		{"neg", iv(7.25).Neg(), -7.25, -7, "-7.250ns"},
		{"half of odd", IntervalOf(3).Half(), 1.5, 2, "1.500ns"},
		{"half of negative odd", IntervalOf(-3).Half(), -1.5, -1, "-1.500ns"},
		{"half of fraction", iv(1999).Add(iv(0.5)).Half(), 999.75, 1000, "999.750ns"},
		{"saturates high", IntervalOf(math.MaxInt64).Add(IntervalOf(10)), math.MaxInt64, math.MaxInt64, ""},
		{"saturates low", IntervalOf(math.MinInt64).Sub(IntervalOf(10)), math.MinInt64, math.MinInt64, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got.Nanoseconds() != tt.wantNs {
				t.Errorf("Nanoseconds = %v, want %v", tt.got.Nanoseconds(), tt.wantNs)
			}
			if tt.got.Duration() != tt.wantDur {
				t.Errorf("Duration = %v, want %v", int64(tt.got.Duration()), int64(tt.wantDur))
			}
			if tt.wantText != "" && tt.got.String() != tt.wantText {
				t.Errorf("String = %q, want %q", tt.got.String(), tt.wantText)
			}
		})
	}
	if v, ok := iv(-1.5).Scaled(); !ok || v != -98304 {
		t.Errorf("Scaled(−1.5 ns) = %d %t, want −98304", v, ok)
	}
	if _, ok := IntervalOf(40 * time.Hour).Scaled(); ok {
		t.Error("40 h fits a correction field")
	}
	if _, err := IntervalFromCorrection(protocol.Correction(0x7fffffffffffffff)); !errors.Is(err, ErrCorrectionRange) {
		t.Errorf("too-big correction: err = %v", err)
	}
}

// TestEndToEnd checks the clause 11.3 arithmetic with hand-computed numbers.
//
// In every case the Sync leaves at t1, arrives 2000 ns later by the local
// clock with 300.5 ns of correction (one Sync correction or Sync + Follow_Up),
// and the Delay_Req's t4 − t3 is 400 ns with a 100.5 ns Delay_Resp
// correction, unless the case says otherwise. Then
//
//	ms = 2000 − 300.5 − asym, sm = 400 − 100.5 + asym
//	meanPathDelay = (ms + sm)/2 = 999.5, offset = ms − meanPathDelay
func TestEndToEnd(t *testing.T) {
	tests := []struct {
		name                 string
		twoStep              bool
		syncCorr, fuCorr     float64
		respCorr             float64
		t21, t43             float64 // t2 − t1 and t4 − t3 in ns
		asym                 time.Duration
		wantDelay, wantOffst float64
	}{
		{"plain, no corrections", false, 0, 0, 0, 1500, 500, 0, 1000, 500},
		{"one-step with corrections", false, 300.5, 0, 100.5, 2000, 400, 0, 999.5, 700},
		{"two-step, Sync and Follow_Up corrections add", true, 200.25, 100.25, 100.5, 2000, 400, 0, 999.5, 700},
		{"one-step with delay asymmetry 200 ns", false, 300.5, 0, 100.5, 2000, 400, 200, 999.5, 500},
		{"two-step with delay asymmetry −200 ns", true, 150.5, 150, 100.5, 2000, 400, -200, 999.5, 900},
		{"slave behind the master", false, 0, 0, 0, -500, 2500, 0, 1000, -1500},
		{"negative corrections", false, -0.5, 0, -0.5, 1000, 1000, 0, 1000.5, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSlave(t, EndToEnd, tt.asym)
			s.SetMaster(masterPort)
			exchange := func(seq uint16, t1 time.Time) (Measurement, bool) {
				t.Helper()
				t2 := t1.Add(ns(tt.t21))
				if !tt.twoStep {
					m, ok, err := s.HandleSync(syncMsg(seq, false, t1, corr(tt.syncCorr)), t2)
					if err != nil {
						t.Fatal(err)
					}
					return m, ok
				}
				// A two-step Sync's origin timestamp is not used.
				if _, ok, err := s.HandleSync(syncMsg(seq, true, time.Time{}, corr(tt.syncCorr)), t2); err != nil || ok {
					t.Fatalf("two-step sync: %v %t", err, ok)
				}
				m, ok, err := s.HandleFollowUp(followUpMsg(seq, t1, corr(tt.fuCorr)))
				if err != nil {
					t.Fatal(err)
				}
				return m, ok
			}
			if _, ok := exchange(1, masterT0); ok {
				t.Fatal("a measurement before any path delay")
			}
			req := s.NewDelayReq()
			if req.MessageType() != protocol.MessageDelayReq || req.SourcePortIdentity != slavePort || req.CorrectionField != 0 {
				t.Fatalf("delay_req %+v", req.Header)
			}
			t3 := masterT0.Add(200 * time.Millisecond)
			if err := s.DelayReqSent(req.SequenceID, t3); err != nil {
				t.Fatal(err)
			}
			t4 := t3.Add(ns(tt.t43))
			dm, err := s.HandleDelayResp(delayRespMsg(req.SequenceID, t4, corr(tt.respCorr)))
			d := dm.Delay
			if err != nil {
				t.Fatal(err)
			}
			if d.Nanoseconds() != tt.wantDelay {
				t.Fatalf("meanPathDelay %v, want %v", d, tt.wantDelay)
			}
			// The exchange itself is a measurement: the first Sync, whose t2 − t1
			// is the second's, with this Delay_Req.
			if dm.Offset.Nanoseconds() != tt.wantOffst || !dm.T1.Equal(masterT0) || !dm.T3.Equal(t3) || !dm.T4.Equal(t4) ||
				dm.TwoStep != tt.twoStep || dm.SequenceID != 1 || dm.Master != masterPort {
				t.Fatalf("exchange measurement %+v, want offset %v ns from Sync 1", dm, tt.wantOffst)
			}
			t1 := masterT0.Add(time.Second)
			m, ok := exchange(2, t1)
			if !ok {
				t.Fatal("no measurement")
			}
			if m.Offset.Nanoseconds() != tt.wantOffst || m.Delay.Nanoseconds() != tt.wantDelay {
				t.Fatalf("offset %v delay %v, want %v and %v", m.Offset, m.Delay, tt.wantOffst, tt.wantDelay)
			}
			if !m.T1.Equal(t1) || !m.T2.Equal(t1.Add(ns(tt.t21))) || !m.T3.Equal(t3) || !m.T4.Equal(t4) {
				t.Fatalf("timestamps %v %v %v %v", m.T1, m.T2, m.T3, m.T4)
			}
			if m.Timestamps != netstamp.StampHardware || m.Master != masterPort || m.TwoStep != tt.twoStep {
				t.Fatalf("measurement %+v", m)
			}
			if got := m.SyncCorrection.Nanoseconds(); got != tt.syncCorr+tt.fuCorr {
				t.Fatalf("sync correction %v", got)
			}
			if got := m.DelayRespCorrection.Nanoseconds(); got != tt.respCorr {
				t.Fatalf("delay_resp correction %v", got)
			}
			if s.Drops() != (Drops{}) {
				t.Fatalf("drops %+v", s.Drops())
			}
		})
	}
}

func TestFollowUpBeforeSync(t *testing.T) {
	s := newSlave(t, PeerToPeer, 0)
	s.SetMaster(masterPort)
	s.SetPeerDelay(IntervalOf(1000))
	t1 := masterT0
	if _, ok, err := s.HandleFollowUp(followUpMsg(5, t1, corr(10))); ok || err != nil {
		t.Fatalf("early follow_up: %t %v", ok, err)
	}
	m, ok, err := s.HandleSync(syncMsg(5, true, time.Time{}, corr(20)), t1.Add(1530))
	if err != nil || !ok {
		t.Fatalf("sync after its follow_up: %t %v", ok, err)
	}
	// 1530 − 30 − 1000
	if m.Offset.Nanoseconds() != 500 || !m.T3.IsZero() || !m.T4.IsZero() {
		t.Fatalf("measurement %+v", m)
	}
}

func TestSlaveRejects(t *testing.T) {
	otherPort := pid(0x71, 1)
	withMaster := func(t *testing.T) *Slave {
		s := newSlave(t, EndToEnd, 0)
		s.SetMaster(masterPort)
		return s
	}
	withSyncAndReq := func(t *testing.T) *Slave {
		s := withMaster(t)
		if _, _, err := s.HandleSync(syncMsg(1, false, masterT0, 0), masterT0.Add(1000)); err != nil {
			t.Fatal(err)
		}
		if err := s.DelayReqSent(7, masterT0.Add(time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		return s
	}
	respErr := func(s *Slave, m *protocol.DelayResp) error { _, err := s.HandleDelayResp(m); return err }
	syncErr := func(s *Slave, m *protocol.SyncDelayReq, t2 time.Time) error {
		_, _, err := s.HandleSync(m, t2)
		return err
	}
	t2 := masterT0.Add(1000)
	tests := []struct {
		name    string
		run     func(t *testing.T) (*Slave, error)
		want    error
		counter func(Drops) uint64
	}{
		{"sync before a master is set", func(t *testing.T) (*Slave, error) {
			s := newSlave(t, EndToEnd, 0)
			return s, syncErr(s, syncMsg(1, false, masterT0, 0), t2)
		}, ErrNoMaster, func(d Drops) uint64 { return d.NoMaster }},
		{"sync from another port", func(t *testing.T) (*Slave, error) {
			s := withMaster(t)
			m := syncMsg(1, false, masterT0, 0)
			m.SourcePortIdentity = otherPort
			return s, syncErr(s, m, t2)
		}, ErrNotFromMaster, func(d Drops) uint64 { return d.NotFromMaster }},
		{"nil sync", func(t *testing.T) (*Slave, error) {
			s := withMaster(t)
			return s, syncErr(s, nil, t2)
		}, ErrNilMessage, func(d Drops) uint64 { return d.NilOrWrongType }},
		{"delay_req given as sync", func(t *testing.T) (*Slave, error) {
			s := withMaster(t)
			m := syncMsg(1, false, masterT0, 0)
			m.SdoIDAndMsgType = protocol.NewSdoIDAndMsgType(protocol.MessageDelayReq, 0)
			return s, syncErr(s, m, t2)
		}, ErrWrongType, func(d Drops) uint64 { return d.NilOrWrongType }},
		{"sync without a receive timestamp", func(t *testing.T) (*Slave, error) {
			s := withMaster(t)
			return s, syncErr(s, syncMsg(1, false, masterT0, 0), time.Time{})
		}, ErrTimestamp, func(d Drops) uint64 { return d.BadTimestamp }},
		{"sync with nanoseconds ≥ 10^9", func(t *testing.T) (*Slave, error) {
			s := withMaster(t)
			m := syncMsg(1, false, masterT0, 0)
			m.OriginTimestamp.Nanoseconds = 1e9
			return s, syncErr(s, m, t2)
		}, ErrTimestamp, func(d Drops) uint64 { return d.BadTimestamp }},
		{"sync with a too-big correction", func(t *testing.T) (*Slave, error) {
			s := withMaster(t)
			return s, syncErr(s, syncMsg(1, false, masterT0, 0x7fffffffffffffff), t2)
		}, ErrCorrectionRange, func(d Drops) uint64 { return d.BadCorrection }},
		{"two-step sync replaced before its follow_up", func(t *testing.T) (*Slave, error) {
			s := withMaster(t)
			if err := syncErr(s, syncMsg(1, true, time.Time{}, 0), t2); err != nil {
				t.Fatal(err)
			}
			return s, syncErr(s, syncMsg(2, true, time.Time{}, 0), t2)
		}, ErrFollowUpNeverCame, func(d Drops) uint64 { return d.MissingFollowUp }},
		{"follow_up behind the pending sync", func(t *testing.T) (*Slave, error) {
			s := withMaster(t)
			if err := syncErr(s, syncMsg(10, true, time.Time{}, 0), t2); err != nil {
				t.Fatal(err)
			}
			_, _, err := s.HandleFollowUp(followUpMsg(9, masterT0, 0))
			return s, err
		}, ErrUnmatched, func(d Drops) uint64 { return d.Unmatched }},
		{"follow_up from another port", func(t *testing.T) (*Slave, error) {
			s := withMaster(t)
			if err := syncErr(s, syncMsg(10, true, time.Time{}, 0), t2); err != nil {
				t.Fatal(err)
			}
			m := followUpMsg(10, masterT0, 0)
			m.SourcePortIdentity = otherPort
			_, _, err := s.HandleFollowUp(m)
			return s, err
		}, ErrNotFromMaster, func(d Drops) uint64 { return d.NotFromMaster }},
		{"delay_resp with nothing outstanding", func(t *testing.T) (*Slave, error) {
			s := withMaster(t)
			return s, respErr(s, delayRespMsg(7, masterT0, 0))
		}, ErrUnmatched, func(d Drops) uint64 { return d.Unmatched }},
		{"delay_resp with another sequence id", func(t *testing.T) (*Slave, error) {
			s := withSyncAndReq(t)
			return s, respErr(s, delayRespMsg(8, masterT0, 0))
		}, ErrUnmatched, func(d Drops) uint64 { return d.Unmatched }},
		{"delay_resp for another port", func(t *testing.T) (*Slave, error) {
			s := withSyncAndReq(t)
			m := delayRespMsg(7, masterT0, 0)
			m.RequestingPortIdentity = pid(0x50, 2)
			return s, respErr(s, m)
		}, ErrWrongRequester, func(d Drops) uint64 { return d.WrongRequester }},
		{"delay_resp from another master", func(t *testing.T) (*Slave, error) {
			s := withSyncAndReq(t)
			m := delayRespMsg(7, masterT0, 0)
			m.SourcePortIdentity = otherPort
			return s, respErr(s, m)
		}, ErrNotFromMaster, func(d Drops) uint64 { return d.NotFromMaster }},
		{"delay_resp making the mean path delay negative", func(t *testing.T) (*Slave, error) {
			// master→slave 1000 ns, slave→master −3000 ns: as if the local
			// clock was slewed 2 µs forward between t2 and t3.
			s := withSyncAndReq(t)
			return s, respErr(s, delayRespMsg(7, masterT0.Add(time.Millisecond-3000), 0))
		}, ErrNegativeDelay, func(d Drops) uint64 { return d.NegativeDelay }},
		{"delay_resp answered twice", func(t *testing.T) (*Slave, error) {
			s := withSyncAndReq(t)
			if err := respErr(s, delayRespMsg(7, masterT0.Add(2*time.Millisecond), 0)); err != nil {
				t.Fatal(err)
			}
			return s, respErr(s, delayRespMsg(7, masterT0.Add(2*time.Millisecond), 0))
		}, ErrUnmatched, func(d Drops) uint64 { return d.Unmatched }},
		{"delay_req sent before any sync", func(t *testing.T) (*Slave, error) {
			s := withMaster(t)
			if err := s.DelayReqSent(3, masterT0); err != nil {
				t.Fatal(err)
			}
			return s, respErr(s, delayRespMsg(3, masterT0, 0))
		}, ErrNoSync, func(d Drops) uint64 { return d.NoSync }},
		{"delay_resp on a peer-to-peer port", func(t *testing.T) (*Slave, error) {
			s := newSlave(t, PeerToPeer, 0)
			s.SetMaster(masterPort)
			return s, respErr(s, delayRespMsg(3, masterT0, 0))
		}, ErrMechanism, func(d Drops) uint64 { return d.WrongMechanism }},
		{"delay_req never answered", func(t *testing.T) (*Slave, error) {
			s := withSyncAndReq(t)
			return s, s.DelayReqSent(8, masterT0.Add(time.Second))
		}, nil, func(d Drops) uint64 { return d.LostResponse }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := tt.run(t)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "ptp: ") {
				t.Errorf("error %q lacks context", err)
			}
			if n := tt.counter(s.Drops()); n != 1 {
				t.Fatalf("counter = %d, want 1 (%+v)", n, s.Drops())
			}
		})
	}
}

func TestNewSlaveRejects(t *testing.T) {
	for _, cfg := range []SlaveConfig{
		{Identity: slavePort, Timestamps: netstamp.StampKernel},
		{Identity: slavePort, Mechanism: EndToEnd, Timestamps: netstamp.StampHardware + 1},
		{Identity: slavePort, Mechanism: EndToEnd, Timestamps: netstamp.StampKernel, DelayAsymmetry: 2 * time.Second},
	} {
		if _, err := NewSlave(cfg); err == nil {
			t.Errorf("NewSlave(%+v) accepted", cfg)
		}
	}
}

// responderT0 is on the responder's clock.
var responderT0 = time.Unix(1_700_000_000, 0)

func pdelayResp(req *protocol.PDelayReq, t2 time.Time, twoStep bool, c protocol.Correction) *protocol.PDelayResp {
	r := protocol.RespPDelay(masterPort.ClockIdentity, masterPort.PortNumber, protocol.NewTimestamp(t2), req)
	r.CorrectionField = c
	if !twoStep {
		r.FlagField = 0
		r.RequestReceiptTimestamp = protocol.Timestamp{}
	}
	return r
}

func pdelayFollowUp(req *protocol.PDelayReq, t3 time.Time, c protocol.Correction) *protocol.PDelayRespFollowUp {
	f := protocol.RespFollowUpPDelay(masterPort.ClockIdentity, masterPort.PortNumber, protocol.NewTimestamp(t3), req)
	f.CorrectionField = c
	return f
}

func newPeerDelay(t *testing.T) *PeerDelay {
	t.Helper()
	p, err := NewPeerDelay(PeerDelayConfig{Identity: slavePort, Timestamps: netstamp.StampKernel})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPeerToPeer checks the clause 11.4 arithmetic:
// meanLinkDelay = [(t4 − t1) − (t3 − t2) − corrections] / 2.
func TestPeerToPeer(t *testing.T) {
	tests := []struct {
		name           string
		twoStep        bool
		turnaround     time.Duration // t3 − t2 as the timestamps say
		zeroTimestamps bool          // two-step responder reporting only its turnaround, in the correction
		respCorr       float64
		fuCorr         float64
		t41            float64
		want           float64
	}{
		{"two-step, no corrections", true, 10 * time.Microsecond, false, 0, 0, 11001, 500.5},
		{"two-step with corrections", true, 10 * time.Microsecond, false, 1.5, 1.5, 11004, 500.5},
		{"two-step, turnaround in the follow_up correction", true, 0, true, 0, 10000, 11001, 500.5},
		{"one-step, turnaround in the resp correction", false, 0, false, 10000.25, 0, 11001, 500.375},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPeerDelay(t)
			req := p.NewRequest()
			if req.MessageType() != protocol.MessagePDelayReq || req.SourcePortIdentity != slavePort {
				t.Fatalf("request %+v", req.Header)
			}
			t1 := masterT0
			if err := p.RequestSent(req.SequenceID, t1); err != nil {
				t.Fatal(err)
			}
			t2 := responderT0
			t3 := t2.Add(tt.turnaround)
			if tt.zeroTimestamps {
				t2, t3 = time.Unix(0, 0), time.Unix(0, 0)
			}
			t4 := t1.Add(ns(tt.t41))
			r, ok, err := p.HandleResp(pdelayResp(req, t2, tt.twoStep, corr(tt.respCorr)), t4)
			if err != nil {
				t.Fatal(err)
			}
			if ok != !tt.twoStep {
				t.Fatalf("complete after resp = %t", ok)
			}
			if tt.twoStep {
				r, ok, err = p.HandleRespFollowUp(pdelayFollowUp(req, t3, corr(tt.fuCorr)))
				if err != nil || !ok {
					t.Fatalf("follow_up: %t %v", ok, err)
				}
			}
			if r.MeanLinkDelay.Nanoseconds() != tt.want {
				t.Fatalf("meanLinkDelay %v, want %v", r.MeanLinkDelay, tt.want)
			}
			if r.Responder != masterPort || !r.T1.Equal(t1) || !r.T4.Equal(t4) || r.TwoStep != tt.twoStep || r.Timestamps != netstamp.StampKernel {
				t.Fatalf("result %+v", r)
			}
			if r.Correction.Nanoseconds() != tt.respCorr+tt.fuCorr {
				t.Fatalf("correction %v", r.Correction)
			}
			if r.RateRatioValid {
				t.Fatal("rate ratio from one exchange")
			}
		})
	}
}

func TestNeighborRateRatio(t *testing.T) {
	tests := []struct {
		name      string
		twoStep   bool
		ppm       float64
		want      float64
		wantValid bool
	}{
		{"responder 100 ppm fast", true, 100, 1.0001, true},
		{"responder 50 ppm slow", true, -50, 0.99995, true},
		{"one-step responder gives no ratio", false, 100, 0, false},
		{"absurd ratio is not reported", true, 5000, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPeerDelay(t)
			var last PeerDelayResult
			for k := range 5 {
				req := p.NewRequest()
				t1 := masterT0.Add(time.Duration(k) * time.Second)
				if err := p.RequestSent(req.SequenceID, t1); err != nil {
					t.Fatal(err)
				}
				elapsed := time.Duration(float64(k) * float64(time.Second) * (1 + tt.ppm*1e-6))
				t2 := responderT0.Add(elapsed)
				t3 := t2.Add(10 * time.Microsecond)
				t4 := t1.Add(11 * time.Microsecond)
				r, ok, err := p.HandleResp(pdelayResp(req, t2, tt.twoStep, corr(10000)), t4)
				if err != nil {
					t.Fatal(err)
				}
				if tt.twoStep {
					r, ok, err = p.HandleRespFollowUp(pdelayFollowUp(req, t3, 0))
					if err != nil {
						t.Fatal(err)
					}
				}
				if !ok {
					t.Fatal("exchange not complete")
				}
				if k == 0 && r.RateRatioValid {
					t.Fatal("ratio from the first exchange")
				}
				last = r
			}
			if last.RateRatioValid != tt.wantValid || math.Abs(last.NeighborRateRatio-tt.want) > 1e-12 {
				t.Fatalf("ratio %.12f valid %t, want %.12f %t", last.NeighborRateRatio, last.RateRatioValid, tt.want, tt.wantValid)
			}
		})
	}
}

func TestPeerDelayRejects(t *testing.T) {
	t1 := masterT0
	t4 := masterT0.Add(11 * time.Microsecond)
	sent := func(t *testing.T) (*PeerDelay, *protocol.PDelayReq) {
		p := newPeerDelay(t)
		req := p.NewRequest()
		if err := p.RequestSent(req.SequenceID, t1); err != nil {
			t.Fatal(err)
		}
		return p, req
	}
	answered := func(t *testing.T) (*PeerDelay, *protocol.PDelayReq) {
		p, req := sent(t)
		if _, _, err := p.HandleResp(pdelayResp(req, responderT0, true, 0), t4); err != nil {
			t.Fatal(err)
		}
		return p, req
	}
	tests := []struct {
		name    string
		run     func(t *testing.T) (*PeerDelay, error)
		want    error
		counter func(Drops) uint64
	}{
		{"resp with another sequence id", func(t *testing.T) (*PeerDelay, error) {
			p, req := sent(t)
			r := pdelayResp(req, responderT0, true, 0)
			r.SequenceID++
			_, _, err := p.HandleResp(r, t4)
			return p, err
		}, ErrUnmatched, func(d Drops) uint64 { return d.Unmatched }},
		{"resp for another port", func(t *testing.T) (*PeerDelay, error) {
			p, req := sent(t)
			r := pdelayResp(req, responderT0, true, 0)
			r.RequestingPortIdentity = pid(0x51, 1)
			_, _, err := p.HandleResp(r, t4)
			return p, err
		}, ErrWrongRequester, func(d Drops) uint64 { return d.WrongRequester }},
		{"resp without a receive timestamp", func(t *testing.T) (*PeerDelay, error) {
			p, req := sent(t)
			_, _, err := p.HandleResp(pdelayResp(req, responderT0, true, 0), time.Time{})
			return p, err
		}, ErrTimestamp, func(d Drops) uint64 { return d.BadTimestamp }},
		{"second responder", func(t *testing.T) (*PeerDelay, error) {
			p, req := answered(t)
			r := pdelayResp(req, responderT0, true, 0)
			r.SourcePortIdentity = pid(0x72, 1)
			_, _, err := p.HandleResp(r, t4)
			return p, err
		}, ErrOtherResponder, func(d Drops) uint64 { return d.OtherResponder }},
		{"follow_up from another responder", func(t *testing.T) (*PeerDelay, error) {
			p, req := answered(t)
			f := pdelayFollowUp(req, responderT0.Add(time.Microsecond), 0)
			f.SourcePortIdentity = pid(0x72, 1)
			_, _, err := p.HandleRespFollowUp(f)
			return p, err
		}, ErrUnmatched, func(d Drops) uint64 { return d.Unmatched }},
		{"follow_up before any resp", func(t *testing.T) (*PeerDelay, error) {
			p, req := sent(t)
			_, _, err := p.HandleRespFollowUp(pdelayFollowUp(req, responderT0, 0))
			return p, err
		}, ErrUnmatched, func(d Drops) uint64 { return d.Unmatched }},
		{"follow_up with a too-big correction", func(t *testing.T) (*PeerDelay, error) {
			p, req := answered(t)
			_, _, err := p.HandleRespFollowUp(pdelayFollowUp(req, responderT0, 0x7fffffffffffffff))
			return p, err
		}, ErrCorrectionRange, func(d Drops) uint64 { return d.BadCorrection }},
		{"request never answered", func(t *testing.T) (*PeerDelay, error) {
			p, _ := sent(t)
			return p, p.RequestSent(9, t1.Add(time.Second))
		}, nil, func(d Drops) uint64 { return d.LostResponse }},
		{"follow_up never came", func(t *testing.T) (*PeerDelay, error) {
			p, _ := answered(t)
			return p, p.RequestSent(9, t1.Add(time.Second))
		}, nil, func(d Drops) uint64 { return d.MissingFollowUp }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := tt.run(t)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if n := tt.counter(p.Drops()); n != 1 {
				t.Fatalf("counter = %d, want 1 (%+v)", n, p.Drops())
			}
		})
	}
}

func TestToUTC(t *testing.T) {
	tai := time.Date(2026, 3, 1, 0, 0, 37, 0, time.UTC)
	tests := []struct {
		name   string
		tp     TimeProperties
		want   time.Time
		reason string
	}{
		{"valid announced offset", TimeProperties{PTPTimescale: true, CurrentUTCOffsetValid: true, CurrentUTCOffset: 37},
			time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), "UTC offset 37 s announced"},
		{"valid but different announced offset", TimeProperties{PTPTimescale: true, CurrentUTCOffsetValid: true, CurrentUTCOffset: 38},
			time.Date(2026, 2, 28, 23, 59, 59, 0, time.UTC), "UTC offset 38 s"},
		{"offset not valid: built-in 37 s", TimeProperties{PTPTimescale: true, CurrentUTCOffset: 0},
			time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), "not marked valid: using the built-in 37 s"},
		{"arbitrary timescale", TimeProperties{CurrentUTCOffsetValid: true, CurrentUTCOffset: 37},
			tai, "arbitrary timescale"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, reason := tt.tp.ToUTC(tai)
			if !got.Equal(tt.want) {
				t.Errorf("ToUTC = %v, want %v", got, tt.want)
			}
			if !strings.Contains(reason, tt.reason) {
				t.Errorf("reason %q, want it to contain %q", reason, tt.reason)
			}
		})
	}
}

// The link delay given to the Slave is the running median of the peer delay
// exchanges: one exchange's outlier does not move it.
func TestMedianFilter(t *testing.T) {
	var f medianFilter
	steps := []struct {
		add, want float64
	}{
		{1000, 1000},
		{5000, 5000}, // of two, the upper
		{900, 1000},
		{1100, 1100},
		{30000, 1100},
		{950, 1100}, // of an even count, the upper
	}
	for i, s := range steps {
		if got := f.add(IntervalOf(time.Duration(s.add))).Nanoseconds(); got != s.want {
			t.Fatalf("step %d: median %v, want %v", i, got, s.want)
		}
	}
	for range linkDelayWindow {
		f.add(IntervalOf(2000))
	}
	if got := f.add(IntervalOf(2000)).Nanoseconds(); got != 2000 {
		t.Fatalf("after a window of 2000 ns: %v", got)
	}
}
