package ptp

import (
	"testing"
	"time"

	"github.com/facebook/time/ptp/protocol"

	"github.com/timed-project/timed/internal/netstamp"
)

// FuzzHandlers feeds arbitrary bytes through protocol.DecodePacket into the
// Port, Slave and PeerDelay handlers: whatever arrives, they must not panic,
// and the port must stay in a valid state with a reason.
func FuzzHandlers(f *testing.F) {
	seed := func(p protocol.Packet) {
		b, err := protocol.Bytes(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	a := announce(masterPort, 0x70, 6, 1)
	seed(a)
	seed(syncMsg(1, false, masterT0, corr(12.5)))
	seed(syncMsg(1, true, masterT0, corr(-3)))
	seed(followUpMsg(1, masterT0, corr(1)))
	seed(delayRespMsg(0, masterT0, corr(0.5)))
	req := protocol.ReqPDelay(slavePort.ClockIdentity, slavePort.PortNumber, 0)
	seed(pdelayResp(req, responderT0, true, 0))
	seed(pdelayResp(req, responderT0, false, corr(10000)))
	seed(pdelayFollowUp(req, responderT0, 0))
	f.Add([]byte{})
	f.Add([]byte{0x0b, 0x02, 0x00, 0x40})

	f.Fuzz(func(t *testing.T, data []byte) {
		pkt, err := protocol.DecodePacket(data)
		if err != nil {
			return
		}
		cfg := portConfig(248)
		port, err := NewPort(cfg)
		if err != nil {
			t.Fatal(err)
		}
		port.Initialize(at(0))
		s, err := NewSlave(SlaveConfig{Identity: slavePort, Mechanism: EndToEnd, Timestamps: netstamp.StampKernel})
		if err != nil {
			t.Fatal(err)
		}
		pd := newPeerDelay(t)
		_ = pd.RequestSent(pd.NewRequest().SequenceID, masterT0)
		local := masterT0.Add(time.Millisecond)

		switch m := pkt.(type) {
		case *protocol.Announce:
			for i := range 3 {
				_ = port.HandleAnnounce(m, at(float64(i)))
				m.SequenceID++
				port.Tick(at(float64(i)))
			}
			port.MasterClockSelected(at(3))
			port.Tick(at(10))
			if mm, ok := port.Master(); ok {
				_, _ = mm.TimeProperties.ToUTC(masterT0)
			}
		case *protocol.SyncDelayReq:
			s.SetMaster(m.SourcePortIdentity)
			_, _, _ = s.HandleSync(m, local)
			_ = s.DelayReqSent(m.SequenceID, local)
			s.SetPeerDelay(IntervalOf(time.Microsecond))
			_, _, _ = s.HandleSync(m, local)
		case *protocol.FollowUp:
			s.SetMaster(m.SourcePortIdentity)
			s.SetPeerDelay(IntervalOf(time.Microsecond))
			_, _, _ = s.HandleFollowUp(m)
			sy := syncMsg(m.SequenceID, true, time.Time{}, 0)
			sy.SourcePortIdentity = m.SourcePortIdentity
			_, _, _ = s.HandleSync(sy, local)
		case *protocol.DelayResp:
			s.SetMaster(m.SourcePortIdentity)
			_, _, _ = s.HandleSync(syncMsg(1, false, masterT0, 0), local)
			_ = s.DelayReqSent(m.SequenceID, local)
			_, _ = s.HandleDelayResp(m)
		case *protocol.PDelayResp:
			_, _, _ = pd.HandleResp(m, local)
			fu := protocol.RespFollowUpPDelay(m.SourcePortIdentity.ClockIdentity, m.SourcePortIdentity.PortNumber, m.RequestReceiptTimestamp, req)
			fu.SequenceID = m.SequenceID
			_, _, _ = pd.HandleRespFollowUp(fu)
		case *protocol.PDelayRespFollowUp:
			_, _, _ = pd.HandleResp(pdelayResp(req, responderT0, true, 0), local)
			_, _, _ = pd.HandleRespFollowUp(m)
		}
		if _, ok := protocol.PortStateToString[port.State()]; !ok || port.Reason() == "" {
			t.Fatalf("port in state %d with reason %q", port.State(), port.Reason())
		}
	})
}
